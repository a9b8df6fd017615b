"""Overlay pictures for people: the desktop's look (low values transparent, the threshold
mid-scale), with a colour bar and the verdict banner so that a PNG on its own can be read."""

import numpy as np
import pytest

from inspector.overlay import (
    OVERLAY_FADE,
    VERDICT_RGB,
    annotated_overlay,
    colorize,
    colour_bar,
    heatmap_vmax,
    overlay,
)


def test_low_map_values_leave_the_part_visible_and_high_ones_colour_it():
    image = np.full((100, 120), 90, np.uint8)
    vmax = heatmap_vmax(0.3)
    anomaly_map = np.zeros((100, 120), np.float32)
    anomaly_map[:, 60:] = 0.3  # at the threshold: fully faded in
    anomaly_map[:, :30] = 0.9 * OVERLAY_FADE[0] * vmax  # below the fade: transparent
    out = overlay(image, anomaly_map, vmax)
    assert out.shape == (100, 120, 3) and out.dtype == np.uint8
    assert (out[:, :30] == 90).all()
    expected = (0.5 * 90 + 0.5 * colorize(np.float32([[0.3]]), vmax)[0, 0].astype(float)).round()
    assert np.abs(out[50, 100].astype(float) - expected).max() <= 1


def test_a_map_of_another_size_is_stretched_over_the_image():
    out = overlay(np.zeros((60, 80, 3), np.uint16), np.ones((15, 20), np.float32), vmax=0.5)
    assert out.shape == (60, 80, 3) and out.any()


@pytest.mark.parametrize("verdict", ["PASS", "FAIL", None])
def test_the_annotated_overlay_adds_a_banner_in_the_verdict_colour_and_a_colour_bar(verdict):
    image = np.full((240, 320, 3), 128, np.uint8)
    anomaly_map = np.zeros((240, 320), np.float32)
    threshold = 0.25 if verdict else None
    out = annotated_overlay(image, anomaly_map, score=0.1, vmax=0.5, threshold=threshold, verdict=verdict)
    banner = out.shape[0] - 240
    assert banner > 10 and out.shape[1] > 320
    assert tuple(out[1, 1]) == VERDICT_RGB[verdict] and tuple(out[1, -2]) == VERDICT_RGB[verdict]
    assert (out[banner:, :320] == 128).all()  # the picture itself carries no legend


def test_the_colour_bar_runs_from_vmax_down_to_zero_with_the_threshold_marked():
    bar = colour_bar(200, vmax=0.5, threshold=0.25)
    column = bar[:, 8]  # inside the colour strip, left of the labels
    assert np.abs(column[0].astype(int) - colorize(np.float32([[0.5]]), 0.5)[0, 0]).max() <= 3
    assert np.abs(column[-1].astype(int) - colorize(np.float32([[0.0]]), 0.5)[0, 0]).max() <= 3
    mid = (bar[95:105, 8] == 255).all(axis=1)
    assert mid.any()  # the white threshold line crosses the strip mid-scale
