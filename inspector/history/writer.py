"""Durable, non-blocking writer of inspection records.

The pipeline calls :meth:`HistoryWriter.submit` with an :class:`~inspector.inspection.
InspectionResult`, which only queues. A thread of the writer saves images (the image store fills
in their paths), inserts queued records in batched transactions and, only once a batch is
durable, hands each record -- the same type, with ``inspection_id`` or ``journaled`` now set -- to
the result subscribers. So anything a subscriber saw (a PLC output, the live view) is on disk,
even if the process is killed a moment later.

Durable means committed to the database, or -- while the database refuses writes (locked,
read-only, disk full, server gone) -- appended and fsynced to the spill journal next to it. The
writer retries the database with exponential backoff, replays the journal when it recovers (rows
are matched by ``uid``, so a replay never duplicates), and raises an :class:`Alarm` on each change
of state. Records that cannot be stored anywhere wait in a bounded buffer; beyond its bound they
are counted in ``stats.failed`` and alarmed, never dropped silently. Records the database refuses
for good (e.g. an unknown model version id) go to ``<journal>.rejected.jsonl``, counted and alarmed.

Verdicts come before images. Images that cannot be saved (the image store keeps a reserve of the
disk for the verdicts) are counted in ``stats.images_dropped`` and alarmed, and the record is
stored without them. When the free space beside the journal falls below ``stop_reserve_bytes``
the writer raises ``disk_full`` once: the pipeline then stops acquiring, and what it holds is
recorded into the reserve. A stop that runs out of time journals what is still unstored rather
than losing it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from sqlalchemy.exc import DataError, IntegrityError

from inspector.alarms import Alarm, AlarmThrottle
from inspector.history.db import HistoryDB, data_dir, error_reason
from inspector.history.image_store import ImageStore, NoRoomForImages, free_bytes
from inspector.history.journal import SpillJournal
from inspector.inspection import InspectionResult

log = logging.getLogger(__name__)

# Alarm kinds.
DB_UNAVAILABLE: Final = "db_unavailable"
DB_RECOVERED: Final = "db_recovered"
JOURNAL_FAILED: Final = "journal_failed"
JOURNAL_CORRUPT: Final = "journal_corrupt"
RECORDS_LOST: Final = "records_lost"
RECORDS_JOURNALED: Final = "records_journaled"
RECORDS_REJECTED: Final = "records_rejected"
IMAGE_STORE_FAILED: Final = "image_store_failed"
IMAGES_DROPPED: Final = "images_dropped"
DISK_FULL: Final = "disk_full"
SUBSCRIBER_FAILED: Final = "subscriber_failed"

# Errors that retrying cannot fix: the row itself is refused.
_REFUSED = (IntegrityError, DataError)
_REPLAY_CHUNK = 500
_STOP = object()  # queue sentinel put by stop()


class _PartlyWritten(Exception):
    """The database failed while rows of a batch were written one by one; ``__cause__`` says why.
    ``stored`` were committed (and refused ones diverted); ``rest`` were not written."""

    def __init__(self, stored: list[InspectionResult], rest: list[InspectionResult]) -> None:
        super().__init__(f"{len(rest)} records not written")
        self.stored = stored
        self.rest = rest


@dataclass(frozen=True)
class WriterStats:
    """Counters in records. ``written``: committed to the database (replays included).
    ``buffered``: submitted, not yet durable or failed. ``journaled``: went to the spill journal.
    ``journal_pending``: in the journal now, waiting for the database. ``failed``: stored nowhere
    or refused by the database (see the alarms). ``images_dropped``: records stored without the
    images they should have kept (a full disk, a failing image folder)."""

    written: int
    buffered: int
    journaled: int
    journal_pending: int
    failed: int
    images_dropped: int = 0


Subscriber = Callable[[InspectionResult], None]


def default_journal_path(db: HistoryDB) -> Path:
    """``<db file>.spill.jsonl`` beside a SQLite file; for a server database a file in the data
    folder named after its URL; for an in-memory database (gone with the process anyway) a file
    of this process in the temporary folder, so it never replays another database's journal."""
    if db.sqlite_path is not None:
        return db.sqlite_path.with_name(db.sqlite_path.name + ".spill.jsonl")
    if db.engine.dialect.name == "sqlite":
        return Path(tempfile.gettempdir()) / f"inspector-{os.getpid()}-{id(db):x}.spill.jsonl"
    digest = hashlib.sha256(db.url.encode("utf-8")).hexdigest()[:12]
    return data_dir() / f"history-{digest}.spill.jsonl"


class HistoryWriter:
    """Writes :class:`~inspector.inspection.InspectionResult` s durably on its own thread (see the module docstring).

    Run one writer per database and journal: two writers sharing a journal file would replay
    and delete each other's records (pass ``journal_path`` to give each its own).

    ``subscribers`` and ``on_alarm`` are called on the writer's thread -- ``on_alarm`` also on the
    submitting thread when the buffer overflows -- so they must be quick and must not call back
    into the writer. ``max_buffered`` bounds the records held in memory (with their images).
    ``stop_reserve_bytes``: below this many free bytes on the journal's disk, ``disk_full`` is
    raised (0: never); ``free`` measures a folder's free bytes (a test passes its own).
    """

    def __init__(
        self,
        db: HistoryDB,
        image_store: ImageStore | None = None,
        *,
        subscribers: Iterable[Subscriber] = (),
        on_alarm: Callable[[Alarm], None] | None = None,
        journal_path: str | Path | None = None,
        batch_size: int = 256,
        max_buffered: int = 1000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        stop_reserve_bytes: int = 0,
        free: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.db = db
        self.image_store = image_store
        self.on_alarm = on_alarm
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.stop_reserve_bytes = stop_reserve_bytes
        self._free = free
        self._disk_full = False
        self._images_dropped = 0
        self.journal = SpillJournal(journal_path or default_journal_path(db))
        self.rejected = SpillJournal(self.journal.path.with_suffix(".rejected.jsonl"))
        self.alarms: deque[Alarm] = deque(maxlen=200)  # most recent alarms, oldest first
        self._subscribers = list(subscribers)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._outstanding = 0
        self._written = self._journaled = self._failed = 0
        self._stopping = False
        self._abandon = threading.Event()  # set when stop() times out; also the retry sleep
        self._throttle = AlarmThrottle(log, "history")
        self._thread: threading.Thread | None = None
        # Writer-thread state.
        self._pending: list[InspectionResult] = []
        self._rejected_uids: set[str] = set()
        self._stop_seen = False
        self._failing = False  # the database refused the last write (or the journal holds rows)
        self._outage_alarmed = False
        self._retry_at = 0.0
        self._backoff = retry_initial_s
        self._journal_pending = 0

    # -- public ----------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a result subscriber; do it before :meth:`start` so none misses a record."""
        self._subscribers.append(subscriber)

    def start(self) -> None:
        """Start the thread; records left in the spill journal by an earlier run are replayed."""
        if self._thread is not None:
            raise RuntimeError("HistoryWriter already started")
        journaled, _ = self.journal.read()
        if journaled or self.journal.path.exists():
            self._journal_pending = len(journaled)
            self._failing = True  # so the first turn of the loop replays the journal
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    def submit(self, record: InspectionResult, *, beyond_bound: bool = False) -> bool:
        """Queue a record without blocking. Returns False when the buffer is full: the record is
        then lost, counted in ``stats.failed`` and alarmed. ``beyond_bound``: take it even so (a
        stop recording the few frames it will not inspect)."""
        if not isinstance(record, InspectionResult):
            raise TypeError(f"expected an InspectionResult, got {type(record).__name__}")
        with self._lock:
            if self._stopping:
                raise RuntimeError("HistoryWriter is stopped")
            full = self._outstanding >= self.max_buffered and not beyond_bound
            if full:
                self._failed += 1
            else:
                self._outstanding += 1
                self._queue.put(record)
        if full:
            self._alarm(
                RECORDS_LOST,
                f"history buffer full ({self.max_buffered} records): frame {record.frame_id} of "
                f"camera {record.camera_id} was not recorded",
                throttle_s=10.0,
            )
        return not full

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record is durable (or counted failed); False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: self._outstanding == 0, timeout)

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Store everything submitted so far, then end the thread.

        Returns False if that took longer than ``timeout``: what was still unstored then goes to
        the spill journal without its images (replayed at the next start), or, where even that
        fails, is counted failed; either is alarmed.
        """
        with self._lock:
            if self._stopping:
                return self._thread is None or not self._thread.is_alive()
            self._stopping = True
            self._queue.put(_STOP)
        if self._thread is None:
            self.start()
        assert self._thread is not None
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self._abandon.set()
        self._thread.join(5.0)
        return False

    @property
    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                written=self._written,
                buffered=self._outstanding,
                journaled=self._journaled,
                journal_pending=self._journal_pending,
                failed=self._failed,
                images_dropped=self._images_dropped,
            )

    def __enter__(self) -> HistoryWriter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._abandon.is_set():
                if self._pending:  # stored nowhere last time: wait for the next retry
                    self._abandon.wait(self._retry_at - time.monotonic())
                    items = self._pending
                elif self._stop_seen:
                    if self._failing and self._journal_pending:
                        self._retry_at = 0.0  # one last replay, so a healed database is complete
                        self._handle([])
                    break
                else:
                    items = self._take(self._wait_s())
                self._handle(items)
        except Exception:  # a bug; the finally clause accounts for the records
            log.exception("history writer crashed")
        finally:
            self._give_up()

    def _wait_s(self) -> float | None:
        """How long to wait for new records: forever while healthy, until the retry if failing."""
        if not self._failing or (self._journal_pending == 0 and not self._pending):
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def _take(self, timeout: float | None) -> list[InspectionResult]:
        """Up to ``batch_size`` queued records (waiting ``timeout`` for the first), images saved."""
        records: list[InspectionResult] = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is _STOP:
                    self._stop_seen = True
                else:
                    assert isinstance(item, InspectionResult)
                    records.append(item)
                if len(records) >= self.batch_size:
                    break
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        self._check_disk(records)
        return [self._with_images(r) for r in records]

    def _with_images(self, record: InspectionResult) -> InspectionResult:
        """The record with the paths of its saved images (unchanged if none were saved)."""
        if self.image_store is None or (record.image is None and record.heatmap is None):
            return record
        try:
            return self.image_store.save(record)
        except Exception as exc:  # a full disk must not cost the verdict itself
            with self._lock:
                self._images_dropped += 1
            if isinstance(exc, NoRoomForImages):
                self._alarm(IMAGES_DROPPED, f"disk nearly full: {exc} (frame {record.frame_id} and later)",
                            throttle_s=10.0)
            else:
                self._alarm(IMAGE_STORE_FAILED, f"images of frame {record.frame_id} not saved: {exc}",
                            throttle_s=10.0)
            return record

    def _check_disk(self, records: list[InspectionResult]) -> None:
        """Raises ``disk_full`` once when the journal's disk is down to its reserve: the records
        now in hand and those still queued fit in it, more might not."""
        if not records or not self.stop_reserve_bytes or self._disk_full:
            return
        try:
            free = self._free(self.journal.path.parent)
        except OSError:
            return  # a folder that cannot be measured is reported by the write that fails
        if free < self.stop_reserve_bytes:
            self._disk_full = True
            self._alarm(DISK_FULL, f"only {free / 1e6:.1f} MB left on the disk of {self.journal.path.parent} "
                        f"(reserve {self.stop_reserve_bytes / 1e6:.1f} MB): the line stops before a verdict "
                        "would be lost; free space on that disk, then start again")

    def _handle(self, items: list[InspectionResult]) -> None:
        """Make ``items`` durable: in the database if it works, else in the journal."""
        retry_due = self._failing and time.monotonic() >= self._retry_at
        if self._failing and not (retry_due and (items or self._journal_pending)):
            self._spill(items)
            return
        try:
            replayed = self._replay() if self._failing else 0
            stored = self._insert(items, fresh=True)
        except Exception as exc:
            if isinstance(exc, _PartlyWritten):
                self._db_failed(exc.__cause__ or exc)
                self._settle_written(exc.stored)
                self._spill(exc.rest)
            else:
                self._db_failed(exc)
                self._spill(items)
            return
        if self._failing:
            self._failing = self._outage_alarmed = False
            self._alarm(
                DB_RECOVERED,
                f"history database {self.db.url} writable again; "
                f"{replayed} records replayed from the spill journal",
            )
        self._pending = []
        self._settle_written(stored)

    def _settle_written(self, stored: list[InspectionResult]) -> None:
        with self._lock:
            self._written += len(stored)
        self._report(stored)

    def _insert(self, items: list[InspectionResult], *, fresh: bool) -> list[InspectionResult]:
        """Write to the database; rows it refuses go to the rejected file. Transient errors raise.
        Returns the records written, with their row ids. ``fresh``: the items were not reported
        yet (so a rejection settles them)."""
        if not items:
            return []
        try:
            return self.db.write_inspections(items)
        except _REFUSED:
            pass
        stored: list[InspectionResult] = []
        for n, item in enumerate(items):  # find the refused row(s); the others are written alone
            try:
                stored += self.db.write_inspections([item])
            except _REFUSED as exc:
                self._reject(item, exc, fresh=fresh)
            except Exception as exc:
                raise _PartlyWritten(stored, items[n:]) from exc
        return stored

    def _replay(self) -> int:
        """Write the spill journal into the database and delete it; returns records written."""
        items, bad = self.journal.read()
        # Rows refused in an earlier, interrupted replay are already counted and kept aside.
        items = [item for item in items if item.uid not in self._rejected_uids]
        written = 0
        try:
            for start in range(0, len(items), _REPLAY_CHUNK):
                chunk = items[start : start + _REPLAY_CHUNK]
                # Verdicts that reached the database before a crash kept them in the journal too:
                # stored once (by uid), and counted once -- not again as replayed and recorded.
                before = self.db.stored_uids([item.uid for item in chunk])
                written += sum(r.uid not in before for r in self._insert(chunk, fresh=False))
        except _PartlyWritten as exc:
            # The journal still holds every record and replaying is idempotent: retry it whole.
            raise exc.__cause__ or exc from None
        self.journal.clear()
        with self._lock:
            self._written += written
            self._journal_pending = 0
            self._failed += bad
        if bad:
            self._alarm(
                JOURNAL_CORRUPT,
                f"{bad} unreadable lines of {self.journal.path} skipped "
                "(a write cut short by a crash, or a damaged file)",
            )
        return written

    def _db_failed(self, exc: Exception) -> None:
        self._failing = True
        if self._outage_alarmed:
            self._backoff = min(self._backoff * 2, self.retry_max_s)
        else:
            self._outage_alarmed = True
            self._backoff = self.retry_initial_s
            self._alarm(
                DB_UNAVAILABLE,
                f"history database {self.db.url} refused a write ({error_reason(exc)}); "
                f"records go to {self.journal.path} until it recovers",
            )
        self._retry_at = time.monotonic() + self._backoff
        self.db.reconnect()

    def _spill(self, items: list[InspectionResult]) -> None:
        if not items:
            return
        try:
            self.journal.append(items)
        except OSError as exc:
            self._pending = items
            self._alarm(
                JOURNAL_FAILED,
                f"{len(items)} records held in memory: neither the database nor "
                f"{self.journal.path} takes them ({exc})",
                throttle_s=10.0,
            )
            return
        with self._lock:
            self._journaled += len(items)
            self._journal_pending += len(items)
        self._pending = []
        self._report([replace(item, journaled=True) for item in items])

    def _reject(self, item: InspectionResult, exc: Exception, *, fresh: bool) -> None:
        self._rejected_uids.add(item.uid)
        where = f"kept in {self.rejected.path}"
        try:
            self.rejected.append([item])
        except OSError as write_error:
            where = f"and could not be kept ({write_error})"
        with self._lock:
            self._failed += 1
            if fresh:
                self._outstanding -= 1
                self._settled.notify_all()
        self._alarm(
            RECORDS_REJECTED,
            f"the database refused frame {item.frame_id} of camera "
            f"{item.camera_id} ({error_reason(exc)}); {where}",
        )

    def _report(self, stored: list[InspectionResult]) -> None:
        for item in stored:
            for subscriber in self._subscribers:
                try:
                    subscriber(item)
                except Exception as exc:
                    log.exception("history result subscriber %r failed", subscriber)
                    message = f"result subscriber {subscriber!r} failed: {exc}"
                    self._alarm(SUBSCRIBER_FAILED, message, throttle_s=10.0)
        with self._lock:
            self._outstanding -= len(stored)
            self._settled.notify_all()

    def _give_up(self) -> None:
        """Journal what the thread leaves unstored (stop timed out, or a crash), without images;
        where the journal refuses it too, count it as failed."""
        left = list(self._pending)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, InspectionResult):
                left.append(item)
        self._pending = []
        if not left:
            return
        try:
            self.journal.append(left)
        except OSError as exc:
            with self._lock:
                self._failed += len(left)
                self._outstanding -= len(left)
                self._settled.notify_all()
            self._alarm(RECORDS_LOST, f"history writer stopped with {len(left)} records not stored "
                        f"(the spill journal refused them: {exc})")
            return
        with self._lock:
            self._journaled += len(left)
            self._journal_pending += len(left)
        self._alarm(RECORDS_JOURNALED, f"the stop ran out of time before {len(left)} records reached the database: "
                    f"they are in {self.journal.path} and go in at the next start")
        self._report([replace(item, journaled=True) for item in left])

    def _alarm(self, kind: str, message: str, throttle_s: float = 0.0) -> None:
        alarm = self._throttle.alarm(kind, message, throttle_s)
        if alarm is None:
            return
        self.alarms.append(alarm)
        if self.on_alarm is not None:
            try:
                self.on_alarm(alarm)
            except Exception:
                log.exception("alarm callback failed")
