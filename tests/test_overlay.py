"""Overlay pictures for people: the desktop's look (low values transparent, the threshold
mid-scale), with a colour bar and the verdict banner so that a PNG on its own can be read."""

from datetime import datetime, timezone

import numpy as np
import pytest

from inspector.inspection import DecisionRule, InspectionResult
from inspector.overlay import (
    CONTOUR_RGB,
    DEFAULT_VMAX,
    OVERLAY_FADE,
    VERDICT_RGB,
    HeatmapLevels,
    annotated_overlay,
    colorize,
    colour_bar,
    heatmap_view,
    overlay,
)


def test_low_map_values_leave_the_part_visible_and_high_ones_colour_it():
    image = np.full((100, 120), 90, np.uint8)
    vmax = heatmap_view(DecisionRule(0.3)).vmax
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
    levels = heatmap_view(DecisionRule(0.25) if verdict else None)
    out = annotated_overlay(image, anomaly_map, score=0.1, levels=levels, verdict=verdict)
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


def test_the_view_of_a_frame_comes_from_the_rule_it_was_decided_with():
    """Colour scale twice the image threshold; contour at the pixel threshold, else at the image
    threshold; a result, a rule and nothing at all each give theirs."""
    pixel = heatmap_view(DecisionRule(0.4, pixel_threshold=0.3, min_defect_area_px=5))
    assert (pixel.vmax, pixel.contour_level, pixel.threshold, pixel.note) == (0.8, 0.3, 0.4, "")
    score_only = heatmap_view(DecisionRule(0.4))
    assert (score_only.vmax, score_only.contour_level) == (0.8, 0.4)
    result = InspectionResult(datetime.now(timezone.utc), "cam", 1, 0.5, "FAIL", 0.4,
                              rule=DecisionRule(0.4, pixel_threshold=0.3, min_defect_area_px=5))
    assert heatmap_view(result) == pixel
    unknown = heatmap_view(InspectionResult(datetime.now(timezone.utc), "cam", 1, 0.5, "FAIL", 0.4))
    assert (unknown.vmax, unknown.contour_level, unknown.threshold) == (0.8, None, 0.4) and "not known" in unknown.note
    assert heatmap_view(None) == HeatmapLevels(DEFAULT_VMAX, None, None, heatmap_view(None).note)
    assert heatmap_view(DecisionRule(-1.0)).vmax == DEFAULT_VMAX  # no scale from a threshold <= 0


def test_the_annotated_overlay_outlines_the_defect_at_the_contour_level_only():
    image = np.full((120, 160), 60, np.uint8)
    anomaly_map = np.zeros((60, 80), np.float32)  # half size: stretched, outlines too
    anomaly_map[20:40, 30:50] = 0.35  # above a pixel threshold of 0.3, below the image threshold
    outlined = annotated_overlay(image, anomaly_map, 0.35, heatmap_view(DecisionRule(0.4, 0.3, 5)), "FAIL")
    plain = annotated_overlay(image, anomaly_map, 0.35, heatmap_view(DecisionRule(0.4)), "PASS")
    banner = outlined.shape[0] - 120
    cyan = (outlined[banner:, :160] == CONTOUR_RGB).all(axis=2)
    ys, xs = np.nonzero(cyan)
    assert cyan.any() and 35 <= xs.min() and xs.max() <= 104 and 35 <= ys.min() and ys.max() <= 84
    assert not (plain[plain.shape[0] - 120:, :160] == CONTOUR_RGB).all(axis=2).any()
