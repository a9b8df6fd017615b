"""The images a station keeps reach the plant: the frame and its 16-bit map, byte for byte, after
their rows, behind a mark of their own, resumed after a restart and waiting out an outage.

These run against a SQLite plant database (no server); the PostgreSQL path, with two stations and
a restart, is in tests/test_two_stations.py.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from inspector.history import HistoryDB
from inspector.history.image_store import ImageStore
from inspector.history.tables import ForwardMark, PlantImage
from inspector.inspection import InspectionResult
from inspector.links.plant import PlantLink
from inspector.links.plant_images import read_plant_image

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)


def station_db(tmp_path: Path, name: str) -> HistoryDB:
    db = HistoryDB(f"sqlite:///{tmp_path / f'{name}.db'}", station=name)
    db.upgrade()
    return db


def kept_results(store: ImageStore, n: int, start: int = 0) -> list[InspectionResult]:
    """Every third a FAIL with its images kept (the store keeps no passes)."""
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        fail = i % 3 == 2
        record = InspectionResult(uid=uuid.uuid4().hex, time=T0 + timedelta(seconds=i), camera_id="cam0", frame_id=i,
                                  score=0.9 if fail else 0.1, decision="FAIL" if fail else "PASS", threshold=0.5,
                                  image=rng.integers(0, 255, (48, 64), dtype=np.uint8),
                                  heatmap=rng.random((48, 64), dtype=np.float32))
        out.append(store.save(record))
    return out


def recorded_station(tmp_path: Path, n: int, name: str = "line-1") -> tuple[HistoryDB, ImageStore, list[InspectionResult]]:
    """A station's history with ``n`` inspections recorded (:func:`kept_results`: every third a FAIL
    with its images kept in the station's image store)."""
    db = station_db(tmp_path, name)
    store = ImageStore(tmp_path / "images")
    records = kept_results(store, n)
    db.write_inspections(records)
    return db, store, records


def forward_all(link: PlantLink, timeout: float = 30.0) -> int:
    link.start()
    return link.stop(timeout)


def plant_images(plant_url: str) -> dict[tuple[str, str, str], bytes]:
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            return {(r.station, r.uid, r.kind): bytes(r.data) for r in s.scalars(select(PlantImage))}
    finally:
        plant.close()


def test_kept_images_reach_the_plant_byte_for_byte_and_a_replay_adds_nothing(tmp_path: Path) -> None:
    db, store, records = recorded_station(tmp_path, 9)
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    link = PlantLink(db, plant_url)
    assert link.pending_images() == 3
    assert forward_all(link) == 0
    assert link.pending_images() == 0 and link.images_forwarded == 6 and link.images_gone == 0
    kept = plant_images(plant_url)
    fails = [r for r in records if r.decision == "FAIL"]
    assert set(kept) == {("line-1", r.uid, kind) for r in fails for kind in ("image", "heatmap")}
    for r in fails:  # the station's PNGs themselves: the frame and the 16-bit map
        assert kept[("line-1", r.uid, "image")] == Path(r.image_path).read_bytes()
        assert kept[("line-1", r.uid, "heatmap")] == Path(r.heatmap_path).read_bytes()
    plant = HistoryDB(plant_url)
    with plant.session() as s:
        row = s.scalars(select(PlantImage)).first()
        assert row.sha256 == hashlib.sha256(row.data).hexdigest() and row.size == len(row.data)
        assert read_plant_image(s, "line-1", fails[0].uid, "heatmap") == Path(fails[0].heatmap_path).read_bytes()
        assert read_plant_image(s, "line-1", "0" * 32, "image") is None
    plant.close()

    with db.session() as s:  # both marks lost: rows and images go again, and nothing doubles
        s.query(ForwardMark).delete()
    again = PlantLink(db, plant_url)
    assert again.pending_images() == 3
    assert forward_all(again) == 0 and again.images_forwarded == 6
    assert len(plant_images(plant_url)) == 6


def test_a_restarted_link_resumes_where_it_stopped(tmp_path: Path) -> None:
    db, store, records = recorded_station(tmp_path, 6)
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    first = PlantLink(db, plant_url)
    forward_all(first)
    assert first.images_forwarded == 4
    db.write_inspections(kept_results(store, 6, start=6))
    second = PlantLink(db, plant_url)  # a new process: the marks come from the station's history
    assert second.pending() == 6 and second.pending_images() == 2
    forward_all(second)
    assert second.forwarded == 6 and second.images_forwarded == 4  # only the new ones
    assert len(plant_images(plant_url)) == 8


def test_images_wait_out_an_outage_and_follow_their_rows(tmp_path: Path) -> None:
    db, store, records = recorded_station(tmp_path, 6)
    away = tmp_path / "plant-share"  # not the plant's folder yet: its database cannot open
    away.write_text("not a folder")
    plant_url = f"sqlite:///{away / 'plant.db'}"
    alarms: list[str] = []
    link = PlantLink(db, plant_url, on_alarm=lambda kind, message: alarms.append(kind), retry_max_s=0.05)
    link.start()
    assert link.stop(0.3) == 6 and link.pending_images() == 2
    assert alarms == ["plant_db_down"]
    away.unlink()
    away.mkdir()
    back = PlantLink(db, plant_url)
    assert forward_all(back) == 0 and back.pending_images() == 0
    assert len(plant_images(plant_url)) == 4


def test_an_image_the_quota_removed_before_the_plant_took_it_is_counted_and_passed_over(tmp_path: Path) -> None:
    db, store, records = recorded_station(tmp_path, 6)
    gone = next(r for r in records if r.decision == "FAIL")
    Path(gone.image_path).unlink()  # as the quota removes the oldest
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    link = PlantLink(db, plant_url)
    forward_all(link)
    assert link.images_gone == 1 and link.images_forwarded == 3 and link.pending_images() == 0
    assert ("line-1", gone.uid, "image") not in plant_images(plant_url)
    assert ("line-1", gone.uid, "heatmap") in plant_images(plant_url)


def test_images_never_go_before_their_rows_and_can_be_left_at_the_station(tmp_path: Path) -> None:
    db, store, records = recorded_station(tmp_path, 3)
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    link = PlantLink(db, plant_url)
    with db.session() as s:  # the rows' mark says nothing went yet: no image may go
        s.add(ForwardMark(target=link.target, last_id=0))
    link._connect()
    assert link._read_images() == ([], None)
    link._plant.close()
    rows_only = PlantLink(db, plant_url, images=False)
    assert forward_all(rows_only) == 0 and rows_only.images_forwarded == 0 and rows_only.pending_images() == 0
    plant = HistoryDB(plant_url)
    with plant.session() as s:
        assert s.scalar(select(func.count()).select_from(PlantImage)) == 0
    plant.close()


def test_the_lines_alarms_are_kept_and_forwarded_once_and_the_station_reports_what_waits(tmp_path: Path) -> None:
    from inspector.alarms import Alarm
    from inspector.history.tables import StationAlarm, StationStatus

    db, store, records = recorded_station(tmp_path, 3)
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    link = PlantLink(db, plant_url)
    link.alarms.on_alarm(Alarm("no_part_run", "5 frames in a row without the part", T0))
    link.alarms.on_alarm(Alarm("drift", "scores <b>drift</b> upwards", T0 + timedelta(seconds=1)))
    forward_all(link)
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            alarms = s.execute(select(StationAlarm.station, StationAlarm.kind, StationAlarm.message)
                               .order_by(StationAlarm.time)).all()
            status = s.get(StationStatus, "line-1")
            assert (status.rows_waiting, status.images_waiting, status.images_gone) == (0, 0, 0)
            assert status.seen is not None
        assert [tuple(a) for a in alarms] == [("line-1", "no_part_run", "5 frames in a row without the part"),
                                             ("line-1", "drift", "scores <b>drift</b> upwards")]
        with db.session() as s:  # kept at the station too, and a replay adds nothing
            assert s.scalar(select(func.count()).select_from(StationAlarm)) == 2
            s.query(ForwardMark).delete()
        forward_all(PlantLink(db, plant_url))
        with plant.session() as s:
            assert s.scalar(select(func.count()).select_from(StationAlarm)) == 2
    finally:
        plant.close()


def test_a_station_reports_what_waits_while_the_plant_takes_its_rows(tmp_path: Path) -> None:
    from inspector.history.tables import StationStatus

    db, store, records = recorded_station(tmp_path, 6)
    Path(records[2].image_path).unlink()  # one the quota took first
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    link = PlantLink(db, plant_url, images=False)  # rows only: the images stay waiting
    forward_all(link)
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            status = s.get(StationStatus, "line-1")
            assert (status.rows_waiting, status.images_waiting) == (0, 0)  # rows only: no image waits
    finally:
        plant.close()
    both = PlantLink(db, f"{plant_url}")
    with db.session() as s:  # the images' mark as if nothing went: both inspections' images wait
        s.add(ForwardMark(target=both.image_target, last_id=0))
    assert both.pending_images() == 2
    forward_all(both)
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            status = s.get(StationStatus, "line-1")
            assert (status.rows_waiting, status.images_waiting, status.images_gone) == (0, 0, 1)
    finally:
        plant.close()
