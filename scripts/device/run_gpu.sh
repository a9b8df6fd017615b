#!/usr/bin/env bash
# All GPU work of issue 15 in one call of the device tool (scripts/device/gpu_checks.py says what
# each stage does). Here, once, with ../shared/data present:
#
#   python scripts/device/prepare_data.py ../shared/data runs/devdata     # ~60 MiB transfer; it says
#
# then the device tool: run, command "bash scripts/device/run_gpu.sh", carry ["runs/devdata"],
# timeout_s 600. Figures land in $OUT (runs/gpu_out elsewhere): results.json, run.log,
# extras.tar (cards, logs), teacher_small.safetensors, teacher_medium.safetensors.part0/1.
# A second call on the still-warm machine continues from runs/gpu_state (checkpoints, teachers):
#
#   PLAN=distill_s=rest TOTAL_S=170 bash scripts/device/run_gpu.sh
#
# Here, a dry run of every stage on the CPU (a pack made with prepare_data.py --tiny):
#
#   PACK=/tmp/tiny STATE=/tmp/state OUT=/tmp/out bash scripts/device/run_gpu.sh --dry-run
set -u
cd "$(dirname "$0")/../.."
START=$(date +%s)
OUT=${OUT:-runs/gpu_out}
PACK=${PACK:-runs/devdata}
STATE=${STATE:-runs/gpu_state}
TOTAL_S=${TOTAL_S:-560}  # of the device tool's 600 s: the rest is the wheels and a margin
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$STATE"
exec > >(tee -a "$OUT/run.log") 2>&1
echo "== $(date -u +%FT%TZ) run_gpu.sh $*: pack $PACK, state $STATE, out $OUT, ${TOTAL_S} s"
if [ "${1:-}" != --dry-run ]; then
    # The device image lacks these (prepare_data.py fetched them): EfficientNet-Lite's code, and
    # SQLAlchemy, alembic and Mako for the pipeline benchmark's history database.
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PACK"/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    nvidia-smi || true
fi
export PYTHONUNBUFFERED=1
LEFT=$((TOTAL_S - $(date +%s) + START))
# SIGINT 20 s after the plan's end lets gpu_checks write what it has; SIGKILL 15 s later.
timeout --signal=INT --kill-after=15 $((LEFT + 20)) "$PYTHON" scripts/device/gpu_checks.py \
    --out "$OUT" --pack "$PACK" --state "$STATE" --total-s "$LEFT" ${PLAN:+--plan "$PLAN"} ${REFS:+--refs "$REFS"} "$@"
CODE=$?
echo "== $(date -u +%FT%TZ) gpu_checks exit $CODE after $(( $(date +%s) - START )) s; files in $OUT:"
ls -la "$OUT"
exit $CODE
