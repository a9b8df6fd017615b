"""inspector eval keeps the pixel metrics within memory on sets of large frames: maps and masks
are scaled alike to a pixel budget, and a thin crack stays a region when they are."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.ad_metrics import aupro
from inspector.evaluate import within_pixels


def test_maps_that_fit_are_kept_as_they_are() -> None:
    amap, mask = np.random.default_rng(0).random((300, 200), np.float32), np.zeros((300, 200), bool)
    small_map, small_mask, _ = within_pixels(amap, mask, 300 * 200)
    assert small_map is amap and small_mask is mask


def test_a_large_frame_is_scaled_to_the_budget_and_its_thin_crack_stays_found() -> None:
    h, w = 1024, 1280
    mask = np.zeros((h, w), np.uint8)
    cv2.line(mask, (200, 300), (900, 700), 1, 3)  # a 3-px crack
    amap = np.zeros((h, w), np.float32)
    amap[mask > 0] = 1.0  # a detector that sees exactly the crack
    small_map, small_mask, _ = within_pixels(amap, mask > 0, 200_000)
    assert small_map.shape == small_mask.shape and small_map.size <= 200_000
    count, _ = cv2.connectedComponents(small_mask.astype(np.uint8), connectivity=8)
    assert count - 1 == 1  # still one region, not broken into pieces or lost
    assert aupro([small_mask], [small_map]) > 0.9  # and the perfect detector still scores as one
