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
import itertools
import json
import time
from pathlib import Path

import numpy as np

from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.evaluate import Scored, escapes_with_k_good_above, metrics_for, score_images, score_test_set
from inspector.image_io import TestImage


def averaged(runs: list[list[Scored]]) -> list[Scored]:
    out = []
    for parts in zip(*runs):
        mean = np.mean([p.anomaly_map for p in parts], axis=0, dtype=np.float32)
        out.append(Scored(parts[0].defect_type, float(mean.max()), mean, parts[0].mask))
    return out


def score_elpv_cells(engine: Engine) -> list[Scored]:
    import demo

    good, defective = demo.held_out_mono_cells()
    return score_images(engine, [TestImage(p, "good", None) for p in good] + [TestImage(p, "defective", None) for p in defective],
                        show_progress=False)


def figures(scored: list[Scored]) -> dict:
    """``inspector eval``'s figures; and, where the set has no masks (ELPV), the escape rates with the
    threshold at the (k+1)-th highest good score, k = 0..5, as ``sweep_instant.py`` reports them."""
    out = metrics_for(scored)
    if not any(s.mask.any() for s in scored):
        out["escapes_with_k_good_above"] = escapes_with_k_good_above([s.score for s in scored if s.defect_type == "good"],
                                                                     [s.score for s in scored if s.defect_type != "good"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python scripts/ensemble_eval.py", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--data", default="../shared/data/magnetic_tile", help="MVTec-layout folder")
    p.add_argument("--elpv-all", action="store_true",
                   help="instead of --data: every mono ELPV cell the demo split does not train on (288 good, 313 defective)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--pairs", action="store_true", help="average every pair of the models too, not only all of them")
    args = p.parse_args()

    t0 = time.perf_counter()
    runs, rows = [], []
    for path in args.models:
        engine = Engine(path, device="cpu", backend="eager")
        runs.append(score_elpv_cells(engine) if args.elpv_all else score_test_set(engine, args.data))
        rows.append({"model": str(path), "kind": engine.kind, **figures(runs[-1])})
    if args.pairs and len(runs) > 2:
        for i, j in itertools.combinations(range(len(runs)), 2):
            rows.append({"model": f"{args.models[i].name} + {args.models[j].name}", "kind": "averaged maps",
                         **figures(averaged([runs[i], runs[j]]))})
    if len(runs) > 1:
        rows.append({"model": " + ".join(p.name for p in args.models), "kind": "averaged maps", **figures(averaged(runs))})
    for r in rows:
        escapes = f"  escapes {r['escapes_with_k_good_above']}" if "escapes_with_k_good_above" in r else ""
        print(f"{r['kind']:<14} image AUROC {r['image_auroc']:.3f}  pixel AUROC {r['pixel_auroc']:.3f}  AU-PRO {r['aupro']:.3f}{escapes}  {r['model']}")
    if args.json:
        args.json.write_text(json.dumps({"data": "elpv-mono, all cells not built on" if args.elpv_all else args.data, "machine": cpu_description(), "seconds": round(time.perf_counter() - t0),
                                         "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
