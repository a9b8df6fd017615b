"""Heatmap overlays for people: the image with its anomaly map in colour on top, and the one
colour scale every display of a map with a known threshold uses (:func:`heatmap_vmax`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.image_io import to_float_rgb
from inspector.model_file import atomic_write

#: Map value shown at full colour when no calibrated threshold is known. Normalised maps put the
#: 0.995 quantile of good images at 0.1, so 0.5 is far into defect territory.
DEFAULT_VMAX = 0.5
#: Displays draw a map over 0 .. THRESHOLD_SCALE x its threshold, so the threshold is mid-scale.
THRESHOLD_SCALE = 2.0


def heatmap_vmax(threshold: float) -> float | None:
    """Map value at the top of the display colour scale for this image threshold: twice it, so
    the threshold sits mid-scale and colours mean the same from frame to frame. ``None`` for a
    threshold <= 0 (no such scale: the display stretches the map itself)."""
    return THRESHOLD_SCALE * threshold if threshold > 0 else None


def colorize(anomaly_map: np.ndarray, vmax: float = DEFAULT_VMAX) -> np.ndarray:
    """(H, W) float map -> (H, W, 3) uint8 RGB with the JET colour map, 0 .. vmax."""
    scaled = np.clip(anomaly_map / vmax, 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, vmax: float = DEFAULT_VMAX, alpha: float = 0.5) -> np.ndarray:
    """The image (any supported dtype/shape) blended with its coloured map: (H, W, 3) uint8 RGB."""
    rgb = (to_float_rgb(image) * 255).astype(np.uint8)
    return cv2.addWeighted(rgb, 1 - alpha, colorize(anomaly_map, vmax), alpha, 0)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Writes an RGB or grey uint8/uint16 image as PNG, atomically."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))
