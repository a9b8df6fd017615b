"""History database: opening, migrations, products/models/calibrations, users, audit, labels."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from threading import Thread

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from inspector.errors import DatabaseError, ModelFileError
from inspector.history import HistoryDB, InspectionResult, default_db_url
from inspector.history.db import alembic_config
from inspector.history.tables import Base, ModelVersion, User

REPO = Path(__file__).resolve().parents[1]


def _record(frame_id: int, **kwargs: object) -> InspectionResult:
    values = dict(
        time=datetime(2026, 3, 1, 12, tzinfo=timezone.utc) + timedelta(seconds=frame_id),
        camera_id="cam0",
        frame_id=frame_id,
        score=0.9,
        decision="FAIL",
        threshold=0.5,
    )
    values.update(kwargs)
    return InspectionResult(**values)


# -- migrations ---------------------------------------------------------------------------------


def test_migration_chain_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    assert revisions, "no migrations found"
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1
    for revision in revisions:
        assert not revision.is_merge_point, revision.revision
        assert not revision.is_branch_point, revision.revision
    assert revisions[-1].revision == "0001"


def test_migrated_schema_matches_models(db: HistoryDB) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(connection).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_and_upgrade_again(db: HistoryDB) -> None:
    db.add_product("before")
    db.downgrade("base")
    with db.engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == {"alembic_version"}
    db.upgrade()
    assert db.product_by_name("before") is None
    db.add_product("after")


def test_upgrade_is_idempotent(db: HistoryDB) -> None:
    db.add_product("kept")
    db.upgrade()
    assert db.product_by_name("kept") is not None


def test_database_at_0001_upgrades_in_place_keeping_its_rows(tmp_path: Path) -> None:
    """A history written before inspections had an ``error`` column gains it, NULL for old rows."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade("0001")
    with db.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("inspections")}
    assert "error" not in columns
    with db.engine.begin() as connection:  # the 0001 schema, so plain SQL rather than the model
        connection.exec_driver_sql(
            "INSERT INTO inspections (uid, time, camera_id, frame_id, score, decision, threshold, label) "
            "VALUES ('a' , '2026-03-01 12:00:00.000000', 'cam0', 7, 0.9, 'FAIL', 0.5, 'none')"
        )
    db.upgrade()
    [row] = db.query_inspections()
    assert (row.uid, row.frame_id, row.decision, row.error) == ("a", 7, "FAIL", None)
    assert row.time == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    db.close()


def test_database_at_0002_gains_the_heatmap_range_and_keeps_its_rows(tmp_path: Path) -> None:
    """A history written when heatmaps were JET pictures gains NULL ranges (so they stay legacy)."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade("0002")
    with db.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("inspections")}
    assert "error" in columns and not {"heatmap_low", "heatmap_high"} & columns
    with db.engine.begin() as connection:  # the 0002 schema, so plain SQL rather than the model
        connection.exec_driver_sql(
            "INSERT INTO inspections (uid, time, camera_id, frame_id, score, decision, threshold, label, "
            "heatmap_path, error) VALUES ('b', '2026-03-01 12:00:00.000000', 'cam0', 8, 0.9, 'FAIL', 0.5, "
            "'none', '/old/jet_heatmap.png', NULL)"
        )
    db.upgrade()
    db.write_inspections([_record(9, heatmap_path="/new/heatmap.png", heatmap_low=-0.25, heatmap_high=1.5)])
    old, new = sorted(db.query_inspections(), key=lambda r: r.frame_id)
    assert (old.uid, old.heatmap_path, old.heatmap_low, old.heatmap_high) == ("b", "/old/jet_heatmap.png", None, None)
    assert (new.heatmap_path, new.heatmap_low, new.heatmap_high) == ("/new/heatmap.png", -0.25, 1.5)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    db.downgrade("0002")  # and back: the range goes, the rows stay
    with db.engine.connect() as connection:
        assert not {"heatmap_low", "heatmap_high"} & {c["name"] for c in inspect(connection).get_columns("inspections")}
        assert connection.exec_driver_sql("SELECT frame_id FROM inspections ORDER BY frame_id").all() == [(8,), (9,)]
    db.close()


def test_database_at_0007_gains_the_pixel_rule_and_its_old_rows_read_as_unknown(tmp_path: Path) -> None:
    """Rows written before inspections kept their whole rule read as "rule unknown" (not as "no
    pixel rule"); review then takes the pixel rule from the model version's calibration of the
    same threshold made before the part, or draws no contour. New rows keep theirs."""
    from inspector.history.queries import decided_rule
    from inspector.line import DecisionRule

    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade("0007")
    with db.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("inspections")}
    assert not {"pixel_threshold", "min_defect_area_px", "rule_recorded"} & columns
    product = db.add_product("tile")
    version = db.add_model_version(product, tmp_path / "model.safetensors", sha256="0" * 64)
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with db.engine.begin() as connection:  # the 0007 schema, so plain SQL rather than the model
        for frame_id, threshold, model_version in ((1, 0.5, version), (2, 0.7, version), (3, 0.5, None)):
            connection.exec_driver_sql(
                "INSERT INTO inspections (station, uid, time, camera_id, frame_id, score, decision, threshold, "
                "model_version_id, label) VALUES ('here', ?, ?, 'cam0', ?, 0.9, 'FAIL', ?, ?, 'none')",
                (f"old{frame_id}", later, frame_id, threshold, model_version),
            )
    db.upgrade()
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    # Audited, so made at the current schema (the audit chain's head is revision 0009's); still
    # made before the old parts' time.
    db.add_calibration(version, image_threshold=0.5, target_frr=0.01, expected_frr=0.01, pixel_threshold=0.3,
                       min_defect_area_px=7, created_by="test")
    new_rule = DecisionRule(0.6, pixel_threshold=0.2, min_defect_area_px=3)
    db.write_inspections([_record(4, threshold=0.6, rule=new_rule, model_version_id=version),
                          _record(5, threshold=0.6, rule=DecisionRule(0.6), model_version_id=version)])
    same, other, unregistered, new, score_only = sorted(db.query_inspections(), key=lambda r: r.frame_id)
    assert [r.rule_recorded for r in (same, other, unregistered)] == [False] * 3
    assert same.rule is None and (same.pixel_threshold, same.min_defect_area_px) == (None, None)
    assert new.rule == new_rule and score_only.rule == DecisionRule(0.6)  # "no pixel rule" is known too
    with db.session() as s:
        found = decided_rule(s, same)
        assert (found.rule, found.source) == (DecisionRule(0.5, 0.3, 7), "calibration")
        assert decided_rule(s, other) == decided_rule(s, unregistered) == type(found)(None, "unknown")
        assert decided_rule(s, new) == type(found)(new_rule, "recorded")
    db.downgrade("0007")  # and back: the rule's columns go, the rows stay
    with db.engine.connect() as connection:
        assert not {"pixel_threshold", "rule_recorded"} & {c["name"] for c in inspect(connection).get_columns("inspections")}
        assert connection.exec_driver_sql("SELECT frame_id FROM inspections ORDER BY frame_id").all() == [(1,), (2,), (3,), (4,), (5,)]
    db.close()


def test_a_records_rule_survives_the_spill_journal_and_an_old_line_has_none() -> None:
    from inspector.history.records import from_json, to_json
    from inspector.line import DecisionRule

    rule = DecisionRule(0.5, pixel_threshold=0.25, min_defect_area_px=9)
    record = _record(1, rule=rule)
    back = from_json(json.loads(json.dumps(to_json(record))))
    assert back.rule == rule and back.threshold == 0.5
    old_line = {k: v for k, v in to_json(record).items() if k not in ("pixel_threshold", "min_defect_area_px", "rule_recorded")}
    assert from_json(old_line).rule is None
    with pytest.raises(ValueError, match="not the image threshold of the rule"):
        _record(2, threshold=0.4, rule=rule)


def test_downgrade_to_0001_drops_the_error_column_and_keeps_rows(db: HistoryDB) -> None:
    db.write_inspections([_record(1, error="engine failed")])
    db.downgrade("0001")
    with db.engine.connect() as connection:
        assert "error" not in {c["name"] for c in inspect(connection).get_columns("inspections")}
        assert connection.exec_driver_sql("SELECT frame_id FROM inspections").all() == [(1,)]
    db.upgrade()
    assert [r.error for r in db.query_inspections()] == [None]


# -- opening ------------------------------------------------------------------------------------


def test_sqlite_is_opened_in_wal_mode_with_durable_sync(tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'sub' / 'h.db'}", busy_timeout_ms=1234)
    with db.engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") == 1234
        assert pragma("foreign_keys") == 1
    assert (tmp_path / "sub" / "h.db").is_file()
    db.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_new_database_and_its_folder_are_the_owners_alone(tmp_path: Path) -> None:
    """The file holds the PIN hashes: under the usual umask (022) SQLite alone would make it 0644
    in a 0755 folder, readable by every local account."""
    import stat

    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    old_umask = os.umask(0o022)
    try:
        folder = tmp_path / "data" / "inspector"
        db = HistoryDB(f"sqlite:///{folder / 'history.db'}")
        db.upgrade()
        db.add_user("tina", "technician", "471108")
        assert mode(folder) == 0o700
        assert mode(folder / "history.db") == 0o600
        assert (folder / "history.db-wal").is_file()  # while open: the log holds the rows
        assert mode(folder / "history.db-wal") == 0o600 and mode(folder / "history.db-shm") == 0o600
        db.close()
        # An existing folder and file keep the modes their administrator gave them.
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o750)
        (shared / "h.db").touch(mode=0o640)
        HistoryDB(f"sqlite:///{shared / 'h.db'}").close()
        assert (mode(shared), mode(shared / "h.db")) == (0o750, 0o640)
    finally:
        os.umask(old_umask)


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql+nosuchdriver://user:secret@localhost/history",
        "sqlite:///{file}/x.db",
    ],
)
def test_unopenable_database_raises_database_error(tmp_path: Path, url: str) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    with pytest.raises(DatabaseError) as excinfo:
        HistoryDB(url.format(file=a_file))
    message = str(excinfo.value)
    assert "\n" not in message
    assert "secret" not in message


def test_default_url_follows_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    assert default_db_url() == f"sqlite:///{(tmp_path / 'data' / 'history.db').as_posix()}"
    monkeypatch.delenv("INSPECTOR_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_url().endswith("/xdg/inspector/history.db")


def test_import_creates_no_engine_or_file(tmp_path: Path) -> None:
    code = (
        "import gc, inspector.history; from sqlalchemy import Engine; "
        "assert not [o for o in gc.get_objects() if isinstance(o, Engine)]"
    )
    env = {"INSPECTOR_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert list(tmp_path.iterdir()) == []


def test_in_memory_database_works_across_threads() -> None:
    db = HistoryDB("sqlite://")
    db.upgrade()
    thread = Thread(target=lambda: db.write_inspections([_record(1)]))
    thread.start()
    thread.join()
    assert db.count_inspections() == 1


# -- products, models, calibrations --------------------------------------------------------------


def test_products_models_and_active_version(db: HistoryDB, tmp_path: Path) -> None:
    product = db.add_product("tile", "magnetic tile", {"exposure_us": 800})
    with pytest.raises(DatabaseError, match="already exists"):
        db.add_product("tile")
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes(b"weights")
    first = db.add_model_version(product, model_file, metrics={"auroc": 0.99})
    second = db.add_model_version(product, model_file, sha256="ab" * 32, note="retrained")
    version = db.model_version(first)
    assert version.sha256 == hashlib.sha256(b"weights").hexdigest()
    assert version.status == "candidate"
    assert version.metrics == {"auroc": 0.99}
    assert version.created.tzinfo is not None

    db.set_active_model(product, first, user="ann", role="technician")
    db.set_active_model(product, second, user="ann", role="technician")
    assert db.product_by_name("tile").active_model_version_id == second
    assert db.product_by_name("tile").camera_settings == {"exposure_us": 800}
    assert db.model_version(first).status == "retired"
    assert db.model_version(second).status == "active"
    event = db.audit_events(limit=1)[0]
    assert (event.user, event.action) == ("ann", "set_active_model")
    assert event.target == f"product:{product}"
    assert event.before == {"active_model_version_id": first}
    assert event.after == {"active_model_version_id": second}


def test_model_version_errors(db: HistoryDB, tmp_path: Path) -> None:
    product = db.add_product("tile")
    other = db.add_product("other")
    with pytest.raises(ModelFileError):
        db.add_model_version(product, tmp_path / "missing.safetensors")
    with pytest.raises(DatabaseError, match="no products row"):
        db.add_model_version(999, "x", sha256="0" * 64)
    version = db.add_model_version(other, "x", sha256="0" * 64)
    with pytest.raises(DatabaseError, match="belongs to product"):
        db.set_active_model(product, version)
    with db.session() as s:
        assert s.scalars(select(ModelVersion.status)).all() == ["candidate"]


def test_calibration_is_stored_and_audited(db: HistoryDB) -> None:
    product = db.add_product("tile")
    version = db.add_model_version(product, "m", sha256="0" * 64)
    db.add_calibration(
        version, image_threshold=0.4, target_frr=0.01, expected_frr=0.02, created_by="bob"
    )
    db.add_calibration(
        version,
        image_threshold=0.5,
        pixel_threshold=0.3,
        min_defect_area_px=12,
        target_frr=0.01,
        expected_frr=0.008,
        expected_frr_ci=(0.004, 0.015),
        report={"n_good": 200},
        created_by="bob",
        role="quality",
    )
    latest = db.latest_calibration(version)
    assert latest.image_threshold == 0.5
    assert (latest.expected_frr_ci_low, latest.expected_frr_ci_high) == (0.004, 0.015)
    assert latest.report == {"n_good": 200}
    assert latest.min_defect_area_px == 12
    event = db.audit_events(limit=1)[0]
    assert (event.user, event.role, event.action) == ("bob", "quality", "calibrate")
    assert event.after["image_threshold"] == 0.5
    assert db.latest_calibration(version + 1) is None


# -- users ----------------------------------------------------------------------------------------


def test_users_store_only_salted_pin_hashes(db: HistoryDB) -> None:
    db.add_user("ann", "technician", "471100", by="admin")
    db.add_user("bob", "operator", "471100")
    assert db.verify_pin("ann", "471100") == "technician"
    assert db.verify_pin("bob", "471100") == "operator"
    assert db.verify_pin("ann", "471200") is None
    assert db.verify_pin("nobody", "471100") is None
    with db.session() as s:
        hashes = s.scalars(select(User.pin_hash)).all()
    assert all(h.startswith("scrypt$") and "471100" not in h for h in hashes)
    assert hashes[0] != hashes[1]  # salted
    assert db.list_users() == [("ann", "technician"), ("bob", "operator")]
    assert db.audit_events(limit=2)[1].after == {"role": "technician"}


def test_user_errors(db: HistoryDB) -> None:
    db.add_user("ann", "quality", "123400")
    with pytest.raises(DatabaseError, match="already exists"):
        db.add_user("ann", "operator", "999900")
    with pytest.raises(DatabaseError, match="at least"):
        db.add_user("carl", "operator", "12")
    with pytest.raises(ValueError, match="role"):
        db.add_user("dora", "admin", "123400")
    assert db.list_users() == [("ann", "quality")]


def test_pins_change_and_users_leave_audited_but_the_last_technician_stays(db: HistoryDB) -> None:
    db.add_user("ann", "technician", "111100")
    db.add_user("bob", "operator", "222200")
    db.set_pin("bob", "333300", by="ann")
    assert db.verify_pin("bob", "222200") is None and db.verify_pin("bob", "333300") == "operator"
    event_ = db.audit_events(limit=1)[0]
    assert (event_.user, event_.role, event_.action, event_.target) == ("ann", "technician", "set_pin", "user:bob")
    assert "333300" not in str((event_.before, event_.after))
    with pytest.raises(DatabaseError, match="at least"):
        db.set_pin("bob", "1")
    with pytest.raises(DatabaseError, match="no user"):
        db.set_pin("nobody", "444400")
    with pytest.raises(DatabaseError, match="last technician"):
        db.remove_user("ann")
    db.remove_user("bob", by="ann")
    assert db.list_users() == [("ann", "technician")] and db.verify_pin("bob", "333300") is None
    assert db.audit_events(limit=1)[0].before == {"role": "operator"}
    db.add_user("cleo", "technician", "555500")
    db.remove_user("ann", by="cleo")
    assert db.list_users() == [("cleo", "technician")]


# -- audit and labels ---------------------------------------------------------------------------


def test_record_audit_round_trips_json(db: HistoryDB) -> None:
    first = db.record_audit("ann", "technician", "set_exposure", "cam0", {"us": 800}, {"us": 900})
    second = db.record_audit("bob", "operator", "login", "station:1")
    assert second > first
    newest, oldest = db.audit_events(limit=2)
    assert newest.id == second and newest.before is None and newest.after is None
    assert (oldest.before, oldest.after) == ({"us": 800}, {"us": 900})
    assert oldest.time.tzinfo is not None
    assert abs(oldest.time - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_label_inspection_sets_who_and_when_and_is_audited(db: HistoryDB) -> None:
    db.add_user("qa", "quality", "730519")
    [stored] = db.write_inspections([_record(1)])
    db.label_inspection(stored.inspection_id, "false_reject", "qa")
    db.label_inspection(stored.inspection_id, "confirmed_defect", "visitor")
    [row] = db.query_inspections()
    assert (row.label, row.labelled_by) == ("confirmed_defect", "visitor")
    assert abs(row.labelled_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    second, first = db.audit_events(limit=2)
    assert (first.user, first.role, first.target) == ("qa", "quality", f"inspection:{stored.inspection_id}")
    assert first.before == {"label": "none", "labelled_by": None}
    assert first.after == {"label": "false_reject", "labelled_by": "qa"}
    assert (second.role, second.before["label"]) == ("unknown", "false_reject")
    with pytest.raises(ValueError, match="label"):
        db.label_inspection(stored.inspection_id, "maybe", "qa")
    with pytest.raises(DatabaseError, match="no inspections row"):
        db.label_inspection(stored.inspection_id + 1, "false_reject", "qa")


# -- records --------------------------------------------------------------------------------------


def test_records_are_utc_and_validated() -> None:
    cet = timezone(timedelta(hours=1))
    record = _record(1, time=datetime(2026, 3, 1, 13, tzinfo=cet))
    assert record.time == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    assert record.time.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="time zone"):
        _record(1, time=datetime(2026, 3, 1, 12))
    with pytest.raises(ValueError, match="decision"):
        _record(1, decision="NG")
    with pytest.raises(ValueError, match="finite"):
        _record(1, score=float("nan"))
    assert _record(1).uid != _record(1).uid


def test_write_inspections_is_idempotent_by_uid(db: HistoryDB) -> None:
    records = [_record(i) for i in range(3)]
    first = db.write_inspections(records)
    again = db.write_inspections(records + [_record(3)])
    assert [s.inspection_id for s in again[:3]] == [s.inspection_id for s in first]
    assert all(s.inspection_id is not None for s in again) and db.count_inspections() == 4
    assert [s.uid for s in again[:3]] == [r.uid for r in records] and records[0].inspection_id is None


def test_engine_error_is_stored_and_a_verdict_has_none(db: HistoryDB) -> None:
    failed = _record(1, score=0.0, error="InspectorError: the engine returned a score of nan")
    db.write_inspections([failed, _record(2)])
    rows = {r.frame_id: r for r in db.query_inspections()}
    assert rows[1].error == failed.error and rows[1].decision == "FAIL"
    assert rows[2].error is None


def test_database_in_use_elsewhere_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{path}", busy_timeout_ms=20)
    db.upgrade()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseError, match="locked"):
            db.add_product("tile")
    finally:
        locker.rollback()
        locker.close()
    db.add_product("tile")
    db.close()


def test_alembic_command_line_uses_the_packaged_migrations(tmp_path: Path) -> None:
    """The developer path (``alembic -c .../alembic.ini``) migrates and finds nothing to add."""
    ini = REPO / "inspector" / "history" / "migrations" / "alembic.ini"
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in (["upgrade", "head"], ["check"]):
        subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini), "-x", f"url={url}", *command],
            check=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            capture_output=True,
        )
    db = HistoryDB(url)
    with db.engine.connect() as connection:
        assert "inspections" in inspect(connection).get_table_names()
    db.close()


def test_a_database_from_a_newer_inspector_is_refused_in_one_line_and_still_exports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    db = HistoryDB(url)
    db.upgrade()
    with db.engine.begin() as connection:  # as if a newer inspector had migrated it
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(DatabaseError, match=r"schema revision 9999_from_the_future, newer than this software knows") as err:
        db.upgrade()
    assert "\n" not in str(err.value)
    assert db.export_csv(tmp_path / "out.csv") == 0  # review and export read it without migrating
    db.close()


def test_a_read_only_archive_is_read_as_it_is_and_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive on a read-only folder or medium: SQLite could create no -wal/-shm files there,
    so it is opened immutable and read-only; export reads it, writes are refused, nothing appears."""
    archive = tmp_path / "archive"
    url = f"sqlite:///{archive / 'history.db'}"
    db = HistoryDB(url)
    db.upgrade()
    product = db.add_product("tile")
    db.add_user("quinn", "quality", "582219")  # who may export it
    db.close()
    before = sorted(p.name for p in archive.iterdir())
    # WAL checkpointed and removed at close; the audit heads' copy stays (see inspector.history.seals)
    assert before == ["history.db", "history.db.heads.json"]

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if mode == os.W_OK and str(path).startswith(str(archive)) else real_access(path, mode, *a, **k))
    ro = HistoryDB(url)
    assert ro.read_only
    ro.upgrade()  # the current schema: used as it is
    assert ro.product_by_name("tile").id == product
    assert ro.export_csv(tmp_path / "out.csv") == 0
    with pytest.raises(DatabaseError):
        ro.add_product("plate")
    ro.close()
    assert sorted(p.name for p in archive.iterdir()) == before

    explicit = HistoryDB(url, read_only=True)
    assert explicit.read_only and explicit.product_by_name("tile") is not None
    explicit.close()

    from cli.main import main

    monkeypatch.setenv("INSPECTOR_PIN", "582219")
    assert main(["history", "export", "--db", url, "--out", str(tmp_path / "cli.csv"), "--user", "quinn"]) == 0
    assert (tmp_path / "cli.csv").is_file() and sorted(p.name for p in archive.iterdir()) == before


def test_a_damaged_database_is_said_in_one_line_with_how_to_recover_and_never_written(tmp_path: Path) -> None:
    """Pages overwritten (a disk fault, a copy cut short): `audit verify` says so in one line
    naming the file and SQLite's .recover, instead of a traceback."""
    import contextlib
    import io

    from cli.main import main

    path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{path}")
    db.upgrade()
    db.add_user("quinn", "quality", "582219")
    for i in range(60):  # enough audit pages that the damage lands in the trail, past the schema
        db.record_audit("x", "system", "test", "t", None, {"i": i, "pad": "y" * 3000})
    db.close()
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:  # as `dd if=/dev/zero of=history.db bs=4096 seek=PAGES-20 count=3 conv=notrunc`
        f.seek((pages - 20) * 4096)  # counted from the end: the trail's pages come last, after every table's first
        f.write(bytes(3 * 4096))
    damaged = path.read_bytes()
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["audit", "verify", "--db", f"sqlite:///{path}"])
    lines = err.getvalue().strip().splitlines()
    assert status == 2 and "Traceback" not in err.getvalue(), err.getvalue()
    assert lines[-1].startswith("error: ") and "malformed" in lines[-1] and ".recover" in lines[-1]
    assert str(path) in lines[-1] and "nothing was written to it" in lines[-1]
    assert path.read_bytes() == damaged


def test_a_database_another_program_holds_locked_says_so_and_what_to_do(tmp_path: Path) -> None:
    """An inspector run started while an sqlite3 shell held the history's write lock ended in
    'history database sqlite:///... failed: database is locked': neither who holds it nor what to
    do. The refusal now says another program holds the file, and to close it and start again."""
    path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{path}", busy_timeout_ms=100)
    db.upgrade()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DatabaseError, match=rf"database is locked -- another program holds {path} locked .*: close it "
                                                r"and run the command again"):
            db.add_product("tile")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert db.add_product("tile")
    db.close()
