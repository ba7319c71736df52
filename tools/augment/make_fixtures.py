#!/usr/bin/env python3
"""Writes the torchvision parity fixtures of simsiam-augment.

Pinned versions: torch==2.9.1 torchvision==0.24.1 numpy (any 2.x).
Run from the repository root:

    /work/pyenv/bin/python tools/augment/make_fixtures.py

It writes into crates/simsiam-augment/tests/fixtures/:
  - <image>.hwc.bin   input images, raw u8, interleaved RGB (height x width x 3);
  - <case>.bin        expected outputs, raw CHW: u8 for images, little-endian f32 for tensors;
  - manifest.txt      one line per input, case or statistic: a keyword then key=value pairs.

Every deterministic op runs on a uint8 tensor through torchvision.transforms.functional (the
tensor path), with fixed parameters. The crop-sampler statistics are means over many draws of
torchvision's RandomResizedCrop.get_params. The Rust tests (tests/torchvision_parity.rs) read
the manifest with a few lines of std-only code.
"""

import math
import os
import sys

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from torchvision.transforms import RandomResizedCrop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "simsiam-augment", "tests", "fixtures")

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))

lines = []


def write(name, array):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(np.ascontiguousarray(array).tobytes())
    return name


def case(op, image, out, **params):
    """Records one case: `out` is a CHW uint8 or float32 tensor."""
    name = f"{image}.{op}." + ".".join(f"{k}{v}" for k, v in params.items()) + ".bin"
    name = name.replace("..", ".").replace("-", "m")
    if out.dtype == torch.uint8:
        dtype = "u8"
        write(name, out.numpy())
    else:
        dtype = "f32"
        write(name, out.numpy().astype("<f4"))
    c, h, w = out.shape
    kv = " ".join(f"{k}={v}" for k, v in params.items())
    lines.append(f"case op={op} image={image} file={name} dtype={dtype} c={c} h={h} w={w} {kv}".rstrip())


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".bin") or f == "manifest.txt":
            os.remove(os.path.join(OUT, f))
    lines.append(f"# torch={torch.__version__} torchvision={torchvision.__version__} numpy={np.__version__}")
    lines.append("# written by tools/augment/make_fixtures.py; do not edit")

    rng = np.random.default_rng(0)
    images = {
        "img13x17": rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8),
        "img32x32": rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8),
    }
    # A smooth image too: noise is the worst case for rounding, gradients the common one.
    yy, xx = np.mgrid[0:24, 0:40]
    smooth = np.stack([xx * 6, yy * 10, (xx + yy) * 4], axis=-1).clip(0, 255).astype(np.uint8)
    images["grad24x40"] = smooth

    for name, hwc in images.items():
        h, w, _ = hwc.shape
        write(f"{name}.hwc.bin", hwc)
        lines.append(f"image name={name} file={name}.hwc.bin height={h} width={w}")
        t = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()  # [3, H, W] uint8

        crops = {
            "img13x17": [((1, 2, 10, 12), (5, 7)), ((2, 1, 8, 10), (24, 30)), ((0, 0, 13, 17), (13, 17)),
                         ((3, 4, 9, 9), (4, 4))],
            "img32x32": [((3, 5, 24, 20), (9, 11)), ((0, 0, 32, 32), (13, 13)), ((6, 2, 11, 15), (32, 32)),
                         ((1, 1, 30, 29), (7, 29))],
            "grad24x40": [((2, 3, 20, 35), (8, 12)), ((4, 4, 10, 10), (37, 23))],
        }[name]
        for (top, left, ch, cw), (oh, ow) in crops:
            out = F.resized_crop(t, top, left, ch, cw, [oh, ow],
                                 interpolation=F.InterpolationMode.BILINEAR, antialias=True)
            case("resized_crop", name, out, top=top, left=left, height=ch, width=cw, out_h=oh, out_w=ow)

        case("hflip", name, F.hflip(t))
        case("vflip", name, F.vflip(t))
        rot = torch.rot90(t, 1, [-2, -1])
        if h == w:
            # For square images torchvision's rotate(90), which Lightly uses, is the same.
            assert torch.equal(rot, F.rotate(t, 90.0))
        case("rot90", name, rot)
        for f in (0.0, 0.6, 1.37, 1.9):
            case("brightness", name, F.adjust_brightness(t, f), factor=f)
        for f in (0.0, 0.55, 1.4):
            case("contrast", name, F.adjust_contrast(t, f), factor=f)
        for f in (0.0, 0.7, 1.35):
            case("saturation", name, F.adjust_saturation(t, f), factor=f)
        for f in (-0.5, -0.1, 0.0, 0.07, 0.45):
            case("hue", name, F.adjust_hue(t, f), factor=f)
        case("grayscale", name, F.rgb_to_grayscale(t, num_output_channels=3))
        blurs = [(3, 0.5), (7, 1.3), (13, 2.0)] if min(h, w) > 6 else [(3, 0.5)]
        for k, s in blurs:
            case("gaussian_blur", name, F.gaussian_blur(t, [k, k], [s, s]), kernel=k, sigma=s)
        case("solarize", name, F.solarize(t, 128), threshold=128)
        for label, (mean, std) in (("imagenet", IMAGENET), ("cifar10", CIFAR10)):
            out = F.normalize(t.to(torch.float32).div(255), mean, std)
            case("normalize", name, out, stats=label)
        # ColorJitter's forward with fixed parameters: order (saturation, brightness, hue, contrast).
        j = F.adjust_saturation(t, 1.3)
        j = F.adjust_brightness(j, 0.8)
        j = F.adjust_hue(j, -0.06)
        j = F.adjust_contrast(j, 1.2)
        case("jitter", name, j, order="2031", brightness=0.8, contrast=1.2, saturation=1.3, hue=-0.06)

    # RandomResizedCrop.get_params statistics.
    torch.manual_seed(0)
    draws = 200_000
    for h, w in ((256, 256), (32, 48)):
        img = torch.empty(3, h, w, dtype=torch.uint8)
        area = 0.0
        log_ratio = 0.0
        for _ in range(draws):
            _, _, ch, cw = RandomResizedCrop.get_params(img, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3))
            area += ch * cw / (h * w)
            log_ratio += math.log(cw / ch)
        lines.append(
            f"crop_stats height={h} width={w} scale_min=0.2 scale_max=1.0 draws={draws} "
            f"mean_area={area / draws:.6f} mean_log_ratio={log_ratio / draws:.6f}"
        )

    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(lines)} manifest lines, {total} bytes, to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
