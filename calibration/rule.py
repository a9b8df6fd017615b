"""The pass/fail rule a calibration produces, as the line applies it.

The rule itself is the pipeline's :class:`~inspector.pipeline.decision.DecisionRule` (FAIL when
``score > threshold``, or when the largest 8-connected region of the map above
``pixel_threshold`` covers at least ``min_defect_area_px`` pixels), so calibration, shadow mode
and the line decide alike. This module converts it to and from where calibrations are stored:
the model file's metadata (keys ``threshold``, ``pixel_threshold``, ``min_defect_area_px``) and
the history database's calibrations table. As ``inspector run`` reads them, a pixel threshold
without a minimum area is no pixel rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.errors import InspectorError, ModelFileError
from inspector.pipeline.decision import Decision, DecisionRule

__all__ = ["Decision", "DecisionRule", "rule_from_values", "rule_from_metadata", "rule_from_calibration", "rule_metadata"]


def rule_from_values(threshold: float, pixel_threshold: float | None = None, min_defect_area_px: int | None = None) -> DecisionRule:
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
