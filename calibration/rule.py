"""The pass/fail rule a calibration produces, and how a prediction is judged by it.

A part fails when its image score is above ``threshold``, or -- when the pixel rule is set -- when
its anomaly map holds a connected region of at least ``min_defect_area_px`` pixels above
``pixel_threshold``. The same rule is written into the model file's metadata (keys ``threshold``,
``pixel_threshold``, ``min_defect_area_px``) and into the history database's calibrations table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.thresholds import largest_region_px
from inspector.errors import ModelFileError


@dataclass(frozen=True)
class Verdict:
    """``decision`` is ``"PASS"`` or ``"FAIL"``; ``largest_region_px`` is None without a pixel rule."""

    decision: str
    image_fail: bool
    region_fail: bool
    score: float
    largest_region_px: int | None

    @property
    def failed(self) -> bool:
        return self.decision == "FAIL"


@dataclass(frozen=True)
class InspectionRule:
    threshold: float
    pixel_threshold: float | None = None
    min_defect_area_px: int | None = None

    @property
    def has_pixel_rule(self) -> bool:
        return self.pixel_threshold is not None and self.min_defect_area_px is not None

    def judge(self, score: float, anomaly_map: np.ndarray | None = None) -> Verdict:
        """Judges one part from its image score and, for the pixel rule, its (H, W) map."""
        image_fail = bool(score > self.threshold)
        region = None
        region_fail = False
        if self.has_pixel_rule and anomaly_map is not None:
            region = largest_region_px(anomaly_map, self.pixel_threshold)
            region_fail = region >= self.min_defect_area_px
        decision = "FAIL" if image_fail or region_fail else "PASS"
        return Verdict(decision, image_fail, region_fail, float(score), region)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "pixel_threshold": self.pixel_threshold,
            "min_defect_area_px": self.min_defect_area_px,
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], where: str = "model file") -> InspectionRule:
        """The rule stored in a model file's metadata; ModelFileError if it was never calibrated."""
        if meta.get("threshold") is None:
            raise ModelFileError(f"{where}: not calibrated (no threshold in its metadata); run `inspector calibrate` first")
        pixel = meta.get("pixel_threshold")
        area = meta.get("min_defect_area_px")
        return cls(float(meta["threshold"]), None if pixel is None else float(pixel), None if area is None else int(area))

    @classmethod
    def from_calibration(cls, row: Any) -> InspectionRule:
        """The rule of a history ``Calibration`` row."""
        return cls(
            float(row.image_threshold),
            None if row.pixel_threshold is None else float(row.pixel_threshold),
            None if row.min_defect_area_px is None else int(row.min_defect_area_px),
        )
