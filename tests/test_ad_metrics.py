"""Tests of inspector.ad_metrics on hand-worked cases and against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from inspector.errors import DataError, InspectorError
from inspector.ad_metrics import aupro, image_auroc, pixel_auroc


def brute_force_aupro(masks, maps, fpr_limit):
    """AU-PRO straight from the definition: every distinct score as a threshold (>= t is
    predicted defective), regions by scipy's 8-connected labelling, the curve cut at the limit
    by linear interpolation. Slow, for small inputs only."""
    region_scores = []  # the scores inside each region of each image
    for mask, amap in zip(masks, maps):
        labelled, count = ndimage.label(mask != 0, structure=np.ones((3, 3)))
        region_scores.extend(amap[labelled == k] for k in range(1, count + 1))
    negatives = np.concatenate([a[m == 0] for m, a in zip(masks, maps)])
    points = [(0.0, 0.0)]
    for t in sorted({float(v) for a in maps for v in np.ravel(a)}, reverse=True):
        fpr = np.mean(negatives >= t)
        pro = np.mean([np.mean(scores >= t) for scores in region_scores])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (fpr_limit - x0) * (y1 - y0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def random_case(seed, sizes, levels=None):
    """Masks with a few rectangles (some images left good) and maps that favour defects; with
    ``levels`` the scores are rounded to that many values so that ties are frequent."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), dtype=bool)
        if i % 3:
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
                mask[y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = True
        amap = rng.random((h, w)) + 0.6 * mask * rng.random()
        if levels is not None:
            amap = np.round(amap * levels) / levels
        masks.append(mask)
        maps.append(amap)
    return masks, maps


# ---------------------------------------------------------------------------- image AUROC


def test_image_auroc_counts_correctly_ordered_pairs():
    # Good scores 0.1, 0.4; defective 0.35, 0.8. Of the 4 (defective, good) pairs only
    # (0.35, 0.4) is ordered wrongly -> 3 / 4.
    assert image_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def test_image_auroc_counts_ties_as_half():
    # Good 0.1, 0.5; defective 0.5, 0.8: pairs 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4.
    labels = np.array([False, False, True, True])
    assert image_auroc(labels, np.array([0.1, 0.5, 0.5, 0.8])) == 0.875


def test_image_auroc_with_one_class_is_a_clear_data_error():
    with pytest.raises(DataError, match="both defective and defect-free images"):
        image_auroc(np.array([1, 1, 1]), np.array([0.2, 0.3, 0.4]))
    with pytest.raises(InspectorError, match="all 2 are defect-free"):
        image_auroc(np.array([0, 0]), np.array([0.2, 0.3]))


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([0, 1, 1], [0.1, 0.2], "same length"),
        ([0, 2], [0.1, 0.2], "0 \\(good\\) or 1"),
        ([0, 1], [0.1, float("nan")], "NaN or infinite"),
    ],
)
def test_image_auroc_rejects_bad_input(labels, scores, message):
    with pytest.raises(DataError, match=message):
        image_auroc(np.array(labels), np.array(scores))


# ---------------------------------------------------------------------------- pixel AUROC


def test_pixel_auroc_on_a_hand_worked_4x4_map():
    # 2 defect pixels (0.9 and 0.3) and 14 defect-free ones: 13 at 0.0 and one at 0.5.
    # 0.9 beats all 14; 0.3 beats the 13 zeros but not 0.5 -> (14 + 13) / (2 * 14) = 27 / 28.
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1, 1] = mask[2, 3] = 1
    amap = np.zeros((4, 4), dtype=np.float32)
    amap[1, 1], amap[2, 3], amap[0, 0] = 0.9, 0.3, 0.5
    assert pixel_auroc(mask[None], amap[None]) == pytest.approx(27 / 28, abs=1e-12)


def test_pixel_auroc_with_empty_mask_counts_its_pixels_as_defect_free():
    # Image 1: one defect pixel at 1.0, three defect-free at 0. Image 2 (defective type, but
    # its mask is empty): defect-free 0, 0, 0, 2. The defect pixel beats 6 of the 7.
    masks = np.zeros((2, 2, 2), dtype=bool)
    masks[0, 0, 0] = True
    maps = np.zeros((2, 2, 2))
    maps[0, 0, 0] = 1.0
    maps[1, 1, 1] = 2.0
    assert pixel_auroc(masks, maps) == pytest.approx(6 / 7, abs=1e-12)


def test_pixel_auroc_takes_images_of_different_sizes_and_255_masks():
    masks, maps = random_case(3, [(4, 4), (3, 5), (6, 2), (5, 7)], levels=5)
    expected = roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps])
    )
    as_png = [m.astype(np.uint8) * 255 for m in masks]
    assert pixel_auroc(as_png, maps) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_pixel_auroc_equals_sklearn_with_many_ties(dtype):
    rng = np.random.default_rng(7)
    masks = rng.random((6, 20, 30)) < 0.1
    maps = (rng.integers(0, 12, masks.shape) + 3 * masks * rng.random(masks.shape)).astype(dtype)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_without_defect_pixels_is_a_clear_data_error():
    with pytest.raises(DataError, match="both defective and defect-free pixels"):
        pixel_auroc(np.zeros((2, 3, 3)), np.ones((2, 3, 3)))


def test_metrics_reject_mismatched_or_non_finite_maps():
    with pytest.raises(DataError, match="2 masks but 1 anomaly maps"):
        pixel_auroc(np.zeros((2, 3, 3)), np.zeros((1, 3, 3)))
    with pytest.raises(DataError, match="image 1: mask \\(3, 3\\) and anomaly map \\(3, 4\\)"):
        aupro([np.ones((2, 2)), np.ones((3, 3))], [np.ones((2, 2)), np.ones((3, 4))])
    bad = np.zeros((1, 3, 3))
    bad[0, 1, 1] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        aupro(np.eye(3)[None], bad)


# ---------------------------------------------------------------------------- AU-PRO


def test_aupro_of_a_perfect_map_is_one():
    masks, _ = random_case(1, [(8, 8)] * 5)
    maps = [m.astype(np.float32) for m in masks]
    assert aupro(masks, maps) == 1.0
    assert aupro(masks, maps, num_thresholds=50) == 1.0


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_of_a_constant_map_is_half_the_limit(fpr_limit):
    # One threshold: everything or nothing is predicted defective, so the curve is the
    # diagonal (0, 0)-(1, 1). Its area up to L is L^2 / 2, normalised L / 2 (0.15 at L = 0.3).
    masks, _ = random_case(2, [(8, 8)] * 4)
    maps = [np.full(m.shape, 0.7) for m in masks]
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(fpr_limit / 2, abs=1e-12)


def two_regions_one_found():
    """10 x 10 image, region A (4 px) scored 1.0, region B (4 px) scored 0.6 on two pixels and
    0.0 on two; the 92 defect-free pixels: 46 at 0.8 and 46 at 0.4."""
    mask = np.zeros((10, 10), dtype=bool)
    mask[0:2, 0:2] = True  # A
    mask[6:8, 6:8] = True  # B
    amap = np.full((10, 10), 0.4)
    amap.ravel()[np.flatnonzero(~mask.ravel())[:46]] = 0.8
    amap[0:2, 0:2] = 1.0
    amap[6, 6:8] = 0.6
    amap[7, 6:8] = 0.0
    return mask, amap


def test_aupro_with_one_of_two_regions_found():
    # Thresholds from the top:  1.0 -> FPR 0, PRO (1 + 0) / 2 = 0.5
    #                           0.8 -> FPR 46/92 = 0.5, PRO 0.5
    #                           0.6 -> FPR 0.5, PRO (1 + 0.5) / 2 = 0.75
    #                           0.4 -> FPR 1, PRO 0.75;  0.0 -> FPR 1, PRO 1
    # Limit 0.3: flat PRO 0.5 over [0, 0.3] -> 0.15 / 0.3 = 0.5.
    # Limit 0.75: 0.5 * 0.5 over [0, 0.5] + 0.75 * 0.25 over [0.5, 0.75] = 0.4375 -> / 0.75.
    mask, amap = two_regions_one_found()
    assert aupro([mask], [amap]) == pytest.approx(0.5, abs=1e-12)
    assert aupro([mask], [amap], fpr_limit=0.75) == pytest.approx(0.4375 / 0.75, abs=1e-12)

    # A grid of 4 thresholds at defect-free quantiles aims at FPR 0, 0.25, 0.5, 0.75, which
    # ties turn into thresholds just above 0.8, at 0.8 (twice) and at 0.4: points (0, 0.5),
    # (0.5, 0.5), (1, 0.75). It misses the step at 0.6, so the line from (0.5, 0.5) to
    # (1, 0.75) gives PRO 0.625 at 0.75 and an area of 0.25 + 0.25 * (0.5 + 0.625) / 2 = 0.390625.
    grid = aupro([mask], [amap], fpr_limit=0.75, num_thresholds=4)
    assert grid == pytest.approx(0.390625 / 0.75, abs=1e-12)


def test_aupro_interpolates_the_curve_at_the_limit():
    # One 4-px region scored 0.7, 0.7, 0.5, 0.5; 12 defect-free pixels: 2 at 0.9, 10 at 0.5.
    # Curve: (0, 0) -> 0.9: (1/6, 0) -> 0.7: (1/6, 0.5) -> 0.5: (1, 1). At FPR 0.3 the last
    # segment (slope 0.5 / (5/6) = 0.6) gives PRO 0.5 + 0.6 * (0.3 - 1/6) = 0.58, so the area
    # is (0.3 - 1/6) * (0.5 + 0.58) / 2 = 0.072, normalised 0.24.
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, :] = True
    amap = np.full((4, 4), 0.5)
    amap[0, :2] = 0.7
    amap[3, :2] = 0.9
    assert aupro([mask], [amap]) == pytest.approx(0.24, abs=1e-12)


def test_aupro_with_an_empty_mask_on_a_defective_image():
    # Image 1: a 1-px region scored 1, three defect-free at 0. Image 2 has an empty mask, so
    # only defect-free pixels: 0, 0, 0, 2. The 2 gives FPR 1/7 before the region is found at
    # threshold 1: curve (0, 0) -> (1/7, 0) -> (1/7, 1) -> (1, 1).
    # Area to 0.3: (0.3 - 1/7) * 1 -> normalised 1 - (1/7) / 0.3 = 11/21.
    masks = np.zeros((2, 2, 2), dtype=bool)
    masks[0, 0, 0] = True
    maps = np.zeros((2, 2, 2))
    maps[0, 0, 0] = 1.0
    maps[1, 1, 1] = 2.0
    assert aupro(masks, maps) == pytest.approx(11 / 21, abs=1e-12)


def test_aupro_regions_are_8_connected():
    # A diagonal pair is one region under 8-connectivity (two under 4-connectivity); with the
    # separate single pixel that is the only one found, PRO is 1/2 (it would be 1/3).
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[4, 4] = True
    amap = np.zeros((5, 5))
    amap[4, 4] = 1.0
    # Curve: (0, 0) -> (0, 0.5) -> (1, 1); at FPR 0.3, PRO 0.65: area 0.3 * 1.15 / 2.
    assert aupro([mask], [amap]) == pytest.approx(1.15 / 2, abs=1e-12)


def test_aupro_without_regions_is_nan_and_without_defect_free_pixels_is_an_error():
    assert math.isnan(aupro(np.zeros((3, 4, 4)), np.ones((3, 4, 4))))
    with pytest.raises(DataError, match="every pixel lies inside a mask"):
        aupro(np.ones((2, 3, 3)), np.ones((2, 3, 3)))


@pytest.mark.parametrize("fpr_limit, num_thresholds", [(0.0, None), (1.5, None), (0.3, 1)])
def test_aupro_rejects_bad_parameters(fpr_limit, num_thresholds):
    with pytest.raises(ValueError):
        aupro(np.eye(3)[None], np.eye(3)[None], fpr_limit=fpr_limit, num_thresholds=num_thresholds)


@pytest.mark.parametrize("levels", [None, 6])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.02, 1.0])
def test_aupro_equals_the_brute_force_definition(levels, fpr_limit):
    sizes = [(9, 9), (7, 11), (12, 6), (9, 9), (5, 8), (10, 10)]
    masks, maps = random_case(11, sizes, levels)
    expected = brute_force_aupro(masks, maps, fpr_limit)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-9)
    # Same result whatever the score dtype and mask encoding.
    as_png = [m.astype(np.uint8) * 255 for m in masks]
    assert aupro(as_png, [a.astype(np.float32) for a in maps], fpr_limit=fpr_limit) == (
        pytest.approx(expected, abs=1e-6)
    )


def test_aupro_threshold_grid_stays_within_half_a_point_of_exact():
    rng = np.random.default_rng(5)
    masks = np.zeros((20, 64, 64), dtype=bool)
    for i in range(0, 20, 2):
        y, x = rng.integers(0, 50, 2)
        masks[i, y : y + rng.integers(2, 14), x : x + rng.integers(2, 14)] = True
    maps = rng.normal(size=masks.shape).astype(np.float32) + 1.5 * masks
    exact = aupro(masks, maps)
    assert 0.2 < exact < 0.95  # a case where the curve is neither trivial nor perfect
    assert aupro(masks, maps, num_thresholds=101) == pytest.approx(exact, abs=0.005)
    assert aupro(masks, maps, num_thresholds=1001) == pytest.approx(exact, abs=0.0005)


def test_escapes_with_k_good_above_counts_defects_at_or_below_each_high_good_score():
    from inspector.evaluate import escapes_with_k_good_above

    good = [0.1, 0.9, 0.5, 0.7, 0.3, 0.2]
    defects = [0.95, 0.7, 0.6, 0.4]  # 0.7 ties the second-highest good score and counts as passed
    assert escapes_with_k_good_above(good, defects, ranks=4) == [0.75, 0.75, 0.25, 0.0]


def _framed_case(seed: int = 0):
    """Frames whose maps are measured only in a region (as a framed model's): inside it, scores
    that go negative (quantile-normalised maps do), outside it 0 by construction; defects inside."""
    rng = np.random.default_rng(seed)
    masks, maps, inspected, crops = [], [], [], []
    for i in range(4):
        region = np.zeros((60, 80), bool)
        region[10:50, 20:70] = True
        inside = rng.normal(-0.5, 0.3, (40, 50)).astype(np.float32)
        mask = np.zeros((60, 80), bool)
        if i % 2:
            mask[20 + i : 26 + i, 30:36] = True
            inside[10 + i : 16 + i, 10:16] += rng.uniform(0.2, 1.0, (6, 6)).astype(np.float32)
        frame_map = np.zeros((60, 80), np.float32)
        frame_map[region] = inside.ravel()
        masks.append(mask), maps.append(frame_map), inspected.append(region)
        crops.append((mask[10:50, 20:70], inside))
    return masks, maps, inspected, crops


def test_metrics_over_the_inspected_pixels_equal_the_cropped_region():
    """A framed map is 0 outside its region; counted there, those zeros outrank every inside score
    below 0 and cut the curve short. Counting only the inspected pixels gives what the region
    cropped gives."""
    masks, maps, inspected, crops = _framed_case()
    crop_masks, crop_maps = zip(*crops)
    assert aupro(masks, maps, inspected=inspected) == pytest.approx(aupro(crop_masks, crop_maps))
    assert pixel_auroc(masks, maps, inspected=inspected) == pytest.approx(pixel_auroc(crop_masks, crop_maps))
    assert aupro(masks, maps) < aupro(crop_masks, crop_maps) - 0.05  # the zeros outside, counted
    everything = [np.ones_like(m) for m in masks]
    assert aupro(masks, maps, inspected=everything) == aupro(masks, maps)
    assert aupro(masks, maps, inspected=[None] * len(masks)) == aupro(masks, maps)  # None: inspected whole


def test_a_defect_outside_the_inspected_pixels_is_never_found():
    masks, maps, inspected, _ = _framed_case()
    for mask, frame_map in zip(masks, maps):
        if mask.any():
            mask[0:6, 0:6] = True  # a second region, outside the inspected one
            frame_map[0:6, 0:6] = 5.0  # the map's value there is not a measurement
    half = aupro(masks, maps, fpr_limit=1.0, inspected=inspected)
    assert half <= 0.5 + 1e-9  # the outside regions are half of all regions, never found
    assert aupro(masks, maps, fpr_limit=1.0) > half
    with pytest.raises(DataError, match="inspected"):
        aupro(masks, maps, inspected=inspected[:2])
