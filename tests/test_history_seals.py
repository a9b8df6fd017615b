"""The PIN lock holds against attempts made at once, and the history shows what the audit chain
alone did not: a role edited by hand, a trail emptied or cut short, an edited verdict (issue 29,
items 9 and 13)."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import inspector.history.db as db_module
from cli.main import main
from inspector.history import HistoryDB, pins
from inspector.history.seals import user_digest
from inspector.history.tables import Base
from inspector.inspection import InspectionResult
from inspector.roles import AccessDenied, AccountLocked, AccountTampered, Caller, authorize

PIN, WRONG = "583920", "604817"


def _open(path: Path) -> HistoryDB:
    db = HistoryDB(f"sqlite:///{path}", busy_timeout_ms=30_000)
    db.upgrade()
    return db


@pytest.fixture
def db(tmp_path: Path) -> HistoryDB:
    db = _open(tmp_path / "history.db")
    yield db
    db.close()


def _record(frame_id: int, **kwargs: object) -> InspectionResult:
    values = dict(time=datetime(2026, 3, 1, 12, tzinfo=timezone.utc) + timedelta(seconds=frame_id), camera_id="cam0",
                  frame_id=frame_id, score=0.9, decision="FAIL", threshold=0.5, image_path=f"img/{frame_id}.png")
    values.update(kwargs)
    return InspectionResult(**values)


def _verify(url: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["audit", "verify", "--db", url])
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines  # one summary, whatever it found
    return status, lines[0]


def _sql(db: HistoryDB, statement: str, *params: object) -> None:
    with db.engine.begin() as connection:
        connection.exec_driver_sql(statement, params)


# -- item 9: the lock holds against attempts made at once --------------------------------------------


@pytest.fixture
def slow_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every comparison of a PIN with ann's hash, recorded, each taking 0.3 s: long enough that
    attempts started together are all past their lock check before the first is compared."""
    checked: list[str] = []
    real = db_module.check_pin

    def slow(pin: str, stored: str) -> bool:
        if stored != pins.dummy_pin_hash():
            checked.append(pin)
            time.sleep(0.3)
        return real(pin, stored)

    monkeypatch.setattr(db_module, "check_pin", slow)
    return checked


def _at_once(db: HistoryDB, attempts: list[str]) -> list[object]:
    """Each PIN tried on its own thread, all released together: what each got back or raised."""
    results: list[object] = [None] * len(attempts)
    barrier = threading.Barrier(len(attempts))

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            results[i] = db.verify_pin("ann", attempts[i])
        except AccountLocked as exc:
            results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(attempts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_ten_attempts_at_once_are_checked_at_most_five_times(db: HistoryDB, slow_checks: list[str]) -> None:
    db.add_user("ann", "technician", PIN)
    results = _at_once(db, [WRONG] * 9 + [PIN])
    assert len(slow_checks) <= pins.LOCK_AFTER_FAILURES, slow_checks
    assert sum(isinstance(r, AccountLocked) for r in results) >= 10 - pins.LOCK_AFTER_FAILURES
    # The right PIN either was among those checked (and passed) or was refused by the lock.
    assert results[-1] == "technician" if PIN in slow_checks else isinstance(results[-1], AccountLocked)


def test_once_locked_by_attempts_at_once_the_right_pin_is_refused(db: HistoryDB, slow_checks: list[str]) -> None:
    db.add_user("ann", "technician", PIN)
    results = _at_once(db, [WRONG] * 9)
    assert len(slow_checks) == pins.LOCK_AFTER_FAILURES
    assert results.count(None) == 5 and sum(isinstance(r, AccountLocked) for r in results) == 4
    with pytest.raises(AccountLocked):
        db.verify_pin("ann", PIN)
    assert len(slow_checks) == pins.LOCK_AFTER_FAILURES  # refused without comparing


def _attempt_in_a_process(url: str, pin: str, barrier, checks, results) -> None:
    db = HistoryDB(url, busy_timeout_ms=30_000)
    barrier.wait()
    try:
        results.put(db.verify_pin("ann", pin) or "wrong")
    except AccountLocked:
        results.put("locked")
    finally:
        db.close()


def test_ten_processes_at_once_are_checked_at_most_five_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same across processes, each with its own connection: the count is in the database."""
    context = multiprocessing.get_context("fork")
    url = f"sqlite:///{tmp_path / 'history.db'}"
    db = _open(tmp_path / "history.db")
    db.add_user("ann", "technician", PIN)
    db.close()
    checks = context.Value("i", 0)
    real = db_module.check_pin

    def slow(pin: str, stored: str) -> bool:  # inherited by the forked children
        if stored != pins.dummy_pin_hash():
            with checks.get_lock():
                checks.value += 1
            time.sleep(0.5)
        return real(pin, stored)

    pins.dummy_pin_hash()
    monkeypatch.setattr(db_module, "check_pin", slow)
    barrier, results = context.Barrier(10), context.Queue()
    processes = [context.Process(target=_attempt_in_a_process, args=(url, pin, barrier, checks, results))
                 for pin in [WRONG] * 9 + [PIN]]
    for process in processes:
        process.start()
    got = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert checks.value <= pins.LOCK_AFTER_FAILURES, (checks.value, got)
    assert got.count("locked") >= 10 - pins.LOCK_AFTER_FAILURES, got


# -- item 13: users' rows are what the trail says ----------------------------------------------------


def test_a_role_raised_by_hand_is_refused_and_reported(db: HistoryDB) -> None:
    db.add_user("tina", "technician", PIN)
    db.add_user("op1", "operator", "620814", by="tina")
    url = db.url
    assert _verify(url)[0] == 0
    _sql(db, "UPDATE users SET role = 'technician' WHERE name = 'op1'")
    with pytest.raises(AccountTampered, match="op1.*role technician is not the operator"):
        db.verify_pin("op1", "620814")
    with pytest.raises(AccessDenied, match="^activate_model refused: 'op1' cannot sign in") as refused:
        authorize(db, Caller("op1", "620814"), "activate_model", "product:1")
    assert "\n" not in str(refused.value)
    assert db.audit_events(limit=1)[0].action == "activate_model_denied"
    status, line = _verify(url)
    assert status == 1 and "user 'op1'" in line and line.startswith("BROKEN:")
    assert db.verify_pin("tina", PIN) == "technician"  # the others are not affected


def test_a_role_raised_with_its_digest_recomputed_is_still_refused(db: HistoryDB) -> None:
    """The digest holds no secret; the role is the one the chained audit event states."""
    db.add_user("op1", "operator", "620814")
    with db.engine.begin() as connection:
        pin_hash, audit_id = connection.exec_driver_sql("SELECT pin_hash, audit_id FROM users").one()
        event_hash = connection.exec_driver_sql("SELECT hash FROM audit_events WHERE id = ?", (audit_id,)).scalar()
        connection.exec_driver_sql("UPDATE users SET role = 'technician', digest = ?",
                                   (user_digest("op1", "technician", pin_hash, event_hash),))
    with pytest.raises(AccountTampered):
        db.verify_pin("op1", "620814")


def test_a_pin_hash_replaced_by_hand_is_refused_and_no_new_pin_launders_it(db: HistoryDB) -> None:
    db.add_user("tina", "technician", PIN)
    _sql(db, "UPDATE users SET pin_hash = ? WHERE name = 'tina'", pins.hash_pin("740192"))
    with pytest.raises(AccountTampered, match="PIN hash was changed"):
        db.verify_pin("tina", "740192")
    with pytest.raises(db_module.DatabaseError, match="remove the account and add it again"):
        db.set_pin("tina", "851730")


def test_a_new_pin_keeps_the_row_sealed(db: HistoryDB) -> None:
    db.add_user("tina", "technician", PIN)
    db.add_user("otto", "operator", "620814", by="tina")
    db.set_pin("otto", "731940", by="tina")
    assert db.verify_pin("otto", "731940") == "operator"
    assert _verify(db.url)[0] == 0


# -- item 13: a trail emptied or cut short is reported -------------------------------------------------


def test_an_emptied_trail_is_reported_not_intact(db: HistoryDB) -> None:
    for i in range(3):
        db.record_audit("tina", "technician", "set_exposure", "cam0", {"us": i}, {"us": i + 1})
    _sql(db, "DELETE FROM audit_events")
    status, line = _verify(db.url)
    assert status == 1 and "audit trail shortened: 3 rows expected, 0 found" in line


def test_a_trail_cut_short_at_its_end_is_reported(db: HistoryDB) -> None:
    ids = [db.record_audit("tina", "technician", "step", f"n:{i}") for i in range(4)]
    _sql(db, "DELETE FROM audit_events WHERE id >= ?", ids[2])
    check = db.verify_audit_chain()
    assert not check.ok and check.reason == "audit trail shortened: 4 rows expected, 2 found"
    _sql(db, "DELETE FROM chain_heads WHERE name = 'audit'")
    status, line = _verify(db.url)
    assert status == 1 and "head record is missing" in line


def test_a_trail_wiped_with_its_users_rows_is_reported_by_the_users(db: HistoryDB) -> None:
    """Whoever also resets the head still leaves users whose audit event is gone."""
    db.add_user("tina", "technician", PIN)
    _sql(db, "DELETE FROM audit_events")
    _sql(db, "UPDATE chain_heads SET rows = 0, hash = ? WHERE name = 'audit'", "0" * 64)
    status, line = _verify(db.url)
    assert status == 1 and "user 'tina'" in line and "is gone" in line


# -- item 13: verdicts are sealed --------------------------------------------------------------------


def _recorded(db: HistoryDB) -> list[int]:
    stored = db.write_inspections([_record(i) for i in range(1, 6)])
    stored += db.write_inspections([_record(i, decision="PASS", score=0.1) for i in range(6, 9)])
    return [r.inspection_id for r in stored]


def test_sealed_verdicts_verify_and_a_replay_adds_no_batch(db: HistoryDB) -> None:
    stored = db.write_inspections([_record(i) for i in range(1, 6)])
    db.write_inspections([stored[2], _record(9)])  # a replay: frame 3 is there already, only 9 is new
    db.write_inspections(stored)  # nothing new: no batch
    status, line = _verify(db.url)
    assert status == 0 and "6 inspections in 2 sealed batches" in line, line


def test_a_seal_made_from_the_values_written_fits_them_as_read_back(db: HistoryDB) -> None:
    """The writer seals what it inserts without reading it back: an int score (stored as a float)
    and a time in another zone (stored as UTC) must give the tokens verify computes."""
    cet = timezone(timedelta(hours=1))
    db.write_inspections([_record(1, score=1, time=datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=cet)),
                          _record(2, score=0.3, part_id="P-2", error="engine fault", heatmap_low=0.0,
                                  heatmap_high=2.5)])
    chain, users, verdicts = db.verify_history()
    assert verdicts.problem == "" and verdicts.rows == 2


@pytest.mark.parametrize(("tamper", "found"), [
    ("UPDATE inspections SET decision = 'PASS' WHERE id = {id}", "inspection {id} was changed after it was recorded"),
    ("UPDATE inspections SET score = 0.1 WHERE id = {id}", "inspection {id} was changed after it was recorded"),
    ("UPDATE inspections SET threshold = 1e30 WHERE id = {id}", "inspection {id} was changed after it was recorded"),
    ("UPDATE inspections SET image_path = 'other.png' WHERE id = {id}", "inspection {id} was changed"),
    ("DELETE FROM inspections WHERE id = {id}", "inspection {id} was deleted"),
])
def test_an_edited_or_deleted_verdict_is_named(db: HistoryDB, tamper: str, found: str) -> None:
    ids = _recorded(db)
    _sql(db, tamper.format(id=ids[2]))
    status, line = _verify(db.url)
    assert status == 1 and found.format(id=ids[2]) in line, line


def test_a_verdict_inserted_by_hand_or_a_batch_removed_is_reported(db: HistoryDB) -> None:
    ids = _recorded(db)
    _sql(db, "INSERT INTO inspections (station, uid, time, camera_id, frame_id, score, decision, threshold, label, "
             "rule_recorded) VALUES ('here', 'forged', '2026-03-01 13:00:00.000000', 'cam0', 99, 0.1, 'PASS', 0.5, "
             "'none', 0)")
    status, line = _verify(db.url)
    assert status == 1 and f"inspection {ids[-1] + 1} is in no sealed batch" in line, line
    _sql(db, "DELETE FROM inspections WHERE frame_id = 99")
    _sql(db, "DELETE FROM inspections WHERE id >= ?", ids[5])  # the last batch's rows ...
    _sql(db, "DELETE FROM inspection_batches WHERE id = (SELECT max(id) FROM inspection_batches)")  # ... and seal
    status, line = _verify(db.url)
    assert status == 1 and "verdicts shortened: 8 sealed inspections expected, 5 found" in line, line


def test_the_writer_seals_what_it_records(db: HistoryDB) -> None:
    from inspector.history import HistoryWriter

    with HistoryWriter(db, batch_size=16) as writer:
        for i in range(100):
            writer.submit(_record(i))
    assert writer.stats.written == 100
    status, line = _verify(db.url)
    assert status == 0 and "100 inspections in" in line, line


# -- item 13: an existing database is sealed at upgrade ---------------------------------------------


def test_a_database_at_0008_is_sealed_at_upgrade(tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade("0008")
    with db.engine.begin() as connection:  # the 0008 schema, so plain SQL rather than the model
        connection.exec_driver_sql("INSERT INTO users (name, role, pin_hash, created, failed_pins) VALUES "
                                   f"('ann', 'quality', '{pins.hash_pin(PIN)}', '2026-03-01 11:00:00.000000', 0)")
        for i in range(3):
            connection.exec_driver_sql(
                "INSERT INTO inspections (station, uid, time, camera_id, frame_id, score, decision, threshold, "
                "label, rule_recorded, pixel_threshold) VALUES ('here', ?, ?, 'cam0', ?, 0.25, 'PASS', 0.5, 'none', "
                "?, ?)", (f"old{i}", f"2026-03-01 12:00:0{i}.123456", i, i % 2, 0.3 if i else None))
        connection.exec_driver_sql("INSERT INTO audit_events (time, user, role, action, target, before, after, "
                                   "prev_hash, hash) VALUES ('2026-03-01 12:00:00.000000', 'x', 'system', 'a', 't', "
                                   "'null', 'null', NULL, NULL)")  # a row the chain already reports
    db.upgrade()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                Base.metadata) == []
    assert db.verify_pin("ann", PIN) == "quality"
    chain, users, verdicts = db.verify_history()
    assert users == [] and verdicts.problem == "" and verdicts.rows == 3
    assert chain.broken_id is not None  # the hand-made row is still named, not sealed over
    assert [e.action for e in db.audit_events()][0] == "user_sealed"
    db.write_inspections([_record(10)])
    assert db.verify_history()[2].rows == 4
    _sql(db, "UPDATE inspections SET decision = 'FAIL' WHERE uid = 'old1'")
    assert "was changed" in db.verify_history()[2].problem
    db.downgrade("0008")
    db.close()


def test_demoting_every_technician_by_hand_does_not_reopen_the_first_technicians_door(db: HistoryDB) -> None:
    db.add_first_technician("tina", PIN)
    _sql(db, "UPDATE users SET role = 'operator'")
    assert db.has_technician()
    with pytest.raises(db_module.DatabaseError, match="a technician exists already"):
        db.add_first_technician("mallory", "740192")


# -- the plant database seals what it receives --------------------------------------------------------


def _stations_write_and_forward(tmp_path: Path, plant_url: str) -> None:
    from inspector.links.plant import PlantLink

    for name in ("line-1", "line-2"):
        station = HistoryDB(f"sqlite:///{tmp_path / f'{name}.db'}", station=name)
        station.upgrade()
        station.write_inspections([_record(i) for i in range(20)])
        station.write_inspections([_record(i) for i in range(20, 25)])
        link = PlantLink(station, plant_url)
        link.start()
        assert link.stop(30) == 0 and link.forwarded == 25
        station.close()


def test_a_sqlite_plant_database_seals_what_the_stations_forward(tmp_path: Path) -> None:
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    _stations_write_and_forward(tmp_path, plant_url)
    plant = HistoryDB(plant_url)
    assert plant.verify_history()[2].rows == 50 and plant.verify_history()[2].problem == ""
    _sql(plant, "UPDATE inspections SET decision = 'PASS' WHERE id = 7")
    assert plant.verify_history()[2].problem == "inspection 7 was changed after it was recorded"
    plant.close()


def test_postgresql_writers_at_once_and_the_forwarder_keep_one_chain_of_verdicts(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from pg_support import PostgresServer, postgres_bin

    pytest.importorskip("psycopg")
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries")
    server = PostgresServer(durable=False)
    try:
        server.start()
        server.create_database("plant")
        url = server.url("plant")
        HistoryDB(url).upgrade()
        writers = [HistoryDB(url, station=f"direct-{k}") for k in range(3)]
        barrier = threading.Barrier(len(writers))

        def write(db: HistoryDB) -> None:
            barrier.wait()
            for start in range(0, 40, 8):
                db.write_inspections([_record(i) for i in range(start, start + 8)])

        threads = [threading.Thread(target=write, args=(db,)) for db in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        _stations_write_and_forward(tmp_path, url)
        chain, users, verdicts = writers[0].verify_history()
        assert chain.ok and users == [] and verdicts.problem == "" and verdicts.rows == 3 * 40 + 50, verdicts
        for db in writers:
            db.close()
    finally:
        server.close()


# -- the heads kept beside the file ------------------------------------------------------------------


def test_a_trail_emptied_with_its_head_reset_is_found_by_the_heads_kept_beside_the_file(db: HistoryDB,
                                                                                          tmp_path: Path) -> None:
    for i in range(3):
        db.record_audit("tina", "technician", "set_exposure", "cam0", {"us": i}, {"us": i + 1})
    db.write_inspections([_record(i) for i in range(4)])
    db.record_audit("tina", "technician", "run_stop", "line")  # the copy now holds the verdicts' head too
    assert (tmp_path / "history.db.heads.json").stat().st_mode & 0o777 == 0o600
    assert _verify(db.url)[0] == 0
    _sql(db, "DELETE FROM audit_events")
    _sql(db, "DELETE FROM inspections")
    _sql(db, "DELETE FROM inspection_batches")
    _sql(db, "UPDATE chain_heads SET rows = 0, hash = ?, last_id = NULL", "0" * 64)
    status, line = _verify(db.url)
    assert status == 1, line
    assert "audit trail shortened: 4 rows expected (the heads kept beside the database), 0 found" in line
    assert "verdicts shortened: 4 sealed inspections expected" in line


def test_the_heads_kept_beside_the_file_never_go_back(db: HistoryDB, tmp_path: Path) -> None:
    """Another process that committed earlier but writes its copy later leaves the newer copy."""
    from inspector.history.seals import read_mirror, write_mirror

    for i in range(3):
        db.record_audit("tina", "technician", "step", f"n:{i}")
    kept = tmp_path / "history.db.heads.json"
    newer = kept.read_text()
    kept.write_text(newer.replace('"audit": [3', '"audit": [9'))
    with db.session() as s:
        write_mirror(s, kept)
    assert read_mirror(kept)["audit"][0] == 9


def test_verify_refuses_a_database_file_that_is_not_there(tmp_path: Path, capsys) -> None:
    """A path typed wrong made an empty database there and said 'OK: 0 audit rows, chain intact',
    exit 0: a clean bill of health for a history that was never checked."""
    missing = tmp_path / "histroy.db"
    status = main(["audit", "verify", "--db", f"sqlite:///{missing}"])
    assert status == 2 and f"no history database at {missing}" in capsys.readouterr().err
    assert not missing.exists()
