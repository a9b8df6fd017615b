"""The pass/fail rule: an image-score threshold, optionally with a defect-size rule on the map.

Calibration, shadow mode and the line decide with this one rule. It is stored in two places, and
converted here both ways: a model file's metadata (keys ``threshold``, ``pixel_threshold``,
``min_defect_area_px``, ``recheck_threshold``, ``mm_per_px``) and the history database's
calibrations table. A model calibrated before the recheck band or the pixel size has neither key
(or None): its rule never says RECHECK and gives areas in pixels. A pixel threshold without
a minimum area is no pixel rule (calibration records the pixel rule as a pair). Every result
carries the rule its verdict used (:attr:`inspector.inspection.InspectionResult.rule`), and the
history keeps it with the inspection's row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.errors import InspectorError, ModelFileError
# Defined with the result that carries it, below the line and the history; named here too, with
# the conversions, where the line and calibration have always imported it from.
from inspector.inspection import Decision, DecisionRule, largest_region_px

__all__ = ["Decision", "DecisionRule", "largest_region_px", "rule_from_values", "rule_from_metadata",
           "rule_from_calibration", "rule_metadata"]


def rule_from_values(threshold: float, pixel_threshold: float | None = None, min_defect_area_px: int | None = None,
                     recheck_threshold: float | None = None, mm_per_px: float | None = None) -> DecisionRule:
    """The rule of stored values; a pixel threshold counts only with its minimum area."""
    recheck = None if recheck_threshold is None else float(recheck_threshold)
    mm = None if mm_per_px is None else float(mm_per_px)
    if pixel_threshold is None or min_defect_area_px is None:
        return DecisionRule(float(threshold), recheck_threshold=recheck, mm_per_px=mm)
    return DecisionRule(float(threshold), float(pixel_threshold), int(min_defect_area_px), recheck, mm)


def rule_from_metadata(meta: Mapping[str, Any], where: str = "model file") -> DecisionRule:
    """The rule in a model file's metadata; ModelFileError if it was never calibrated or is unusable."""
    if meta.get("threshold") is None:
        raise ModelFileError(f"{where}: not calibrated (no threshold in its metadata); run `inspector calibrate` first")
    for key in ("threshold", "pixel_threshold", "recheck_threshold", "mm_per_px"):
        # Converted with float() below: true was a pixel size of 1 mm, "0.12" a recheck threshold.
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ModelFileError(f"{where}: its calibration metadata is unusable ({key} {value!r} is not a number)")
    area = meta.get("min_defect_area_px")
    if area is not None and (isinstance(area, bool) or not (isinstance(area, int) or (isinstance(area, float) and area.is_integer()))):
        # int() below cut 12.7 to 12 and read "12" as 12
        raise ModelFileError(f"{where}: its calibration metadata is unusable (min_defect_area_px {area!r} is not a whole number of pixels)")
    try:
        return rule_from_values(meta["threshold"], meta.get("pixel_threshold"), meta.get("min_defect_area_px"),
                                meta.get("recheck_threshold"), meta.get("mm_per_px"))
    except (InspectorError, TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: its calibration metadata is unusable ({e})") from None


def rule_from_calibration(row: Any) -> DecisionRule:
    """The rule of a history ``Calibration`` row."""
    return rule_from_values(row.image_threshold, row.pixel_threshold, row.min_defect_area_px,
                            getattr(row, "recheck_threshold", None), getattr(row, "mm_per_px", None))


def rule_metadata(rule: DecisionRule) -> dict[str, Any]:
    """The metadata keys a model file stores the rule under."""
    return {
        "threshold": rule.threshold,
        "pixel_threshold": rule.pixel_threshold,
        "min_defect_area_px": rule.min_defect_area_px,
        "recheck_threshold": rule.recheck_threshold,
        "mm_per_px": rule.mm_per_px,
    }
