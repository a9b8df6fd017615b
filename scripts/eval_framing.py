#!/usr/bin/env python
"""Today's squeeze against region, alignment and tiles, on frames built by build_line_frames.py.

Issue 30, part 6: each variant builds the instant model (``--kind instant``, the default teach)
from the same good training frames and scores the same test frames; every figure is in frame
coordinates (the map put back into the frame), so the variants compare alike:

- ``squeeze``: the whole frame squeezed into the model's input, as the product does today;
- ``region``: the reference's region cut from every frame, where the part was in the reference;
- ``align``: the part found first (:class:`inspector.framing.Aligner`), its region cut upright;
- ``align+tiles``: the same, the region tiled at the scale ``--defect-px`` asks for;
- ``truth``: the region cut where build_line_frames.py put the part (``placements.json``): what a
  perfect alignment would give, the ceiling of ``align``.

Printed and written (``--json``): image AUROC, AU-PRO (FPR ≤ 0.3), the share of defective parts
passing at 1 % and 5 % false rejects (thresholds from the good test frames' scores), the NO PART
count and the mean latency per frame (CPU flags noted).

    python scripts/build_line_frames.py ../shared/data/magnetic_tile runs/line_frames
    python scripts/eval_framing.py runs/line_frames --train 200 --json docs/evidence/framing_line_frames.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from inspector.ad_metrics import aupro, image_auroc
from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.evaluate import AUPRO_FPR_LIMIT
from inspector.framing import Alignment, FramedScorer, Framing
from inspector.framing.align import turn_about
from inspector.image_io import list_images, mvtec_test_set, read_image, read_mask
from inspector.method.instant_build import InstantConfig, build_instant
from inspector.model_file import save_model

VARIANTS = ("squeeze", "region", "align", "align+tiles", "truth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder made by scripts/build_line_frames.py")
    parser.add_argument("--train", type=int, default=200, help="good training frames used (every k-th)")
    parser.add_argument("--test-every", type=int, default=1, help="score every k-th test frame")
    parser.add_argument("--defect-px", type=float, default=8.0, help="smallest defect for align+tiles, frame px")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reference_info = json.loads((args.data / "reference.json").read_text())
    reference = read_image(args.data / reference_info["image"])
    region = tuple(reference_info["region"])
    good = list_images(args.data / "train" / "good")
    train = good[:: max(1, len(good) // args.train)][: args.train]
    tests = mvtec_test_set(args.data)[:: args.test_every]
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            framing = _framing(variant, region, reference, args.defect_px)
            truth = _Truth(args.data, region) if variant == "truth" else None
            figures[variant] = _run(variant, framing, train, tests, Path(tmp), truth)
            print(f"{variant:12s} " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in figures[variant].items()), flush=True)
    result = {"data": str(args.data), "train_frames": len(train), "test_frames": len(tests),
              "defect_px": args.defect_px, "cpu": cpu_description(), "variants": figures}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _framing(variant: str, region: tuple, reference: np.ndarray, defect_px: float) -> Framing | None:
    if variant == "squeeze":
        return None
    if variant == "region":
        return Framing(region=region, reference=reference, tiles="off")
    if variant == "align":
        return Framing(region=region, reference=reference, align=True, tiles="off")
    if variant == "align+tiles":
        return Framing(region=region, reference=reference, align=True, defect_px=defect_px)
    if variant == "truth":
        return Framing(region=region, reference=reference, align=True, tiles="off")
    raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


def _run(variant: str, framing: Framing | None, train: list[Path], tests: list, tmp: Path, truth: _Truth | None) -> dict:
    # What the model learns from: the frames, or each frame's region as the framing cuts it
    # (with tiles, the tiles: the model sees what it will be asked about).
    folder = tmp / variant.replace("+", "_")
    folder.mkdir()
    cutter = FramedScorer(_Collector(), framing) if framing is not None else None
    for i, path in enumerate(train):
        frame = read_image(path)
        if truth is not None:
            cutter._aligner = truth.at(path)
        pieces = [frame] if cutter is None else cutter.cuts(frame)
        for j, piece in enumerate(pieces):
            cv2.imwrite(str(folder / f"{i:04d}_{j:02d}.png"), piece)
    result = build_instant(sorted(folder.glob("*.png")), InstantConfig(), show_progress=False)
    model_path = tmp / f"{folder.name}.safetensors"
    save_model(model_path, result.model, result.metadata)
    engine = Engine(model_path, device="cpu")
    scorer = engine if framing is None else FramedScorer(engine, framing)
    labels, scores, masks, maps, times, no_part = [], [], [], [], [], 0
    for item in tests:
        frame = read_image(item.path)
        if truth is not None:
            scorer._aligner = truth.at(item.path)
        started = time.perf_counter()
        prediction = scorer.predict(frame)
        times.append(time.perf_counter() - started)
        no_part += bool(getattr(prediction, "no_part", False))
        labels.append(int(item.defect_type != "good"))
        scores.append(prediction.score)
        masks.append(read_mask(item.mask_path, frame.shape[:2]) if item.mask_path else np.zeros(frame.shape[:2], bool))
        maps.append(prediction.anomaly_map)
    labels_a, scores_a = np.array(labels), np.array(scores)
    good, bad = scores_a[labels_a == 0], scores_a[labels_a == 1]
    return {
        "image_auroc": round(image_auroc(labels_a, scores_a), 4),
        "aupro": round(aupro(masks, maps, fpr_limit=AUPRO_FPR_LIMIT), 4),
        "pass_at_1pct_fr": round(float(np.mean(bad <= np.quantile(good, 0.99))), 4),
        "pass_at_5pct_fr": round(float(np.mean(bad <= np.quantile(good, 0.95))), 4),
        "no_part": no_part,
        "ms_per_frame": round(1000 * statistics.mean(times), 1),
    }


class _Truth:
    """Aligners that know where build_line_frames.py put each frame's part."""

    def __init__(self, data: Path, region: tuple) -> None:
        self.data, self.region = data, region
        self.placements = json.loads((data / "placements.json").read_text())

    def at(self, path: Path) -> SimpleNamespace:
        p = self.placements[path.relative_to(self.data).with_suffix("").as_posix()]
        x, y, w, h = self.region
        matrix = turn_about(p["turn_deg"], (x + w / 2, y + h / 2), (x + w / 2 + p["dx"], y + h / 2 + p["dy"]))
        found = Alignment(matrix, 1.0, p["turn_deg"], (p["dx"], p["dy"]))
        return SimpleNamespace(align=lambda frame: found)


class _Collector:
    """An engine that only keeps what it is shown: how the framing cuts a training frame."""

    image_size = 256

    def predict_batch(self, images):
        raise AssertionError("not used")


if __name__ == "__main__":
    main()
