#!/usr/bin/env bash
# A B A B of `bench_step` between two builds of the same example, e.g. before and after a
# refactoring: `tools/bench/ab_two_builds.sh OLD_BINARY NEW_BINARY BATCH ROUNDS MODEL...`.
# Build each with `cargo build --release -p simsiam-models --example bench_step` in its own
# checkout and copy `target/release/examples/bench_step` away between the two builds.
set -euo pipefail
old=$1 new=$2 batch=$3 rounds=$4
shift 4
for model in "$@"; do
  for round in $(seq "$rounds"); do
    for v in old new; do
      bin=$old; [ "$v" = new ] && bin=$new
      echo "$v round=$round $(RAYON_NUM_THREADS=2 "$bin" --model "$model" --batch "$batch" | grep '^candle')"
    done
  done
done
