#!/usr/bin/env python3
"""Throughput of Lightly's SimSiamTransform, the baseline of simsiam-augment's benchmark.

Pinned versions: lightly==1.6.0 torch==2.9.1 torchvision==0.24.1 (Pillow from their deps).
Usually run by `cargo run --release -p simsiam-augment --example bench_augment`, which calls

    /work/pyenv/bin/python tools/augment/bench_lightly.py --preset cifar10 --workers 1 --seconds 3

and reads the last line, `images_per_s=<float>`.

Two views per image, PIL input images (random, fixed numpy seed), torch.set_num_threads(1).
`--workers 1` runs in this process; `--workers N` uses a multiprocessing pool of N processes,
as a DataLoader with num_workers=N, each worker holding its own images and transform. Workers
return only a count (no tensors are sent back or collated), so the figure is an upper bound on
what a DataLoader would deliver.
"""

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch
from PIL import Image

CIFAR10 = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}

_state = {}


def make(preset, seed):
    from lightly.transforms import SimSiamTransform

    if preset == "cifar10":
        transform = SimSiamTransform(input_size=32, gaussian_blur=0.0, normalize=CIFAR10)
        side, count = 32, 256
    else:
        transform = SimSiamTransform()
        side, count = 256, 32
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)) for _ in range(count)]
    return transform, images


def init(preset, seed):
    torch.set_num_threads(1)
    _state["transform"], _state["images"] = make(preset, seed)


def work(n):
    transform, images = _state["transform"], _state["images"]
    for i in range(n):
        views = transform(images[i % len(images)])
        assert len(views) == 2
    return n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=["cifar10", "default"], default="cifar10")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)

    if args.workers <= 1:
        init(args.preset, 0)
        work(8)  # warm up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            done += work(16)
        elapsed = time.perf_counter() - start
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(args.workers, initializer=init, initargs=(args.preset, 0)) as pool:
            pool.map(work, [8] * args.workers)  # warm up, every worker
            chunk = 32 if args.preset == "cifar10" else 4
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                done += sum(pool.map(work, [chunk] * (4 * args.workers)))
            elapsed = time.perf_counter() - start
    print(f"preset={args.preset} workers={args.workers} images={done} seconds={elapsed:.3f}")
    print(f"images_per_s={done / elapsed:.1f}")


if __name__ == "__main__":
    main()
