"""Evaluation on an MVTec-layout test set: image AUROC, pixel AUROC and AU-PRO, overall and per
defect type (each defect type scored against all good test images, as in MVTec AD), and the share
of defects that would pass a line whose threshold rejects 1 % or 5 % of the good test images."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.engine import Engine
from inspector.framing.framed import inspected_pixels
from inspector.image_io import TestImage, mvtec_test_set, read_image, read_mask
from inspector.ad_metrics import aupro, image_auroc, pixel_auroc

#: AU-PRO is integrated up to this false-positive rate and normalised (MVTec AD protocol).
AUPRO_FPR_LIMIT = 0.3
#: The score a NO PART frame (the part not found) is ranked with: above every scored one, since the
#: line never passes it -- a good part not found counts as a false reject, never as a pass.
NO_PART_SCORE = 1e9
#: Pixels of map (and mask) kept for the pixel metrics over a whole test set: sorting and labelling
#: them takes about 30 bytes each, so 200 M keeps an evaluation within 6 GB. A set of 582 frames
#: of 1280x1024 (763 M pixels) is measured on maps scaled to 0.51; MVTec-sized sets fit as they are.
PIXEL_BUDGET = 200_000_000
#: The false-reject rates at which the defects that pass are counted: a line's threshold is set for
#: few false rejects, and the defects scoring under it are the ones that reach the customer.
FALSE_REJECT_RATES = (0.01, 0.05)


@dataclass(frozen=True)
class Scored:
    defect_type: str
    score: float
    anomaly_map: np.ndarray  # (H, W) float32
    mask: np.ndarray  # (H, W) bool, all False for good images
    no_part: bool = False
    #: (H, W) bool, where a framed model inspects the frame (its region where the part was found,
    #: less don't-care; nothing for NO PART); None: the whole image. The pixel metrics count these.
    inspected: np.ndarray | None = None


def score_test_set(engine: Engine, data_dir: str | Path, batch: int = 8, show_progress: bool = True) -> list[Scored]:
    return score_images(engine, mvtec_test_set(data_dir), batch, show_progress)


def score_images(engine: Engine, items: list[TestImage], batch: int = 8, show_progress: bool = True,
                 pixel_budget: int = PIXEL_BUDGET) -> list[Scored]:
    """Each image's score and map, with its mask (all False where it has none). Maps and masks
    are kept for the pixel metrics at most ``pixel_budget / len(items)`` pixels each (see
    :data:`PIXEL_BUDGET`); the image score is the full map's. A framed engine's maps are measured
    only where it inspects (:func:`~inspector.framing.framed.inspected_pixels`), and the pixel metrics
    count those pixels alone, as for the part cropped; a defect elsewhere counts as not found."""
    scored: list[Scored] = []
    max_pixels = max(1, pixel_budget // max(1, len(items)))
    for i in tqdm(range(0, len(items), batch), desc="evaluating", unit="batch", disable=not show_progress):
        chunk = items[i : i + batch]
        images = [read_image(it.path) for it in chunk]
        if (framing := getattr(engine, "framing", None)) is not None:
            for it, image in zip(chunk, images):
                framing.check_frame(image.shape, it.path)
        for it, image, pred in zip(chunk, images, engine.predict_batch(images)):
            shape = image.shape[:2]
            mask = read_mask(it.mask_path, shape) if it.mask_path else np.zeros(shape, bool)
            no_part = bool(getattr(pred, "no_part", False))
            inspected = inspected_pixels(getattr(engine, "framing", None), shape, pred)
            anomaly_map, mask, inspected = within_pixels(np.asarray(pred.anomaly_map, np.float32), mask, max_pixels,
                                                         inspected)
            scored.append(Scored(it.defect_type, NO_PART_SCORE if no_part else pred.score, anomaly_map, mask, no_part,
                                 inspected))
    return scored


def within_pixels(anomaly_map: np.ndarray, mask: np.ndarray, max_pixels: int,
                  inspected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The map, its mask and its inspected pixels scaled alike to at most ``max_pixels`` (as they
    are when they fit): the map by area averaging, the mask keeping every pixel a quarter covered
    by a defect, so a thin crack stays a region, the inspected pixels those wholly inside (an
    averaged edge pixel mixes in the zeros outside)."""
    h, w = anomaly_map.shape
    if h * w <= max_pixels:
        return anomaly_map, mask, inspected
    scale = math.sqrt(max_pixels / (h * w))
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    small_map = cv2.resize(anomaly_map, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.25
    small_inspected = (None if inspected is None else
                       cv2.resize(inspected.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 1.0 - 1e-6)
    return small_map, small_mask, small_inspected


def metrics_for(scored: list[Scored]) -> dict[str, float]:
    labels = np.array([s.defect_type != "good" for s in scored], dtype=int)
    scores = np.array([s.score for s in scored])
    masks = [s.mask for s in scored]
    maps = [s.anomaly_map for s in scored]
    has_regions = any(m.any() for m in masks)
    inspected = [s.inspected for s in scored]
    return {
        "image_auroc": image_auroc(labels, scores),
        "pixel_auroc": pixel_auroc(masks, maps, inspected) if has_regions else math.nan,
        "aupro": aupro(masks, maps, fpr_limit=AUPRO_FPR_LIMIT, inspected=inspected) if has_regions else math.nan,
        **{passing_key(rate): defects_passing(labels, scores, rate, [not s.no_part for s in scored])
           for rate in FALSE_REJECT_RATES},
        "images": len(scored),
        "no_part": sum(s.no_part for s in scored),
    }


def passing_key(false_reject_rate: float) -> str:
    return f"pass_at_{100 * false_reject_rate:g}pct_fr"


def defects_passing(labels: np.ndarray, scores: np.ndarray, false_reject_rate: float,
                    scored: np.ndarray | Sequence[bool] | None = None) -> float:
    """The share of defective images (``labels`` 1) scoring at or below the threshold that rejects
    ``false_reject_rate`` of the good ones (their scores' 1 - rate quantile): the defects a line
    set so would pass. ``scored`` False marks a frame the part was not found in (NO PART): as in
    calibration, its score says nothing of how good parts score and leaves the threshold alone,
    and a defective one never passes. NaN without both good (scored) and defective images."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    scored = np.ones(len(labels), bool) if scored is None else np.asarray(scored, bool)
    good, bad = scores[(labels == 0) & scored], scores[labels == 1]
    if not good.size or not bad.size:
        return math.nan
    return float(np.mean((bad <= np.quantile(good, 1.0 - false_reject_rate)) & scored[labels == 1]))


def escapes_with_k_good_above(good_scores, defect_scores, ranks: int = 6) -> list[float]:
    """The share of defective parts scoring at or below the (k+1)-th highest good score, k = 0 ..
    ranks - 1: how much the one or two oddest good parts move a threshold for few false rejects."""
    good = np.sort(np.asarray(good_scores))[::-1]
    bad = np.asarray(defect_scores)
    return [round(float(np.mean(bad <= good[k])), 4) for k in range(ranks)]


def evaluate(engine: Engine, data_dir: str | Path, show_progress: bool = True) -> dict:
    """Scores the test set; returns overall metrics and ``per_type`` metrics per defect type."""
    scored = score_test_set(engine, data_dir, show_progress=show_progress)
    good = [s for s in scored if s.defect_type == "good"]
    types = sorted({s.defect_type for s in scored} - {"good"})
    result = metrics_for(scored)
    result["per_type"] = {t: metrics_for(good + [s for s in scored if s.defect_type == t]) for t in types}
    return result


def format_table(result: dict) -> str:
    rows = [("overall", result)] + sorted(result["per_type"].items())
    fmt: Callable[[float], str] = lambda v: "  n/a" if v is None or math.isnan(v) else f"{100 * v:5.1f}"
    passing = [f"pass @{100 * rate:g}% FR" for rate in FALSE_REJECT_RATES]
    lines = [f"{'defect type':<14} {'images':>6} {'image AUROC':>12} {'pixel AUROC':>12} {'AU-PRO':>8}"
             + "".join(f" {name:>13}" for name in passing)]
    for name, m in rows:
        lines.append(f"{name:<14} {m['images']:>6} {fmt(m['image_auroc']):>12} {fmt(m['pixel_auroc']):>12} {fmt(m['aupro']):>8}"
                     + "".join(f" {fmt(m.get(passing_key(rate))):>13}" for rate in FALSE_REJECT_RATES))
    lines.append("pass @r% FR: % of the defective images scoring at or under the threshold that rejects r % of "
                 "the good test images")
    if result.get("no_part"):
        lines.append(f"NO PART: the part was not found in {result['no_part']} of {result['images']} images "
                     "(ranked above every score: never a pass)")
    return "\n".join(lines)
