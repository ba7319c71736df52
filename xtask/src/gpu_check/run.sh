#!/usr/bin/env bash
# Runs on a GPU machine what `cargo xtask gpu-check` packed (see docs/cuda.md), in under 8
# minutes, writing everything under $OUT (default target/gpu-check/out):
#   env.txt, ldd.txt       the machine, the GPU and the libraries our binaries resolve
#   nvcc.txt               our kernel source through the machine's nvcc (--ptx, sm_90)
#   cuda_ops.txt           CUDA vs CPU values and gradients of our ops (rel. error < 1e-4)
#   bench.txt              training step, ours (f32, bf16) vs PyTorch (eager f32, AMP bf16)
#   pretrain-*.txt, run-*/ one timed epoch of the cifar10-paper preset on the CIFAR-10 subset
#   summary.txt            one line per step with its exit status and seconds
set -u
D="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$D/out}"
mkdir -p "$OUT"
BIN="$D/bin"
BUDGET=${BUDGET:-450}   # seconds for everything; later steps are skipped past it
summary() { printf '%-28s rc=%-4s %5ss\n' "$1" "$2" "$3" | tee -a "$OUT/summary.txt"; }
left() { echo $((BUDGET - SECONDS)); }
step() { # step NAME LIMIT LOG CMD... : runs CMD with a timeout, appends to LOG
    local name=$1 limit=$2 log=$3; shift 3
    if (( $(left) < 10 )); then summary "$name" skip 0; return; fi
    (( limit > $(left) )) && limit=$(left)
    local t0=$SECONDS
    echo "\$ $*" >> "$log"
    timeout "$limit" "$@" >> "$log" 2>&1
    summary "$name" $? $((SECONDS - t0))
}

# --- unpack and find the CUDA 13 libraries ---------------------------------------------------
if [[ ! -x "$BIN/simsiam" ]]; then
    tar -xJf "$D/bin.tar.xz" -C "$D" 2>/dev/null ||
        python3 -c 'import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$D/bin.tar.xz" "$D"
fi
want="libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13"
dirs=$(python3 -c 'import nvidia, os; [print(os.path.join(p, d, "lib")) for p in nvidia.__path__ for d in os.listdir(p)]' 2>/dev/null)
dirs="$dirs $(ls -d /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu 2>/dev/null)"
LIBS=""
for lib in $want; do
    for d in $dirs; do
        if [[ -e "$d/$lib" ]]; then case ":$LIBS:" in *":$d:"*) ;; *) LIBS="$LIBS:$d" ;; esac; break; fi
    done
done
export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    date; uname -a; nvidia-smi 2>&1; "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" --version 2>&1 | tail -n 2
    python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
} > "$OUT/env.txt"
ldd "$BIN/simsiam" "$BIN/cuda_ops" > "$OUT/ldd.txt" 2>&1
grep -q "not found" "$OUT/ldd.txt" && echo "missing libraries: see ldd.txt" | tee -a "$OUT/summary.txt"

# --- 1. our kernels compile with nvcc; the CUDA tests ------------------------------------------
NVCC="$(command -v nvcc || ls /usr/local/cuda*/bin/nvcc 2>/dev/null | head -n 1)"
step nvcc 60 "$OUT/nvcc.txt" "${NVCC:-nvcc}" --ptx -arch=sm_90 -o "$OUT/cuda.ptx" "$D/cuda.cu"
step cuda_ops 120 "$OUT/cuda_ops.txt" "$BIN/cuda_ops" --nocapture --test-threads 1
grep -h "skipped" "$OUT/cuda_ops.txt" | head -n 1 | tee -a "$OUT/summary.txt"

# --- 2. the step benchmark: ours vs PyTorch, f32 and bf16, batch 256 and 512 --------------------
BENCH_UNTIL=$((BUDGET - 170))   # leave the epoch its time
for model in cifar-r18 imagenet-r18; do
    for batch in 256 512; do
        for precision in f32 bf16; do
            if (( SECONDS > BENCH_UNTIL )); then summary "bench $model $batch $precision" skip 0; continue; fi
            step "ours $model $batch $precision" 60 "$OUT/bench.txt" "$BIN/bench_step_gpu" --device cuda \
                --model "$model" --batch "$batch" --precision "$precision" --steps 10 --warmup 2
            step "torch $model $batch $precision" 60 "$OUT/bench.txt" python3 "$D/bench_step_torch_gpu.py" \
                --model "$model" --batch "$batch" --precision "$precision" --steps 10 --warmup 2
        done
    done
done
grep -E "^(candle|torch) " "$OUT/bench.txt" > "$OUT/bench-lines.txt" 2>/dev/null

# --- 3. one timed epoch of the cifar10-paper preset (bf16 through train.precision=auto) --------
step "pretrain 1 epoch" 160 "$OUT/pretrain-auto.txt" "$BIN/simsiam" pretrain --preset cifar10-paper \
    --set data.path="$D/data/cifar10" --set data.workers=8 --set train.epochs=1 \
    --set train.device=cuda --set train.output_dir="$OUT/run-auto" --set train.log_every=1
rm -rf "$OUT"/run-*/checkpoints "$OUT"/run-*/*.safetensors   # weights need not come back
echo "total ${SECONDS}s" | tee -a "$OUT/summary.txt"
