#!/usr/bin/env python
"""What a stacked strip can score at best: each of its cells scored alone, the strip's score their maximum.

build_tall_frames.py stacks three cells into one tall image; a strip's image score is its map's
maximum, so a good strip scores as the most unusual of its three good cells. This script asks
whether the tiles lose anything beyond that: it builds the instant model from the same good cells
eval_framing.py banks for the cells alone (every k-th of ``CELLS_TRAIN``, ``--train`` of them),
scores every cell the scored test strips hold (``SOURCE``/test/<kind>/<cell>, as ``frames.json``
names them), and sets each strip's score to the maximum of its slots' scores. Printed and written
(``--json``): image AUROC and the defective strips passing at 1 % and 5 % false rejects for that
maximum, and for each strip's own (defective or good) cell alone, against which eval_framing.py's
figures for the strips themselves are read.

    python scripts/tall_ceiling.py runs/elpv_tall/frames900 runs/elpv_cells runs/elpv_tall/cells/train/good --json FILE
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_framing  # noqa: E402  (the same model build and test-frame order)

from inspector.ad_metrics import image_auroc  # noqa: E402
from inspector.devices import cpu_description  # noqa: E402
from inspector.engine import Engine  # noqa: E402
from inspector.image_io import list_images, read_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strips", type=Path, help="a folder made by build_tall_frames.py (with frames.json)")
    parser.add_argument("source", type=Path, help="the folder the strips were built from")
    parser.add_argument("cells_train", type=Path, help="the good cells the cells-alone model is built from")
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--test-every", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    good = list_images(args.cells_train)
    train = good[:: max(1, len(good) // args.train)][: args.train]
    frames = json.loads((args.strips / "frames.json").read_text())["frames"]
    tests = eval_framing.scored_images(args.strips)[:: args.test_every]
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(eval_framing.build_model(train, Path(tmp) / "cells.safetensors"), device="cpu")
        cell_scores: dict[str, float] = {}
        labels, strip_max, own = [], [], []
        for item in tests:
            info = frames[item.path.relative_to(args.strips).with_suffix("").as_posix()]
            slots = []
            for cell in info["slots"]:
                if cell not in cell_scores:
                    cell_scores[cell] = float(engine.predict(read_image(args.source / cell)).score)
                slots.append(cell_scores[cell])
            labels.append(int(item.defect_type != "good"))
            strip_max.append(max(slots))
            own.append(slots[info["slot"]])
    labels_a = np.array(labels)
    result = {
        "strips": str(args.strips), "source": str(args.source), "cells_train": str(args.cells_train),
        "command": "python " + " ".join(sys.argv), "commit": eval_framing.head_commit(), "cpu": cpu_description(),
        "train_cells": len(train), "test_strips": len(tests), "test_good": int(np.sum(labels_a == 0)),
        "cells_scored": len(cell_scores),
        "strip_as_max_of_its_cells": figures(labels_a, np.array(strip_max)),
        "strip_own_cell_alone": figures(labels_a, np.array(own)),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def figures(labels: np.ndarray, scores: np.ndarray) -> dict:
    good, bad = scores[labels == 0], scores[labels == 1]
    return {"image_auroc": round(image_auroc(labels, scores), 4),
            "pass_at_1pct_fr": round(float(np.mean(bad <= np.quantile(good, 0.99))), 4),
            "pass_at_5pct_fr": round(float(np.mean(bad <= np.quantile(good, 0.95))), 4)}


if __name__ == "__main__":
    main()
