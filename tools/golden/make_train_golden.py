"""Golden fixtures for simsiam-train: SGD, the cosine schedule with warmup, and kNN.

Run from the repository root with the pinned versions of tools/golden/requirements.txt:

    .venv/bin/python tools/golden/make_train_golden.py

Outputs (small, committed):
    crates/simsiam-train/tests/fixtures/sgd.safetensors
    crates/simsiam-train/tests/fixtures/schedule.safetensors
    crates/simsiam-train/tests/fixtures/knn.safetensors
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "simsiam-train", "tests", "fixtures")


def schedule_fixture():
    """torch's LinearLR warmup followed by CosineAnnealingLR, chained by SequentialLR."""
    out = {}
    for name, total, warmup, start_factor, eta_min in [
        ("warmup", 40, 5, 0.1, 0.0),
        ("no_warmup", 30, 0, 1.0, 0.0),
        ("eta_min", 25, 3, 0.01, 0.002),
    ]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.05)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=eta_min)
        if warmup > 0:
            linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start_factor, total_iters=warmup)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup])
        else:
            sched = cosine
        lrs = []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out[name] = torch.tensor(lrs, dtype=torch.float64)
        out[name + ".params"] = torch.tensor([0.05, total, warmup, start_factor, eta_min], dtype=torch.float64)
    save_file(out, os.path.join(OUT, "schedule.safetensors"))


def sgd_fixture():
    """torch.optim.SGD, two parameter groups (the predictor's lr fixed, as in the paper's
    recipe), momentum 0.9, weight decay 5e-4, lr set per step by a cosine schedule; one run
    with Nesterov momentum and dampening 0."""
    out = {}
    for nesterov in [False, True]:
        g = torch.Generator().manual_seed(11)
        a = torch.nn.Parameter(torch.randn(4, 3, generator=g))
        b = torch.nn.Parameter(torch.randn(5, generator=g))
        c = torch.nn.Parameter(torch.randn(2, 2, generator=g))  # the "predictor"
        tag = "nesterov" if nesterov else "plain"
        out[f"{tag}.a.init"], out[f"{tag}.b.init"], out[f"{tag}.c.init"] = a.detach().clone(), b.detach().clone(), c.detach().clone()
        base_lr = 0.1
        opt = torch.optim.SGD(
            [{"params": [a, b], "fix_lr": False}, {"params": [c], "fix_lr": True}],
            lr=base_lr,
            momentum=0.9,
            weight_decay=5e-4,
            nesterov=nesterov,
        )
        steps = 6
        for t in range(steps):
            lr = base_lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))
            for group in opt.param_groups:
                group["lr"] = base_lr if group["fix_lr"] else lr
            ga = torch.randn(4, 3, generator=g)
            gb = torch.randn(5, generator=g)
            gc = torch.randn(2, 2, generator=g)
            a.grad, b.grad, c.grad = ga.clone(), gb.clone(), gc.clone()
            # `b` gets no gradient at step 2, like a parameter unused in one step: SGD skips it.
            if t == 2:
                b.grad = None
            opt.step()
            out[f"{tag}.step{t}.grad.a"], out[f"{tag}.step{t}.grad.b"], out[f"{tag}.step{t}.grad.c"] = ga, gb, gc
            out[f"{tag}.step{t}.a"], out[f"{tag}.step{t}.b"], out[f"{tag}.step{t}.c"] = (
                a.detach().clone(),
                b.detach().clone(),
                c.detach().clone(),
            )
    save_file(out, os.path.join(OUT, "sgd.safetensors"))


def knn_predict(feature, feature_bank, feature_labels, classes, knn_k, knn_t):
    """Lightly's weighted kNN (lightly/utils/benchmarking/knn.py), written out here so the
    fixture does not depend on lightly: cosine similarity of l2-normalised features, top k,
    weights exp(sim / t) summed per class."""
    sim_matrix = torch.mm(feature, feature_bank)
    sim_weight, sim_indices = sim_matrix.topk(k=knn_k, dim=-1)
    sim_labels = torch.gather(feature_labels.expand(feature.size(0), -1), dim=-1, index=sim_indices)
    sim_weight = (sim_weight / knn_t).exp()
    one_hot = torch.zeros(feature.size(0) * knn_k, classes)
    one_hot = one_hot.scatter(dim=-1, index=sim_labels.view(-1, 1), value=1.0)
    scores = torch.sum(one_hot.view(feature.size(0), -1, classes) * sim_weight.unsqueeze(dim=-1), dim=1)
    return scores.argsort(dim=-1, descending=True), scores


def knn_fixture():
    g = torch.Generator().manual_seed(3)
    classes, dim = 10, 32
    centres = torch.randn(classes, dim, generator=g)
    train_labels = torch.randint(0, classes, (600,), generator=g)
    test_labels = torch.randint(0, classes, (150,), generator=g)
    train = centres[train_labels] + 1.5 * torch.randn(600, dim, generator=g)
    test = centres[test_labels] + 1.5 * torch.randn(150, dim, generator=g)
    bank = F.normalize(train, dim=1)
    query = F.normalize(test, dim=1)
    out = {"train": train, "test": test, "train_labels": train_labels, "test_labels": test_labels}
    for k in [1, 20, 200]:
        pred, scores = knn_predict(query, bank.t().contiguous(), train_labels, classes, k, 0.1)
        out[f"k{k}.pred"] = pred[:, 0].contiguous()
        out[f"k{k}.scores"] = scores
        top1 = (pred[:, 0] == test_labels).float().mean()
        top5 = (pred[:, :5] == test_labels.unsqueeze(1)).any(dim=1).float().mean()
        out[f"k{k}.accuracy"] = torch.tensor([top1.item(), top5.item()], dtype=torch.float64)
        print(f"kNN k={k}: top1 {top1.item():.4f} top5 {top5.item():.4f}")
    save_file(out, os.path.join(OUT, "knn.safetensors"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    schedule_fixture()
    sgd_fixture()
    knn_fixture()
