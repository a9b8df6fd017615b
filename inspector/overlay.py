"""Heatmap overlays for people: the image with its anomaly map in colour on top, and the one
view every display of a decided frame uses (:func:`heatmap_view`).

:func:`heatmap_view` works out, from the rule a frame was decided with (which the result and
the history row carry), what a picture of its map shows: the colour scale ``0 .. vmax`` (twice
the image threshold, so the threshold is mid-scale and colours mean the same from frame to
frame) and the map value outlined as a defect (the pixel threshold, else the image threshold).
The operator and teach pages, review and ``inspector predict`` all draw with it, so one frame
is drawn the same everywhere, also after the threshold has changed.

The overlay looks like the desktop's (``ui/widgets.py``): the turbo colour map over ``0 .. vmax``,
transparent for low map values and fading in up to mid-scale (the threshold), so normal regions
show the part itself. :func:`annotated_overlay` adds what a picture on its own needs to be read: a
colour bar with the threshold marked, and a banner with the verdict and the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.image_io import to_float_rgb
from inspector.inspection import DecisionRule, decision_label
from inspector.model_file import atomic_write

#: Map value shown at full colour when no calibrated threshold is known. Normalised maps put the
#: 0.995 quantile of good images at 0.1, so 0.5 is far into defect territory.
DEFAULT_VMAX = 0.5
#: Displays draw a map over 0 .. THRESHOLD_SCALE x its threshold, so the threshold is mid-scale.
THRESHOLD_SCALE = 2.0
#: As on the desktop: the share of the colour scale over which the overlay fades in from
#: transparent, and the overlay's opacity where it is fully in (the opacity slider's default).
OVERLAY_FADE = (0.15, 0.5)
OVERLAY_OPACITY = 0.5
#: The desktop's verdict colours (RGB): PASS, FAIL, RECHECK (amber), NO PART (grey-blue: neither
#: a pass nor a defect), and no verdict (an uncalibrated model).
VERDICT_RGB = {"PASS": (0x2E, 0x7D, 0x32), "FAIL": (0xC6, 0x28, 0x28), "RECHECK": (0xFF, 0x8F, 0x00),
               "NO_PART": (0x78, 0x90, 0x9C), None: (0x61, 0x61, 0x61)}
#: The inspected region's outline (RGB), where the part was found.
OUTLINE_RGB = (0x00, 0xE5, 0xFF)
#: Defect outlines (RGB), the desktop's contour pen too: a cyan no colour map uses near its top.
CONTOUR_RGB = (0x00, 0xE5, 0xFF)
PANEL_RGB = (0x20, 0x20, 0x20)
TEXT_RGB = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Why a frame is drawn without defect outline, for people.
NO_PIXEL_RULE_NOTE = "the pixel rule it was decided with is not known: no defect contour"
NOT_CALIBRATED_NOTE = "not calibrated: colours over a fixed scale, no defect contour"


@dataclass(frozen=True)
class HeatmapLevels:
    """How a frame's anomaly map is drawn: colours over ``0 .. vmax``, the map outlined where it
    exceeds ``contour_level`` (None: no outline), ``threshold`` marked on the colour scale (None:
    not calibrated), and ``note``, why part of that is missing ("" when nothing is)."""

    vmax: float
    contour_level: float | None
    threshold: float | None
    note: str = ""


def heatmap_view(decided: Any) -> HeatmapLevels:
    """The levels to draw a decided frame's map with, from the rule it was decided with.

    ``decided`` is what carries the rule: an :class:`~inspector.inspection.InspectionResult`, a
    history :class:`~inspector.history.InspectionRow` (anything with ``rule`` and
    ``threshold``), a :class:`DecisionRule` itself, or None (an uncalibrated model).

    The colour scale is ``0 .. 2 x`` the image threshold (:data:`DEFAULT_VMAX` for a threshold
    <= 0, which gives no such scale). The contour is at the pixel threshold where the rule has
    one, else at the image threshold (the score is the map's maximum, so a FAIL by score has a
    region above it). Where only the threshold is known (a row stored before the history kept
    the rule), the scale is drawn and the contour is not, as the note says.
    """
    if decided is None:
        return HeatmapLevels(DEFAULT_VMAX, None, None, NOT_CALIBRATED_NOTE)
    rule = decided if isinstance(decided, DecisionRule) else decided.rule
    threshold = float(decided.threshold)
    vmax = THRESHOLD_SCALE * threshold if threshold > 0 else DEFAULT_VMAX
    if rule is None:
        return HeatmapLevels(vmax, None, threshold, NO_PIXEL_RULE_NOTE)
    contour = rule.pixel_threshold if rule.pixel_threshold is not None else rule.threshold
    return HeatmapLevels(vmax, contour, threshold)


def defect_contours(anomaly_map: np.ndarray, level: float) -> list[np.ndarray]:
    """Outer outlines of the map's regions above ``level``: OpenCV contours, (N, 1, 2) int32 x, y
    in the map's pixel grid. The desktop and the overlay PNG outline with these."""
    mask = (np.asarray(anomaly_map) > level).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


def colorize(anomaly_map: np.ndarray, vmax: float = DEFAULT_VMAX) -> np.ndarray:
    """(H, W) float map -> (H, W, 3) uint8 RGB with the turbo colour map, 0 .. vmax."""
    scaled = np.clip(np.asarray(anomaly_map, np.float32) / vmax, 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((scaled * 255).round().astype(np.uint8), cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def overlay_alpha(anomaly_map: np.ndarray, vmax: float = DEFAULT_VMAX, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """(H, W) float32 opacity of the colours: 0 below OVERLAY_FADE[0] of the scale, ``opacity``
    from OVERLAY_FADE[1] (the threshold, on a threshold scale) up."""
    lo, hi = OVERLAY_FADE
    return opacity * np.clip((np.asarray(anomaly_map, np.float32) / vmax - lo) / (hi - lo), 0, 1)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, vmax: float = DEFAULT_VMAX, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """The image (any supported dtype/shape) with its coloured map on top, low values
    transparent: (H, W, 3) uint8 RGB. A map of another size is stretched over the image."""
    rgb = to_float_rgb(image)
    h, w = rgb.shape[:2]
    m = np.asarray(anomaly_map, np.float32)
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = overlay_alpha(m, vmax, opacity)[..., None]
    out = rgb * (1 - alpha) + colorize(m, vmax).astype(np.float32) / 255 * alpha
    return (out * 255).round().clip(0, 255).astype(np.uint8)


def annotated_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    score: float,
    levels: HeatmapLevels,
    verdict: str | None = None,
    outline: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`overlay` over ``levels.vmax``, the defect outlined at ``levels.contour_level`` as on
    the desktop, with a banner above it (the verdict, the score, the threshold; grey and "not
    calibrated" without one) and a colour bar beside it (0 .. vmax, the threshold marked).
    ``outline``: the inspected region's corners in image pixels ((N, 2): four, or a polygon
    region's; where the part was found), drawn as a thin line.

    Returns (H + banner, W + bar, 3) uint8 RGB; the image itself is untouched by the legend.
    """
    body = overlay(image, anomaly_map, levels.vmax)
    h, w = body.shape[:2]
    unit = float(np.clip(max(h, w) / 640, 0.8, 3.0))  # text and bar grow with the picture, legibly
    if levels.contour_level is not None:
        contours = defect_contours(anomaly_map, levels.contour_level)
        mh, mw = np.asarray(anomaly_map).shape[:2]
        if (mh, mw) != (h, w):  # the map is stretched over the image: so are its outlines
            contours = [(c * np.float32([w / mw, h / mh])).round().astype(np.int32) for c in contours]
        cv2.drawContours(body, contours, -1, CONTOUR_RGB, max(1, round(2 * unit)), cv2.LINE_8)
    if outline is not None:
        cv2.polylines(body, [np.round(outline).astype(np.int32).reshape(-1, 1, 2)], True, OUTLINE_RGB, max(1, round(unit)), cv2.LINE_AA)
    threshold = levels.threshold
    bar = colour_bar(h, levels.vmax, threshold, unit)
    caption = f"score {score:.4g}" + (f"  threshold {threshold:.4g}" if threshold is not None else "  (not calibrated)")
    banner = _banner(w + bar.shape[1], verdict, caption, unit)
    return np.vstack([banner, np.hstack([body, bar])])


def colour_bar(height: int, vmax: float, threshold: float | None, unit: float = 1.0) -> np.ndarray:
    """(height, width, 3) uint8 RGB legend: the colour scale from vmax (top) to 0 (bottom) with
    its values, and the threshold as a white line across it."""
    scale, thick = 0.5 * unit, max(1, round(unit))
    strip_w, pad = max(8, round(18 * unit)), max(3, round(6 * unit))
    marked = threshold is not None and 0 < threshold < vmax
    middle = (threshold, f"{threshold:.3g} thr") if marked else (vmax / 2, f"{vmax / 2:.3g}")
    ticks = [(0.0, "0"), middle, (vmax, f"{vmax:.3g}")]
    label_w = max(cv2.getTextSize(text, FONT, scale, thick)[0][0] for _, text in ticks)
    panel = np.full((height, pad + strip_w + pad + label_w + pad, 3), PANEL_RGB, np.uint8)
    values = np.linspace(vmax, 0, height, dtype=np.float32)[:, None].repeat(strip_w, axis=1)
    panel[:, pad : pad + strip_w] = colorize(values, vmax)
    text_h = cv2.getTextSize("0", FONT, scale, thick)[0][1]
    for value, text in ticks:
        y = int(round((1 - value / vmax) * (height - 1)))
        if marked and value == threshold:
            cv2.line(panel, (pad - 2, y), (pad + strip_w + 1, y), TEXT_RGB, max(1, thick), cv2.LINE_8)
        baseline = int(np.clip(y + text_h // 2, text_h + 1, height - 2))
        cv2.putText(panel, text, (2 * pad + strip_w, baseline), FONT, scale, TEXT_RGB, thick, cv2.LINE_AA)
    return panel


def _banner(width: int, verdict: str | None, caption: str, unit: float) -> np.ndarray:
    """A strip in the verdict's colour with the verdict in large letters and the caption beside
    it; the text shrinks to fit a narrow picture."""
    title = decision_label(verdict) if verdict else "NO VERDICT"
    big, small = 0.9 * unit, 0.5 * unit
    thick = max(1, round(1.5 * unit))
    pad = max(4, round(8 * unit))
    needed = pad * 3 + cv2.getTextSize(title, FONT, big, thick + 1)[0][0] + cv2.getTextSize(caption, FONT, small, thick)[0][0]
    if needed > width:  # a narrow picture: smaller letters rather than cut-off ones
        shrink = max(0.3, (width - 3 * pad) / (needed - 3 * pad))
        big, small = big * shrink, small * shrink
    title_w, title_h = cv2.getTextSize(title, FONT, big, thick + 1)[0]
    height = title_h + 2 * pad
    strip = np.full((height, width, 3), VERDICT_RGB.get(verdict, VERDICT_RGB[None]), np.uint8)
    cv2.putText(strip, title, (pad, pad + title_h), FONT, big, TEXT_RGB, thick + 1, cv2.LINE_AA)
    cv2.putText(strip, caption, (2 * pad + title_w, pad + title_h), FONT, small, TEXT_RGB, thick, cv2.LINE_AA)
    return strip


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Writes an RGB or grey uint8/uint16 image as PNG, atomically."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))
