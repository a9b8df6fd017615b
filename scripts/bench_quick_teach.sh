#!/usr/bin/env bash
# Quick-teach benchmark (issue 5): good images -> trained, calibrated, activated model, timed;
# then image AUROC and measured false-reject/escape rates on the category's test set.
#   bash scripts/bench_quick_teach.sh [IMAGES] [ITERATIONS|quick] [DATA] [DEVICE] [extra options...]
# quick: the teach's quick mode (as many iterations as fit in its time budget on this machine).
# e.g. a smoke run on a CPU: bash scripts/bench_quick_teach.sh 50 5 ../shared/data/magnetic_tile cpu --test-per-type 4
set -eu
IMAGES=${1:-100}
ITER=${2:-quick}
DATA=${3:-../shared/data/magnetic_tile}
DEVICE=${4:-auto}
shift $(( $# < 4 ? $# : 4 ))
iter=(); [ "$ITER" = quick ] || iter=(--iterations "$ITER")
exec python scripts/bench_quick_teach.py --data "$DATA" --images "$IMAGES" "${iter[@]}" --device "$DEVICE" "$@"
