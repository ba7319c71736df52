#!/usr/bin/env bash
# Sets up, then exports, the environment that builds this project with CUDA on a machine
# without a GPU or a system CUDA toolkit, from NVIDIA's CUDA 13.0 wheels on PyPI. Source it:
#
#   source scripts/cuda-env.sh [VENV_DIR]          # default /work/cuda-venv
#   cargo xtask pretrain-cifar --features cuda --help
#
# A second `source` reuses the venv (with SKIP_PIP=1, without calling pip) and rebuilds the
# toolkit directory in a second. docs/cuda.md says what it does and why (the driver stub above
# all). scripts/cuda-build.sh sources it, then builds the release binary.
#
# Environment knobs:
#   CUDA_COMPUTE_CAP   compute capability to compile candle's kernels for (default 90: H100/H200)
#   FEATURES           the cargo features to be built; the cuDNN and NCCL wheels are installed
#                      only when it names `cudnn` or `nccl` (default "cuda")
#   CARGO_TARGET_DIR   default target/cuda, so the CPU build in target/ is left alone
#   SKIP_PIP=1         reuse an existing venv without calling pip

# A function, so that a failure returns to the caller's shell instead of closing it.
simsiam_cuda_env() {
    VENV="${1:-/work/cuda-venv}"
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    PY="${PYTHON:-python3}"
    FEATURES="${FEATURES:-cuda}"

    # Pinned CUDA 13.0 wheels. nvidia-cuda-nvcc depends on nvidia-cuda-crt and nvidia-nvvm without
    # an upper bound, so both are pinned here, or pip pulls the newest (13.5) next to a 13.0 nvcc.
    WHEELS=(
        "nvidia-cuda-nvcc==13.0.88"
        "nvidia-cuda-crt==13.0.88"
        "nvidia-nvvm==13.0.88"
        "nvidia-cuda-runtime==13.0.96"
        "nvidia-cuda-cccl==13.0.85"
        "nvidia-cuda-nvrtc==13.0.88"
        "nvidia-cublas==13.0.2.14"
        "nvidia-curand==10.4.0.35"
    )
    # cudarc 0.19's `cudnn` feature binds the cuDNN 9.21 API, its `nccl` feature the NCCL 2.30 API.
    [[ " ${FEATURES//,/ } " == *" cudnn "* ]] && WHEELS+=("nvidia-cudnn-cu13==9.21.1.3")
    [[ " ${FEATURES//,/ } " == *" nccl "* ]] && WHEELS+=("nvidia-nccl-cu13==2.30.7")

    cuda_log() { printf '[cuda-build %(%H:%M:%S)T] %s\n' -1 "$*"; }

    if [[ ! -x "$VENV/bin/python" ]]; then
        cuda_log "creating venv $VENV"
        "$PY" -m venv "$VENV"
    fi
    if [[ "${SKIP_PIP:-0}" != 1 ]]; then
        cuda_log "installing ${WHEELS[*]}"
        "$VENV/bin/pip" install --disable-pip-version-check --no-cache-dir "${WHEELS[@]}"
    fi

    NV="$("$VENV/bin/python" -c 'import nvidia; print(list(nvidia.__path__)[0])')"
    CU="$NV/cu13"
    [[ -x "$CU/bin/nvcc" ]] || { echo "no nvcc under $CU/bin: did the wheels install?" >&2; return 1; }

    # --- 2. a toolkit-shaped CUDA_ROOT -------------------------------------------------------------
    CUDA_ROOT="$VENV/cuda"
    rm -rf "$CUDA_ROOT"
    mkdir -p "$CUDA_ROOT/lib/stubs" "$CUDA_ROOT/include"
    ln -s "$CU/bin" "$CUDA_ROOT/bin"
    ln -s "$CU/nvvm" "$CUDA_ROOT/nvvm"
    for inc in "$CU/include" "$NV/cudnn/include" "$NV/nccl/include"; do
        [[ -d "$inc" ]] || continue
        for f in "$inc"/*; do ln -sfn "$f" "$CUDA_ROOT/include/$(basename "$f")"; done
    done
    # Unversioned names for the linker (-lcudart -lnvrtc -lcublas -lcublasLt -lcurand -lcudnn -lnccl).
    for lib in "$CU"/lib/lib*.so.* "$NV"/cudnn/lib/lib*.so.* "$NV"/nccl/lib/lib*.so.*; do
        [[ -e "$lib" ]] || continue
        base="$(basename "$lib")"
        ln -sfn "$lib" "$CUDA_ROOT/lib/$base"
        ln -sfn "$lib" "$CUDA_ROOT/lib/${base%%.so.*}.so"
    done
    for lib in "$CU"/lib/*.a; do ln -sfn "$lib" "$CUDA_ROOT/lib/$(basename "$lib")"; done

    # The driver stub: every cu* symbol cudarc's driver bindings reference, each returning
    # CUDA_ERROR_STUB_LIBRARY (34), under the soname of the real driver library.
    cuda_log "fetching crates to find cudarc's driver bindings"
    (cd "$ROOT" && cargo fetch --quiet)
    CUDARC_SYS="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | sort -V | tail -n 1)"
    [[ -f "$CUDARC_SYS" ]] || { echo "cudarc's driver bindings not found" >&2; return 1; }
    STUB_C="$CUDA_ROOT/lib/stubs/cuda_stub.c"
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$CUDARC_SYS" | awk '{print $4}' | sort -u \
        | awk '{printf "int %s(void) { return 34; }\n", $1}' > "$STUB_C"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT/lib/stubs/libcuda.so" "$STUB_C"
    cuda_log "driver stub: $(wc -l < "$STUB_C") symbols from $CUDARC_SYS"

    export CUDA_ROOT CUDA_PATH="$CUDA_ROOT" CUDA_HOME="$CUDA_ROOT" CUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT"
    export NVCC="$CUDA_ROOT/bin/nvcc"
    [[ ":$PATH:" == *":$CUDA_ROOT/bin:"* ]] || export PATH="$CUDA_ROOT/bin:$PATH"
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    export NVCC_CCBIN="${NVCC_CCBIN:-$(command -v g++)}"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cuda}"
    # The linker needs the stub only to resolve symbols; the binary records libcuda.so.1.
    # Appended once: a second `source` must not change RUSTFLAGS, or cargo reruns nvcc.
    local link="-L native=$CUDA_ROOT/lib -L native=$CUDA_ROOT/lib/stubs"
    [[ " ${RUSTFLAGS:-} " == *" $link "* ]] || export RUSTFLAGS="${RUSTFLAGS:-} $link"

    # At run time the binary loads libcudart, libcublas and libcurand (libcudnn, libnccl) from
    # the wheels, and the NVIDIA driver's libcuda.so.1. On a machine without a driver (a build
    # machine) the stub stands in for the driver, so that the binary starts (`--help`,
    # `config`) and a CUDA device fails cleanly with CUDA_ERROR_STUB_LIBRARY; where a driver is
    # installed, the stub is never on the path.
    local runtime="$CU/lib" dir
    for dir in "$NV/cudnn/lib" "$NV/nccl/lib"; do [[ -d "$dir" ]] && runtime="$runtime:$dir"; done
    local driver=""
    ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 ' && driver=system
    for dir in ${LD_LIBRARY_PATH//:/ }; do
        [[ -e "$dir/libcuda.so.1" && "$dir" != "$CUDA_ROOT/lib/nodriver" ]] && driver="$dir"
    done
    if [[ -z "$driver" ]]; then
        mkdir -p "$CUDA_ROOT/lib/nodriver"
        ln -sfn ../stubs/libcuda.so "$CUDA_ROOT/lib/nodriver/libcuda.so.1"
        runtime="$runtime:$CUDA_ROOT/lib/nodriver"
        cuda_log "no NVIDIA driver (libcuda.so.1) here: the stub stands in for it at run time"
    fi
    [[ ":${LD_LIBRARY_PATH:-}:" == *":$runtime:"* ]] \
        || export LD_LIBRARY_PATH="$runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$NVCC" --version | tail -n 2
}

simsiam_cuda_env "$@"
