"""Evaluation on an MVTec-layout test set: image AUROC, pixel AUROC and AU-PRO, overall and per
defect type (each defect type scored against all good test images, as in MVTec AD)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspector.engine import Engine
from inspector.image_io import TestImage, mvtec_test_set, read_image, read_mask
from inspector.ad_metrics import aupro, image_auroc, pixel_auroc

#: AU-PRO is integrated up to this false-positive rate and normalised (MVTec AD protocol).
AUPRO_FPR_LIMIT = 0.3
#: The score a NO PART frame (the part not found) is ranked with: above every scored one, since the
#: line never passes it -- a good part not found counts as a false reject, never as a pass.
NO_PART_SCORE = 1e9


@dataclass(frozen=True)
class Scored:
    defect_type: str
    score: float
    anomaly_map: np.ndarray  # (H, W) float32
    mask: np.ndarray  # (H, W) bool, all False for good images
    no_part: bool = False


def score_test_set(engine: Engine, data_dir: str | Path, batch: int = 8, show_progress: bool = True) -> list[Scored]:
    return score_images(engine, mvtec_test_set(data_dir), batch, show_progress)


def score_images(engine: Engine, items: list[TestImage], batch: int = 8, show_progress: bool = True) -> list[Scored]:
    """Each image's score and map, with its mask (all False where it has none)."""
    scored: list[Scored] = []
    for i in tqdm(range(0, len(items), batch), desc="evaluating", unit="batch", disable=not show_progress):
        chunk = items[i : i + batch]
        images = [read_image(it.path) for it in chunk]
        for it, image, pred in zip(chunk, images, engine.predict_batch(images)):
            shape = image.shape[:2]
            mask = read_mask(it.mask_path, shape) if it.mask_path else np.zeros(shape, bool)
            no_part = bool(getattr(pred, "no_part", False))
            scored.append(Scored(it.defect_type, NO_PART_SCORE if no_part else pred.score, pred.anomaly_map, mask, no_part))
    return scored


def metrics_for(scored: list[Scored]) -> dict[str, float]:
    labels = np.array([s.defect_type != "good" for s in scored], dtype=int)
    scores = np.array([s.score for s in scored])
    masks = [s.mask for s in scored]
    maps = [s.anomaly_map for s in scored]
    has_regions = any(m.any() for m in masks)
    return {
        "image_auroc": image_auroc(labels, scores),
        "pixel_auroc": pixel_auroc(masks, maps) if has_regions else math.nan,
        "aupro": aupro(masks, maps, fpr_limit=AUPRO_FPR_LIMIT) if has_regions else math.nan,
        "images": len(scored),
        "no_part": sum(s.no_part for s in scored),
    }


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
    lines = [f"{'defect type':<14} {'images':>6} {'image AUROC':>12} {'pixel AUROC':>12} {'AU-PRO':>8}"]
    for name, m in rows:
        lines.append(f"{name:<14} {m['images']:>6} {fmt(m['image_auroc']):>12} {fmt(m['pixel_auroc']):>12} {fmt(m['aupro']):>8}")
    if result.get("no_part"):
        lines.append(f"NO PART: the part was not found in {result['no_part']} of {result['images']} images "
                     "(ranked above every score: never a pass)")
    return "\n".join(lines)
