#!/usr/bin/env bash
# Whether two builds learn alike: each `simsiam` binary trains the same config (a run's
# config.toml) at seed SEED with two rayon threads, stopped after EPOCHS epochs; the kNN lines
# of each log are printed side by side.
#   tools/bench/ab_learning.sh CONFIG EPOCHS SEED OUT_DIR BINARY...
# Build each binary with `cargo build --release -p simsiam` in its own checkout and copy
# `target/release/simsiam` away between the builds.
set -euo pipefail
config=$1 epochs=$2 seed=$3 out=$4
shift 4
mkdir -p "$out"
total=$(sed -n 's/^epochs = //p' "$config")
i=0
for bin in "$@"; do
  i=$((i + 1))
  name="build$i-seed$seed"
  sed -e "s|^output_dir = .*|output_dir = \"$out/$name\"|" -e "s|^seed = .*|seed = $seed|" \
    "$config" > "$out/$name.toml"
  RAYON_NUM_THREADS=2 "$bin" pretrain --config "$out/$name.toml" > "$out/$name.log" 2>&1 &
  pid=$!
  until grep -q "epoch $epochs/$total" "$out/$name.log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do
    sleep 5
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" || true
  echo "$bin (seed $seed):"
  grep -o "epoch [0-9]*/[0-9]*: .*kNN top-1 [0-9.]*%" "$out/$name.log" | sed 's/: loss.*kNN/: kNN/'
done
