"""Who may sign in, and an audit trail that shows tampering.

PIN policy (length, names, a lock after repeated wrong PINs, the same work for an unknown name)
and the audit trail's hash chain: written by one writer at a time, checked by
``verify_audit_chain`` and ``inspector audit verify``, computed for old rows by revision 0004.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from inspector.errors import DatabaseError
from inspector.history import HistoryDB, pins
from inspector.history.tables import Base, User
from inspector.roles import AccessDenied, AccountLocked, require_role

START = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


class Clock:
    """A clock the test moves instead of sleeping."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path, clock: Clock) -> HistoryDB:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}", clock=clock)
    db.upgrade()
    yield db
    db.close()


@pytest.fixture
def derive_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """The scrypt cost (n, r, p) of every PIN hash computed from here on."""
    calls: list[tuple[int, int, int]] = []
    real = pins._derive

    def counting(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append((n, r, p))
        return real(pin, salt, n, r, p)

    pins.dummy_pin_hash()  # made once per process, before counting starts
    monkeypatch.setattr(pins, "_derive", counting)
    return calls


def _actions(db: HistoryDB) -> list[str]:
    return [e.action for e in reversed(db.audit_events(limit=1000))]


# -- PIN length and names ---------------------------------------------------------------------


def test_a_pin_needs_six_characters_everywhere_one_is_set(db: HistoryDB) -> None:
    assert pins.MIN_PIN_LENGTH == 6
    with pytest.raises(DatabaseError, match="at least 6"):
        db.add_first_technician("ann", "12345")
    with pytest.raises(DatabaseError, match="at least 6"):
        db.add_user("ann", "technician", "12345")
    db.add_user("ann", "technician", "583920")
    with pytest.raises(DatabaseError, match="at least 6"):
        db.set_pin("ann", "12345")
    assert db.verify_pin("ann", "583920") == "technician"


@pytest.mark.parametrize(
    "name",
    ["", "   ", " ann", "ann ", "an\nn", "ann\x00", "ann\t", "ann\u202e", "zero\u200bwidth", "x" * (pins.MAX_NAME_LENGTH + 1)],
)
def test_names_that_could_not_be_told_apart_are_refused(db: HistoryDB, name: str) -> None:
    with pytest.raises(DatabaseError, match="name"):
        db.add_user(name, "operator", "583920")
    with pytest.raises(DatabaseError, match="name"):
        db.add_first_technician(name, "583920")
    assert db.list_users() == []


def test_ordinary_names_are_accepted(db: HistoryDB) -> None:
    for name in ("ann", "Anne-Marie O'Neil", "Jürgen Müller", "x" * pins.MAX_NAME_LENGTH):
        db.add_user(name, "operator", "583920")
    assert len(db.list_users()) == 4


@pytest.mark.parametrize(
    "name",
    ["../tile", "tile/..", "a/b", "a\\b", "..", ".", "x..y", "tile\u202e", "tile\u2066", "til\u200fe", "tile\n",
     " tile", "x" * (pins.MAX_NAME_LENGTH + 1)],
)
def test_one_rule_for_the_names_of_users_products_and_stations(db: HistoryDB, tmp_path: Path, name: str) -> None:
    """A product's name is also its teach folder's: ``../tile`` wrote into ``tile``'s samples."""
    with pytest.raises(DatabaseError, match="user"):
        db.add_user(name, "operator", "583920")
    with pytest.raises(DatabaseError, match="product"):
        db.add_product(name)
    with pytest.raises(DatabaseError, match="station"):
        HistoryDB(f"sqlite:///{tmp_path / 'station.db'}", station=name)
    assert db.list_users() == [] and db.products() == []


def test_ordinary_product_and_station_names_are_accepted(db: HistoryDB, tmp_path: Path) -> None:
    for name in ("tile", "Fliese 30×30", "plate-2.b", "x" * pins.MAX_NAME_LENGTH):
        db.add_product(name)
    assert len(db.products()) == 4
    assert HistoryDB(f"sqlite:///{tmp_path / 's.db'}", station="line-3.hall B").station == "line-3.hall B"


def test_a_pin_longer_than_is_kept_is_refused_not_shortened(db: HistoryDB, tmp_path: Path) -> None:
    from cli.common import read_pin_file
    from inspector.errors import InspectorError

    longest = ("4711" * pins.MAX_PIN_LENGTH)[: pins.MAX_PIN_LENGTH]
    db.add_user("ann", "technician", longest)
    assert db.verify_pin("ann", longest) == "technician"
    for change in (lambda pin: db.add_user("bob", "operator", pin), lambda pin: db.set_pin("ann", pin),
                   lambda pin: db.add_first_technician("cid", pin)):
        with pytest.raises(DatabaseError, match=f"at most {pins.MAX_PIN_LENGTH} characters"):
            change(longest + "7")
    assert db.verify_pin("ann", longest) == "technician"
    # A PIN file's first line is read whole or refused: 5000 digits were cut to the first 4096.
    pin_file = tmp_path / "pin"
    pin_file.write_text("1" * 5000 + "\n")
    pin_file.chmod(0o600)
    with pytest.raises(InspectorError, match="longer than a PIN may be"):
        read_pin_file(pin_file)


# -- the lock after wrong PINs ----------------------------------------------------------------


def test_five_wrong_pins_lock_the_account_until_the_delay_ends(db: HistoryDB, clock: Clock, derive_calls: list) -> None:
    db.add_user("ann", "technician", "583920")
    for _ in range(pins.LOCK_AFTER_FAILURES):
        assert db.verify_pin("ann", "654321") is None
    locked = db.audit_events(limit=1)[0]
    assert (locked.user, locked.role, locked.action, locked.target) == ("ann", "technician", "pin_locked", "user:ann")
    assert locked.after["failed_pins"] == 5 and locked.after["locked_for_s"] == 30.0
    assert _actions(db).count("pin_locked") == 1

    # The right PIN is refused while locked, without the PIN being checked at all.
    derive_calls.clear()
    clock.now = START + timedelta(seconds=29)
    with pytest.raises(AccountLocked, match="locked until 2026-03-01 12:00:30 UTC") as refused:
        db.verify_pin("ann", "583920")
    assert refused.value.until == START + timedelta(seconds=30) and derive_calls == []

    # After the delay the right PIN works and the count starts again.
    clock.now = START + timedelta(seconds=30)
    assert db.verify_pin("ann", "583920") == "technician"
    with db.session() as s:
        user = s.scalars(select(User).where(User.name == "ann")).one()
    assert (user.failed_pins, user.locked_until) == (0, None)
    for _ in range(pins.LOCK_AFTER_FAILURES - 1):
        assert db.verify_pin("ann", "654321") is None
    assert db.verify_pin("ann", "583920") == "technician"  # four wrong ones lock nothing


def test_each_further_wrong_pin_doubles_the_lock_up_to_the_cap(db: HistoryDB, clock: Clock) -> None:
    db.add_user("bob", "operator", "583920")
    delays = []
    for _ in range(pins.LOCK_AFTER_FAILURES - 1):
        db.verify_pin("bob", "000000")
    for _ in range(8):
        db.verify_pin("bob", "000000")
        event_ = db.audit_events(limit=1)[0]
        delays.append(event_.after["locked_for_s"])
        clock.now = datetime.fromisoformat(event_.after["locked_until"])  # wait out the lock
    assert delays == [30, 60, 120, 240, 480, 900, 900, 900]


def test_a_new_pin_lifts_the_lock(db: HistoryDB) -> None:
    db.add_user("ann", "technician", "583920")
    db.add_user("bob", "operator", "583920")
    for _ in range(pins.LOCK_AFTER_FAILURES):
        db.verify_pin("bob", "000000")
    with pytest.raises(AccountLocked):
        db.verify_pin("bob", "583920")
    db.set_pin("bob", "538271", by="ann")
    assert db.verify_pin("bob", "538271") == "operator"


def test_require_role_refuses_a_locked_account_saying_until_when_and_audits_it(db: HistoryDB) -> None:
    db.add_user("ann", "technician", "583920")
    for _ in range(pins.LOCK_AFTER_FAILURES):
        with pytest.raises(AccessDenied, match="wrong PIN"):
            require_role(db, "ann", "000000", "activate", "product:1")
    with pytest.raises(AccessDenied, match="activate refused: 'ann' is locked until 2026-03-01 12:00:30 UTC"):
        require_role(db, "ann", "583920", "activate", "product:1")
    denied = db.audit_events(limit=1)[0]
    assert denied.action == "activate_denied" and "locked until" in denied.after["reason"]


def test_an_unknown_name_costs_the_same_hash_work_as_a_wrong_pin(db: HistoryDB, derive_calls: list) -> None:
    db.add_user("ann", "technician", "583920")
    derive_calls.clear()
    assert db.verify_pin("ann", "000000") is None
    wrong_pin = list(derive_calls)
    derive_calls.clear()
    assert db.verify_pin("nobody", "000000") is None
    assert derive_calls == wrong_pin == [(2**14, 8, 1)]


# -- the audit chain --------------------------------------------------------------------------


def _audit_rows(db: HistoryDB, n: int) -> list[int]:
    return [db.record_audit("ann", "technician", "set_exposure", "cam0", {"us": i}, {"us": i + 1}) for i in range(n)]


def test_the_audit_trail_is_a_chain_that_verifies(db: HistoryDB) -> None:
    assert db.verify_audit_chain().ok  # empty
    db.add_user("ann", "technician", "583920")
    ids = _audit_rows(db, 4)
    check = db.verify_audit_chain()
    assert check.ok and check.rows == 5 and check.broken_id is None
    events = sorted(db.audit_events(), key=lambda e: e.id)
    assert events[0].prev_hash == "0" * 64
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert check.head == events[-1].hash and events[-1].id == ids[-1]


def test_editing_an_audit_row_breaks_the_chain_at_that_row(db: HistoryDB) -> None:
    ids = _audit_rows(db, 5)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_events SET after = '{\"us\": 9999}' WHERE id = ?", (ids[2],))
    check = db.verify_audit_chain()
    assert not check.ok and check.broken_id == ids[2] and "changed" in check.reason


def test_deleting_an_audit_row_breaks_the_chain_at_the_row_after_it(db: HistoryDB) -> None:
    ids = _audit_rows(db, 5)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit_events WHERE id = ?", (ids[1],))
    check = db.verify_audit_chain()
    assert not check.ok and check.broken_id == ids[2] and "deleted or inserted" in check.reason


def test_inserting_an_audit_row_breaks_the_chain_at_that_row(db: HistoryDB) -> None:
    ids = _audit_rows(db, 3)
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO audit_events (time, user, role, action, target, before, after) "
            "VALUES ('2026-03-01 12:00:00.000000', 'eve', 'technician', 'set_threshold', 'x', 'null', 'null')"
        )
        forged = connection.exec_driver_sql("SELECT max(id) FROM audit_events").scalar()
    _audit_rows(db, 1)  # written after the forged row, chained to it
    check = db.verify_audit_chain()
    assert not check.ok and check.broken_id == forged and forged > ids[-1]


def test_two_writers_at_once_keep_one_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first writer holds its transaction open after appending; the second writes meanwhile.
    Had the second read the last hash before the first committed, both rows would follow the same
    one and the chain would fork."""
    import inspector.history.db as db_module

    url = f"sqlite:///{tmp_path / 'history.db'}"
    first, second = HistoryDB(url, busy_timeout_ms=60_000), HistoryDB(url, busy_timeout_ms=60_000)
    first.upgrade()
    first.record_audit("ann", "technician", "start", "line")
    appended, go_on = threading.Event(), threading.Event()
    real_row_hash = db_module.row_hash

    def slow_row_hash(*args):
        if threading.current_thread().name == "first":
            appended.set()
            go_on.wait(timeout=30)
        return real_row_hash(*args)

    monkeypatch.setattr(db_module, "row_hash", slow_row_hash)
    threads = [
        threading.Thread(target=first.record_audit, args=("ann", "technician", "a", "line"), name="first"),
        threading.Thread(target=lambda: [second.record_audit("bob", "technician", f"b{i}", "line") for i in range(3)], name="second"),
    ]
    threads[0].start()
    assert appended.wait(timeout=30)
    threads[1].start()
    threading.Timer(0.2, go_on.set).start()  # let the second writer reach the database first
    for thread in threads:
        thread.join(timeout=60)
    check = first.verify_audit_chain()
    assert check.ok and check.rows == 5, check
    first.close(), second.close()


def test_many_writers_on_threads_keep_one_chain(tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}", busy_timeout_ms=60_000)
    db.upgrade()
    barrier = threading.Barrier(3)

    def write(who: str) -> None:
        barrier.wait()
        for i in range(15):
            db.record_audit(who, "technician", "step", f"n:{i}")

    threads = [threading.Thread(target=write, args=(who,)) for who in ("ann", "bob", "cleo")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    check = db.verify_audit_chain()
    assert check.ok and check.rows == 45
    db.close()


def test_database_at_0003_gains_the_lock_columns_and_a_chained_audit_trail(tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade("0003")
    with db.engine.begin() as connection:  # the 0003 schema, so plain SQL rather than the model
        connection.exec_driver_sql(
            "INSERT INTO users (name, role, pin_hash, created) "
            f"VALUES ('ann', 'technician', '{pins.hash_pin('583920')}', '2026-03-01 11:00:00.000000')"
        )
        for i, (before, after) in enumerate([("null", '{"role": "technician"}'), ('{"us": 800}', '{"us": 900}'), (None, None)]):
            connection.exec_driver_sql(
                "INSERT INTO audit_events (time, user, role, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (f"2026-03-01 12:00:0{i}.123456", "ann", "technician", f"action{i}", "x", before, after),
            )
    db.upgrade()
    check = db.verify_audit_chain()
    assert check.ok and check.rows == 4  # and revision 0009's user_sealed for ann
    assert db.verify_pin("ann", "583920") == "technician"
    db.record_audit("ann", "technician", "after_upgrade", "x", None, {"n": 1})
    assert db.verify_audit_chain().ok and db.verify_audit_chain().rows == 5
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert connection.exec_driver_sql("SELECT failed_pins, locked_until FROM users").all() == [(0, None)]
    db.downgrade("0003")  # and back: the columns go, the rows stay
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM audit_events").scalar() == 5
    db.close()


def test_audit_verify_command_says_ok_or_names_the_broken_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    url = f"sqlite:///{tmp_path / 'history.db'}"
    db = HistoryDB(url)
    db.upgrade()
    ids = _audit_rows(db, 3)
    assert main(["audit", "verify", "--db", url]) == 0
    assert capsys.readouterr().out.startswith("OK: 3 audit rows")
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_events SET user = 'someone else' WHERE id = ?", (ids[1],))
    db.close()
    assert main(["audit", "verify", "--db", url]) == 1
    assert f"audit row {ids[1]} was changed" in capsys.readouterr().out
