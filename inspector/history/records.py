"""The record that crosses from the inspection pipeline into the history, and its stored form."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from .models import DECISIONS, as_utc


def _new_uid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class InspectionRecord:
    """One verdict as the engine made it.

    ``time`` is when the frame was acquired (timezone-aware; stored as UTC). ``threshold`` is the
    image-score threshold the verdict used. Latencies are milliseconds. ``image`` is the raw frame,
    ``(H, W)`` or ``(H, W, 3)`` BGR, uint8 or uint16; ``heatmap`` is the anomaly map ``(h, w)``,
    float or uint8. Both are optional and only reach disk if the writer has an image store that
    keeps this record. ``uid`` identifies the record across retries and journal replays.
    ``error`` says why the engine could not score the frame (the verdict is then a fail-safe FAIL,
    not a judgement of the part); ``None`` for a real verdict.
    """

    time: datetime
    camera_id: str
    frame_id: int
    score: float
    decision: str
    threshold: float
    model_version_id: int | None = None
    product_id: int | None = None
    part_id: str | None = None
    latency_total_ms: float | None = None
    latency_model_ms: float | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    uid: str = field(default_factory=_new_uid)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if not math.isfinite(self.score):
            raise ValueError(f"score must be a finite number, got {self.score!r}")
        # Normalise once here (UTC time, builtin numbers rather than numpy scalars) so every later
        # copy -- database row, journal line -- binds and serialises the same way.
        normalised = {
            "time": as_utc(self.time),
            "camera_id": str(self.camera_id),
            "frame_id": int(self.frame_id),
            "score": float(self.score),
            "threshold": float(self.threshold),
            "error": None if self.error is None else str(self.error),
        }
        for name in ("model_version_id", "product_id"):
            value = getattr(self, name)
            normalised[name] = None if value is None else int(value)
        for name in ("latency_total_ms", "latency_model_ms"):
            value = getattr(self, name)
            normalised[name] = None if value is None else float(value)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class StoredInspection:
    """A record once it is durable: what result subscribers receive.

    ``id`` is the database row id, or ``None`` when the database was failing and the record was
    made durable in the spill journal instead (``journaled`` is then True; it reaches the database,
    with an id, when the database recovers). Image paths are absolute, or ``None`` when the image
    store did not keep the frame.
    """

    record: InspectionRecord
    id: int | None = None
    image_path: str | None = None
    heatmap_path: str | None = None
    journaled: bool = False


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
)


def row_values(stored: StoredInspection) -> dict[str, Any]:
    """Column values of the ``inspections`` row for ``stored`` (no id: the database assigns it)."""
    rec = stored.record
    values = {name: getattr(rec, name) for name in _SCALARS}
    values.update(time=rec.time, image_path=stored.image_path, heatmap_path=stored.heatmap_path)
    return values


def to_json(stored: StoredInspection) -> dict[str, Any]:
    """A JSON-safe dict of ``stored`` without the pixel arrays (for the spill journal)."""
    values = row_values(stored)
    values["time"] = stored.record.time.isoformat()
    return values


def from_json(values: dict[str, Any]) -> StoredInspection:
    """Inverse of :func:`to_json`; raises ``KeyError``/``ValueError``/``TypeError`` on bad input."""
    # A journal written before ``error`` existed has no such key: those were real verdicts.
    scalars = {name: values[name] for name in _SCALARS if name != "error"}
    record = InspectionRecord(
        time=datetime.fromisoformat(values["time"]), error=values.get("error"), **scalars
    )
    return StoredInspection(
        record, image_path=values["image_path"], heatmap_path=values["heatmap_path"]
    )
