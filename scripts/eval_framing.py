#!/usr/bin/env python
"""Today's squeeze against region, alignment and tiles, on frames built by build_line_frames.py
(or build_tall_frames.py).

Issue 30, part 6: each variant builds the instant model (``--kind instant``, the default teach)
from the same good training frames, cut as the variant cuts them, and scores the same test frames;
every figure is in frame coordinates (the map put back into the frame), so the variants compare
alike. Each switch alone, then together:

- ``squeeze``: the whole frame squeezed into the model's input, as the product does today;
- ``tiles``: the whole frame tiled at the scale ``--defect-px`` asks for (no region);
- ``region``: the reference's region cut from every frame, where the part was in the reference;
- ``region+tiles``: the same region, tiled;
- ``align``: the part found first (:class:`inspector.framing.Aligner`), its region cut upright
  (alignment needs a region, so this is region and alignment);
- ``align+tiles``: all together: the part found, its region cut and tiled;
- ``truth``: the region cut where build_line_frames.py put the part (``placements.json``): what a
  perfect alignment would give, the ceiling of ``align``.

Frames without a ``reference.json`` (build_tall_frames.py's) have no region: only ``squeeze`` and
``tiles`` apply there. Data without a ``ground_truth`` folder (ELPV cells, laid out by
scripts/elpv_layout.py, and the frames built from them) has no masks: AU-PRO is then null, the
image AUROC and the pass shares are computed as ever. Any MVTec-layout folder is taken, so the
parts themselves (not framed: ``--variants squeeze`` on the source folder) give the cropped figure
the frames are set against.

Printed and written (``--json``): image AUROC, AU-PRO (FPR ≤ 0.3), the share of defective parts
passing at 1 % and 5 % false rejects (thresholds from the good test frames' scores), overall and
per defect type, the NO PART count, the tiles per frame, and the latency per frame (median, p10,
p90 and mean, through the engine's auto-chosen CPU backend; CPU noted).

    python scripts/build_line_frames.py ../shared/data/magnetic_tile runs/line_frames
    python scripts/eval_framing.py runs/line_frames --train 200 --json docs/evidence/framing_line_frames.json
    python scripts/build_tall_frames.py ../shared/data/magnetic_tile runs/tall_frames
    python scripts/eval_framing.py runs/tall_frames --variants squeeze,tiles --defect-px 4 --json FILE
    python scripts/elpv_layout.py runs/elpv_cells
    python scripts/build_line_frames.py runs/elpv_cells runs/elpv_frames
    python scripts/eval_framing.py runs/elpv_frames --variants squeeze,region,align,truth --json FILE
    python scripts/eval_framing.py runs/elpv_cells --variants squeeze --json FILE   # the cells, cropped
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from inspector.ad_metrics import aupro, image_auroc
from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.evaluate import AUPRO_FPR_LIMIT, FALSE_REJECT_RATES, NO_PART_SCORE, defects_passing, passing_key
from inspector.framing import Alignment, FramedScorer, Framing
from inspector.framing.framed import inspected_pixels
from inspector.framing.align import turn_about
from inspector.image_io import TestImage, list_images, mvtec_test_set, read_image, read_mask
from inspector.method.instant_build import InstantConfig, build_instant
from inspector.model_file import save_model

VARIANTS = ("squeeze", "tiles", "region", "region+tiles", "align", "align+tiles", "truth")
NO_REGION = ("squeeze", "tiles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder made by scripts/build_line_frames.py or build_tall_frames.py")
    parser.add_argument("--train", type=int, default=200, help="good training frames used (every k-th)")
    parser.add_argument("--test-every", type=int, default=1, help="score every k-th test frame")
    parser.add_argument("--defect-px", type=float, default=8.0, help="smallest defect for the tiled variants, frame px")
    parser.add_argument("--tiles", default="auto", help="auto or N, for the tiled variants")
    parser.add_argument("--variants", default=None, help=f"comma-separated, of {', '.join(VARIANTS)} (default: all that apply)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = load(args.data, args.train, args.test_every)
    tiles = int(args.tiles) if args.tiles.isdigit() else args.tiles
    variants = args.variants.split(",") if args.variants else [v for v in VARIANTS if data.region is not None or v in NO_REGION]
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            framing = _framing(variant, data.region, data.reference, args.defect_px, tiles)
            truth = _Truth(args.data, data.region) if variant == "truth" else None
            figures[variant] = _run(variant, framing, data.train, data.tests, Path(tmp), truth)
            print(f"{variant:12s} " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in figures[variant].items() if k != "by_kind"), flush=True)
    result = {"data": str(args.data), "command": "python " + " ".join(sys.argv), "commit": head_commit(),
              "train_frames": len(data.train), "test_frames": len(data.tests),
              "defect_px": args.defect_px, "tiles": args.tiles, "cpu": cpu_description(), "variants": figures}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def head_commit() -> str:
    """The commit the script runs at (with '+edits' where the working tree differs); from a
    ``git archive`` copy, the ``INSPECTOR_COMMIT`` environment variable says which."""
    if os.environ.get("INSPECTOR_COMMIT"):
        return os.environ["INSPECTOR_COMMIT"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "scripts", "inspector"], capture_output=True, text=True).stdout.strip()
        return commit + ("+edits" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load(data: Path, train_count: int, test_every: int) -> SimpleNamespace:
    """The built set: its reference and region (None without reference.json), the training frames
    used (every k-th good one) and the test frames scored."""
    reference, region = None, None
    if (data / "reference.json").is_file():
        reference_info = json.loads((data / "reference.json").read_text())
        reference = read_image(data / reference_info["image"])
        region = tuple(reference_info["region"])
    good = list_images(data / "train" / "good")
    train = good[:: max(1, len(good) // train_count)][:train_count]
    tests = scored_images(data)[::test_every]
    return SimpleNamespace(reference=reference, region=region, train=train, tests=tests)


def scored_images(data: Path) -> list[TestImage]:
    """The test images: :func:`mvtec_test_set` where the data has a ``ground_truth`` folder; without
    one (ELPV), every ``test/<kind>`` image with no mask."""
    if (data / "ground_truth").is_dir():
        return mvtec_test_set(data)
    return [TestImage(path, kind.name, None)
            for kind in sorted(d for d in (data / "test").iterdir() if d.is_dir()) for path in list_images(kind)]


def _framing(variant: str, region: tuple | None, reference: np.ndarray | None, defect_px: float,
             tiles: str | int = "auto") -> Framing | None:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if variant == "squeeze":
        return None
    if variant == "tiles":
        return Framing(tiles=tiles, defect_px=defect_px)
    if region is None:
        raise SystemExit(f"{variant} needs a region: the data has no reference.json")
    if variant == "region":
        return Framing(region=region, reference=reference, tiles="off")
    if variant == "region+tiles":
        return Framing(region=region, reference=reference, tiles=tiles, defect_px=defect_px)
    if variant in ("align", "truth"):
        return Framing(region=region, reference=reference, align=True, tiles="off")
    return Framing(region=region, reference=reference, align=True, tiles=tiles, defect_px=defect_px)


def _run(variant: str, framing: Framing | None, train: list[Path], tests: list, tmp: Path, truth: _Truth | None) -> dict:
    folder = write_cuts(variant, framing, train, tmp, truth)
    started = time.perf_counter()
    model_path = build_model(sorted(folder.glob("*.png")), tmp / f"{folder.name}.safetensors")
    build_s = time.perf_counter() - started
    engine = Engine(model_path, device="cpu")
    scorer = engine if framing is None else FramedScorer(engine, framing)
    figures = score(scorer, tests, truth)
    return {**figures, "train_cuts": len(list(folder.glob("*.png"))), "build_s": round(build_s, 1),
            "backend": engine.backend}


def write_cuts(variant: str, framing: Framing | None, train: list[Path], tmp: Path, truth: _Truth | None = None) -> Path:
    """What the model learns from, written into a folder: the frames, or each frame's region as the
    framing cuts it (with tiles, the tiles: the model sees what it will be asked about). A cut's
    name ends with its tile's position (``_NN``)."""
    folder = tmp / variant.replace("+", "_")
    folder.mkdir()
    cutter = FramedScorer(_Collector(), framing) if framing is not None else None
    for i, path in enumerate(train):
        frame = read_image(path)
        if truth is not None and cutter is not None:
            cutter._aligner = truth.at(path)
        pieces = [frame] if cutter is None else cutter.cuts(frame)
        for j, piece in enumerate(pieces):
            cv2.imwrite(str(folder / f"{i:04d}_{j:02d}.png"), piece)
    return folder


def build_model(images: list[Path], model_path: Path) -> Path:
    result = build_instant(images, InstantConfig(), show_progress=False)
    save_model(model_path, result.model, result.metadata)
    return model_path


def score(scorer, tests: list, truth: _Truth | None = None) -> dict:
    """Scores the test frames through ``scorer`` (an engine or a FramedScorer): the figures."""
    labels, kinds, scores, masks, maps, inspected, times, no_part, found = [], [], [], [], [], [], [], 0, []
    tile_counts = set()
    has_masks = any(item.mask_path for item in tests)  # none: no AU-PRO, and no maps kept
    for item in tests:
        frame = read_image(item.path)
        if truth is not None:
            scorer._aligner = truth.at(item.path)
        started = time.perf_counter()
        prediction = scorer.predict(frame)
        times.append(time.perf_counter() - started)
        if isinstance(scorer, FramedScorer) and not getattr(prediction, "no_part", False):
            tile_counts.add(len(scorer.cuts(frame)) if truth is None else -1)
        no_part += bool(getattr(prediction, "no_part", False))
        found.append(not getattr(prediction, "no_part", False))
        labels.append(int(item.defect_type != "good"))
        kinds.append(item.defect_type)
        # As inspector eval ranks it: a frame the part was not found in never passes.
        scores.append(NO_PART_SCORE if getattr(prediction, "no_part", False) else prediction.score)
        if has_masks:
            masks.append(read_mask(item.mask_path, frame.shape[:2]) if item.mask_path else np.zeros(frame.shape[:2], bool))
            maps.append(prediction.anomaly_map)
            # A framed map is 0 outside what it inspects, by construction: the pixel metrics count
            # the inspected pixels alone (a defect elsewhere, never found), as for the part cropped.
            inspected.append(inspected_pixels(getattr(scorer, "framing", None), frame.shape, prediction))
    labels_a, scores_a, kinds_a, found_a = np.array(labels), np.array(scores), np.array(kinds), np.array(found)
    def passing(kind: str | None) -> dict[str, float]:
        chosen = (labels_a == 0) | (kinds_a == kind) if kind else np.ones(len(labels_a), bool)
        return {passing_key(rate): round(defects_passing(labels_a[chosen], scores_a[chosen], rate, found_a[chosen]), 4)
                for rate in FALSE_REJECT_RATES}

    by_kind = {kind: {"frames": int(np.sum(kinds_a == kind)), **passing(kind)} for kind in sorted(set(kinds) - {"good"})}
    ms = sorted(1000 * t for t in times)
    return {
        "image_auroc": round(image_auroc(labels_a, scores_a), 4),
        "aupro": round(aupro(masks, maps, fpr_limit=AUPRO_FPR_LIMIT, inspected=inspected), 4) if has_masks else None,
        **({} if has_masks else {"aupro_note": "no masks"}),
        **passing(None),
        "no_part": no_part,
        "tiles_per_frame": sorted(tile_counts) if tile_counts and -1 not in tile_counts else None,
        "ms_per_frame": round(statistics.mean(ms), 1),
        "ms_median": round(statistics.median(ms), 1),
        "ms_p10": round(ms[len(ms) // 10], 1),
        "ms_p90": round(ms[(9 * len(ms)) // 10], 1),
        "by_kind": by_kind,
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
