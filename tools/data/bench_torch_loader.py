#!/usr/bin/env python3
"""Throughput of a PyTorch DataLoader feeding SimSiam two augmented views of CIFAR-10.

The reference for `cargo run --release -p simsiam-data --example bench_loader`, which runs this
script after measuring our loader and prints both in one Markdown table.

Pinned versions (CPU wheels):
    torch==2.9.1 torchvision==0.24.1 lightly==1.6.0

It reads the CIFAR-10 binary batches with numpy, wraps them in a torch Dataset that applies
Lightly's SimSiamTransform(input_size=32, gaussian_blur=0.0) to PIL images, and times
DataLoader(batch_size=256, num_workers=W, shuffle=True, drop_last=True) over a fixed number of
batches after a warm-up (worker start-up excluded), for each W. It prints one JSON line per
worker count: {"workers": W, "batches": N, "images_per_s": X}.

    python tools/data/bench_torch_loader.py --data <dir with cifar-10-batches-bin> \
        --workers 1,2 --batches 40 --warmup 2
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from lightly.transforms import SimSiamTransform
from torch.utils.data import DataLoader, Dataset

TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]


def cifar_dir(path):
    nested = os.path.join(path, "cifar-10-batches-bin")
    return nested if os.path.isdir(nested) else path


def load_cifar10(path):
    """Images (N, 32, 32, 3) uint8 and labels (N,) from the binary batches."""
    records = [np.fromfile(os.path.join(path, f), dtype=np.uint8).reshape(-1, 3073) for f in TRAIN]
    data = np.concatenate(records)
    labels = data[:, 0].astype(np.int64)
    images = data[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return images, labels


class Cifar(Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def measure(dataset, workers, batches, warmup, batch_size):
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, shuffle=True, drop_last=True
    )
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        (x0, x1), _ = next(it)
        assert x0.shape == (batch_size, 3, 32, 32) and x1.shape == x0.shape
    elapsed = time.perf_counter() - start
    del it
    return batches * batch_size / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    torch.manual_seed(0)
    images, labels = load_cifar10(cifar_dir(args.data))
    transform = SimSiamTransform(input_size=32, gaussian_blur=0.0)
    dataset = Cifar(images, labels, transform)
    for workers in [int(w) for w in args.workers.split(",")]:
        ips = measure(dataset, workers, args.batches, args.warmup, args.batch_size)
        print(json.dumps({"workers": workers, "batches": args.batches, "images_per_s": ips}), flush=True)


if __name__ == "__main__":
    main()
