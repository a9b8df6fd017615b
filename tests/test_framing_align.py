"""Finding the part in a frame (issue 30, part 2): a part turned by 10° and moved is found to a
pixel, a frame without it gets a low match quality, a bad region is refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.framing import Aligner
from framing_support import H, REGION, W, belt, frame_with_part, make_scene, textured_part


@pytest.fixture(scope="module")
def scene():
    return make_scene()


def corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    x, y, w, h = REGION
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64)
    return float(np.abs(corners @ found.T - corners @ truth.T).max())


@pytest.mark.parametrize("angle, dx, dy", [(10.0, 180.0, -120.0), (-10.0, -250.0, 200.0), (0.0, 0.0, 0.0), (4.5, 60.0, 35.0)])
def test_a_moved_and_turned_part_is_found_to_a_pixel(scene, angle: float, dx: float, dy: float) -> None:
    rng, reference, part = scene
    frame, truth = frame_with_part(rng, reference, angle, dx, dy)
    found = Aligner(reference, REGION).align(frame)
    assert corner_error(found.matrix, truth) < 1.5
    assert found.angle_deg == pytest.approx(angle, abs=0.2)
    assert found.shift == pytest.approx((dx, dy), abs=1.5)
    assert found.quality > 0.9
    # Cut out, the part stands as in the reference: the region's pixels match the taught part.
    cut = found.cut(frame, REGION)
    x, y, w, h = REGION
    inner = (slice(h // 10, -h // 10), slice(w // 10, -w // 10))
    assert cut.shape == part.shape
    assert np.corrcoef(cut[inner].ravel(), part[inner].ravel())[0, 1] > 0.95


def test_a_map_over_the_region_goes_back_into_the_frame_where_the_part_is(scene) -> None:
    rng, reference, _ = scene
    frame, truth = frame_with_part(rng, reference, 10.0, 100.0, 50.0)
    found = Aligner(reference, REGION).align(frame)
    x, y, w, h = REGION
    region_map = np.zeros((h, w), np.float32)
    region_map[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5] = 1.0  # a spot at the part's centre
    (x0, y0, x1, y1), box_map = found.to_box(region_map, REGION, frame.shape)
    frame_map = np.zeros(frame.shape, np.float32)
    frame_map[y0:y1, x0:x1] = box_map
    assert box_map.shape == (y1 - y0, x1 - x0) and box_map.dtype == np.float32
    cy, cx = np.argwhere(frame_map > 0.5).mean(axis=0)
    expected = truth @ np.array([x + w / 2, y + h / 2, 1.0])
    assert math.hypot(cx - expected[0], cy - expected[1]) < 2.0
    assert frame_map[:100, :100].max() == 0.0  # nothing outside the part


def test_a_frame_without_the_part_gets_a_low_match_quality(scene) -> None:
    rng, reference, _ = scene
    aligner = Aligner(reference, REGION)
    assert aligner.align(belt(rng)).quality < 0.5
    other = belt(rng)  # another product: a different part where this one should be
    x, y, w, h = REGION
    other[y : y + h, x : x + w] = textured_part(np.random.default_rng(99), w, h)
    assert aligner.align(other).quality < 0.5


def test_colour_and_16_bit_frames_are_aligned_alike(scene) -> None:
    rng, reference, _ = scene
    frame, truth = frame_with_part(rng, reference, -6.0, 40.0, -30.0)
    rgb = np.repeat(frame[:, :, None], 3, axis=2)
    deep = frame.astype(np.uint16) * 257
    aligner = Aligner(reference, REGION)
    assert corner_error(aligner.align(rgb).matrix, truth) < 1.5
    assert corner_error(aligner.align(deep).matrix, truth) < 1.5


@pytest.mark.parametrize("region, fragment", [
    ((1200, 900, 400, 340), "does not lie inside the reference image"),
    ((-5, 0, 100, 100), "does not lie inside the reference image"),
    ((10, 10, 8, 100), "under 16 pixels across"),
])
def test_a_region_outside_the_reference_is_refused(scene, region, fragment: str) -> None:
    _, reference, _ = scene
    with pytest.raises(InspectorError, match=fragment):
        Aligner(reference, region)


def test_a_featureless_region_and_a_frame_smaller_than_the_region_are_refused(scene) -> None:
    _, reference, _ = scene
    flat = np.full((H, W), 128, np.uint8)
    with pytest.raises(InspectorError, match="featureless"):
        Aligner(flat, REGION)
    with pytest.raises(InspectorError, match="smaller than the part's region"):
        Aligner(reference, REGION).align(np.zeros((100, 100), np.uint8))
