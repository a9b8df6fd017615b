"""The one record of a frame's inspection, from the decision to the history and the display.

The engine worker of :mod:`inspector.line` builds one frozen :class:`InspectionResult` per frame
and submits it to the history writer as is. Fields become known along the way and are filled in
with :func:`dataclasses.replace` where they do: the image store adds the paths of the files it
wrote (and the stored anomaly map's value range), the database the row id, the writer
``journaled`` when the record went to the spill journal instead. Result subscribers receive that
record, the same type, once it is durable.

Every result carries the :class:`DecisionRule` it was decided with (``rule``), so whoever draws
it later -- the operator page after a threshold change, review a year on -- outlines the defect
and scales the colours with the rule of that frame, not with the rule in force when it is drawn.

Defined here, below both :mod:`inspector.history` and :mod:`inspector.line`, so that either can
import it without importing the other; the rule is defined here for the same reason (a result
carries it, and :mod:`inspector.line.rule` re-exports it with its conversions).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import cv2
import numpy as np

from inspector.errors import InspectorError

#: The verdicts; an engine error is a (fail-safe) FAIL with ``error`` set. ``RECHECK``: the score
#: fell in the rule's recheck band (above ``recheck_threshold``, not above ``threshold``): the part
#: is set aside for a person to look at. ``NO_PART``: the framing did not find the part in the
#: frame (its match quality below the recipe's minimum): nothing was scored, and the frame is no
#: part inspected (neither a pass nor a defect, left out of the yield).
DECISIONS = ("PASS", "FAIL", "RECHECK", "NO_PART")
#: What people read for each decision (screens, reports, the summary of a run).
DECISION_LABELS = {"PASS": "PASS", "FAIL": "FAIL", "RECHECK": "RECHECK", "NO_PART": "NO PART"}
#: The decisions that judge a part: yield is PASS over these. NO_PART is not a part inspected.
PART_DECISIONS = ("PASS", "FAIL", "RECHECK")


def decision_label(decision: str) -> str:
    """The text people see for ``decision`` (``"NO PART"`` for ``"NO_PART"``); unknown values as given."""
    return DECISION_LABELS.get(decision, decision)


def area_mm2(area_px: int | None, mm_per_px: float | None) -> float | None:
    """``area_px`` image pixels in mm² with pixels ``mm_per_px`` mm wide (None where either is unknown)."""
    if area_px is None or mm_per_px is None:
        return None
    return float(area_px) * float(mm_per_px) ** 2


def area_px_from_mm2(area_mm2_: float, mm_per_px: float) -> int:
    """The smallest whole number of pixels covering at least ``area_mm2_`` mm² (at least 1)."""
    if not _finite(area_mm2_) or area_mm2_ <= 0:
        raise InspectorError(f"a defect area must be a positive number of mm², got {area_mm2_!r}")
    if not _finite(mm_per_px) or mm_per_px <= 0:
        raise InspectorError(f"the pixel size must be a positive number of mm, got {mm_per_px!r}")
    pixels = float(area_mm2_) / float(mm_per_px) ** 2
    return max(1, math.ceil(pixels - 1e-9 * pixels))


def as_utc(value: datetime) -> datetime:
    """``value`` converted to UTC; naive datetimes are refused because their zone is a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} has no time zone; pass an aware (UTC) time")
    return value.astimezone(timezone.utc)


def _new_uid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Decision:
    """``decision`` is ``"PASS"``, ``"FAIL"`` or ``"RECHECK"``; ``defect_area_px`` is the area in image pixels of
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

    The recheck band: with ``recheck_threshold`` set (below ``threshold``), a part that does not
    FAIL but scores above it is ``RECHECK``; without it the rule never says RECHECK.

    ``mm_per_px``: the side of one camera pixel in millimetres, where the recipe knows it; areas
    are then also given in mm² (:attr:`min_defect_area_mm2`, :meth:`area_mm2`). A minimum area in
    mm² becomes pixels with :func:`area_px_from_mm2` (see :meth:`with_min_area_mm2`).
    """

    threshold: float
    pixel_threshold: float | None = None
    min_defect_area_px: int | None = None
    recheck_threshold: float | None = None
    mm_per_px: float | None = None

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
        if self.recheck_threshold is not None:
            if not _finite(self.recheck_threshold):
                raise InspectorError(f"recheck threshold must be a finite number, got {self.recheck_threshold!r}")
            if not float(self.recheck_threshold) < float(self.threshold):
                raise InspectorError(f"recheck threshold {self.recheck_threshold!r} must be below the threshold "
                                     f"{self.threshold!r}: the recheck band lies under the FAIL threshold")
        if self.mm_per_px is not None and not (_finite(self.mm_per_px) and self.mm_per_px > 0):
            raise InspectorError(f"pixel size must be a positive number of mm, got {self.mm_per_px!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        for name in ("pixel_threshold", "recheck_threshold", "mm_per_px"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        if self.min_defect_area_px is not None:
            object.__setattr__(self, "min_defect_area_px", int(self.min_defect_area_px))

    @property
    def min_defect_area_mm2(self) -> float | None:
        """The minimum defect area in mm² (None without a pixel size or a minimum area)."""
        return area_mm2(self.min_defect_area_px, self.mm_per_px)

    def area_mm2(self, area_px: int | None) -> float | None:
        """``area_px`` in mm² with this rule's pixel size (None without one)."""
        return area_mm2(area_px, self.mm_per_px)

    def with_min_area_mm2(self, min_area_mm2: float) -> DecisionRule:
        """This rule with its minimum defect area given in mm² (needs ``mm_per_px`` and a pixel threshold)."""
        if self.mm_per_px is None:
            raise InspectorError("a minimum defect area in mm² needs the pixel size (mm per pixel)")
        return replace(self, min_defect_area_px=area_px_from_mm2(min_area_mm2, self.mm_per_px))

    def decide(self, score: float, anomaly_map: np.ndarray) -> Decision:
        """The verdict on one image: its score and its (H, W) float anomaly map."""
        fail = score > self.threshold
        area = None
        if self.pixel_threshold is not None:
            # Measured even when the score alone fails the part: the review screen shows the size.
            area = largest_region_px(anomaly_map, self.pixel_threshold)
            fail = fail or area >= (self.min_defect_area_px or 1)
        if fail:
            return Decision("FAIL", area)
        if self.recheck_threshold is not None and score > self.recheck_threshold:
            return Decision("RECHECK", area)
        return Decision("PASS", area)


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


@dataclass(frozen=True)
class InspectionResult:
    """One frame's verdict, with what is known of the frame and, once stored, where it is.

    The verdict: ``time`` when the frame reached the host (timezone-aware; normalised to UTC),
    ``camera_id``, ``frame_id``, ``score``, ``decision`` (one of :data:`DECISIONS`), ``threshold``
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
    :class:`Decision`), ``shadow_score`` (a candidate model's score of the same frame, deciding
    nothing; ``None`` without one, and where it did not find the part: NO PART, never scored).
    The database has no columns for these.

    The rule: ``rule`` is the whole :class:`DecisionRule` the verdict used (``threshold`` is its
    image threshold; the two must agree), which the history stores with the row and every
    display draws the frame with. ``None`` where it is not known: a record built by hand with a
    threshold only, or a journal line or row written before results carried it.

    Filled in by the history: ``image_path``/``heatmap_path`` (absolute, ``None`` where the image
    store did not keep the file), ``heatmap_low``/``heatmap_high`` (the map values the stored
    16-bit heatmap's 0 and 65535 stand for), ``inspection_id`` (the database row id) and
    ``journaled`` (made durable in the spill journal while the database refused writes; the row
    and its id come when it recovers).

    From the framing (:mod:`inspector.framing`): ``match_quality`` (how well the part was found;
    None without alignment; stored) and ``outline`` (the inspected region's four corners in frame
    pixels, (4, 2) float32; None without a region; drawn by the operator page, not stored). A
    ``NO_PART`` verdict has ``score`` 0.0 and no map: the part was not found, nothing was scored.
    ``defect_area_px`` is stored with the row; :attr:`defect_area_mm2` gives it in mm² where the
    rule knows the pixel size.
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
    rule: DecisionRule | None = None
    image_path: str | None = None
    heatmap_path: str | None = None
    heatmap_low: float | None = None
    heatmap_high: float | None = None
    inspection_id: int | None = None
    journaled: bool = False
    match_quality: float | None = None
    outline: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if not math.isfinite(self.score):
            raise ValueError(f"score must be a finite number, got {self.score!r}")
        if self.rule is not None and float(self.rule.threshold) != float(self.threshold):
            # Two thresholds for one verdict would draw one frame two ways; refuse the record.
            raise ValueError(f"threshold {self.threshold!r} is not the image threshold of the rule it carries ({self.rule.threshold!r})")
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
        quality = self.match_quality
        normalised["match_quality"] = None if quality is None or not math.isfinite(quality) else float(quality)
        shadow = self.shadow_score
        normalised["shadow_score"] = None if shadow is None or not math.isfinite(shadow) else float(shadow)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def anomaly_map(self) -> np.ndarray | None:
        """The (H, W) float32 anomaly map (``None`` for an error result)."""
        return self.heatmap

    @property
    def decision_label(self) -> str:
        """The decision as people read it (``"NO PART"``)."""
        return decision_label(self.decision)

    @property
    def defect_area_mm2(self) -> float | None:
        """The defect area in mm², where the rule has a pixel size and the area was measured."""
        return None if self.rule is None else self.rule.area_mm2(self.defect_area_px)

    @property
    def durable(self) -> bool:
        """True once the result is committed to the database or fsynced to the spill journal."""
        return self.inspection_id is not None or self.journaled
