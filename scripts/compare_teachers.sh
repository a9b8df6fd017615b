#!/usr/bin/env bash
# Downstream evidence for the shipped teacher (issue 3): the same student/autoencoder budget with
# the distilled teacher and with a random one, evaluated on magnetic_tile.
#   bash scripts/compare_teachers.sh [ITERATIONS] [DATA] [OUT]
set -eu
ITER=${1:-300}
DATA=${2:-../shared/data/magnetic_tile}
OUT=${3:-runs/compare_teachers}
mkdir -p "$OUT"
for teacher in shipped random; do
    arg=(); [ "$teacher" = random ] && arg=(--teacher random)
    inspector train "$DATA" --out "$OUT/$teacher.safetensors" --iterations "$ITER" "${arg[@]}" --device cpu
    inspector eval "$OUT/$teacher.safetensors" "$DATA" --json "$OUT/$teacher.json" --device cpu
done
