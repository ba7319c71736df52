#!/usr/bin/env bash
# The recipe sweep of docs/training.md ("Recipe sweep for a CPU"): each recipe trains for
# $BUDGET minutes of training clock on $THREADS compute thread(s), with kNN (k 200, t 0.1, the
# 50,000 training images as the bank, the 10,000 test images as queries) at half and full
# budget. Each recipe's epochs are sized to the budget from a 0.3-minute throughput probe of
# the same recipe, so its cosine schedule ends near the budget.
#
#   cargo build --release -p simsiam
#   scripts/recipe-sweep.sh            # SIMSIAM=target/release/simsiam DATA=data/cifar10 OUT=runs/sweep
set -euo pipefail
BIN=${SIMSIAM:-target/release/simsiam}
DATA=${DATA:-data/cifar10}
OUT=${OUT:-runs/sweep}
BUDGET=${BUDGET:-10}
THREADS=${THREADS:-1}
COMMON=(--preset lightly-example --set "data.path=$DATA" --set train.momentum=0.9
  --set train.weight_decay=5e-4 --set train.schedule=iteration --set train.knn_every=0
  --set train.fixed_predictor_lr=true --set augment.normalize=cifar10
  --set train.online_probe=false --set train.seed=0)
declare -A RECIPE=(
  [r1-imagenet-w16-b128]="model.stem=imagenet model.width=16 train.batch_size=128 train.base_lr=0.06 augment.gaussian_blur=0"
  [r2-imagenet-w32-b128]="model.stem=imagenet model.width=32 train.batch_size=128 train.base_lr=0.06 augment.gaussian_blur=0"
  [r3-cifar-w8-b128]="model.stem=cifar model.width=8 train.batch_size=128 train.base_lr=0.06 augment.gaussian_blur=0"
  [r4-imagenet-w16-b64]="model.stem=imagenet model.width=16 train.batch_size=64 train.base_lr=0.06 augment.gaussian_blur=0"
  [r5-imagenet-w16-b128-blur]="model.stem=imagenet model.width=16 train.batch_size=128 train.base_lr=0.06"
)
mkdir -p "$OUT"
for name in ${ONLY:-r1-imagenet-w16-b128 r2-imagenet-w32-b128 r3-cifar-w8-b128 r4-imagenet-w16-b64 r5-imagenet-w16-b128-blur}; do
  sets=()
  for kv in ${RECIPE[$name]}; do sets+=(--set "$kv"); done
  rm -rf "$OUT/probe-$name" "$OUT/$name"
  RAYON_NUM_THREADS=$THREADS "$BIN" pretrain "${COMMON[@]}" "${sets[@]}" --set train.epochs=100 \
    --set train.minutes=0.3 --set "train.output_dir=$OUT/probe-$name" > "$OUT/probe-$name.log" 2>&1
  ips=$(grep '"event":"step"' "$OUT/probe-$name/metrics.jsonl" | tail -1 | sed 's/.*images_per_s":\([0-9.]*\).*/\1/')
  epochs=$(awk -v ips="$ips" -v b="$BUDGET" 'BEGIN { e = int(ips * b * 60 / 50000 + 0.5); print (e < 1 ? 1 : e) }')
  echo "$name: $ips images/s in the probe, $epochs epochs for $BUDGET min"
  half=$(awk -v b="$BUDGET" 'BEGIN { print b / 2 }')
  RAYON_NUM_THREADS=$THREADS "$BIN" pretrain "${COMMON[@]}" "${sets[@]}" --set "train.epochs=$epochs" \
    --set "train.minutes=$BUDGET" --set "train.knn_at_minutes=[$half, $BUDGET]" \
    --set "train.output_dir=$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "$name: $(grep -h '"knn_mark"\|"epoch_clock"' "$OUT/$name/metrics.jsonl" | tr '\n' ' ')"
done
