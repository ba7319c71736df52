#!/usr/bin/env python3
# requirements: torch==2.15.0 torchvision==0.29.2 lightly==1.6.0 (Python >= 3.11 for tomllib)
"""SimSiam pretraining on CIFAR-10 with PyTorch + Lightly for a budget of training minutes,
with kNN at fixed minute marks: the reference side of `cargo xtask bench quality`.

    python tools/bench/quality_torch_lightly.py --config RUN/config.toml --data DIR \
        --out torch.jsonl [--minutes 60] [--marks 15,30,45,60] [--threads 1] [--epochs E]

The recipe is read from our run's config.toml (what `simsiam pretrain` wrote), so both sides
train the same recipe:

- backbone: torchvision's ResNet layout (BasicBlock, torchvision's initialisation) at
  `model.width` channels in the first stage (torchvision's resnet18 is fixed at 64, hence the
  small module below), `model.stem` imagenet (7x7/2 conv and 3x3/2 max-pool) or cifar (3x3/1,
  no pool), `model.zero_init_residual`;
- heads: Lightly's SimSiamProjectionHead (3 layers, last BN without affine) or, for other
  `model.proj_layers` / `proj_last_bn_affine`, Lightly's ProjectionHead with the same blocks;
  SimSiamPredictionHead; NegativeCosineSimilarity, symmetric, with the stop-gradient;
- augmentation: Lightly's SimSiamTransform with every `augment.*` value and the normalisation
  `augment.normalize` names (CIFAR-10's: our simsiam_augment::Normalization::CIFAR10);
- optimiser: torch.optim.SGD with `train.momentum` and `train.weight_decay` on every parameter,
  the predictor in a group of its own that keeps the base rate when `train.fixed_predictor_lr`;
  the rate `base_lr` (times batch / 256 when `scale_lr`) on our cosine schedule
  (simsiam_train::CosineSchedule: linear warmup from 1/warmup, cosine to 0) stepped per
  iteration, per epoch, or held (constant), over `train.epochs` (or `--epochs`, which
  `bench quality --epochs fit` gives each side from its own measured speed), or (clock)
  every iteration over `train.minutes` of this side's own training clock;
- data: the 50,000 training images, shuffled (seeded), `train.batch_size`, full batches only,
  `data.workers` loader processes; kNN (`train.knn_k`, `train.knn_t`, Lightly's
  `knn_predict`) with the 50,000 training images without augmentation as the bank and the
  10,000 test images as queries, CIFAR images as they are (ToTensor and Normalize).

Where it differs from ours, necessarily: random numbers (torch's generators, not our ChaCha8
streams, so the initial weights, the order and the crops differ; seeds are comparable only in
distribution), and `data.limit` must be 0 (our subset is drawn by our generator).

The training clock counts, as ours does (simsiam_train::TrainState::train_seconds), the time
from the request for each batch to the end of its optimiser step: kNN at the marks and at
epoch ends is not on it. Output: JSON lines with the same events as our metrics.jsonl
(`knn_mark`, `epoch_clock`, `time_up`) and a closing `summary`.
"""

import argparse
import json
import math
import os
import sys
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import lightly
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import ProjectionHead, SimSiamPredictionHead, SimSiamProjectionHead
from lightly.transforms import SimSiamTransform
from lightly.utils.benchmarking import knn_predict

from resnet_torch import BLOCKS, ResNet

NORMALIZE = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
    "imagenet": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
}
class SimSiam(nn.Module):
    def __init__(self, m):
        super().__init__()
        if m["backbone"] not in BLOCKS:
            sys.exit(f"model.backbone = {m['backbone']}: only resnet18 and resnet34 are written here")
        self.backbone = ResNet(BLOCKS[m["backbone"]], m["width"], m["stem"], m["zero_init_residual"])
        d, h, out = self.backbone.feature_dim, m["proj_hidden_dim"], m["proj_output_dim"]
        if m["proj_layers"] == 3 and not m["proj_last_bn_affine"]:
            self.projection_head = SimSiamProjectionHead(d, h, out)
        else:
            blocks = [(d if i == 0 else h, h, nn.BatchNorm1d(h), nn.ReLU()) for i in range(m["proj_layers"] - 1)]
            last_in = d if m["proj_layers"] == 1 else h
            blocks.append((last_in, out, nn.BatchNorm1d(out, affine=m["proj_last_bn_affine"]), None))
            self.projection_head = ProjectionHead(blocks)
        self.prediction_head = SimSiamPredictionHead(out, m["pred_hidden_dim"], out)

    def forward(self, x):
        z = self.projection_head(self.backbone(x))
        return z.detach(), self.prediction_head(z)


def read_cifar10(root):
    """CIFAR-10's binary batches under ROOT/cifar-10-batches-bin: (train, test) as
    (uint8 NHWC images, int64 labels)."""
    base = os.path.join(root, "cifar-10-batches-bin")

    def read(names):
        raw = np.concatenate([np.fromfile(os.path.join(base, n), dtype=np.uint8) for n in names])
        records = raw.reshape(-1, 3073)
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        return images, torch.from_numpy(records[:, 0].astype(np.int64))

    return read([f"data_batch_{i}.bin" for i in range(1, 6)]), read(["test_batch.bin"])


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x0, x1 = self.transform(Image.fromarray(self.images[i]))
        return x0, x1


def lr_at(t, lr, per_epoch, step, epoch, clock):
    """simsiam_train::CosineSchedule at this step, as the trainer reads it."""
    kind, epochs, warm = t["schedule"], t["epochs"], t["warmup_epochs"]
    if kind == "clock":
        # ScheduleStep::Clock: over train.minutes of training clock, read before the step.
        budget = t["minutes"] * 60
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(clock / budget, 1.0)))
    if kind == "epoch":
        total, warmup, at = epochs, warm, epoch
    else:
        total, warmup = epochs * per_epoch, warm * per_epoch
        at = step if kind == "iteration" else min(step, warmup)
    if at < warmup:
        f = 1.0 / warmup
        return lr * (f + (1.0 - f) * at / warmup)
    span = total - warmup
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(at - warmup, span) / span))


class Knn:
    """Lightly's benchmark kNN of the backbone: the training images as the bank, the test
    images as queries, both as they are (ToTensor, Normalize)."""

    def __init__(self, train, test, normalize, k, t, batch=256):
        self.train, self.test, self.k, self.t, self.batch = train, test, k, t, batch
        self.mean = torch.tensor(normalize["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(normalize["std"]).view(1, 3, 1, 1)

    def features(self, backbone, images):
        out = []
        for i in range(0, len(images), self.batch):
            x = torch.from_numpy(images[i : i + self.batch]).permute(0, 3, 1, 2).float() / 255.0
            out.append(F.normalize(backbone((x - self.mean) / self.std), dim=1))
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, backbone):
        backbone.eval()
        bank = self.features(backbone, self.train[0]).t().contiguous()
        correct = 0
        for i in range(0, len(self.test[0]), self.batch):
            q = self.features(backbone, self.test[0][i : i + self.batch])
            labels = self.test[1][i : i + self.batch]
            pred = knn_predict(q, bank, self.train[1], 10, self.k, self.t)
            correct += (pred[:, 0] == labels).sum().item()
        backbone.train()
        return correct / len(self.test[0])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="our run's config.toml")
    p.add_argument("--data", required=True, help="the folder holding cifar-10-batches-bin")
    p.add_argument("--out", required=True, help="the JSON-lines file to write")
    p.add_argument("--minutes", type=float, default=0.0, help="training-clock budget (0: none)")
    p.add_argument("--marks", default="", help="minute marks for kNN, e.g. 15,30,45,60")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=0, help="the schedule's length (0: train.epochs)")
    a = p.parse_args()

    with open(a.config, "rb") as f:
        cfg = tomllib.load(f)
    d, aug, m, t = cfg["data"], cfg["augment"], cfg["model"], cfg["train"]
    if a.epochs < 0:
        sys.exit("--epochs must be zero (the config's) or positive")
    if a.epochs > 0:
        t["epochs"] = a.epochs
    if t["schedule"] == "clock" and not t.get("minutes", 0) > 0:
        sys.exit("train.schedule = clock needs train.minutes > 0 in the config")
    if d["dataset"] != "cifar10" or d["limit"] != 0:
        sys.exit("only data.dataset = cifar10 with data.limit = 0 is written here")
    torch.set_num_threads(a.threads)
    torch.manual_seed(t["seed"])
    marks = sorted({float(x) * 60 for x in a.marks.split(",") if x.strip()})
    budget = a.minutes * 60 if a.minutes > 0 else None

    train, test = read_cifar10(a.data)
    rr = aug.get("rr_degrees") or []
    transform = SimSiamTransform(
        input_size=aug["input_size"],
        cj_prob=aug["cj_prob"],
        cj_strength=aug["cj_strength"],
        cj_bright=aug["cj_bright"],
        cj_contrast=aug["cj_contrast"],
        cj_sat=aug["cj_sat"],
        cj_hue=aug["cj_hue"],
        min_scale=aug["min_scale"],
        random_gray_scale=aug["random_gray_scale"],
        gaussian_blur=aug["gaussian_blur"],
        vf_prob=aug["vf_prob"],
        hf_prob=aug["hf_prob"],
        rr_prob=aug["rr_prob"],
        rr_degrees=None if not rr else (rr[0] if len(rr) == 1 else tuple(rr)),
        normalize=NORMALIZE[aug["normalize"]],
    )
    workers = d["workers"]
    loader = torch.utils.data.DataLoader(
        TwoViews(train[0], transform),
        batch_size=t["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(t["seed"]),
    )
    model = SimSiam(m)
    criterion = NegativeCosineSimilarity()
    lr = t["base_lr"] * t["batch_size"] / 256 if t["scale_lr"] else t["base_lr"]
    predictor = [p for n, p in model.named_parameters() if n.startswith("prediction_head.")]
    encoder = [p for n, p in model.named_parameters() if not n.startswith("prediction_head.")]
    optimizer = torch.optim.SGD(
        [{"params": encoder, "fixed": False}, {"params": predictor, "fixed": t["fixed_predictor_lr"]}],
        lr=lr,
        momentum=t["momentum"],
        weight_decay=t["weight_decay"],
    )
    knn = Knn(train, test, NORMALIZE[aug["normalize"]], t["knn_k"], t["knn_t"])
    per_epoch = len(loader)
    out = open(a.out, "w")

    def write(event, **fields):
        out.write(json.dumps({"event": event, **fields}) + "\n")
        out.flush()

    write(
        "versions",
        torch=torch.__version__,
        lightly=lightly.__version__,
        torchvision=__import__("torchvision").__version__,
        threads=a.threads,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )
    clock, step, next_mark, stopped = 0.0, 0, 0, False
    knn_seconds = 0.0
    model.train()
    for epoch in range(t["epochs"]):
        lap = time.perf_counter()
        batches = iter(loader)
        for x0, x1 in batches:
            rate = lr_at(t, lr, per_epoch, step, epoch, clock)
            for g in optimizer.param_groups:
                g["lr"] = lr if g["fixed"] else rate
            z0, p0 = model(x0)
            z1, p1 = model(x1)
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.item()
            step += 1
            clock += time.perf_counter() - lap
            if not math.isfinite(value):
                sys.exit(f"non-finite loss {value} at step {step}")
            images = step * t["batch_size"]
            if step % t["log_every"] == 0:
                write("step", epoch=epoch, step=step, loss=value, lr=rate, train_seconds=clock)
            while next_mark < len(marks) and clock >= marks[next_mark]:
                started = time.perf_counter()
                top1 = knn(model.backbone)
                spent = time.perf_counter() - started
                knn_seconds += spent
                write(
                    "knn_mark",
                    minute=marks[next_mark] / 60,
                    epoch=epoch,
                    step=step,
                    images=images,
                    train_seconds=clock,
                    knn_top1=top1,
                    eval_seconds=spent,
                )
                print(f"minute {marks[next_mark] / 60:g}: kNN top-1 {100 * top1:.2f}%", file=sys.stderr)
                next_mark += 1
            if budget is not None and clock >= budget:
                write("time_up", epoch=epoch, step=step, images=images, train_seconds=clock,
                      budget_minutes=a.minutes)
                stopped = True
                break
            lap = time.perf_counter()
        if stopped and step % per_epoch != 0:
            break
        # The epoch completed: kNN as our monitor runs it (every knn_every epochs and the last).
        last = epoch + 1 == t["epochs"]
        top1 = None
        if (t["knn_every"] > 0 and (epoch + 1) % t["knn_every"] == 0) or last:
            started = time.perf_counter()
            top1 = knn(model.backbone)
            knn_seconds += time.perf_counter() - started
            print(f"epoch {epoch + 1}: kNN top-1 {100 * top1:.2f}%", file=sys.stderr)
        fields = {"knn_top1": top1} if top1 is not None else {}
        write("epoch_clock", epoch=epoch, step=step, images=step * t["batch_size"], train_seconds=clock, **fields)
        if stopped:
            break
    write(
        "summary",
        steps=step,
        schedule_epochs=t["epochs"],
        images=step * t["batch_size"],
        train_seconds=clock,
        images_per_s=step * t["batch_size"] / clock if clock > 0 else None,
        knn_seconds=knn_seconds,
        time_up=stopped,
    )
    out.close()


if __name__ == "__main__":
    main()
