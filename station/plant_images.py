"""The stations' images in the plant database, for the faces that show and look after them: the
browser review (``inspector serve``) and the ``inspector plant`` commands.

The forwarder (:mod:`inspector.links.plant`) copies each kept frame and 16-bit map into the
plant's ``plant_images`` table (or an object store, the table naming the object); here they are
read back by row (:func:`plant_image`), counted by station (:func:`images_received`), and removed
after the plant's retention (:func:`prune`; :class:`RetentionPruner` runs it every hour beside
``inspector serve``). Where the plant has no copy, :func:`why_not_in_plant` says why: not kept,
not forwarded yet, or removed by the retention. Changing the retention is an audited action
(:func:`station.actions.set_image_retention`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from inspector.errors import InspectorError
from inspector.history import HistoryDB, InspectionRow
from inspector.links.plant_images import (RETENTION, ImagesReceived, LastPrune, ObjectStore, ObjectStoreError, Pruned,
                                          kept_kinds, last_prune, prune_images, read_plant_image, retention_days)
from inspector.links.plant_images import images_received as _images_received

log = logging.getLogger(__name__)

#: How often ``inspector serve`` prunes the plant's images (and once at its start).
PRUNE_EVERY_S = 3600.0

__all__ = ["RETENTION", "ImagesReceived", "ObjectStore", "Pruned", "RetentionPruner", "image_retention", "images_received",
           "plant_image", "plant_kinds", "prune", "why_not_in_plant"]


def plant_image(db: HistoryDB, row: InspectionRow, kind: str, objects: ObjectStore | None = None) -> bytes | None:
    """The bytes the plant holds of ``row``'s ``image`` or ``heatmap`` (the station's PNG), or None.
    An object store that cannot answer is said as an image not available (InspectorError)."""
    try:
        with db.session() as s:
            return read_plant_image(s, row.station, row.uid, kind, objects)
    except ObjectStoreError as exc:
        raise InspectorError(f"inspection {row.id}: the object store holding its {kind} did not answer: {exc}") from None


def plant_kinds(db: HistoryDB, row: InspectionRow) -> dict[str, str | None]:
    """The kinds of ``row``'s images the plant holds, each with its object store location (None:
    in the table)."""
    with db.session() as s:
        return kept_kinds(s, row.station, row.uid)


def image_retention(db: HistoryDB) -> float | None:
    """The plant's image retention in days (None: images kept until removed otherwise)."""
    with db.session() as s:
        return retention_days(s)


def images_received(db: HistoryDB) -> dict[str, ImagesReceived]:
    """Per station, the images the plant holds: count, bytes, the newest one's arrival."""
    with db.session() as s:
        return _images_received(s)


def why_not_in_plant(db: HistoryDB, row: InspectionRow, kind: str, *, objects: bool = False) -> str:
    """Why this database holds no copy of ``row``'s ``kind`` that can be shown (a sentence, lower
    case): not kept at all, in an object store this server is not given, removed by the plant's
    retention, or not forwarded yet. ``objects``: whether an object store was given."""
    if (row.image_path if kind == "image" else row.heatmap_path) is None:
        return f"no {kind} kept (passes are sampled, errors have no map)"
    with db.session() as s:
        held = kept_kinds(s, row.station, row.uid)
        pruned: LastPrune | None = last_prune(s)
    if kind in held:
        if held[kind] is not None and not objects:
            return f"the plant keeps it in an object store ({held[kind]}), which this server was not given"
        return "the plant holds a copy"
    if pruned is not None and row.time < pruned.before:
        return (f"removed by the plant's image retention of {days(pruned.days)} (images are kept {days(pruned.days)} "
                f"after the plant receives them; removed up to {pruned.before:%Y-%m-%d %H:%M} UTC)")
    return (f"not forwarded to the plant yet (station {row.station} sends its images after its rows; one its own "
            "quota removed first never comes)")


def prune(db: HistoryDB, objects: ObjectStore | None = None, *, by: str = "prune") -> Pruned:
    """Remove the images older than the plant's retention (:func:`inspector.links.plant_images.prune_images`)."""
    try:
        return prune_images(db, objects, by=by)
    except ObjectStoreError as exc:
        raise InspectorError(f"the object store did not answer while pruning images: {exc}") from None


class RetentionPruner:
    """Runs :func:`prune` at :meth:`start` and every ``every_s`` seconds after, in a thread of
    its own, until :meth:`stop`: a plant with only ``inspector serve`` running keeps its
    retention. A prune that fails (the database away) is logged and tried again next time."""

    def __init__(self, db: HistoryDB, objects: ObjectStore | None = None, *, every_s: float = PRUNE_EVERY_S,
                 by: str = "serve") -> None:
        self.db, self.objects, self.every_s, self.by = db, objects, every_s, by
        self.runs = 0
        self.last: Pruned | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="image-retention", daemon=True)

    def start(self) -> RetentionPruner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = prune(self.db, self.objects, by=self.by)
                if self.last.images:
                    log.info("image retention (%g days): removed %d images (%d bytes) received before %s",
                             self.last.days, self.last.images, self.last.bytes, self.last.before)
            except Exception as exc:  # noqa: BLE001 -- never end the thread: the next hour tries again
                log.warning("image retention: prune failed, tried again in %.0f s: %s", self.every_s, exc)
            self.runs += 1
            self._stop.wait(self.every_s)


def describe(pruned: Pruned) -> str:
    """One line for a person: what a prune removed."""
    if pruned.days is None:
        return "no image retention set: nothing removed (set one with inspector plant retention --days N)"
    return (f"removed {pruned.images} image{'' if pruned.images == 1 else 's'} ({pruned.bytes} bytes) received "
            f"before {pruned.before:%Y-%m-%d %H:%M:%S} UTC (retention {days(pruned.days)})")


def days(value: float) -> str:
    return f"{value:g} day{'' if value == 1 else 's'}"


def shown(value: Any) -> str:
    """A retention for a person: ``off`` or ``N days``."""
    return "off" if value is None else days(value)


def object_reader() -> ObjectStore | None:
    """What ``inspector serve`` and ``inspector plant prune`` read and remove the plant's objects
    with: an S3 store for whichever bucket a row's ``s3://`` location names, configured as boto3
    is (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``~/.aws/config``, ...; see
    :mod:`inspector.links.s3_store`). None without boto3: the images in an object store then say
    so, and the prune leaves them."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        log.info("no boto3: images in an object store are neither shown nor pruned (pip install 'inspector[plant]')")
        return None
    from inspector.links.s3_store import S3Locations

    return S3Locations()
