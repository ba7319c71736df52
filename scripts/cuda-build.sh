#!/usr/bin/env bash
# Builds the `simsiam` binary with CUDA (and cuDNN) on a machine without a GPU or a system CUDA
# toolkit, from NVIDIA's CUDA 13.0 wheels on PyPI. See docs/cuda.md.
#
#   scripts/cuda-build.sh [VENV_DIR]          # default /work/cuda-venv
#
# Environment knobs:
#   CUDA_COMPUTE_CAP   compute capability to compile candle's kernels for (default 90: H100/H200)
#   FEATURES           cargo feature sets to build, space separated (default "cuda cudnn")
#   CARGO_TARGET_DIR   default target/cuda, so the CPU build in target/ is left alone
#   SKIP_PIP=1         reuse an existing venv without calling pip
#   CHECK_NCCL=1       also `cargo check --release -p simsiam-train --features nccl`
#
# What it does (steps 1 and 2 are scripts/cuda-env.sh, which exports the environment):
#   1. creates a venv and installs the pinned CUDA 13.0.x wheels (nvcc, crt, nvvm, runtime, cccl,
#      cublas, curand, nvrtc; cudnn 9.21 and nccl 2.30 for the cudnn and nccl features);
#   2. assembles a CUDA_ROOT ($VENV/cuda) that looks like a toolkit to cudarc's and cudaforge's
#      build scripts: bin/ (nvcc), include/, lib/ with the unversioned `libX.so` names the
#      linker wants, and lib/stubs/libcuda.so, a stub of the driver library generated from the
#      symbols cudarc declares (the wheels ship no driver stub; at run time the real
#      libcuda.so.1 of the NVIDIA driver is loaded instead, as the stub's soname says);
#   3. runs `cargo build --release -p simsiam --features <f>` for each feature set.
set -euo pipefail
FEATURES="${FEATURES:-cuda cudnn}"
# shellcheck source=cuda-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/cuda-env.sh" "${1:-/work/cuda-venv}"

# --- 3. build ----------------------------------------------------------------------------------
cd "$ROOT"
for f in $FEATURES; do
    cuda_log "cargo build --release -p simsiam --features $f (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    start=$SECONDS
    cargo build --release -p simsiam --features "$f"
    cuda_log "features $f: built in $((SECONDS - start)) s"
done
if [[ "${CHECK_NCCL:-0}" == 1 ]]; then
    # --release shares the build scripts' outputs (candle's PTX) with the builds above.
    cuda_log "cargo check --release -p simsiam-train --features nccl"
    start=$SECONDS
    cargo check --release -p simsiam-train --features nccl
    cuda_log "nccl: checked in $((SECONDS - start)) s"
fi
BIN="$CARGO_TARGET_DIR/release/simsiam"
cuda_log "done: $BIN"
cuda_log "run it with: LD_LIBRARY_PATH=$CU/lib:$NV/cudnn/lib:$NV/nccl/lib $BIN pretrain --device cuda ..."
ldd "$BIN" | grep -E 'cuda|cublas|curand|nvrtc|cudnn|nccl' || true
