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

from datetime import datetime, timedelta, timezone
from typing import Any, Final, Protocol

from sqlalchemy import select

from inspector.history.tables import IMAGE_KINDS, PlantImage, Setting

#: The setting that keeps images for this many days after the plant received them (absent: for ever).
RETENTION: Final = "image_retention_days"

__all__ = ["IMAGE_KINDS", "RETENTION", "ObjectStore", "ObjectStoreError", "image_key", "read_plant_image", "retention_days"]


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
