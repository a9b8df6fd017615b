#!/usr/bin/env bash
# Reproduces the shipped demo model inspector/assets/demo/demo_model.safetensors and its card.
#
# EfficientAD-S trained on 300 good monocrystalline ELPV solar cells (pip install elpv-dataset;
# CC BY-NC-SA 4.0, see ui/demo.py) with the shipped PDN-S teacher, converted to fp16 tensors,
# then calibrated by `inspector calibrate` on 200 held-out good cells (target false-reject rate
# 0.5 %) and 60 defective ones. The split is ui/demo.py's: the cells the GUI replays are in none
# of these sets. CPU only; about 15-30 minutes on 2 shared cores.
#
#   scripts/make_demo_model.sh [ITERATIONS] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS=${1:-400}
WORK=${2:-runs/demo_model}
OUT=inspector/assets/demo
mkdir -p "$WORK" "$OUT"
LOG="$WORK/make_demo_model.log"
exec > >(tee -a "$LOG") 2>&1
echo "== $(date -u +%FT%TZ) make_demo_model: $ITERATIONS iterations, work folder $WORK"

rm -rf "$WORK/split"
python -m ui.demo split "$WORK/split"
python -m inspector.cli train "$WORK/split/train" --out "$WORK/demo_model_fp32.safetensors" \
    --iterations "$ITERATIONS" --device cpu --no-resume

# fp16 tensors halve the file; load_model casts them back to float32.
python - "$WORK/demo_model_fp32.safetensors" "$OUT/demo_model.safetensors" <<'PY'
import sys
import torch
from inspector.modelfile import load_tensors, save_tensors, MODEL_KIND
tensors, meta = load_tensors(sys.argv[1], MODEL_KIND)
half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
meta = {k: v for k, v in meta.items() if k != "tensor_sha256"}
meta.update(tensor_dtype="float16", demo="ELPV mono solar cells, CC BY-NC-SA 4.0 (see the card)")
save_tensors(sys.argv[2], half, meta)
print(f"fp16 model written to {sys.argv[2]}")
PY

python -m inspector.cli calibrate "$OUT/demo_model.safetensors" "$WORK/split/calibration_good" \
    --defects "$WORK/split/calibration_defect" --report "$WORK/calibration" --device cpu

python - "$OUT/demo_model.safetensors" "$WORK/calibration/report.json" "$OUT/demo_model.json" "$ITERATIONS" <<'PY'
import json, sys
from pathlib import Path
from inspector.modelfile import load_tensors, file_sha256, MODEL_KIND
from ui.demo import ATTRIBUTION, N_TRAIN, SPLIT_VERSION
_, meta = load_tensors(sys.argv[1], MODEL_KIND)
report = json.loads(Path(sys.argv[2]).read_text())
keep = ("threshold", "target_frr", "expected_frr", "frr_ci_low", "frr_ci_high", "confidence", "n_good", "method",
        "n_defective", "auroc", "escape_rate", "f1_threshold", "f1", "pixel_threshold", "min_defect_area_px", "warnings")
card = {
    "name": "demo_model",
    "purpose": "the `inspector gui` demo only: not a production model",
    "architecture": meta.get("architecture"),
    "iterations": int(sys.argv[4]),
    "teacher": meta.get("teacher"),
    "tensor_dtype": "float16",
    "sha256": file_sha256(sys.argv[1]),
    "training_data": f"{N_TRAIN} good monocrystalline cells of the ELPV dataset (defect probability 0), split {SPLIT_VERSION} in ui/demo.py",
    "calibration": {k: report[k] for k in keep if k in report},
    "calibration_data": "200 held-out good mono cells, 60 defective mono cells (probability 1.0); `inspector calibrate`",
    "reproduce": f"scripts/make_demo_model.sh {sys.argv[4]}",
    "attribution": ATTRIBUTION,
    "license": "CC BY-NC-SA 4.0 (derived from the ELPV dataset)",
}
Path(sys.argv[3]).write_text(json.dumps(card, indent=2) + "\n")
print(json.dumps(card["calibration"], indent=2))
PY
echo "== $(date -u +%FT%TZ) done"
