#!/usr/bin/env python3
# requirements: torch, torchvision (any recent; the GPU machine has torch 2.11)
"""One SimSiam training step in PyTorch on a GPU, eager f32 or AMP bf16, timed: the reference
for `cargo run --release -p simsiam-models --features cuda --example bench_step_gpu`.

The models and the step are those of bench_step_torch.py (imported from it when torchvision
is installed; otherwise the same ResNet-18, written out below): two views,
symmetric negative-cosine loss with the stop-gradient, backward, `w -= lr * g`. AMP autocasts
convolutions and matrix products to bf16 and keeps batch norm and the loss in f32, as our
`--precision bf16`. Each step ends with `loss.item()`, which waits for the GPU.

    python3 tools/bench/bench_step_torch_gpu.py --model cifar-r18 --batch 256 --precision bf16
"""

import argparse
import contextlib
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from bench_step_torch import build, neg_cos  # needs torchvision
except ImportError:
    build = None


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet18(cifar):
    """torchvision's resnet18 without fc; the CIFAR stem: 3x3 stride-1 conv, no max-pool."""
    stem = [nn.Conv2d(3, 64, 3, 1, 1, bias=False)] if cifar else [nn.Conv2d(3, 64, 7, 2, 3, bias=False)]
    stem += [nn.BatchNorm2d(64), nn.ReLU()] + ([] if cifar else [nn.MaxPool2d(3, 2, 1)])
    layers, cin = [], 64
    for i, cout in enumerate([64, 128, 256, 512]):
        layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def mlp(dims, last_bn_affine=None):
    """Lightly's heads: Linear(no bias)+BN(+ReLU) per hidden layer; see bench_step_torch.py."""
    mods = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        last = i == len(dims) - 2
        if last and last_bn_affine is None:  # the prediction head's last layer: Linear with bias
            mods.append(nn.Linear(a, b))
            break
        mods += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b, affine=not last or bool(last_bn_affine))]
        if not last:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def build_local(name):
    if name == "imagenet-r18":
        return resnet18(False), mlp([512, 512, 512, 128], False), mlp([128, 64, 128])
    if name == "cifar-r18":
        return resnet18(True), mlp([512, 2048, 2048, 2048], False), mlp([2048, 512, 2048])
    raise SystemExit(f"unknown model {name}: imagenet-r18 or cifar-r18")


if build is None:
    build = build_local

    def neg_cos(p, z):
        return -F.cosine_similarity(p, z, dim=1).mean()


def step(model, x0, x1, lr, amp):
    backbone, proj, pred = model
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with ctx:
        z0 = proj(backbone(x0))
        z1 = proj(backbone(x1))
        p0, p1 = pred(z0), pred(z1)
        loss = 0.5 * (neg_cos(p0.float(), z1.float().detach()) + neg_cos(p1.float(), z0.float().detach()))
    loss.backward()
    with torch.no_grad():
        for m in model:
            for w in m.parameters():
                w.sub_(w.grad, alpha=lr)
                w.grad = None
    return loss.item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cifar-r18")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    args = parser.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = tuple(m.to(dev).train() for m in build(args.model))
    x0 = torch.randn(args.batch, 3, 32, 32, device=dev)
    x1 = torch.randn(args.batch, 3, 32, 32, device=dev)
    amp = args.precision == "bf16"
    for _ in range(args.warmup):
        step(model, x0, x1, 1e-3, amp)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(model, x0, x1, 1e-3, amp)
    secs = time.perf_counter() - start
    print(
        f"torch model={args.model} batch={args.batch} steps={args.steps} device=cuda precision={args.precision} "
        f"images_per_s={args.batch * args.steps / secs:.1f} step_s={secs / args.steps:.4f} loss={loss:.4f} "
        f"peak_gpu_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}"
    )


if __name__ == "__main__":
    main()
