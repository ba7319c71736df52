#!/usr/bin/env bash
# The long CPU run of the `cifar10-cpu` preset for docs/training.md: the
# `cifar10-cpu` preset as shipped (200 epochs), capped at 180 minutes of training clock, with
# kNN at minute marks and every 5 epochs and the online linear probe every epoch (`pretrain`
# draws the run's plot.png with the curves); then both linear evaluations of the final backbone.
#
# Run it again after a kill (or in a later session): it resumes from the newest checkpoint,
# with the clock and the marks already passed kept, and skips the steps that are done.
#
#   cargo build --release -p simsiam
#   scripts/cifar10-cpu-long.sh    # SIMSIAM=target/release/simsiam DATA=data/cifar10 OUT=runs/cifar10-cpu-3h THREADS=2
set -euo pipefail
BIN=${SIMSIAM:-target/release/simsiam}
DATA=${DATA:-data/cifar10}
OUT=${OUT:-runs/cifar10-cpu-3h}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS

mkdir -p "$(dirname "$OUT")"
if [ ! -e "$OUT.pretrained" ]; then
  resume=()
  if [ -n "$(ls -A "$OUT/checkpoints" 2>/dev/null)" ]; then resume=(--resume); fi
  "$BIN" pretrain --preset cifar10-cpu "${resume[@]}" --set "data.path=$DATA" \
    --set "train.output_dir=$OUT" --set train.minutes=180 \
    --set 'train.knn_at_minutes=[15, 30, 45, 60, 90, 120, 150, 180]' 2>&1 | tee -a "$OUT.pretrain.log"
  touch "$OUT.pretrained"
fi
newest=$(ls -t "$OUT"/checkpoints/* | head -1)
for protocol in fast paper; do
  log="$OUT/linear-$protocol.log"
  if ! grep -qs 'top-1' "$log"; then
    "$BIN" eval linear --checkpoint "$newest" --protocol "$protocol" --set "data.path=$DATA" 2>&1 | tee "$log"
  fi
done
