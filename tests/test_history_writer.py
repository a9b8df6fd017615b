"""Durable writer: report only after commit, survive SIGKILL and database faults, lose nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from inspector.history import (
    Alarm,
    HistoryDB,
    HistoryWriter,
    ImageStore,
    InspectionResult,
    benchmark_inserts,
)
from inspector.alarms import AlarmThrottle
from inspector.history import writer as w
from inspector.history.journal import SpillJournal
from inspector.history.tables import Inspection

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
FAST_RETRY = dict(retry_initial_s=0.05, retry_max_s=0.2)


def _record(i: int, **kwargs: object) -> InspectionResult:
    values = dict(
        time=T0 + timedelta(milliseconds=100 * i),
        camera_id="cam0",
        frame_id=i,
        score=i / 100.0,
        decision="FAIL" if i % 5 == 0 else "PASS",
        threshold=0.5,
        latency_total_ms=15.0,
        latency_model_ms=9.0,
    )
    values.update(kwargs)
    return InspectionResult(**values)


def _wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _uids_in(path: Path) -> list[str]:
    """Every uid stored in the database file, read with a plain sqlite3 connection."""
    with sqlite3.connect(path) as connection:
        return [uid for (uid,) in connection.execute("SELECT uid FROM inspections")]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{path}")
    db.upgrade()
    db.close()
    return path


def _open(path: Path, **kwargs: object) -> HistoryDB:
    return HistoryDB(f"sqlite:///{path}", **kwargs)


# -- normal operation -----------------------------------------------------------------------------


def test_subscribers_see_records_only_after_commit(db_path: Path, tmp_path: Path) -> None:
    """Each subscriber call finds its row already committed, seen from another connection."""
    seen: list[tuple[InspectionResult, bool]] = []
    observer = sqlite3.connect(db_path, check_same_thread=False)

    def subscriber(stored: InspectionResult) -> None:
        row = observer.execute(
            "SELECT id FROM inspections WHERE uid = ?", (stored.uid,)
        ).fetchone()
        seen.append((stored, row is not None and row[0] == stored.inspection_id))

    db = _open(db_path)
    store = ImageStore(tmp_path / "images", pass_sample_rate=0.0)
    image = np.zeros((16, 16), np.uint8)
    with HistoryWriter(db, store, subscribers=[subscriber]) as writer:
        records = [_record(i, image=image, heatmap=np.ones((4, 4), np.float32)) for i in range(50)]
        for record in records:
            assert writer.submit(record)
        assert writer.flush(timeout=20)
    observer.close()
    assert [s.uid for s, _ in seen] == [r.uid for r in records]
    assert all(committed for _, committed in seen)
    assert all(not s.journaled and s.inspection_id is not None and s.durable for s, _ in seen)
    # Subscribers get the submitted record itself, only what the history learnt filled in.
    for (stored, _), record in zip(seen, records):
        assert stored.image is record.image and stored.heatmap is record.heatmap
        assert stored == replace(record, inspection_id=stored.inspection_id, image_path=stored.image_path,
                                 heatmap_path=stored.heatmap_path, heatmap_low=stored.heatmap_low,
                                 heatmap_high=stored.heatmap_high)
    # Rejects carry their image paths and map range, sampled-out passes none.
    for stored, _ in seen:
        has_files = stored.image_path is not None and stored.heatmap_path is not None
        assert has_files == (stored.decision == "FAIL") == (stored.heatmap_low == stored.heatmap_high == 1.0)
        assert not has_files or Path(stored.image_path).is_file()
    rows = {r.uid: r for r in db.query_inspections(limit=100)}
    assert all(rows[s.uid].image_path == s.image_path for s, _ in seen)
    assert all((rows[s.uid].heatmap_low, rows[s.uid].heatmap_high) == (s.heatmap_low, s.heatmap_high) for s, _ in seen)
    assert writer.stats == w.WriterStats(
        written=50, buffered=0, journaled=0, journal_pending=0, failed=0
    )


def test_submit_never_waits_for_the_writer_thread(db_path: Path) -> None:
    """With the writer's thread stuck (here in a subscriber), submit() still returns at once."""
    release = threading.Event()
    db = _open(db_path)
    writer = HistoryWriter(db, subscribers=[lambda stored: release.wait()])
    writer.start()
    submitter = threading.Thread(target=lambda: [writer.submit(_record(i)) for i in range(100)])
    submitter.start()
    submitter.join(timeout=30)
    stuck = submitter.is_alive()
    release.set()
    assert not stuck, "submit() blocked while the writer thread was busy"
    assert writer.stop()
    assert writer.stats.written == 100


def test_stop_writes_everything_queued(db_path: Path) -> None:
    db = _open(db_path)
    writer = HistoryWriter(db, batch_size=32)
    records = [_record(i) for i in range(500)]
    for record in records:  # queued before the thread even runs
        writer.submit(record)
    writer.start()
    assert writer.stop(timeout=30)
    assert sorted(_uids_in(db_path)) == sorted(r.uid for r in records)
    assert writer.stats.written == 500 and writer.stats.buffered == 0
    with pytest.raises(RuntimeError):
        writer.submit(_record(501))


def test_refused_rows_are_diverted_and_counted(db_path: Path) -> None:
    db = _open(db_path)
    alarms: list[Alarm] = []
    reported: list[InspectionResult] = []
    writer = HistoryWriter(db, subscribers=[reported.append], on_alarm=alarms.append)
    bad = _record(3, model_version_id=999)  # no such model version: a foreign-key violation
    good = [_record(i) for i in (1, 2, 4)]
    for record in good[:2] + [bad] + good[2:]:
        writer.submit(record)
    writer.start()
    assert writer.stop()
    assert sorted(_uids_in(db_path)) == sorted(r.uid for r in good)
    assert [s.uid for s in reported] == [r.uid for r in good]
    assert writer.stats.failed == 1 and writer.stats.written == 3
    assert [a.kind for a in alarms] == [w.RECORDS_REJECTED]
    kept, _ = writer.rejected.read()
    assert [s.uid for s in kept] == [bad.uid]


def test_failing_subscriber_or_image_does_not_stop_recording(db_path: Path, tmp_path: Path) -> None:
    alarms: list[Alarm] = []
    calls: list[int] = []

    def broken(stored: InspectionResult) -> None:
        raise RuntimeError("display gone")

    db = _open(db_path)
    store = ImageStore(tmp_path / "images")
    writer = HistoryWriter(
        db, store, subscribers=[broken, lambda s: calls.append(s.inspection_id)], on_alarm=alarms.append
    )
    with writer:
        writer.submit(_record(0, image=np.zeros((4, 4), np.float64)))  # unstorable image
        writer.submit(_record(1))
    assert len(calls) == 2 and writer.stats.written == 2
    assert {a.kind for a in alarms} == {w.SUBSCRIBER_FAILED, w.IMAGE_STORE_FAILED}
    assert db.query_inspections(limit=2)[1].image_path is None


def test_benchmark_inserts_reports_a_rate_and_stores_rows(tmp_path: Path) -> None:
    rate = benchmark_inserts(f"sqlite:///{tmp_path / 'bench.db'}", 300)
    assert rate > 0
    assert len(_uids_in(tmp_path / "bench.db")) == 300


# -- crash ----------------------------------------------------------------------------------------

CHILD = """
import itertools, sys, time
from datetime import datetime, timezone
from inspector.history import HistoryDB, HistoryWriter, InspectionResult

def report(stored):
    print(stored.uid, stored.inspection_id, flush=True)

writer = HistoryWriter(HistoryDB(sys.argv[1]), subscribers=[report], batch_size=16)
writer.start()
for i in itertools.count():
    writer.submit(InspectionResult(time=datetime.now(timezone.utc), camera_id="cam0", frame_id=i,
                                   score=0.5, decision="FAIL" if i % 3 else "PASS", threshold=0.7))
    time.sleep(0.001)
"""


def test_sigkill_loses_no_reported_decision(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"sqlite:///{db_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    reported: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while len(reported) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            uid, row_id = line.split()
            reported[uid] = int(row_id)
        child.send_signal(signal.SIGKILL)
        # Lines written before the kill are still in the pipe; a cut-short last line is not a
        # report (the child died while printing it), so only whole lines count.
        for line in child.stdout:
            parts = line.split()
            if line.endswith("\n") and len(parts) == 2:
                reported[parts[0]] = int(parts[1])
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(reported) >= 300, "the child reported too little before the deadline"
    with sqlite3.connect(db_path) as connection:
        stored = dict(connection.execute("SELECT uid, id FROM inspections"))
    missing = {uid for uid in reported if stored.get(uid) != reported[uid]}
    assert not missing, f"{len(missing)} reported decisions are not in the database"


# -- database faults ------------------------------------------------------------------------------


def _assert_all_landed_once(db_path: Path, records: list[InspectionResult]) -> None:
    uids = _uids_in(db_path)
    assert len(uids) == len(set(uids)), "a replay duplicated rows"
    assert set(uids) == {r.uid for r in records}


def test_locked_database_spills_to_journal_and_recovers(db_path: Path) -> None:
    alarms: list[Alarm] = []
    reported: list[InspectionResult] = []
    db = _open(db_path, busy_timeout_ms=50)
    writer = HistoryWriter(
        db, subscribers=[reported.append], on_alarm=alarms.append, batch_size=8, **FAST_RETRY
    )
    writer.start()
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        records = [_record(i) for i in range(40)]
        for record in records:
            assert writer.submit(record)
        assert writer.flush(timeout=20)  # durable (in the journal) and reported while locked
        assert _uids_in(db_path) == []
        assert [s.uid for s in reported] == [r.uid for r in records]
        assert all(s.journaled and s.inspection_id is None for s in reported)
        assert writer.stats.journaled == writer.stats.journal_pending == 40
        journaled, bad = SpillJournal(writer.journal.path).read()
        assert bad == 0 and [s.uid for s in journaled] == [r.uid for r in records]
        assert alarms[0].kind == w.DB_UNAVAILABLE and "(database is locked)" in alarms[0].message
    finally:
        locker.rollback()
        locker.close()
    _wait_until(lambda: writer.stats.journal_pending == 0)
    later = [_record(100 + i) for i in range(5)]
    for record in later:
        writer.submit(record)
    assert writer.stop()
    _assert_all_landed_once(db_path, records + later)
    assert not writer.journal.path.exists()
    assert [a.kind for a in alarms] == [w.DB_UNAVAILABLE, w.DB_RECOVERED]
    assert all(not s.journaled and s.inspection_id is not None for s in reported[-5:])
    assert writer.stats.written == 45 and writer.stats.failed == 0


def test_read_only_database_spills_and_replays_on_next_start(db_path: Path) -> None:
    alarms: list[Alarm] = []
    read_only = HistoryDB(f"sqlite:///file:{db_path}?mode=ro&uri=true")
    journal = db_path.with_name("history.db.spill.jsonl")
    writer = HistoryWriter(read_only, on_alarm=alarms.append, journal_path=journal, **FAST_RETRY)
    records = [_record(i) for i in range(30)]
    with writer:
        for record in records:
            writer.submit(record)
    assert writer.stats.journaled == 30 and writer.stats.failed == 0
    assert alarms[0].kind == w.DB_UNAVAILABLE and "readonly" in alarms[0].message
    assert _uids_in(db_path) == []

    # Restarted still read-only: the journal cannot be replayed, which is alarmed, and kept.
    alarms.clear()
    with HistoryWriter(read_only, on_alarm=alarms.append, journal_path=journal) as again:
        _wait_until(lambda: bool(alarms))
    assert [a.kind for a in alarms] == [w.DB_UNAVAILABLE]
    assert again.stats.journal_pending == 30 and len(SpillJournal(journal).read()[0]) == 30

    # The operator fixes the permissions and restarts: the journal is replayed first thing.
    writable = _open(db_path)
    restarted = HistoryWriter(writable, on_alarm=alarms.append, journal_path=journal)
    with restarted:
        _wait_until(lambda: restarted.stats.journal_pending == 0)
    _assert_all_landed_once(db_path, records)
    assert alarms[-1].kind == w.DB_RECOVERED and restarted.stats.written == 30
    assert not journal.exists()


def test_disk_full_spills_and_recovers_when_space_returns(db_path: Path) -> None:
    with sqlite3.connect(db_path) as connection:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
    limit = {"pages": pages}  # no room to grow: inserts fail with SQLITE_FULL
    db = _open(db_path)

    @event.listens_for(db.engine, "checkout")
    def _limit_size(dbapi_connection, record, proxy) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {limit['pages']}")

    alarms: list[Alarm] = []
    writer = HistoryWriter(db, on_alarm=alarms.append, **FAST_RETRY)
    writer.start()
    # Long part ids need new pages however the free space of the file is laid out.
    records = [_record(i, part_id=f"{i:04d}" + "x" * 6000) for i in range(20)]
    for record in records:
        writer.submit(record)
    assert writer.flush(timeout=20)
    assert writer.stats.journaled > 0
    assert alarms[0].kind == w.DB_UNAVAILABLE and "full" in alarms[0].message
    limit["pages"] = 1_000_000
    _wait_until(lambda: writer.stats.journal_pending == 0)
    assert writer.stop()
    _assert_all_landed_once(db_path, records)
    assert [a.kind for a in alarms] == [w.DB_UNAVAILABLE, w.DB_RECOVERED]


def test_nowhere_to_write_holds_records_bounded_and_counts_losses(db_path: Path) -> None:
    """Database locked and journal folder missing: records wait in memory, unreported; beyond the
    bound they are counted lost and alarmed; when the database returns the held ones land."""
    alarms: list[Alarm] = []
    reported: list[InspectionResult] = []
    db = _open(db_path, busy_timeout_ms=20)
    writer = HistoryWriter(
        db,
        subscribers=[reported.append],
        on_alarm=alarms.append,
        journal_path=db_path.parent / "missing" / "spill.jsonl",
        max_buffered=10,
        **FAST_RETRY,
    )
    writer.start()
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        records = [_record(i) for i in range(15)]
        accepted = [writer.submit(r) for r in records]
        assert accepted == [True] * 10 + [False] * 5
        _wait_until(lambda: w.JOURNAL_FAILED in {a.kind for a in alarms})
        assert not writer.flush(timeout=0.3)
        assert reported == []  # nothing is reported before it is durable
        assert writer.stats.failed == 5 and writer.stats.buffered == 10
        assert {a.kind for a in alarms} >= {w.DB_UNAVAILABLE, w.RECORDS_LOST, w.JOURNAL_FAILED}
    finally:
        locker.rollback()
        locker.close()
    assert writer.flush(timeout=20)
    assert writer.stop()
    _assert_all_landed_once(db_path, records[:10])
    assert sorted(s.uid for s in reported) == sorted(r.uid for r in records[:10])
    assert writer.stats.failed == 5 and writer.stats.written == 10


def test_stop_timeout_counts_what_could_not_be_stored(db_path: Path) -> None:
    alarms: list[Alarm] = []
    db = _open(db_path, busy_timeout_ms=20)
    writer = HistoryWriter(
        db,
        on_alarm=alarms.append,
        journal_path=db_path.parent / "missing" / "spill.jsonl",
        **FAST_RETRY,
    )
    writer.start()
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(3):
            writer.submit(_record(i))
        assert not writer.stop(timeout=0.5)
    finally:
        locker.rollback()
        locker.close()
    assert writer.stats.failed == 3 and writer.stats.buffered == 0
    assert alarms[-1].kind == w.RECORDS_LOST and "3 records" in alarms[-1].message


# -- journal --------------------------------------------------------------------------------------


def test_replay_is_idempotent_and_skips_a_torn_last_line(db_path: Path) -> None:
    """A crash after replaying but before deleting the journal, with a half-written last line."""
    db = _open(db_path)
    records = [_record(i) for i in range(6)]
    db.write_inspections(records[:4])  # already replayed
    journal = SpillJournal(db_path.with_name("history.db.spill.jsonl"))
    journal.append(records)
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write('{"uid": "torn')
    journal.append([_record(6)])  # appends after a torn line stay readable
    items, bad = journal.read()
    assert len(items) == 7 and bad == 1

    alarms: list[Alarm] = []
    with HistoryWriter(db, on_alarm=alarms.append) as writer:
        _wait_until(lambda: writer.stats.journal_pending == 0)
    _assert_all_landed_once(db_path, records + [items[-1]])
    assert {a.kind for a in alarms} == {w.JOURNAL_CORRUPT, w.DB_RECOVERED}
    assert writer.stats.failed == 1  # the torn line is counted, not silently dropped
    # the 4 already stored are not counted again: it said "7 records replayed", recorded 7
    assert writer.stats.written == 3
    assert "3 records replayed from the spill journal" in next(a for a in alarms if a.kind == w.DB_RECOVERED).message
    assert not journal.path.exists()


def test_journal_lines_are_json_with_utc_times(tmp_path: Path) -> None:
    journal = SpillJournal(tmp_path / "spill.jsonl")
    record = _record(1, time=datetime(2026, 3, 1, 13, tzinfo=timezone(timedelta(hours=1))))
    stored = replace(record, image_path="/img/a.png", heatmap_path="/img/a_heatmap.png", heatmap_low=-0.5,
                     heatmap_high=2.0)
    journal.append([stored])
    line = json.loads(journal.path.read_text())
    assert line["time"] == "2026-03-01T12:00:00+00:00" and line["image_path"] == "/img/a.png"
    assert (line["heatmap_low"], line["heatmap_high"]) == (-0.5, 2.0)
    [back], bad = journal.read()
    assert bad == 0 and back == stored and back.image_path == "/img/a.png"


def test_engine_error_survives_the_journal_and_its_replay(db_path: Path) -> None:
    """A fail-safe FAIL spilled while the database was down still says it was an engine error."""
    journal = SpillJournal(db_path.with_name("history.db.spill.jsonl"))
    failed = _record(1, score=0.0, decision="FAIL", latency_model_ms=None, error="DataError: corrupt frame")
    ok = _record(2)
    journal.append([failed, ok])
    assert json.loads(journal.path.read_text().splitlines()[0])["error"] == "DataError: corrupt frame"
    items, bad = journal.read()
    assert bad == 0 and items == [failed, ok]  # error is compared too

    db = _open(db_path)
    with HistoryWriter(db) as writer:
        _wait_until(lambda: writer.stats.journal_pending == 0)
    rows = {r.uid: r for r in db.query_inspections()}
    assert rows[failed.uid].error == "DataError: corrupt frame" and rows[failed.uid].decision == "FAIL"
    assert rows[ok.uid].error is None
    db.close()


def test_journal_written_by_older_versions_still_replays(tmp_path: Path) -> None:
    """A line from an older version has no "error" key (it was a real verdict) and no heatmap
    range (its heatmap is a legacy colour picture)."""
    journal = SpillJournal(tmp_path / "spill.jsonl")
    journal.append([_record(1, heatmap_path="/img/old_heatmap.png")])
    line = json.loads(journal.path.read_text())
    for key in ("error", "heatmap_low", "heatmap_high"):
        del line[key]
    journal.path.write_text(json.dumps(line) + "\n")
    [back], bad = journal.read()
    assert bad == 0 and back.error is None and back.uid == line["uid"]
    assert back.heatmap_path == "/img/old_heatmap.png" and back.heatmap_low is None is back.heatmap_high


def test_db_keeps_working_for_readers_while_writer_is_failing(db_path: Path) -> None:
    db = _open(db_path, busy_timeout_ms=20)
    writer = HistoryWriter(db, **FAST_RETRY)
    writer.start()
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        writer.submit(_record(1))
        assert writer.flush(timeout=10)
        with db.session() as s:  # WAL: reading is not blocked by the writer lock
            assert s.scalar(select(Inspection.id)) is None
    finally:
        locker.rollback()
        locker.close()
    assert writer.stop()
    assert len(_uids_in(db_path)) == 1


def test_threads_submitting_concurrently(db_path: Path) -> None:
    db = _open(db_path)
    writer = HistoryWriter(db, max_buffered=10_000)
    writer.start()
    records = [[_record(1000 * t + i, camera_id=f"cam{t}") for i in range(200)] for t in range(4)]
    threads = [
        threading.Thread(target=lambda rs=rs: [writer.submit(r) for r in rs]) for rs in records
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.stop()
    _assert_all_landed_once(db_path, [r for rs in records for r in rs])


def test_default_journal_places(db_path: Path) -> None:
    assert w.default_journal_path(_open(db_path)) == db_path.with_name("history.db.spill.jsonl")
    memory = w.default_journal_path(HistoryDB("sqlite://"))
    assert memory.parent == Path(tempfile.gettempdir()) and f"-{os.getpid()}-" in memory.name


def test_database_failing_while_isolating_a_refused_row(db_path: Path) -> None:
    """A batch with a refused row is retried row by row; the database locks after the first
    row: that row is reported once with its id, the rest via the journal, the refused row is
    diverted on replay, and the counters balance."""
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None, check_same_thread=False)
    commits = []

    def lock_after_first_single_row_commit(session) -> None:
        commits.append(session)
        if len(commits) == 1:
            locker.execute("BEGIN EXCLUSIVE")

    alarms: list[Alarm] = []
    reported: list[InspectionResult] = []
    db = _open(db_path, busy_timeout_ms=20)
    writer = HistoryWriter(db, subscribers=[reported.append], on_alarm=alarms.append, **FAST_RETRY)
    good = [_record(i) for i in (1, 3, 4)]
    bad = _record(2, model_version_id=999)
    for record in (good[0], bad, *good[1:]):
        writer.submit(record)
    event.listen(Session, "after_commit", lock_after_first_single_row_commit)
    try:
        writer.start()
        _wait_until(lambda: writer.stats.journaled == 3)
    finally:
        event.remove(Session, "after_commit", lock_after_first_single_row_commit)
        locker.rollback()
        locker.close()
    assert writer.flush(timeout=20) and writer.stop()
    _assert_all_landed_once(db_path, good)
    assert [s.uid for s in reported] == [r.uid for r in (good[0], bad, *good[1:])]
    assert reported[0].inspection_id is not None and all(s.journaled for s in reported[1:])
    assert writer.stats == w.WriterStats(
        written=3, buffered=0, journaled=3, journal_pending=0, failed=1
    )
    assert [a.kind for a in alarms] == [w.DB_UNAVAILABLE, w.RECORDS_REJECTED, w.DB_RECOVERED]


def test_alarm_throttle_raises_a_kind_once_per_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one throttle of the pipeline and the writer: repeats within the period are only logged."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    throttle = AlarmThrottle(w.log, "test")
    first = throttle.alarm("disk", "full", throttle_s=10.0)
    assert first is not None and (first.kind, first.message) == ("disk", "full")
    assert first.time.utcoffset() == timedelta(0)
    now[0] += 9.9
    assert throttle.alarm("disk", "still full", throttle_s=10.0) is None
    assert throttle.alarm("camera", "lost", throttle_s=10.0) is not None  # another kind
    assert throttle.alarm("disk", "unthrottled") is not None  # throttle_s=0: always raised
    now[0] += 10.0
    assert throttle.alarm("disk", "full again", throttle_s=10.0) is not None
