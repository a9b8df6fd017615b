"""Would averaging two models' maps find more defects than either alone? Measured, not assumed.

    python scripts/ensemble_eval.py MODEL_A MODEL_B [--data DIR] [--json FILE]

Every model's map is normalised the same way (EfficientAD, Section 3.4: the 0.9 and 0.995
quantiles of held-out good maps go to 0 and 0.1), which is what lets the paper average its
student-teacher and autoencoder maps. Two taught models of one product, say the instant model and
the student-teacher model, can be averaged the same way. This scores ``--data``'s test set with
each model (the engine in fp32) and prints ``inspector eval``'s figures for each model and for the
averaged map (its maximum is the image score).

Measured on magnetic tile (docs/evidence/combined_maps_magnetic_tile.json): the instant model and
the quick teach's student-teacher model averaged score 0.839 image AUROC, below the instant model
alone (0.865), so no combined model ships.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.evaluate import Scored, metrics_for, score_test_set


def averaged(runs: list[list[Scored]]) -> list[Scored]:
    out = []
    for parts in zip(*runs):
        mean = np.mean([p.anomaly_map for p in parts], axis=0, dtype=np.float32)
        out.append(Scored(parts[0].defect_type, float(mean.max()), mean, parts[0].mask))
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python scripts/ensemble_eval.py", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--data", default="../shared/data/magnetic_tile", help="MVTec-layout folder")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()

    t0 = time.perf_counter()
    runs, rows = [], []
    for path in args.models:
        engine = Engine(path, device="cpu", backend="eager")
        runs.append(score_test_set(engine, args.data))
        rows.append({"model": str(path), "kind": engine.kind, **metrics_for(runs[-1])})
    if len(runs) > 1:
        rows.append({"model": " + ".join(p.name for p in args.models), "kind": "averaged maps", **metrics_for(averaged(runs))})
    for r in rows:
        print(f"{r['kind']:<14} image AUROC {r['image_auroc']:.3f}  pixel AUROC {r['pixel_auroc']:.3f}  AU-PRO {r['aupro']:.3f}  {r['model']}")
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "machine": cpu_description(), "seconds": round(time.perf_counter() - t0),
                                         "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
