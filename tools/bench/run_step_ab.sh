#!/usr/bin/env bash
# Superseded by `cargo xtask bench step --stock` (see tools/bench/README.md); kept for the
# figures in docs/performance-step.md that it produced.
#
# Alternates the candle (ours), candle-stock and PyTorch step benchmarks, A B A B, after
# waiting (up to ~10 minutes) for the 1-minute load average to drop below 1.0.
#
#   tools/bench/run_step_ab.sh [batch] [rounds] [python]
#
# Build first: cargo build --release -p simsiam-models --example bench_step
set -euo pipefail
cd "$(dirname "$0")/../.."
batch=${1:-64}
rounds=${2:-2}
python=${3:-/work/pyenv/bin/python}
bin=target/release/examples/bench_step
for _ in $(seq 20); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$load" 'BEGIN { exit !(l < 1.0) }' && break
    echo "load $load, waiting" >&2
    sleep 30
done
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
for model in imagenet-r18 cifar-r18; do
    steps=5
    stock_steps=2
    if [ "$model" = cifar-r18 ]; then steps=3; stock_steps=1; fi
    for _ in $(seq "$rounds"); do
        "$bin" --model "$model" --batch "$batch" --steps "$steps"
        "$python" tools/bench/bench_step_torch.py --model "$model" --batch "$batch" --steps "$steps"
    done
    SIMSIAM_STOCK_KERNELS=1 "$bin" --model "$model" --batch "$batch" --steps "$stock_steps"
    echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
done
