"""The one record of a frame's inspection, from the decision to the history and the display.

The engine worker of :mod:`inspector.line` builds one frozen :class:`InspectionResult` per frame
and submits it to the history writer as is. Fields become known along the way and are filled in
with :func:`dataclasses.replace` where they do: the image store adds the paths of the files it
wrote (and the stored anomaly map's value range), the database the row id, the writer
``journaled`` when the record went to the spill journal instead. Result subscribers receive that
record, the same type, once it is durable.

Defined here, below both :mod:`inspector.history` and :mod:`inspector.line`, so that either can
import it without importing the other.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

#: The verdicts; an engine error is a (fail-safe) FAIL with ``error`` set.
DECISIONS = ("PASS", "FAIL")


def as_utc(value: datetime) -> datetime:
    """``value`` converted to UTC; naive datetimes are refused because their zone is a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} has no time zone; pass an aware (UTC) time")
    return value.astimezone(timezone.utc)


def _new_uid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class InspectionResult:
    """One frame's verdict, with what is known of the frame and, once stored, where it is.

    The verdict: ``time`` when the frame reached the host (timezone-aware; normalised to UTC),
    ``camera_id``, ``frame_id``, ``score``, ``decision`` (``"PASS"``/``"FAIL"``), ``threshold``
    (the image-score threshold the verdict used), ``model_version_id``, ``product_id``,
    ``part_id``, ``latency_total_ms`` (frame reached the host -> decision made) and
    ``latency_model_ms`` (the engine's predict call). ``error`` says why the engine could not
    score the frame (the part then FAILs, fail-safe, with ``score`` 0.0, no map and no model
    latency); ``None`` for a real verdict. ``uid`` identifies the record across retries and
    journal replays.

    The pixels: ``image`` is the frame exactly as the camera delivered it, (H, W) gray or
    (H, W, 3) **RGB**, uint8/uint16; ``heatmap`` the (H, W) float32 anomaly map on the image's own
    grid (also :attr:`anomaly_map`). Both optional; they reach disk only if the history's image
    store keeps this record, and are never compared or printed.

    What the pipeline knows besides: ``camera_timestamp`` (the camera's clock, driver units),
    ``host_timestamp`` (``time.time()`` when the frame reached the host), ``defect_area_px`` (see
    :class:`inspector.line.Decision`), ``shadow_score`` (a candidate model's score of the same
    frame, deciding nothing; ``None`` without one). The database has no columns for these.

    Filled in by the history: ``image_path``/``heatmap_path`` (absolute, ``None`` where the image
    store did not keep the file), ``heatmap_low``/``heatmap_high`` (the map values the stored
    16-bit heatmap's 0 and 65535 stand for), ``inspection_id`` (the database row id) and
    ``journaled`` (made durable in the spill journal while the database refused writes; the row
    and its id come when it recovers).
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
    camera_timestamp: int | float | None = None
    host_timestamp: float | None = None
    defect_area_px: int | None = None
    shadow_score: float | None = None
    image_path: str | None = None
    heatmap_path: str | None = None
    heatmap_low: float | None = None
    heatmap_high: float | None = None
    inspection_id: int | None = None
    journaled: bool = False

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
        for name in ("model_version_id", "product_id", "defect_area_px", "inspection_id"):
            value = getattr(self, name)
            normalised[name] = None if value is None else int(value)
        for name in ("latency_total_ms", "latency_model_ms", "heatmap_low", "heatmap_high"):
            value = getattr(self, name)
            normalised[name] = None if value is None else float(value)
        shadow = self.shadow_score
        normalised["shadow_score"] = None if shadow is None or not math.isfinite(shadow) else float(shadow)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def anomaly_map(self) -> np.ndarray | None:
        """The (H, W) float32 anomaly map (``None`` for an error result)."""
        return self.heatmap

    @property
    def durable(self) -> bool:
        """True once the result is committed to the database or fsynced to the spill journal."""
        return self.inspection_id is not None or self.journaled
