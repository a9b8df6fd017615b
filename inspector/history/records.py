"""How an :class:`~inspector.inspection.InspectionResult` becomes an ``inspections`` row and a
spill-journal line, and back.

The record itself is defined once, in :mod:`inspector.inspection`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from inspector.inspection import DecisionRule, InspectionResult

# Record fields stored as columns of the same name (time and the arrays are handled apart).
_SCALARS = (
    "uid",
    "camera_id",
    "frame_id",
    "part_id",
    "score",
    "decision",
    "threshold",
    "model_version_id",
    "product_id",
    "latency_total_ms",
    "latency_model_ms",
    "error",
    "image_path",
    "heatmap_path",
    "heatmap_low",
    "heatmap_high",
    "defect_area_px",
    "match_quality",
)
# Keys a journal line written by an older version may lack: the values they had then.
_ADDED_LATER = {"error": None, "heatmap_low": None, "heatmap_high": None, "defect_area_px": None,
                "match_quality": None}


def row_values(record: InspectionResult) -> dict[str, Any]:
    """Column values of the ``inspections`` row for ``record`` (no id: the database assigns it)."""
    values = {name: getattr(record, name) for name in _SCALARS}
    values["time"] = record.time
    # The rule's image threshold is ``threshold`` already; the rest of it gets columns of its own.
    rule = record.rule
    values["pixel_threshold"] = None if rule is None else rule.pixel_threshold
    values["min_defect_area_px"] = None if rule is None else rule.min_defect_area_px
    values["recheck_threshold"] = None if rule is None else rule.recheck_threshold
    values["mm_per_px"] = None if rule is None else rule.mm_per_px
    values["rule_recorded"] = rule is not None
    return values


def to_json(record: InspectionResult) -> dict[str, Any]:
    """A JSON-safe dict of ``record`` without the pixel arrays (for the spill journal)."""
    values = row_values(record)
    values["time"] = record.time.isoformat()
    return values


def from_json(values: dict[str, Any]) -> InspectionResult:
    """Inverse of :func:`to_json`; raises ``KeyError``/``ValueError``/``TypeError`` on bad input.

    Lines of older versions still read: without ``error`` (those were real verdicts), without
    the heatmap's value range (their heatmap PNG is a legacy colour picture), without the rule
    (``rule`` None: not known), and without the recheck band, pixel size, defect area and match
    quality (None: none, not recorded).
    """
    scalars = {name: values.get(name, _ADDED_LATER[name]) if name in _ADDED_LATER else values[name]
               for name in _SCALARS}
    rule = None
    if values.get("rule_recorded"):
        rule = DecisionRule(values["threshold"], values["pixel_threshold"], values["min_defect_area_px"],
                            values.get("recheck_threshold"), values.get("mm_per_px"))
    return InspectionResult(time=datetime.fromisoformat(values["time"]), rule=rule, **scalars)
