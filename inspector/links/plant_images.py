"""The images a station keeps, in the plant: how the forwarder puts them and a reader finds them.

A kept inspection has up to two files on the station's disk (:mod:`inspector.history.image_store`):
the frame and its 16-bit map, both PNG. The plant link (:mod:`inspector.links.plant`) copies their
bytes, unchanged, into the plant database's ``plant_images`` table, keyed by station, inspection
``uid`` and kind, so the row and its images meet wherever the row went. Where the plant keeps its
images in an object store instead, the bytes go there under :func:`image_key` and the table keeps
the object's ``location`` (``data`` NULL): an :class:`ObjectStore` puts, gets and deletes them.

The plant's retention (:data:`RETENTION`, days, in the database's ``settings``) removes images
received before it; the inspection rows stay, and say their images are gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Protocol

from sqlalchemy import delete, func, or_, select

from inspector.history.db import HistoryDB
from inspector.history.tables import IMAGE_KINDS, PlantImage, Setting

log = logging.getLogger(__name__)

#: The setting that keeps images for this many days after the plant received them (absent: for ever).
RETENTION: Final = "image_retention_days"
#: The setting that records the last prune: ``{"days", "before", "images", "bytes"}`` (``before``:
#: ISO 8601, the images received before it were removed), so a page can say why an image is gone.
PRUNED: Final = "image_retention_pruned"
#: Images removed per plant transaction by :func:`prune_images`.
PRUNE_BATCH: Final = 500

__all__ = ["IMAGE_KINDS", "PRUNED", "RETENTION", "ImagesReceived", "LastPrune", "ObjectStore", "ObjectStoreError",
           "Pruned", "change_retention", "image_key", "images_received", "kept_kinds", "last_prune", "prune_images", "read_plant_image",
           "retention_days", "set_retention"]


class ObjectStoreError(OSError):
    """The object store cannot be reached or refused a request: the forwarder retries, as for an
    away database."""


class ObjectStore(Protocol):
    """Where a large plant keeps its images (an S3-compatible store). Every method raises
    :class:`ObjectStoreError` when the store cannot do it."""

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (again: replaced with the same bytes); returns its location."""

    def get(self, location: str) -> bytes:
        """The bytes at a location :meth:`put` returned."""

    def delete(self, locations: list[str]) -> None:
        """Remove these objects (a missing one is not an error)."""


def image_key(station: str, uid: str, kind: str) -> str:
    """An image's name in an object store: by station and inspection, one per kind."""
    return f"{station}/{uid}/{kind}.png"


def read_plant_image(session: Any, station: str, uid: str, kind: str,
                     objects: ObjectStore | None = None) -> bytes | None:
    """The bytes the plant keeps for a row's image (``kind`` ``"image"`` or ``"heatmap"``), or None
    where it has none (not kept, not forwarded yet, or removed by the retention). A location in an
    object store needs ``objects``."""
    found = session.execute(select(PlantImage.data, PlantImage.location).where(
        PlantImage.station == station, PlantImage.uid == uid, PlantImage.kind == kind)).first()
    if found is None:
        return None
    data, location = found
    if data is not None:
        return bytes(data)
    if location is None or objects is None:
        return None
    return objects.get(location)


def retention_days(session: Any) -> float | None:
    """The plant's image retention in days, or None (kept until removed)."""
    setting = session.get(Setting, RETENTION)
    return None if setting is None or setting.value is None else float(setting.value)


def received_before(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def set_retention(session: Any, days: float | None, by: str) -> float | None:
    """Keep images ``days`` days after the plant received them (None: remove the setting, keep
    them until removed otherwise); returns the setting before. ``days`` must be positive."""
    if days is not None and not days > 0:
        raise ValueError(f"the image retention must be a positive number of days, got {days}")
    before = retention_days(session)
    setting = session.get(Setting, RETENTION)
    if days is None:
        if setting is not None:
            session.delete(setting)
    elif setting is None:
        session.add(Setting(name=RETENTION, value=days, changed_by=by))
    else:
        setting.value, setting.changed, setting.changed_by = days, datetime.now(timezone.utc), by
    return before


def change_retention(db: HistoryDB, days: float | None, user: str, role: str) -> tuple[float | None, float | None]:
    """:func:`set_retention` and its audit event (``set_image_retention``, before and after) in
    one transaction of ``db``, by a user whose right the caller has checked; returns (before, after)."""
    with db.session() as s:
        before = set_retention(s, days, user)
        db._audit(s, user, role, "set_image_retention", f"setting:{RETENTION}", {RETENTION: before}, {RETENTION: days})
    return before, days


def kept_kinds(session: Any, station: str, uid: str) -> dict[str, str | None]:
    """The kinds of a row's images the plant holds, each with its object store location (None:
    the bytes are in the table)."""
    found = session.execute(select(PlantImage.kind, PlantImage.location).where(
        PlantImage.station == station, PlantImage.uid == uid,
        or_(PlantImage.data.is_not(None), PlantImage.location.is_not(None)))).all()
    return {kind: location for kind, location in found}


@dataclass(frozen=True)
class LastPrune:
    """The last :func:`prune_images` that ran under a retention: images received before
    ``before`` were removed under a retention of ``days``, at ``at``."""

    days: float
    before: datetime
    at: datetime


def last_prune(session: Any) -> LastPrune | None:
    setting = session.get(Setting, PRUNED)
    if setting is None or not isinstance(setting.value, dict):
        return None
    try:
        before = datetime.fromisoformat(setting.value["before"])
        return LastPrune(float(setting.value["days"]), before, _utc(setting.changed))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune_images` removed: ``images`` (files' worth, ``bytes`` of them) received
    before ``before`` under a retention of ``days``; ``days`` None: no retention set, nothing done."""

    days: float | None
    before: datetime | None
    images: int = 0
    bytes: int = 0


def prune_images(db: HistoryDB, objects: ObjectStore | None = None, *, now: datetime | None = None,
                 batch: int = PRUNE_BATCH, by: str = "prune") -> Pruned:
    """Remove the images the plant received before its retention (:func:`retention_days`; none
    set: nothing), a batch per transaction, oldest first. The inspection rows stay. An image in
    an object store (``location``) is deleted there first, through ``objects``; without
    ``objects`` such images stay (logged), since their objects could not be removed. Records
    the prune under :data:`PRUNED` (who: ``by``). :class:`ObjectStoreError` or a
    :class:`~inspector.errors.DatabaseError` stops it where it is: what was removed stays
    removed, the rest goes next time."""
    with db.session() as s:
        days = retention_days(s)
    if days is None:
        return Pruned(None, None)
    cutoff = received_before(days, now)
    images = size = 0
    old = PlantImage.received < cutoff
    while True:
        with db.session() as s:
            where = [old] if objects is not None else [old, PlantImage.location.is_(None)]
            rows = s.execute(select(PlantImage.id, PlantImage.size, PlantImage.location).where(*where)
                             .order_by(PlantImage.received, PlantImage.id).limit(batch)).all()
            if not rows:
                break
            locations = [r.location for r in rows if r.location is not None]
            if locations:
                assert objects is not None
                objects.delete(locations)  # first: a row gone while its object stays would be lost track of
            s.execute(delete(PlantImage).where(PlantImage.id.in_([r.id for r in rows])))
        images += len(rows)
        size += sum(r.size for r in rows)
        if len(rows) < batch:
            break
    with db.session() as s:
        if objects is None:
            left = s.scalar(select(func.count()).select_from(PlantImage).where(old, PlantImage.location.is_not(None)))
            if left:
                log.warning("%d images older than the retention are in an object store this prune was not given: "
                            "not removed", left)
        record = {"days": days, "before": cutoff.isoformat(), "images": images, "bytes": size}
        setting = s.get(Setting, PRUNED)
        if setting is None:
            s.add(Setting(name=PRUNED, value=record, changed_by=by))
        else:
            setting.value, setting.changed, setting.changed_by = record, datetime.now(timezone.utc), by
    return Pruned(days, cutoff, images, size)


@dataclass(frozen=True)
class ImagesReceived:
    """What the plant holds of one station's images: how many files, their bytes, and when the
    newest arrived."""

    station: str
    images: int
    bytes: int
    newest: datetime | None


def images_received(session: Any) -> dict[str, ImagesReceived]:
    """Per station, the images the plant holds (removed ones not counted)."""
    rows = session.execute(
        select(PlantImage.station, func.count(), func.coalesce(func.sum(PlantImage.size), 0), func.max(PlantImage.received))
        .group_by(PlantImage.station)).all()
    return {station: ImagesReceived(station, int(n), int(b), None if newest is None else _utc(newest))
            for station, n, b, newest in rows}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
