"""The pass/fail rule: an image-score threshold, optionally with a defect-size rule on the map.

Calibration, shadow mode and the line decide with this one rule. It is stored in two places, and
converted here both ways: a model file's metadata (keys ``threshold``, ``pixel_threshold``,
``min_defect_area_px``) and the history database's calibrations table. A pixel threshold without
a minimum area is no pixel rule (calibration records the pixel rule as a pair).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspector.errors import InspectorError, ModelFileError


@dataclass(frozen=True)
class Decision:
    """``decision`` is ``"PASS"`` or ``"FAIL"``; ``defect_area_px`` is the area in image pixels of
    the largest connected region of the map above the pixel threshold (0 when there is none), or
    ``None`` when the rule has no pixel threshold."""

    decision: str
    defect_area_px: int | None = None


@dataclass(frozen=True)
class DecisionRule:
    """FAIL when ``score > threshold``, or -- with ``pixel_threshold`` set -- when the largest
    8-connected region of anomaly-map pixels above ``pixel_threshold`` covers at least
    ``min_defect_area_px`` image pixels (default 1: any pixel above it).

    Thresholds are in the engine's map units (the image score is the map's maximum). The area is
    counted on the map as the engine returns it, which has the camera image's own size, so
    ``min_defect_area_px`` is in camera pixels.
    """

    threshold: float
    pixel_threshold: float | None = None
    min_defect_area_px: int | None = None

    def __post_init__(self) -> None:
        if not _finite(self.threshold):
            raise InspectorError(f"threshold must be a finite number, got {self.threshold!r}")
        if self.pixel_threshold is not None and not _finite(self.pixel_threshold):
            raise InspectorError(f"pixel threshold must be a finite number, got {self.pixel_threshold!r}")
        if self.min_defect_area_px is not None:
            if self.pixel_threshold is None:
                raise InspectorError("a minimum defect area needs a pixel threshold to measure it with")
            if isinstance(self.min_defect_area_px, bool) or not isinstance(self.min_defect_area_px, (int, np.integer)) or self.min_defect_area_px < 1:
                raise InspectorError(f"minimum defect area must be a whole number of pixels >= 1, got {self.min_defect_area_px!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        if self.pixel_threshold is not None:
            object.__setattr__(self, "pixel_threshold", float(self.pixel_threshold))
        if self.min_defect_area_px is not None:
            object.__setattr__(self, "min_defect_area_px", int(self.min_defect_area_px))

    def decide(self, score: float, anomaly_map: np.ndarray) -> Decision:
        """The verdict on one image: its score and its (H, W) float anomaly map."""
        fail = score > self.threshold
        if self.pixel_threshold is None:
            return Decision("FAIL" if fail else "PASS")
        # Measured even when the score alone fails the part: the review screen shows the size.
        area = largest_region_px(anomaly_map, self.pixel_threshold)
        fail = fail or area >= (self.min_defect_area_px or 1)
        return Decision("FAIL" if fail else "PASS", area)


def largest_region_px(anomaly_map: np.ndarray, pixel_threshold: float) -> int:
    """Pixels in the largest 8-connected region of ``anomaly_map > pixel_threshold`` (0 if none)."""
    mask = (np.asarray(anomaly_map) > pixel_threshold).astype(np.uint8)
    if mask.ndim != 2:
        raise InspectorError(f"anomaly map must be (H, W), got shape {mask.shape}")
    if not mask.any():
        return 0
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max())  # label 0 is the background


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def rule_from_values(threshold: float, pixel_threshold: float | None = None, min_defect_area_px: int | None = None) -> DecisionRule:
    """The rule of stored values; a pixel threshold counts only with its minimum area."""
    if pixel_threshold is None or min_defect_area_px is None:
        return DecisionRule(float(threshold))
    return DecisionRule(float(threshold), float(pixel_threshold), int(min_defect_area_px))


def rule_from_metadata(meta: Mapping[str, Any], where: str = "model file") -> DecisionRule:
    """The rule in a model file's metadata; ModelFileError if it was never calibrated or is unusable."""
    if meta.get("threshold") is None:
        raise ModelFileError(f"{where}: not calibrated (no threshold in its metadata); run `inspector calibrate` first")
    try:
        return rule_from_values(meta["threshold"], meta.get("pixel_threshold"), meta.get("min_defect_area_px"))
    except (InspectorError, TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: its calibration metadata is unusable ({e})") from None


def rule_from_calibration(row: Any) -> DecisionRule:
    """The rule of a history ``Calibration`` row."""
    return rule_from_values(row.image_threshold, row.pixel_threshold, row.min_defect_area_px)


def rule_metadata(rule: DecisionRule) -> dict[str, Any]:
    """The metadata keys a model file stores the rule under."""
    return {
        "threshold": rule.threshold,
        "pixel_threshold": rule.pixel_threshold,
        "min_defect_area_px": rule.min_defect_area_px,
    }
