#!/usr/bin/env python3
# requirements: torch==2.15.0 torchvision==0.29.2 numpy pillow
"""The kNN evaluation of issue #19's recipe in PyTorch on the CPU, timed in three parts: the
reference for `simsiam eval knn-random` (docs/performance.md, "kNN evaluation").

- data: the CIFAR-10 binary archive read from the .tar.gz, each image as a PIL image through
  torchvision's `ToTensor` and `Normalize` (CIFAR-10 statistics), batched by a `DataLoader`
  (`num_workers=0`, so the loading runs on the timed thread, as ours does at one thread);
- forward: torchvision's ResNet-18 layout at width 16 with the ImageNet stem (7x7 stride-2
  convolution and max-pool), 128 features, in eval mode under `torch.no_grad()`,
  l2-normalised as Lightly's `BenchmarkModule` does;
- knn: Lightly's `knn_predict` (lightly/utils/benchmarking/knn.py): `mm` with the bank,
  `topk(200)`, weights `exp(sim / 0.1)`, one-hot scatter and sum, `argsort`, per query batch.

The network is seeded at random (torchvision's initialisation, `resnet_torch.py`): the cost is
the same as a trained one's.

    python tools/bench/knn_torch.py --archive ../shared/data/cifar-10-binary.tar.gz --threads 1

Prints one line: `torch threads=1 data_s=... forward_s=... knn_s=... total_s=... top1=...`.
"""

import argparse
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from resnet_torch import BLOCKS, ResNet

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def read_cifar10(archive):
    """(train images, train labels, test images, test labels): uint8 HWC arrays and int64
    labels, from the binary archive (`cifar-10-batches-bin/*.bin`, 1 label byte + 3072 pixel
    bytes, planar, per record)."""
    records = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name.endswith(".bin"):
                records[name] = np.frombuffer(tar.extractfile(member).read(), dtype=np.uint8).reshape(-1, 3073)

    def split(names):
        rows = np.concatenate([records[n] for n in names])
        images = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        return images, torch.from_numpy(rows[:, 0].astype(np.int64))

    train = split([f"data_batch_{i}.bin" for i in range(1, 6)])
    test = split(["test_batch.bin"])
    return train + test


class CifarImages(torch.utils.data.Dataset):
    """CIFAR images as torchvision's `CIFAR10` gives them: a PIL image through `transform`."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def knn_predict(feature, feature_bank, feature_labels, num_classes, knn_k=200, knn_t=0.1):
    """Lightly's `knn_predict`, line for line."""
    sim_matrix = torch.mm(feature, feature_bank)
    sim_weight, sim_indices = sim_matrix.topk(k=knn_k, dim=-1)
    sim_labels = torch.gather(feature_labels.expand(feature.size(0), -1), dim=-1, index=sim_indices)
    sim_weight = (sim_weight / knn_t).exp()
    one_hot_label = torch.zeros(feature.size(0) * knn_k, num_classes, device=sim_labels.device)
    one_hot_label = one_hot_label.scatter(dim=-1, index=sim_labels.view(-1, 1), value=1.0)
    pred_scores = torch.sum(one_hot_label.view(feature.size(0), -1, num_classes) * sim_weight.unsqueeze(dim=-1), dim=1)
    return pred_scores.argsort(dim=-1, descending=True)


def features(model, loader, timer):
    """l2-normalised features of every image; the loader's and the network's time go to
    `timer["data"]` and `timer["forward"]`."""
    out = []
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        t1 = time.perf_counter()
        timer["data"] += t1 - t0
        if batch is None:
            break
        with torch.no_grad():
            out.append(F.normalize(model(batch[0]), dim=1))
        timer["forward"] += time.perf_counter() - t1
    return torch.cat(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", default="../shared/data/cifar-10-binary.tar.gz")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256, help="images per batch, bank and queries")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--t", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    start = time.perf_counter()
    train_x, train_y, test_x, test_y = read_cifar10(args.archive)
    timer = {"read": time.perf_counter() - start, "data": 0.0, "forward": 0.0, "knn": 0.0}
    transform = T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    loader = lambda x, y: torch.utils.data.DataLoader(  # noqa: E731
        CifarImages(x, y, transform), batch_size=args.batch, shuffle=False, num_workers=0
    )
    model = ResNet(BLOCKS["resnet18"], args.width, "imagenet", zero_init_residual=False).eval()

    bank = features(model, loader(train_x, train_y), timer).t().contiguous()
    queries = features(model, loader(test_x, test_y), timer)
    t0 = time.perf_counter()
    correct = 0
    with torch.no_grad():
        for q, y in zip(queries.split(args.batch), test_y.split(args.batch)):
            pred = knn_predict(q, bank, train_y, 10, args.k, args.t)
            correct += (pred[:, 0] == y).sum().item()
    timer["knn"] = time.perf_counter() - t0
    total = time.perf_counter() - start
    print(
        f"torch threads={torch.get_num_threads()} batch={args.batch} read_s={timer['read']:.2f} "
        f"data_s={timer['data']:.2f} forward_s={timer['forward']:.2f} knn_s={timer['knn']:.2f} "
        f"total_s={total:.2f} top1={correct / len(test_y):.4f} "
        f"cpu_capability={torch.backends.cpu.get_cpu_capability()}"
    )


if __name__ == "__main__":
    main()
