"""Verdicts before images, and a row for every acquired frame (issue 29, items 1 and 2).

A full disk drops images first (counted, alarmed), keeps a reserve for the verdicts and stops the
line before a verdict would be lost; a stop out of time records the frames it will not score as
FAIL, not inspected, and a writer out of time journals what it still holds. No real model is
needed: a scorer that reads the frame's brightness (slowly where the test wants a backlog).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from drivers import FolderCamera
from inspector.errors import InspectorError
from inspector.history import HistoryDB, HistoryWriter, ImageStore, file_sha256
from inspector.history.image_store import NoRoomForImages
from inspector.history.writer import DISK_FULL, IMAGES_DROPPED, RECORDS_JOURNALED
from inspector.inspection import InspectionResult
from inspector.line import DecisionRule, Pipeline, build_line
from inspector.line.pipeline import FRAMES_NOT_INSPECTED, MAX_QUEUE_SIZE
from inspector.recipes import LoadedRecipe, register_model
from station import StationConfig


class SlowScorer:
    """Score: the frame's mean brightness in 0..1, after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def predict(self, image: np.ndarray) -> SimpleNamespace:
        time.sleep(self.delay_s)
        score = float(np.mean(image)) / 255.0
        return SimpleNamespace(score=score, anomaly_map=np.full((32, 32), score, dtype=np.float32))


class Disk:
    """A disk's free bytes as the test sets them (what ``shutil.disk_usage`` would say)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, folder: Path) -> int:
        return self.free


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (64, 64), dtype=np.uint8))
    return folder


def rows(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as con:
        return con.execute("select frame_id, decision, error, image_path from inspections order by id").fetchall()


def recipe(db: HistoryDB, tmp_path: Path, scorer: SlowScorer) -> LoadedRecipe:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a model")
    product_id, version_id = register_model(db, path, file_sha256(path), "tile")
    return LoadedRecipe(scorer, DecisionRule(0.99), version_id, product_id, "tile", path, (), "test")


def result(frame_id: int, decision: str = "FAIL") -> InspectionResult:
    return InspectionResult(time=datetime.now(timezone.utc), camera_id="cam", frame_id=frame_id, score=0.5,
                            decision=decision, threshold=0.4, image=np.zeros((64, 64), np.uint8),
                            heatmap=np.zeros((8, 8), np.float32))


def wait_until(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


# -- item 1: a full disk --------------------------------------------------------------------------


def test_images_make_room_for_the_reserve_oldest_first_then_give_way(tmp_path: Path) -> None:
    disk = Disk(free=10_000_000)
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0, reserve_bytes=5_000_000, free=disk)
    first = store.save(result(1))
    second = store.save(result(2))
    assert Path(first.image_path).is_file() and Path(second.image_path).is_file()
    # The disk fills from elsewhere: the oldest images go to keep the reserve free.
    per_record = store.used_bytes // 2
    disk.free = 5_000_000 + per_record // 2
    third = store.save(result(3))
    assert not Path(first.image_path).exists() and Path(second.image_path).is_file() and Path(third.image_path).is_file()
    # Nothing of the store's left to delete would be enough: the images give way, not the reserve.
    disk.free = 4_000_000
    with pytest.raises(NoRoomForImages, match="keeps 5.0 MB for the verdicts"):
        store.save(result(4))
    assert not any(p.name.startswith(".") for p in (tmp_path / "images").rglob("*"))


def test_the_writer_keeps_the_verdict_without_its_images_and_counts_them(db, tmp_path: Path) -> None:
    disk = Disk(free=1_000_000)
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0, reserve_bytes=2_000_000, free=disk)
    alarms = []
    writer = HistoryWriter(db, store, on_alarm=alarms.append, stop_reserve_bytes=500_000, free=disk)
    with writer:
        for i in range(3):
            writer.submit(result(i))
        assert writer.flush(30)
    assert writer.stats.written == 3 and writer.stats.images_dropped == 3 and writer.stats.failed == 0
    assert [a.kind for a in alarms] == [IMAGES_DROPPED]  # throttled: one alarm, every record counted
    assert "images not kept" in alarms[0].message
    assert all(row[3] is None for row in rows(db.sqlite_path))


def test_a_line_stops_acquiring_at_the_reserve_and_records_every_frame(db, tmp_path: Path, frames: Path) -> None:
    disk = Disk(free=100_000_000)
    camera = FolderCamera(frames, fps=20, loop=True)
    line = build_line(camera, recipe(db, tmp_path, SlowScorer()), db, image_dir=tmp_path / "images",
                      pass_sample_rate=1.0, disk_reserve_bytes=40_000_000, stall_after_s=None)
    line.store._free = line.writer._free = disk
    line.start()
    try:
        assert wait_until(lambda: line.metrics().recorded >= 5)
        disk.free = 9_000_000  # below a quarter of the reserve: the verdicts' room
        assert line.wait(30), "acquisition did not stop at the reserve"
        assert line.pipeline.storage_full and not line.source_ended
    finally:
        assert line.stop(30)
        camera.close()
    m = line.metrics()
    assert m.acquired == m.recorded == len(rows(db.sqlite_path)) and m.unrecorded == 0
    assert DISK_FULL in [a.kind for a in line.pipeline.alarms]


# -- item 2: every acquired frame has a row -------------------------------------------------------


def test_a_stop_out_of_time_records_the_frames_it_did_not_score_as_not_inspected(db, tmp_path: Path,
                                                                                  frames: Path) -> None:
    camera = FolderCamera(frames, fps=0, loop=True)
    line = build_line(camera, recipe(db, tmp_path, SlowScorer(0.2)), db, image_dir=tmp_path / "images",
                      queue_size=20, stall_after_s=None)
    decided = []
    line.pipeline.on_decision(decided.append)
    line.start()
    try:
        assert wait_until(lambda: line.metrics().queue_depth >= 15)
    finally:
        clean = line.stop(0.5)
        camera.close()
    assert not clean
    m = line.metrics()
    stored = rows(db.sqlite_path)
    assert m.acquired == m.recorded == len(stored) and m.unrecorded == 0 and m.writer.failed == 0
    assert m.not_inspected >= 10 and m.inspected + m.not_inspected == m.acquired
    not_inspected = [row for row in stored if row[2] and row[2].startswith("not inspected")]
    assert len(not_inspected) == m.not_inspected
    assert all(row[1] == "FAIL" for row in not_inspected)  # a part nobody judged never passes
    assert len(decided) == m.acquired  # the PLC heard a verdict for each, too
    assert FRAMES_NOT_INSPECTED in [a.kind for a in line.pipeline.alarms]


def test_the_queue_is_bounded_by_what_a_stop_can_drain(db, tmp_path: Path, frames: Path) -> None:
    camera = FolderCamera(frames, fps=0)
    writer = HistoryWriter(db)
    with pytest.raises(InspectorError, match=f"within 1..{MAX_QUEUE_SIZE} frames, got 300"):
        Pipeline(camera, SlowScorer(), DecisionRule(0.5), writer, queue_size=300)
    with pytest.raises(InspectorError, match="could not be inspected within the stop's time limit"):
        StationConfig(cameras=("folder:///x",), image_dir=tmp_path, queue_size=MAX_QUEUE_SIZE + 1)
    StationConfig(cameras=("folder:///x",), image_dir=tmp_path, queue_size=MAX_QUEUE_SIZE)


def test_a_writer_out_of_time_journals_what_it_holds_instead_of_losing_it(db, tmp_path: Path) -> None:
    released = threading.Event()
    real_write = db.write_inspections

    def slow_write(items):  # a database that hangs (a lock held elsewhere) for the first batch
        released.wait(10)
        return real_write(items)

    db.write_inspections = slow_write
    alarms = []
    writer = HistoryWriter(db, on_alarm=alarms.append, journal_path=tmp_path / "spill.jsonl")
    writer.start()
    for i in range(5):
        writer.submit(result(i))
    time.sleep(0.2)  # the first batch is in the hanging write; later ones wait in the queue
    for i in range(5, 9):
        writer.submit(result(i))
    threading.Timer(1.0, released.set).start()
    assert not writer.stop(0.3)
    stats = writer.stats
    assert stats.failed == 0 and stats.written + stats.journaled == 9
    assert stats.journaled >= 4 and RECORDS_JOURNALED in [a.kind for a in alarms]
    db.write_inspections = real_write
    replay = HistoryWriter(db, journal_path=tmp_path / "spill.jsonl")
    replay.start()
    assert replay.stop(30)
    assert sorted(row[0] for row in rows(db.sqlite_path)) == list(range(9))
