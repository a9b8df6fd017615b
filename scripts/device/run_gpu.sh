#!/usr/bin/env bash
# All GPU work of a session in one call of the device tool (see DEVELOPERS.md, "The GPU machine"):
#   python scripts/device/prepare_data.py ../shared/data .devdata     # here, once
#   device run: bash scripts/device/run_gpu.sh    carry: [".devdata", ".whl"]
# .whl holds efficientnet_lite_pytorch-0.1.0-py3-none-any.whl (the Lite0 model code; its weights
# travel in .devdata/lite0.safetensors). Figures land in $OUT (runs/gpu when run elsewhere).
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi; python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; nproc; } > "$OUT/machine.txt" 2>&1
head -20 "$OUT/machine.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_engine_cuda.py 2>&1 | tail -15 | tee "$OUT/pytest_cuda.txt"
# EXTRA, e.g. "--skip-bench --teacher inspector/weights/teacher_small.safetensors": only the
# downstream comparison of the shipped teacher against a random one.
python3 scripts/device/gpu_checks.py --out "$OUT" --total-s "${TOTAL_S:-470}" --distill-s "${DISTILL_S:-230}" ${EXTRA:-} 2>&1 | tee "$OUT/gpu_checks.log" | grep -v "^ *$" | tail -40
