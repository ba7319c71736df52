"""PyTorch loads our exported backbone into torchvision's resnet18 and computes its features.

simsiam-rs builds a ResNet-18 (torchvision's layout, width 64, ImageNet stem) from its own
seeded initialisation and exports the backbone under torchvision's names with
`simsiam_train::save_backbone_torchvision` (45 MB, not committed). This script loads that file
into `torchvision.models.resnet18()` with `load_state_dict(strict=True)` (after `model.fc =
Identity()`, so the classifier is the one thing left aside), runs it in evaluation mode on the
two 64x64 images the Rust side wrote, and writes the images and the 512-d average-pooled
features to the committed fixture, with the versions of torch and torchvision in its metadata.
`crates/simsiam/tests/torchvision_export.rs` compares our features with these within 1e-4.

Regenerate from the repository root (CPU, a few seconds):

    SIMSIAM_EXPORT_DIR=/tmp/simsiam-export cargo test --workspace --test torchvision_export -- export_for_pytorch
    /work/torchenv/bin/python tools/golden/make_torchvision_export.py /tmp/simsiam-export

(any Python with torch and torchvision does; this script reads and writes safetensors itself, so
it needs no `safetensors` package.)

Output:
    crates/simsiam/tests/fixtures/torchvision_export.safetensors
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

FIXTURE = Path("crates/simsiam/tests/fixtures/torchvision_export.safetensors")

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8, "F16": np.float16}


def read_safetensors(path):
    """Every tensor of a safetensors file, as torch tensors."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def write_safetensors(path, tensors, metadata):
    """Writes `tensors` (name -> torch tensor) and string `metadata` as safetensors."""
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        array = tensors[name].detach().cpu().contiguous().numpy()
        raw = array.tobytes()
        header[name] = {
            "dtype": names[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def main():
    export = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/simsiam-export")
    state = read_safetensors(export / "backbone.safetensors")
    pixels = read_safetensors(export / "input.safetensors")["pixels"]
    torch.manual_seed(0)  # resnet18()'s own initialisation, all of it replaced below
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.load_state_dict(state, strict=True)
    model.eval()
    x = (pixels.float() / 255.0 - 0.5) / 0.25
    with torch.no_grad():
        features = model(x)
    assert features.shape == (2, 512), features.shape
    metadata = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "model": "torchvision.models.resnet18(), fc = Identity(), eval()",
        "input": "(pixels / 255 - 0.5) / 0.25",
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(FIXTURE, {"pixels": pixels, "features": features}, metadata)
    print(f"wrote {FIXTURE}: features {tuple(features.shape)}, max |f| {features.abs().max():.4f}, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}")


if __name__ == "__main__":
    main()
