"""Golden fixture for the paper linear-evaluation protocol (`simsiam eval linear --protocol paper`).

The official SimSiam `main_lincls.py --lars` on a tiny scale, in PyTorch: a frozen ResNet-18
(width 2, CIFAR stem, torchvision's blocks and names) in eval mode, `fc` initialised from
N(0, 0.01) with a zero bias, cross-entropy, apex's LARC (trust coefficient 0.001, clip=False)
around SGD (momentum 0.9, weight decay 0) at lr = base_lr * batch / 256, the lr set per epoch by
`adjust_learning_rate`'s cosine. Augmentation cannot be matched across libraries, so the
fixture holds the crops themselves (already normalised) and each epoch's shuffled order; the
Rust test feeds them, batch by batch, to the trainer that the CLI runs after augmentation.

Run from the repository root (CPU, a second):

    .venv/bin/python tools/golden/make_lincls_golden.py

The fixture records the torch and torchvision versions it was made with (the safetensors
metadata); the committed one comes from torch 2.15.0 / torchvision 0.29.2, not the pins of
requirements.txt, which were not installable where it was made.

Output (small, committed): crates/simsiam-train/tests/fixtures/lincls.safetensors
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_models_golden import ResNet, randomise_batch_norms  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "simsiam-train", "tests", "fixtures")

WIDTH, CLASSES, SIZE, IMAGES = 2, 5, 8, 40
# base_lr 64 (lr 4 at batch 16) instead of the paper's 0.02: LARS steps by lr * 0.001 * |w|,
# and at lr 0.00125 one epoch would move `fc` by less than f32 resolves on weights of 0.01.
BATCH, BASE_LR, EPOCHS, RUN_EPOCHS = 16, 64.0, 4, 2
MOMENTUM, TRUST, EPS = 0.9, 0.001, 1e-8


def to_f16_exact(t):
    """Rounds a float tensor to f16 in place, so the fixture's f16 copy is exactly what ran."""
    t.copy_(t.half().float())
    return t


class Larc:
    """apex.parallel.LARC in scaling mode (clip=False) around an SGD optimiser, written out so
    the fixture does not need apex: per parameter with non-zero weight and gradient norms, the
    gradient plus weight decay is scaled by trust * |w| / (|g| + wd * |w| + eps); SGD then
    steps with its own weight decay switched off."""

    def __init__(self, sgd, trust, eps):
        self.sgd, self.trust, self.eps = sgd, trust, eps

    @torch.no_grad()
    def step(self):
        decays = []
        for group in self.sgd.param_groups:
            wd = group.get("weight_decay", 0)
            decays.append(wd)
            group["weight_decay"] = 0
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = torch.norm(p.data), torch.norm(p.grad.data)
                if w_norm != 0 and g_norm != 0:
                    ratio = self.trust * w_norm / (g_norm + w_norm * wd + self.eps)
                    p.grad.data += wd * p.data
                    p.grad.data *= ratio
        self.sgd.step()
        for group, wd in zip(self.sgd.param_groups, decays):
            group["weight_decay"] = wd


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(19)
    g = torch.Generator().manual_seed(190)

    backbone = ResNet(BasicBlock, [2, 2, 2, 2], width=WIDTH, stem="cifar")
    randomise_batch_norms(backbone)
    # Non-trivial running statistics: eval mode must use them, and must leave them alone.
    backbone.train()
    with torch.no_grad():
        for _ in range(3):
            backbone(torch.randn(IMAGES, 3, SIZE, SIZE, generator=g) * 1.5 + 0.3)
        for v in backbone.state_dict().values():
            if v.is_floating_point():
                to_f16_exact(v)
    fc = nn.Linear(8 * WIDTH, CLASSES)
    fc.weight.data.normal_(mean=0.0, std=0.01, generator=g)
    fc.bias.data.zero_()
    for p in backbone.parameters():
        p.requires_grad = False
    model = nn.Sequential(backbone, fc)

    out = {}
    for k, v in backbone.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            out["backbone." + k] = v.detach().clone().half()
    out["fc.weight.init"], out["fc.bias.init"] = fc.weight.detach().clone(), fc.bias.detach().clone()
    x = to_f16_exact(torch.randn(IMAGES, 3, SIZE, SIZE, generator=g))
    labels = torch.randint(0, CLASSES, (IMAGES,), generator=g)
    out["x"], out["labels"] = x.half(), labels

    init_lr = BASE_LR * BATCH / 256
    sgd = torch.optim.SGD([fc.weight, fc.bias], init_lr, momentum=MOMENTUM, weight_decay=0.0)
    optimizer = Larc(sgd, TRUST, EPS)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(RUN_EPOCHS):
        lr = init_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / EPOCHS))
        for group in sgd.param_groups:
            group["lr"] = lr
        order = torch.randperm(IMAGES, generator=g)
        model.eval()
        losses = []
        for start in range(0, IMAGES, BATCH):
            idx = order[start : start + BATCH]
            loss = criterion(model(x[idx]), labels[idx])
            optimizer.sgd.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        out[f"order.{epoch}"] = order
        out[f"lr.{epoch}"] = torch.tensor([lr], dtype=torch.float64)
        out[f"loss.{epoch}"] = torch.tensor(losses, dtype=torch.float64)
        out[f"fc.weight.{epoch}"] = fc.weight.detach().clone()
        out[f"fc.bias.{epoch}"] = fc.bias.detach().clone()
        print(f"epoch {epoch}: lr {lr:.6f}, losses {[round(v, 6) for v in losses]}")
    with torch.no_grad():
        out["features"] = backbone.eval()(x[:4])
    settings = [BATCH, BASE_LR, EPOCHS, MOMENTUM, TRUST, EPS, WIDTH, CLASSES]
    out["settings"] = torch.tensor(settings, dtype=torch.float64)
    metadata = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "settings": "batch, base_lr, epochs, momentum, trust_coefficient, eps, width, classes",
    }
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "lincls.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=metadata)
    print(f"{path}: {os.path.getsize(path)} bytes, torch {torch.__version__}")


if __name__ == "__main__":
    main()
