"""One history for the plant: every recorded inspection forwarded to a shared PostgreSQL database,
``postgresql://USER@HOST[:PORT]/DB[?station=NAME][&images=s3://BUCKET/PREFIX|off]``.

Why forward rather than write there directly: the plant database may be away for hours (network,
maintenance) and the line must neither wait for it nor lose a row. So the station records into its
own SQLite history exactly as without a plant link, and a thread copies those rows, in local id
(recording) order, to the plant database. Its high-water mark -- the last local id the plant has
committed -- lives in the local ``forward_marks`` table and moves only after the plant's commit; the
plant's insert is ``ON CONFLICT (station, uid) DO NOTHING``, so a crash between the two only means
sending a batch again, which is harmless. Nothing on the line's path touches the network.

The plant database has the same schema as a station's (the same Alembic migrations; the first
station to reach an empty database creates it, under an advisory lock so two cannot race). Product
and model-version ids are a station's own, so rows arrive with the plant's ids for them: products
matched by name, model versions by product and file hash, created there on first sight.

The images a station keeps (every reject, the sampled passes: the frame and its 16-bit map) follow
their rows (:mod:`inspector.links.plant_images`): once the rows are caught up, the same thread
copies the files' bytes into the plant's ``plant_images`` table, or into an object store with the
table naming them, a batch per plant transaction, behind a second mark of its own (``TARGET
images``) that never passes the rows' mark. Rows go first because they are what the line decided;
an outage only makes the images wait on the station's disk under its quota. An image the quota
removed before the plant came back cannot be sent: it is counted (``images_gone``), and the row
says its image is not kept. The row's own image paths stay the station's. The URL says where the
images go: ``?images=s3://BUCKET/PREFIX`` to an S3-compatible object store
(:mod:`inspector.links.s3_store`; each object is stored before the row naming it, and a store that
is away makes only the images wait, the rows go on), ``?images=off`` nowhere (rows only).

The plant database seals what it receives as the station does (:mod:`inspector.history.seals`),
a batch per plant transaction, so ``inspector audit verify`` checks its verdicts too.

What is not forwarded: a label set on the station after its row was forwarded (label in the plant
database's review instead), users, audit events, calibrations.

The outage raises ``plant_db_down`` and the reconnect ``plant_db_recovered`` through ``on_alarm``
(the line's alarm path in ``inspector run``), or the log without one. psycopg (3) is needed only
for a PostgreSQL target: ``pip install 'inspector[plant]'``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DataError, IntegrityError, SQLAlchemyError

from inspector.errors import DatabaseError, InspectorError
from inspector.history.db import HistoryDB, error_reason
from inspector.history.queries import STATION_VERSIONS
from inspector.history.seals import lock_batches, seal_new_inspections
from inspector.history.tables import (ForwardMark, Inspection, ModelVersion, PlantImage, Product, StationAlarm,
                                      StationStatus, utc_now)
from inspector.inspection import InspectionResult
from inspector.links.plant_images import ObjectStore, ObjectStoreError, image_key
from inspector.links.sender import SenderThread

log = logging.getLogger(__name__)

PLANT_DB_DOWN: Final = "plant_db_down"
PLANT_DB_RECOVERED: Final = "plant_db_recovered"
#: Seconds libpq waits for a plant database that does not answer, per connection attempt.
CONNECT_TIMEOUT_S: Final = 5
STATION_MAX: Final = 64  # the width of inspections.station
#: Bytes of images per plant transaction, about: a batch is at least one inspection's images.
IMAGE_BATCH_BYTES: Final = 16 * 2**20
#: Inspections looked at per image batch (most passes keep no image).
IMAGE_BATCH_ROWS: Final = 200
#: Alarms per plant transaction.
ALARM_BATCH: Final = 200
#: Alarms held in memory until the forwarder keeps them in the local history, at most.
ALARMS_HELD: Final = 1000
#: Seconds between the station's reports of what waits (``station_status``), while connected.
STATUS_EVERY_S: Final = 10.0

#: ``?images=`` values: the kept images go into the plant database (the default), or nowhere.
IMAGES_IN_DB: Final = "db"
IMAGES_OFF: Final = "off"

AlarmSink = Callable[[str, str], None]

# Copied as they are; id is the station's, product and model version are mapped to the plant's.
_COPIED = [c.name for c in Inspection.__table__.columns if c.name not in ("id", "product_id", "model_version_id")]
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class PlantTarget(NamedTuple):
    """What a plant database URL says: the database, the station, where the images go."""

    url: URL
    station: str | None
    #: :data:`IMAGES_IN_DB`, :data:`IMAGES_OFF`, or an object store's ``s3://BUCKET[/PREFIX]``.
    images: str


def parse_plant_target(url: str) -> PlantTarget:
    """:func:`parse_plant_url`, and where the kept images go: ``?images=s3://BUCKET[/PREFIX]``
    (an S3-compatible object store, the rows naming the objects), ``?images=off`` (rows only), or
    without it the plant database itself. Raises InspectorError for a bad URL, an object store's
    URL with a secret in it included; connects nothing and needs no client library."""
    parsed, station = parse_plant_url(url)
    images = make_url(url).query.get("images", IMAGES_IN_DB)
    if images.startswith("s3:"):
        from inspector.links.s3_store import parse_s3_url

        bucket, prefix = parse_s3_url(images)
        images = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    return PlantTarget(parsed, station, images)


def parse_plant_url(url: str) -> tuple[URL, str | None]:
    """The SQLAlchemy URL of the plant database and the ``station`` it names (None: not given).

    ``postgresql://`` means psycopg 3 (SQLAlchemy's own default is psycopg2); a SQLite URL is
    accepted too (a test, a one-line plant). libpq gets a connect timeout unless one is given.
    ``?images=`` is checked and taken off (:func:`parse_plant_target` says what it is).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InspectorError(f"not a database URL: {url!r} (expected postgresql://USER@HOST/DB)") from exc
    backend = parsed.get_backend_name()
    if backend not in _INSERTS:
        raise InspectorError(f"the plant database must be PostgreSQL (or SQLite), not {backend}: {url!r}")
    station = parsed.query.get("station")
    if isinstance(station, tuple):
        raise InspectorError(f"give ?station= once in {url!r}")
    if station is not None and not 0 < len(station) <= STATION_MAX:
        raise InspectorError(f"a station's name has 1 to {STATION_MAX} characters, got {station!r}")
    images = parsed.query.get("images")
    if isinstance(images, tuple):
        raise InspectorError(f"give ?images= once in {url!r}")
    if images is not None and images not in (IMAGES_IN_DB, IMAGES_OFF):
        if not images.startswith("s3:"):
            raise InspectorError(f"?images= is s3://BUCKET[/PREFIX] (an object store), {IMAGES_OFF} (rows only) or "
                                 f"{IMAGES_IN_DB} (the plant database, the default), not {images!r}")
        from inspector.links.s3_store import parse_s3_url

        parse_s3_url(images)  # a secret in it is refused here, before anything shows the URL
    parsed = parsed.difference_update_query(["station", "images"])
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if "connect_timeout" not in parsed.query:
            parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    return parsed, station


class PlantLink(SenderThread):
    """A line link (``build_line(..., links=[link])``) that forwards every inspection recorded in
    ``db`` to the plant database at ``url`` (see the module docstring).

    A ``?station=NAME`` in ``url`` becomes ``db.station``, the name every row is recorded under
    (default: the host name), so construct the link before the line writes anything. ``batch``:
    rows per plant transaction; ``on_alarm(kind, message)``: where ``plant_db_down`` and
    ``plant_db_recovered`` go (may be set later, before :meth:`start`). ``images``: copy the kept
    images too (the default, unless ``url`` says ``?images=off``); ``objects``: put them in this
    object store rather than the plant database (default: the :class:`~inspector.links.s3_store.S3Store`
    that ``?images=s3://BUCKET/PREFIX`` names, else none). :meth:`start` the forwarder; :meth:`stop`
    it after the line.

    An object store that cannot take the images (:class:`~inspector.links.plant_images.ObjectStoreError`)
    raises ``plant_db_down`` once and is tried again with the same backoff as the database, while
    the rows go on; its return raises ``plant_db_recovered``. Until then the images wait on the
    station's disk and the link's :attr:`state` is ``"retrying"``.
    """

    DOWN_ALARM, RECOVERED_ALARM = PLANT_DB_DOWN, PLANT_DB_RECOVERED
    WAITING = "inspections wait in the local history"
    NAME = "plant link"

    def __init__(
        self,
        db: HistoryDB,
        url: str,
        *,
        on_alarm: AlarmSink | None = None,
        batch: int = 500,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        images: bool = True,
        objects: ObjectStore | None = None,
        image_batch_bytes: int = IMAGE_BATCH_BYTES,
    ) -> None:
        target = parse_plant_target(url)
        self.plant_url, station = target.url, target.station
        if images and target.images == IMAGES_OFF:
            images = False
        if objects is None and images and target.images.startswith("s3://"):
            from inspector.links.s3_store import S3Store

            objects = S3Store(target.images)  # reads boto3's configuration; no request yet
        if station is not None:
            db.station = station
        self.db = db
        #: The mark's key: which plant database, without its password (nor the connect timeout).
        self.target = self.plant_url.difference_update_query(["connect_timeout"]).render_as_string(hide_password=True)
        self.on_alarm = on_alarm
        self.batch = batch
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.forwarded = 0  # rows committed to the plant database by this link (replays included)
        self.images, self.objects, self.image_batch_bytes = images, objects, image_batch_bytes
        self.image_target = f"{self.target} images"  # the images' mark
        self.images_forwarded = 0  # image files committed to the plant by this link
        self.images_gone = 0  # kept images removed from this station's disk before they could go
        self._image_last_id: int | None = None
        self._objects_down = False  # the object store failed its last batch
        self._objects_retry_at = 0.0  # monotonic time of its next try
        self._objects_backoff = retry_initial_s
        self.alarm_target = f"{self.target} alarms"  # the alarms' mark
        #: The line link that hears the line's alarms (:class:`AlarmKeeper`): give it to the line
        #: beside this link, whose own ``on_alarm`` is where its alarms go.
        self.alarms = AlarmKeeper(self)
        self._held_alarms: deque[StationAlarm] = deque(maxlen=ALARMS_HELD)
        self._alarm_last_id: int | None = None
        self._status_at = -float("inf")  # monotonic time of the last status report
        self._plant: HistoryDB | None = None
        self._last_id: int | None = None  # the mark, once read
        self._products: dict[int, int] = {}  # station's id -> plant's
        self._models: dict[int, int] = {}
        self._cv = threading.Condition()
        self._woken = False
        self._stop_at: float | None = None
        self._down = False
        self._thread: threading.Thread | None = None

    @property
    def station(self) -> str:
        return self.db.station

    @property
    def connected(self) -> bool:
        return self._plant is not None

    @property
    def state(self) -> str:
        """``"stopped"`` (not started, or stopped), ``"connecting"`` (started, no answer yet),
        ``"connected"``, or ``"retrying"`` (the plant database is away and the link reconnecting, or
        it refuses what is sent, or its object store is away and the images wait)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return "stopped"
        if self._plant is not None:
            return "retrying" if self._objects_down or self._down else "connected"
        return "retrying" if self._down else "connecting"

    # -- the line's side: quick, never blocks ------------------------------------------------

    def on_result(self, result: InspectionResult) -> None:
        """A result is durable in the local history: wake the forwarder."""
        self._wake()

    # -- the forwarder ----------------------------------------------------------------------------

    def pending(self) -> int:
        """Inspections recorded here that the plant database has not committed yet."""
        with self.db.session() as s:
            last = self._mark(s)
            return int(s.scalar(select(func.count()).select_from(Inspection).where(Inspection.id > last)) or 0)

    def pending_images(self) -> int:
        """Inspections recorded here with kept images that the plant has not committed yet."""
        if not self.images:
            return 0
        with self.db.session() as s:
            last = self._image_mark(s)
            kept = (Inspection.image_path.is_not(None)) | (Inspection.heatmap_path.is_not(None))
            return int(s.scalar(select(func.count()).select_from(Inspection).where(Inspection.id > last, kept)) or 0)

    def start(self) -> None:
        """Start the forwarder (it sends what an earlier run left behind first)."""
        if self.plant_url.get_backend_name() == "postgresql":
            try:  # fail now, on the caller's thread, if the driver is missing
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise InspectorError("the plant database link needs psycopg: pip install 'inspector[plant]'") from exc
        self._thread = threading.Thread(target=self._run, name="plant-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> int:
        """Forward what can be forwarded within ``timeout`` seconds, then disconnect; the rest waits
        for the next run. Returns the inspections not forwarded."""
        self._end_thread(timeout)
        if self._plant is not None:
            self._plant.close()
            self._plant = None
        return self.pending()

    def _run(self) -> None:
        try:
            self._forward_until_stopped()
        except Exception as exc:  # a bug: say so loudly; the local history keeps every row
            log.exception("plant database forwarder crashed")
            self._alarm(PLANT_DB_DOWN, f"plant database forwarder stopped by an internal error ({exc}); "
                        "inspections wait in the local history")

    def _forward_until_stopped(self) -> None:
        """Rows first (what the line decided), then the alarms, then the images; then a report of
        what waits, and a nap until the next result. A failure of the plant (or of the local
        history, or of the object store) decides between retrying and stopping."""
        backoff = self.retry_initial_s
        while True:
            self._keep_alarms()
            if self._plant is None and not self._connect():
                if self._stopping_done(caught_up=False):
                    return
                self._sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            backoff = self.retry_initial_s
            try:
                sent = self._forward_rows() or self._forward_alarms() or self._forward_images()
            except ObjectStoreError as exc:  # the rows go on; the images wait for the store
                self._objects_lost(exc)
                continue
            except _LocalHistoryError as exc:  # the local writer spills meanwhile
                log.warning("plant link cannot read the local history: %s", exc.__cause__)
                if self._stopping_done(caught_up=False):
                    return
                self._sleep(self.retry_max_s)
                continue
            except (SQLAlchemyError, DatabaseError, OSError) as exc:
                if not self._refused(exc):
                    self._lost(exc)
                elif self._stopping_done(caught_up=False):
                    return
                continue
            if sent:
                self._accepted()
                continue  # more may be waiting: no pause while catching up
            stopping = self._stopping_done(caught_up=not (self.images and self._objects_down))
            self._report_status(now=stopping)
            if stopping:
                return
            self._nap()

    def _forward_rows(self) -> bool:
        """The next batch of rows to the plant; whether there was one."""
        rows = _local(self._read_batch)
        if not rows:
            return False
        self._send(rows)
        self._save_mark()
        return True

    def _forward_images(self) -> bool:
        """The next batch of kept images to the plant (their objects first, where a store keeps
        them); whether the images' mark moved. Not while the object store is being waited for."""
        if not self.images or time.monotonic() < self._objects_retry_at:
            return False
        images, scanned = _local(self._read_images)
        if scanned is None:
            return False
        self._send_images(self._put_objects(images), scanned)
        self._save_mark(self.image_target, scanned)
        return True

    def _stopping_done(self, *, caught_up: bool) -> bool:
        """Stopping, and either everything was forwarded or the deadline passed."""
        return self._stop_at is not None and (caught_up or time.monotonic() >= self._stop_at)

    def _connect(self) -> bool:
        """Open the plant database and bring its schema up to this software's (the migrations are
        idempotent; an advisory lock keeps two stations from running them at once)."""
        try:
            plant = HistoryDB(self.plant_url.render_as_string(hide_password=False), station=self.station)
        except DatabaseError as exc:
            self._alarm_down(f"cannot reach {self._where()}: {exc}")
            return False
        try:
            plant.upgrade()
        except DatabaseError as exc:
            plant.close()
            self._alarm_down(f"cannot use {self._where()}: {exc}")
            return False
        self._plant = plant
        if self._down:
            self._down = False
            try:
                left = self.pending()
            except (SQLAlchemyError, DatabaseError):
                left = "some"
            self._alarm(PLANT_DB_RECOVERED, f"{self._where()} reachable again; {left} inspections to forward")
        return True

    def _accepted(self) -> None:
        """A send went through: after a refusal (the connection kept), the link is well again."""
        if self._down:
            self._down = False
            self._alarm(PLANT_DB_RECOVERED, f"{self._where()} takes this station's inspections again")

    def _refused(self, exc: BaseException) -> bool:
        """The plant database answered but refused what was sent (a value its schema cannot hold,
        a constraint broken): reconnecting would not help, and dropping the rows would lose them.
        So the link stays connected, says why once (``plant_db_down``), and tries again slowly;
        the rows wait in the local history until the plant is brought up to the station's
        software."""
        if not isinstance(exc, (DataError, IntegrityError)):
            return False
        self._alarm_down(f"{self._where()} refuses what this station sends: {error_reason(exc)}")
        self._sleep(self.retry_max_s)
        return True

    def _lost(self, exc: BaseException) -> None:
        plant, self._plant = self._plant, None
        if plant is not None:
            plant.close()  # pooled connections to a restarted server are dead
        self._alarm_down(f"lost {self._where()}: {error_reason(exc)}")

    def _mark(self, s: Any) -> int:
        if self._last_id is None:
            mark = s.get(ForwardMark, self.target)
            self._last_id = 0 if mark is None else mark.last_id
        return self._last_id

    def _image_mark(self, s: Any) -> int:
        if self._image_last_id is None:
            mark = s.get(ForwardMark, self.image_target)
            self._image_last_id = 0 if mark is None else mark.last_id
        return self._image_last_id

    def _read_images(self) -> tuple[list[dict[str, Any]], int | None]:
        """The next kept images above the images' mark and up to the rows' mark, read from this
        station's disk, within the batch's bytes; and the last inspection id looked at (None:
        nothing to do). A file the quota has removed is counted and passed over."""
        with self.db.session() as s:
            first, last_row = self._image_mark(s), self._mark(s)
            if first >= last_row:
                return [], None
            stmt = (select(Inspection.id, Inspection.station, Inspection.uid, Inspection.image_path,
                           Inspection.heatmap_path)
                    .where(Inspection.id > first, Inspection.id <= last_row,
                           (Inspection.image_path.is_not(None)) | (Inspection.heatmap_path.is_not(None)))
                    .order_by(Inspection.id).limit(IMAGE_BATCH_ROWS))
            rows = s.execute(stmt).all()
        if not rows:  # the rows' mark is ahead, with no image kept in between
            return [], last_row
        images: list[dict[str, Any]] = []
        size = 0
        scanned = first
        for row in rows:
            if images and size >= self.image_batch_bytes:
                break
            for kind, path in (("image", row.image_path), ("heatmap", row.heatmap_path)):
                if path is None:
                    continue
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    self.images_gone += 1
                    log.warning("plant link: %s of inspection %s was removed from this station's disk before the "
                                "plant could take it (the image store's quota)", kind, row.uid)
                    continue
                except OSError as exc:  # unreadable (a disk error, its mode changed): passed over, said
                    self.images_gone += 1
                    log.warning("plant link: cannot read the %s of inspection %s, not forwarded: %s", kind, row.uid, exc)
                    continue
                images.append({"station": row.station, "uid": row.uid, "kind": kind, "data": data})
                size += len(data)
            scanned = row.id
        return images, scanned

    def _put_objects(self, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The plant rows of a batch of images, each put in the object store first where there is
        one (its row then names the object; again after a failure: the same key, the same bytes).
        Raises ObjectStoreError when the store cannot take one."""
        values = []
        for image in images:
            data = image["data"]
            value = {"station": image["station"], "uid": image["uid"], "kind": image["kind"], "size": len(data),
                     "sha256": hashlib.sha256(data).hexdigest(), "data": data, "location": None}
            if self.objects is not None:
                value["location"] = self.objects.put(image_key(image["station"], image["uid"], image["kind"]), data)
                value["data"] = None
            values.append(value)
        if values and self.objects is not None:
            self._objects_backoff = self.retry_initial_s
            if self._objects_down:
                self._objects_down = False
                try:
                    left: Any = self.pending_images()
                except (SQLAlchemyError, DatabaseError):
                    left = "some"
                self._alarm(PLANT_DB_RECOVERED, f"{self._objects_where()} reachable again; the images of {left} more "
                            "inspections to forward")
        return values

    def _objects_lost(self, exc: ObjectStoreError) -> None:
        """The object store failed a batch: alarm once per outage, try again after the backoff."""
        if not self._objects_down:
            self._objects_down = True
            self._alarm(PLANT_DB_DOWN, f"cannot store images in {self._objects_where()}: {exc}; the images wait on "
                        "this station's disk, the inspection rows go on")
        else:
            log.debug("%s", exc)
        self._objects_retry_at = time.monotonic() + self._objects_backoff
        self._objects_backoff = min(self._objects_backoff * 2, self.retry_max_s)

    def _objects_where(self) -> str:
        return f"the plant's object store {getattr(self.objects, 'url', self.objects)}"

    def _send_images(self, values: list[dict[str, Any]], scanned: int) -> None:
        """One plant transaction of images (their objects already stored, where a store keeps them)."""
        assert self._plant is not None
        if values:
            with self._plant.session() as p:
                insert = _INSERTS[p.get_bind().dialect.name]
                received = _plant_now(p)  # the retention counts from the plant's clock, not the station's
                p.execute(insert(PlantImage).on_conflict_do_nothing(index_elements=["station", "uid", "kind"]),
                          [{**value, "received": received} for value in values])
        self._image_last_id = scanned
        self.images_forwarded += len(values)

    # -- alarms and the station's status ----------------------------------------------------------

    def _keep_alarms(self) -> None:
        """The alarms heard since, into the local history (where they wait for the plant like
        rows do); a history that cannot take them now keeps them held for the next turn."""
        if not self._held_alarms:
            return
        alarms = []
        while self._held_alarms:
            alarms.append(self._held_alarms.popleft())
        try:
            with self.db.session() as s:
                s.add_all(alarms)
        except (SQLAlchemyError, DatabaseError) as exc:
            log.warning("plant link cannot keep %d alarms in the local history yet: %s", len(alarms), exc)
            self._held_alarms.extendleft(reversed(alarms))

    def _forward_alarms(self) -> bool:
        """The next kept alarms above their mark to the plant, in one transaction; whether any went."""
        assert self._plant is not None
        alarms = _local(self._read_alarms)
        if not alarms:
            return False
        values = [{"station": a.station, "uid": a.uid, "time": a.time, "kind": a.kind, "message": a.message}
                  for a in alarms]
        with self._plant.session() as p:
            insert = _INSERTS[p.get_bind().dialect.name]
            p.execute(insert(StationAlarm).on_conflict_do_nothing(index_elements=["station", "uid"]), values)
        self._alarm_last_id = alarms[-1].id
        self._save_mark(self.alarm_target, self._alarm_last_id)
        return True

    def _read_alarms(self) -> list[Any]:
        with self.db.session() as s:
            if self._alarm_last_id is None:
                mark = s.get(ForwardMark, self.alarm_target)
                self._alarm_last_id = 0 if mark is None else mark.last_id
            return s.execute(select(StationAlarm.id, StationAlarm.station, StationAlarm.uid, StationAlarm.time,
                                    StationAlarm.kind, StationAlarm.message)
                             .where(StationAlarm.id > self._alarm_last_id)
                             .order_by(StationAlarm.id).limit(ALARM_BATCH)).all()

    def _report_status(self, *, now: bool = False) -> None:
        """Tell the plant what waits here (``station_status``), every :data:`STATUS_EVERY_S` while
        connected and once more as the link stops. A failure is only logged: the next batch finds
        out whether the plant is away."""
        if self._plant is None or (not now and time.monotonic() - self._status_at < STATUS_EVERY_S):
            return
        self._status_at = time.monotonic()
        try:
            waiting = {"rows_waiting": self.pending(), "images_waiting": self.pending_images(),
                       "images_gone": self.images_gone}
            with self._plant.session() as p:
                dialect = p.get_bind().dialect.name
                values = {"station": self.station, "seen": _plant_now(p), **waiting}
                p.execute(_INSERTS[dialect](StationStatus).values(values).on_conflict_do_update(
                    index_elements=["station"], set_={k: v for k, v in values.items() if k != "station"}))
        except (SQLAlchemyError, DatabaseError) as exc:
            log.debug("plant link could not report the station's status: %s", exc)

    def _read_batch(self) -> list[dict[str, Any]]:
        """The next local rows above the mark, in id order, with what naming their product and
        model version in the plant database takes."""
        with self.db.session() as s:
            last = self._mark(s)
            columns = [Inspection.id, Inspection.product_id, Inspection.model_version_id,
                       *(getattr(Inspection, name) for name in _COPIED)]
            stmt = select(*columns).where(Inspection.id > last).order_by(Inspection.id).limit(self.batch)
            rows = [dict(row._mapping) for row in s.execute(stmt)]
            for row in rows:
                product_id, model_id = row["product_id"], row["model_version_id"]
                if product_id is not None and product_id not in self._products:
                    row["_product"] = s.get(Product, product_id)
                if model_id is not None and model_id not in self._models:
                    row["_model"] = s.get(ModelVersion, model_id)
                    row["_model_product"] = s.get(Product, row["_model"].product_id) if row["_model"] else None
        return rows

    def _send(self, rows: list[dict[str, Any]]) -> None:
        """One plant transaction: the rows, with plant ids for their products and model versions.
        The id caches take the new ids only after the commit (a rolled-back id means nothing)."""
        assert self._plant is not None
        products, models = dict(self._products), dict(self._models)
        with self._plant.session() as p:
            lock_batches(p)  # before the insert: the rows it adds are sealed as one batch
            insert = _INSERTS[p.get_bind().dialect.name]
            values = []
            for row in rows:
                if "_product" in row and row["product_id"] not in products:
                    products[row["product_id"]] = self._plant_product(p, insert, row["_product"])
                if "_model" in row and row["model_version_id"] not in models:
                    owner = self._plant_product(p, insert, row["_model_product"])
                    models[row["model_version_id"]] = self._plant_model(p, row["_model"], owner)
                value = {name: row[name] for name in _COPIED}
                value["product_id"] = products.get(row["product_id"]) if row["product_id"] is not None else None
                value["model_version_id"] = (models.get(row["model_version_id"])
                                             if row["model_version_id"] is not None else None)
                values.append(value)
            stmt = insert(Inspection).on_conflict_do_nothing(index_elements=["station", "uid"])
            p.execute(stmt, values)
            seal_new_inspections(p)
        self._products, self._models = products, models
        self._last_id = rows[-1]["id"]
        self.forwarded += len(rows)

    def _plant_product(self, p: Any, insert: Any, product: Product | None) -> int | None:
        """The plant's id of the station's product, by name; created there on first sight."""
        if product is None:  # the station's row names a product that is gone: keep the row
            return None
        p.execute(insert(Product).values(name=product.name, description=product.description,
                                         camera_settings=product.camera_settings)
                  .on_conflict_do_nothing(index_elements=["name"]))
        return p.scalar(select(Product.id).where(Product.name == product.name))

    def _plant_model(self, p: Any, model: ModelVersion | None, product_id: int | None) -> int | None:
        """The plant's id of the station's model version, by product and file hash; created there
        on first sight (a reference for the review, not a recipe: its status stays candidate)."""
        if model is None or product_id is None:
            return None
        if p.get_bind().dialect.name == "postgresql":  # two stations meeting the same new model
            p.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": model.sha256})
        found = select(ModelVersion.id).where(ModelVersion.product_id == product_id,
                                              ModelVersion.sha256 == model.sha256).order_by(ModelVersion.id).limit(1)
        model_id = p.scalar(found)
        if model_id is None:
            copy = ModelVersion(product_id=product_id, sha256=model.sha256, path=model.path, created=model.created,
                                metrics={**(model.metrics or {}), STATION_VERSIONS: {self.station: model.id}},
                                report_path=model.report_path, note=f"from station {self.station}")
            p.add(copy)
            p.flush()
            return copy.id
        # The plant numbers its versions itself: each station's own number of the file is kept, so
        # the review can name the version as the station's teach status and history do.
        copy = p.get(ModelVersion, model_id)
        known = dict((copy.metrics or {}).get(STATION_VERSIONS) or {})
        if known.get(self.station) != model.id:
            copy.metrics = {**(copy.metrics or {}), STATION_VERSIONS: {**known, self.station: model.id}}
        return model_id

    def _save_mark(self, target: str | None = None, last_id: int | None = None) -> None:
        """Keep a mark (the rows' by default) in the local history. Failing here only means
        forwarding rows or images again."""
        target = self.target if target is None else target
        last_id = self._last_id if last_id is None else last_id
        try:
            with self.db.session() as s:
                mark = s.get(ForwardMark, target)
                if mark is None:
                    s.add(ForwardMark(target=target, last_id=last_id))
                else:
                    mark.last_id = last_id
        except (SQLAlchemyError, DatabaseError) as exc:
            log.warning("plant link cannot store its mark (rows go again after a restart): %s", exc)

    def _where(self) -> str:
        return f"plant database {self.target}"



class AlarmKeeper:
    """The plant link's ear on the line (a line link, ``build_line(..., links=[link.alarms])``):
    every alarm the line raises is held for the forwarder, which keeps it in the station's
    history and forwards it to the plant's ``alarms`` with the rows. Quick: it only queues."""

    def __init__(self, link: PlantLink) -> None:
        self._link = link

    def on_alarm(self, alarm: Any) -> None:
        link = self._link
        link._held_alarms.append(StationAlarm(station=link.station, uid=uuid.uuid4().hex, time=alarm.time,
                                              kind=alarm.kind, message=alarm.message))
        link._wake()


def _plant_now(p: Any) -> Any:
    """The plant database's clock (PostgreSQL's ``now()``); a SQLite plant shares this computer's."""
    if p.get_bind().dialect.name == "postgresql":
        return p.scalar(select(func.now()))
    return utc_now()


class _LocalHistoryError(Exception):
    """Reading the station's own history failed (its cause says why): not the plant's fault."""


def _local(read: Any) -> Any:
    """``read()``, its database errors told apart from the plant's."""
    try:
        return read()
    except (SQLAlchemyError, DatabaseError) as exc:
        raise _LocalHistoryError(str(exc)) from exc
