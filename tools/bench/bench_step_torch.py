#!/usr/bin/env python3
# requirements: torch==2.9.1 torchvision==0.24.1
"""One SimSiam training step in PyTorch on the CPU, timed: the reference for
`cargo run --release -p simsiam-models --example bench_step`.

Two views through backbone and heads, the symmetric negative-cosine loss with the
stop-gradient, backward, and a plain SGD update `w -= lr * g` of every parameter. Prints
images per second and peak RSS, in the same format as the Rust example.

    python tools/bench/bench_step_torch.py --model cifar-r18 --batch 64 [--steps 5] [--threads 2]

Models, as in the Rust example:
- imagenet-r18: torchvision's resnet18 (7x7 stride-2 stem and max-pool) on 32x32 images,
  heads 512-512-128 (three layers) and 128-64-128 (Lightly's CIFAR example);
- cifar-r18: resnet18 with a 3x3 stride-1 stem and no max-pool, heads 512-2048-2048 and
  2048-512-2048.
"""

import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def projection_head(input_dim, hidden_dim, output_dim):
    """Lightly's SimSiamProjectionHead: three Linear(no bias)+BN layers, ReLU between, the
    last BN without affine parameters."""
    return nn.Sequential(
        nn.Linear(input_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, output_dim, bias=False),
        nn.BatchNorm1d(output_dim, affine=False),
    )


def prediction_head(input_dim, hidden_dim, output_dim):
    """Lightly's SimSiamPredictionHead: Linear(no bias), BN, ReLU, Linear(bias)."""
    return nn.Sequential(
        nn.Linear(input_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, output_dim),
    )


def build(name):
    backbone = torchvision.models.resnet18()
    backbone.fc = nn.Identity()
    if name == "imagenet-r18":
        proj, pred = projection_head(512, 512, 128), prediction_head(128, 64, 128)
    elif name == "cifar-r18":
        backbone.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        backbone.maxpool = nn.Identity()
        proj, pred = projection_head(512, 2048, 2048), prediction_head(2048, 512, 2048)
    else:
        raise SystemExit(f"unknown model {name}: imagenet-r18 or cifar-r18")
    return backbone, proj, pred


def neg_cos(p, z):
    return -F.cosine_similarity(p, z, dim=1).mean()


def step(model, x0, x1, lr):
    backbone, proj, pred = model
    t0 = time.perf_counter()
    z0 = proj(backbone(x0))
    z1 = proj(backbone(x1))
    p0, p1 = pred(z0), pred(z1)
    loss = 0.5 * (neg_cos(p0, z1.detach()) + neg_cos(p1, z0.detach()))
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    with torch.no_grad():
        for m in model:
            for w in m.parameters():
                w.sub_(w.grad, alpha=lr)
                w.grad = None
    loss.item()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cifar-r18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model)
    for m in model:
        m.train()
    x0 = torch.randn(args.batch, 3, 32, 32)
    x1 = torch.randn(args.batch, 3, 32, 32)
    for _ in range(args.warmup):
        step(model, x0, x1, 1e-3)
    totals = [0.0, 0.0, 0.0]
    start = time.perf_counter()
    for _ in range(args.steps):
        for i, t in enumerate(step(model, x0, x1, 1e-3)):
            totals[i] += t
    secs = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    per = [t / args.steps for t in totals]
    print(
        f"torch model={args.model} batch={args.batch} steps={args.steps} threads={torch.get_num_threads()} "
        f"images_per_s={args.batch * args.steps / secs:.2f} step_s={secs / args.steps:.3f} "
        f"forward_s={per[0]:.3f} backward_s={per[1]:.3f} update_s={per[2]:.3f} peak_rss_mib={peak_mib:.0f} "
        f"cpu_capability={torch.backends.cpu.get_cpu_capability()}"
    )


if __name__ == "__main__":
    main()
