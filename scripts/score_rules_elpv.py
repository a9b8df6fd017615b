"""Image-score rules on the shipped demo model's ELPV maps: does anything but the map's maximum
pass fewer defective cells at the 1 % false-reject threshold?

    python scripts/score_rules_elpv.py [--json FILE]

Scores the demo split's 200 held-out good and 60 defective cells, and every mono cell the demo is
not built on (288 good, 313 defective), with ``inspector/assets/demo/demo_model.safetensors`` in
eager fp32, keeps each cell's normalised (56, 56) map, and compares image scores taken from it:
the maximum (the shipped rule), the mean of the k highest positions, the maximum after a Gaussian
or box smoothing (vertical and horizontal boxes too: the escapes show thin vertical lines), and
the maximum with a border of the map left out. For each: AUROC and the escape rate with the
threshold at the (k+1)-th highest good score, k = 0..5 (k = 1 is the demo's 1 % threshold).
A measurement, not a test; needs ``pip install elpv-dataset``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, uniform_filter
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import demo  # noqa: E402
from inspector.devices import cpu_description  # noqa: E402
from inspector.engine import Engine  # noqa: E402
from inspector.image_io import read_image, to_square  # noqa: E402

MODEL = Path("inspector/assets/demo/demo_model.safetensors")
RULES = ["max", "top2", "top4", "top8", "top16", "top32", "top64", "blur1", "blur2", "blur3", "box3", "box5",
         "vbox3", "vbox5", "vbox9", "hbox5", "border1", "border2", "border3", "border4", "border6"]


def maps(engine: Engine, paths: list[Path]) -> np.ndarray:
    out = []
    for i in range(0, len(paths), 16):
        squares = np.stack([to_square(read_image(p), engine.image_size, engine.resize_mode)[0] for p in paths[i : i + 16]])
        with torch.no_grad():
            out.append(engine._forward(squares).float().cpu().numpy()[:, 0])
    return np.concatenate(out)


def score(m: np.ndarray, rule: str) -> np.ndarray:
    flat = m.reshape(len(m), -1)
    if rule == "max":
        return flat.max(1)
    if rule.startswith("top"):
        return np.sort(flat, 1)[:, -int(rule[3:]):].mean(1)
    if rule.startswith("border"):
        b = int(rule[6:])
        return m[:, b:-b, b:-b].reshape(len(m), -1).max(1)
    if rule.startswith("blur"):
        return np.array([gaussian_filter(x, float(rule[4:]), mode="nearest").max() for x in m])
    k = int(rule.lstrip("vhbox"))
    size = (k, 1) if rule.startswith("v") else (1, k) if rule.startswith("h") else k
    return np.array([uniform_filter(x, size, mode="nearest").max() for x in m])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    engine = Engine(MODEL, device="cpu", backend="eager")
    split = demo.elpv_split()
    good, bad = demo.mono_cells()
    built = set(split.train)
    sets = {"demo split (200 good, 60 defective)": (split.calibration_good, split.calibration_defect),
            "every mono cell not built on (288 good, 313 defective)": ([p for p in good if p not in built], bad)}
    result = {"what": __doc__.splitlines()[0], "model": str(MODEL), "machine": cpu_description(), "sets": {}}
    for name, (g_paths, b_paths) in sets.items():
        g_maps, b_maps = maps(engine, g_paths), maps(engine, b_paths)
        rows = {}
        for rule in RULES:
            g, b = score(g_maps, rule), score(b_maps, rule)
            ranked = np.sort(g)[::-1]
            rows[rule] = {"auroc": round(float(roc_auc_score(np.r_[np.zeros(len(g)), np.ones(len(b))], np.r_[g, b])), 3),
                          "escapes_with_k_good_above": [round(float(np.mean(b <= ranked[k])), 2) for k in range(6)]}
            print(f"{name[:10]} {rule:8s} {rows[rule]}", flush=True)
        result["sets"][name] = rows
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
