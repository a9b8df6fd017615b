#!/usr/bin/env bash
# Downstream evidence for a teacher (issue 3): the same student/autoencoder budget with each
# teacher, evaluated on magnetic_tile (image AUROC, pixel AUROC, AU-PRO in OUT/NAME.json).
#   bash scripts/compare_teachers.sh [ITERATIONS] [DATA] [OUT] [TEACHER ...]
# TEACHER: shipped (the default teacher), random (a random-initialised one), or NAME=FILE.
# Without TEACHER arguments: shipped and random.
set -eu
ITER=${1:-300}
DATA=${2:-../shared/data/magnetic_tile}
OUT=${3:-runs/compare_teachers}
shift $(( $# < 3 ? $# : 3 ))
[ $# -gt 0 ] || set -- shipped random
mkdir -p "$OUT"
for teacher in "$@"; do
    case "$teacher" in
        shipped) name=shipped; arg=() ;;
        random) name=random; arg=(--teacher random) ;;
        *=*) name=${teacher%%=*}; arg=(--teacher "${teacher#*=}") ;;
        *) echo "unknown teacher '$teacher' (shipped, random or NAME=FILE)" >&2; exit 2 ;;
    esac
    inspector train "$DATA" --out "$OUT/$name.safetensors" --iterations "$ITER" "${arg[@]}" --device cpu
    inspector eval "$OUT/$name.safetensors" "$DATA" --json "$OUT/$name.json" --device cpu
done
