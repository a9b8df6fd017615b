"""Anomaly-detection metrics of the MVTec AD protocol: image AUROC, pixel AUROC and AU-PRO.

All three take plain numpy arrays, so the evaluator can call them per defect type (the good test
images plus the images of one type) or over a whole category.

Inputs
------
``masks`` and ``maps`` are either stacked arrays of shape (N, H, W) or sequences of N 2-D arrays;
image ``i`` may have its own size (H_i, W_i) as long as ``masks[i]`` and ``maps[i]`` agree. A mask
pixel is a defect when it is non-zero, so bool, 0/1 and the 0/255 PNG masks of MVTec AD all work.
Good images and defective images whose mask is empty simply contribute defect-free pixels.

Problems with the data (one class only, shapes that disagree, NaN scores) raise
:class:`~inspector.errors.DataError`; bad parameters (``fpr_limit``, ``num_thresholds``) raise
``ValueError`` because they are programming errors, not data.

Reference: P. Bergmann, K. Batzner, M. Fauser, D. Sattlegger, C. Steger, "The MVTec Anomaly
Detection Dataset", IJCV 129, 2021 (section on the per-region overlap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Union

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from inspector.errors import DataError

#: A stacked (N, H, W) array, or N 2-D arrays of possibly different sizes.
ImageStack = Union[np.ndarray, Sequence[np.ndarray]]

# Positives are ranked against the sorted negatives this many at a time, which bounds the int64
# temporaries of np.searchsorted (2 x 8 bytes per positive) to about 64 MiB.
_RANK_CHUNK = 4_000_000


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of image-level anomaly scores.

    Args:
        labels: shape (N,), 1 (or True) for a defective image, 0 for a good one.
        scores: shape (N,), real anomaly scores; higher means more anomalous.

    Returns:
        The AUROC in [0, 1]; tied scores count one half, as in ``sklearn.metrics.roc_auc_score``.

    Raises:
        DataError: if the arrays disagree in length, labels are not 0/1, a score is not finite,
            or only one class is present (the AUROC is then undefined).
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise DataError(
            f"image AUROC needs labels and scores of the same length (N,), got shapes "
            f"{y.shape} and {s.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        raise DataError("image AUROC needs labels that are 0 (good) or 1 (defective)")
    if not np.isfinite(s).all():
        raise DataError("image AUROC got a score that is NaN or infinite")
    _require_both_classes(int(np.count_nonzero(y)), y.size - int(np.count_nonzero(y)), "images")
    return float(roc_auc_score(y.astype(bool), s))


def pixel_auroc(masks: ImageStack, maps: ImageStack, inspected: ImageStack | None = None) -> float:
    """Area under the ROC curve over all pixels of all images (pixel-wise AUROC).

    The result equals ``roc_auc_score`` on the concatenated flattened pixels, but it is computed
    as the Mann-Whitney statistic (the fraction of (defect, defect-free) pixel pairs ranked
    correctly, ties counting one half) by sorting only the defect-free scores and ranking the
    defect pixels against them. That needs a fraction of the memory and time: 500 maps of
    256 x 256 (33 M float32 pixels) take about 0.3 GB extra instead of 1.6 GB.

    Args:
        masks: N ground-truth masks, (N, H, W) or a sequence of (H_i, W_i); non-zero is defect.
        maps: N anomaly maps of the same shapes; higher means more anomalous.
        inspected: None (every pixel counts), or N bool masks of the same shapes (None for an
            image inspected whole), True where the product inspects the image (see :func:`aupro`).

    Returns:
        The pixel AUROC in [0, 1].

    Raises:
        DataError: if the inputs disagree in count or shape, a score is not finite, or there are
            no defect pixels or no defect-free pixels at all.
    """
    pairs = _pairs(masks, maps, inspected)
    dtype = _score_dtype(pairs)
    negatives = _gather(pairs, _defect_free, dtype)
    positives = _gather(pairs, lambda mask, _: mask, dtype)
    _require_both_classes(positives.size, negatives.size, "pixels")
    negatives.sort()
    # For each defect pixel: (#defect-free below it) + (#defect-free below or equal) counts the
    # correctly ranked pairs twice, ties once. Python ints keep the sum exact.
    twice_correct = 0
    for start in range(0, positives.size, _RANK_CHUNK):
        chunk = positives[start : start + _RANK_CHUNK]
        twice_correct += int(np.searchsorted(negatives, chunk, side="left").sum())
        twice_correct += int(np.searchsorted(negatives, chunk, side="right").sum())
    return twice_correct / (2 * positives.size * negatives.size)


def aupro(
    masks: ImageStack,
    maps: ImageStack,
    fpr_limit: float = 0.3,
    num_thresholds: int | None = None,
    inspected: ImageStack | None = None,
) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to a false-positive rate.

    For a threshold t a pixel is predicted defective when its score is >= t. The PRO at t is the
    mean, over every connected defect region (8-connectivity) of every image, of the fraction of
    that region predicted defective; each region weighs the same whatever its size. The FPR at t
    is the fraction of all defect-free pixels (outside the masks, good images included) predicted
    defective. The curve runs from (0, 0) through one point per distinct threshold, linearly
    interpolated between points (as the MVTec reference does); it is integrated from FPR 0 to
    ``fpr_limit``, with the curve interpolated at exactly ``fpr_limit``, and divided by
    ``fpr_limit``, so a perfect detector scores 1.0 and a constant map scores 0.5 * fpr_limit.

    Methods:
        ``num_thresholds=None`` (default) is exact: every distinct score is a threshold. The
        defect-free score where the FPR reaches ``fpr_limit`` is found by a linear-time
        selection, and only the pixels at or above it are sorted once (typically about
        ``fpr_limit`` of them), with per-region true-positive weights and false-positive counts
        accumulated along the sorted order.
        ``num_thresholds=n`` uses n thresholds placed at the defect-free score quantiles that
        give FPRs evenly spaced over [0, fpr_limit], and bins the pixels against them. Between
        two thresholds the curve is a straight line, so when no score value is shared by many
        defect-free pixels the result is within about 0.5 / (n - 1) of the exact one (0.5
        points at n = 101). It saves the sort, which matters only for very large inputs.

    Args:
        masks: N ground-truth masks, (N, H, W) or a sequence of (H_i, W_i); non-zero is defect.
        maps: N anomaly maps of the same shapes; higher means more anomalous.
        fpr_limit: upper end of the FPR integration range, in (0, 1]; MVTec AD uses 0.3.
        num_thresholds: None for the exact curve, or at least 2 for the threshold grid.
        inspected: None (every pixel counts), or N bool masks of the same shapes (None for an
            image inspected whole), True where the product inspects the image (a framed model's region where the part was found, less
            its don't-care areas). Elsewhere its map is 0 by construction, not a measurement: a
            defect-free pixel there is left out of the FPR, and a defect pixel there counts as
            never found. As for a cropped part, the FPR is then that of the inspected pixels.

    Returns:
        The normalised AU-PRO in [0, 1], or NaN when no mask has any defect pixel (no region
        exists, so the PRO is undefined); the caller decides whether to report or skip it.

    Raises:
        DataError: if the inputs disagree in count or shape, a score is not finite, or there are
            no defect-free pixels at all (the FPR is then undefined).
        ValueError: if ``fpr_limit`` or ``num_thresholds`` is out of range.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if num_thresholds is not None and num_thresholds < 2:
        raise ValueError(f"num_thresholds must be None or at least 2, got {num_thresholds}")
    pairs = _pairs(masks, maps, inspected)
    dtype = _score_dtype(pairs)
    region_labels, inv_areas = _label_regions(pairs)
    num_regions = inv_areas.size - 1
    negatives = _gather(pairs, _defect_free, dtype)
    num_negatives = negatives.size
    if num_negatives == 0:
        raise DataError("AU-PRO needs defect-free pixels, but every pixel lies inside a mask")
    if num_regions == 0:
        return math.nan

    # Only pixels at or above the lowest threshold (where the FPR reaches the limit) matter.
    if num_thresholds is None:
        lowest = _kth_largest(negatives, _fp_count_at(fpr_limit, num_negatives))
        del negatives
        fp_counts, pro_sums = _accumulate_sorted(
            *_pixels_at_or_above(pairs, region_labels, lowest, dtype), inv_areas
        )
    else:
        thresholds = _grid_thresholds(negatives, fpr_limit, num_thresholds)
        del negatives
        fp_counts, pro_sums = _accumulate_binned(
            *_pixels_at_or_above(pairs, region_labels, thresholds[0], dtype), inv_areas, thresholds
        )
    fprs = np.concatenate(([0.0], fp_counts / num_negatives))
    # Summing many 1/area weights can overshoot 1 by rounding; the PRO is a fraction.
    pros = np.concatenate(([0.0], np.minimum(pro_sums / num_regions, 1.0)))
    return _area_up_to(fprs, pros, fpr_limit) / fpr_limit


def _label_regions(
    pairs: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Number the defect regions of all images 1..R (8-connectivity), 0 being defect-free.

    Returns:
        Per image an int32 (H_i, W_i) array of global region ids, or None when the image has no
        region (it is then all defect-free, and storing zeros would waste memory); and a float64
        array (R + 1,) holding 1 / area of each region, with 0 at index 0.
    """
    labels_per_image: list[np.ndarray | None] = []
    inv_areas = [np.zeros(1)]
    offset = 0
    for mask, _ in pairs:
        count, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
        if count == 1:
            labels_per_image.append(None)
            continue
        inv_areas.append(1.0 / np.bincount(labels.ravel(), minlength=count)[1:])
        labels[labels > 0] += offset
        offset += count - 1
        labels_per_image.append(labels)
    return labels_per_image, np.concatenate(inv_areas)


def _grid_thresholds(negatives: np.ndarray, fpr_limit: float, num_thresholds: int) -> np.ndarray:
    """Ascending distinct thresholds whose FPRs are spread evenly over [0, ``fpr_limit``].

    Ties among the defect-free scores can merge thresholds; the lowest one always lets through
    at least ``fpr_limit`` of the defect-free pixels. ``negatives`` is reordered in place.
    """
    n = negatives.size
    fp_targets = sorted({_fp_count_at(f, n) for f in np.linspace(0.0, fpr_limit, num_thresholds)})
    thresholds = []
    if fp_targets[0] == 0:
        # No defect-free pixel may get through: the threshold must lie just above all of them.
        thresholds.append(np.nextafter(negatives.max(), np.inf))
    # The k-th largest defect-free score as threshold lets at least k of them through.
    kth = [n - k for k in fp_targets if k > 0]
    negatives.partition(kth)
    thresholds.extend(negatives[i] for i in kth)
    return np.unique(np.asarray(thresholds, dtype=negatives.dtype))


def _pixels_at_or_above(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    region_labels: list[np.ndarray | None],
    threshold: float,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (K,) and global region ids (K,) int32 (0 = defect-free) of pixels >= ``threshold``.

    The output is allocated once at its final size, to avoid holding pieces and their
    concatenation at the same time.
    """
    counts = [int(np.count_nonzero(amap >= threshold)) for _, amap in pairs]
    scores = np.empty(sum(counts), dtype=dtype)
    region_ids = np.zeros(sum(counts), dtype=np.int32)
    start = 0
    for (_, amap), labels, count in zip(pairs, region_labels, counts):
        keep = amap >= threshold
        scores[start : start + count] = amap[keep]
        if labels is not None:
            region_ids[start : start + count] = labels[keep]
        start += count
    return scores, region_ids


def _accumulate_sorted(
    scores: np.ndarray, region_ids: np.ndarray, inv_areas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """False-positive counts (T,) and summed region overlaps (T,) at each distinct score, from
    the highest score down; the inputs (K,) are consumed."""
    # Stability is not needed (tie runs are merged below) and the default sort is much faster.
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    region_ids = region_ids[order]
    del order
    fp_counts = np.cumsum(region_ids == 0, dtype=np.int64)
    pro_sums = np.cumsum(inv_areas[region_ids])
    del region_ids
    # A threshold admits all pixels of equal score at once: keep the last point of each tie run.
    last_of_run = np.append(scores[1:] != scores[:-1], True)
    return fp_counts[last_of_run], pro_sums[last_of_run]


def _accumulate_binned(
    scores: np.ndarray, region_ids: np.ndarray, inv_areas: np.ndarray, ascending: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """False-positive counts (T,) and summed region overlaps (T,) at the T ``ascending``
    thresholds, listed from the highest threshold down."""
    # Each pixel goes to the highest threshold it reaches; it counts for that one and all lower.
    bins = np.searchsorted(ascending, scores, side="right") - 1
    size = ascending.size
    fp_counts = np.bincount(bins[region_ids == 0], minlength=size)[::-1].cumsum()
    pro_sums = np.bincount(bins, weights=inv_areas[region_ids], minlength=size)[::-1].cumsum()
    return fp_counts, pro_sums


def _fp_count_at(fpr: float, num_negatives: int) -> int:
    """Smallest false-positive count k with k / num_negatives >= ``fpr`` as computed in floats."""
    k = min(num_negatives, max(0, math.ceil(fpr * num_negatives)))
    # The product can round down past an integer; the curve must reach the limit, so step up.
    while k < num_negatives and k / num_negatives < fpr:
        k += 1
    return k


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest entry (k >= 1) of a 1-D array, by linear-time selection.

    ``values`` is partitioned in place (reordered) to save a copy of a possibly huge array.
    """
    k = max(k, 1)
    values.partition(values.size - k)
    return values[values.size - k]


def _area_up_to(fprs: np.ndarray, pros: np.ndarray, limit: float) -> float:
    """Trapezoidal area under the piecewise-linear curve from FPR 0 to ``limit``.

    ``fprs`` is non-decreasing, starts at 0 and reaches ``limit``; vertical steps (equal FPRs)
    add no area. The curve is cut at ``limit`` by linear interpolation.
    """
    end = int(np.searchsorted(fprs, limit, side="left"))  # first point at or past the limit
    x = fprs[: end + 1].astype(np.float64)
    y = pros[: end + 1].astype(np.float64)
    if x[end] > limit:
        x0, x1, y0, y1 = x[end - 1], x[end], y[end - 1], y[end]
        y[end] = y0 + (limit - x0) * (y1 - y0) / (x1 - x0)
        x[end] = limit
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _pairs(masks: ImageStack, maps: ImageStack,
           inspected: ImageStack | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validate and pair up masks and maps as (bool (H_i, W_i), float (H_i, W_i)) per image.

    Pixels outside ``inspected`` get the score -inf: below every threshold, so a defect pixel
    there is never found, and :func:`_defect_free` leaves a defect-free one out (input scores are
    finite, so -inf marks these alone)."""
    if len(masks) != len(maps):
        raise DataError(f"got {len(masks)} masks but {len(maps)} anomaly maps")
    if inspected is not None and len(inspected) != len(maps):
        raise DataError(f"got {len(inspected)} inspected-pixel masks for {len(maps)} anomaly maps")
    if len(masks) == 0:
        raise DataError("got no masks and no anomaly maps to evaluate")
    pairs = []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        mask = np.asarray(mask)
        amap = np.asarray(amap)
        if mask.ndim != 2 or mask.shape != amap.shape:
            raise DataError(
                f"image {i}: mask {mask.shape} and anomaly map {amap.shape} must be the same "
                f"2-D shape"
            )
        if mask.size == 0:
            raise DataError(f"image {i}: mask and anomaly map are empty")
        if not (np.issubdtype(amap.dtype, np.integer) or np.issubdtype(amap.dtype, np.floating)):
            raise DataError(f"image {i}: anomaly map has non-real dtype {amap.dtype}")
        if not np.isfinite(amap).all():
            raise DataError(f"image {i}: anomaly map has a NaN or infinite score")
        if inspected is not None and inspected[i] is not None:
            seen = np.asarray(inspected[i])
            if seen.shape != amap.shape:
                raise DataError(f"image {i}: inspected-pixel mask {seen.shape} and anomaly map {amap.shape} differ in shape")
            amap = np.where(seen != 0, amap, -np.inf).astype(np.result_type(amap.dtype, np.float32))
        pairs.append((np.ascontiguousarray(mask != 0), amap))
    return pairs


def _defect_free(mask: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """The defect-free pixels that count: those outside the mask, where the product inspects."""
    return ~mask & (amap != -np.inf)


def _gather(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    select: Callable[[np.ndarray, np.ndarray], np.ndarray],
    dtype: np.dtype,
) -> np.ndarray:
    """The scores (K,) that ``select(mask, map)`` picks from every image, in one allocation."""
    counts = [int(np.count_nonzero(select(mask, amap))) for mask, amap in pairs]
    out = np.empty(sum(counts), dtype=dtype)
    start = 0
    for (mask, amap), count in zip(pairs, counts):
        out[start : start + count] = amap[select(mask, amap)]
        start += count
    return out


def _score_dtype(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.dtype:
    """float64 if any map needs it, else float32, which halves memory on big evaluations."""
    return np.result_type(np.float32, *(amap.dtype for _, amap in pairs))


def _require_both_classes(num_positive: int, num_negative: int, what: str) -> None:
    if num_positive == 0 or num_negative == 0:
        present = "defective" if num_positive else "defect-free"
        raise DataError(
            f"AUROC needs both defective and defect-free {what}, but all "
            f"{num_positive + num_negative} are {present}"
        )
