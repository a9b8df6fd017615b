"""The inspection pipeline with real cameras (folder, pylon emulator, video file), a real model,
a real SQLite history: order, no loss, drops, graceful stop, faults, alarms."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers import FolderCamera, TriggerMode, open_camera
from inspector.errors import InspectorError
from inspector.history import Alarm, HistoryDB, HistoryWriter, ImageStore
from inspector.history.image_store import read_stored_image
from inspector.line import (
    CAMERA_LOST,
    CAMERA_RECONNECTED,
    ENGINE_ERROR,
    QUEUE_FULL,
    DecisionRule,
    InspectionResult,
    Pipeline,
    largest_region_px,
)
from pipeline_support import copy_images, defective_images, good_images, trained_model, wait_until

FAST_RETRY = dict(retry_initial_s=0.05, retry_max_s=0.2)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(request.config, tmp_path_factory)


@pytest.fixture(scope="module")
def engine(model_path: Path):
    from inspector.engine import Engine

    return Engine(model_path, device="cpu", backend="eager")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{path}")
    db.upgrade()
    db.close()
    return path


class Recorder:
    """Collects results and alarms; optionally a slow sink (sleeps in every result callback)."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.results: list[InspectionResult] = []
        self.alarms: list[Alarm] = []
        self.sleep_s = sleep_s

    def result(self, result: InspectionResult) -> None:
        time.sleep(self.sleep_s)
        self.results.append(result)

    def alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)

    def kinds(self) -> list[str]:
        return [a.kind for a in self.alarms]


def build(
    uri_or_camera, engine, db_path: Path, tmp_path: Path, rule: DecisionRule | None = None,
    recorder: Recorder | None = None, busy_timeout_ms: int = 2000, **kwargs,
) -> tuple[Pipeline, Recorder, HistoryDB]:
    db = HistoryDB(f"sqlite:///{db_path}", busy_timeout_ms=busy_timeout_ms)
    writer = HistoryWriter(db, ImageStore(tmp_path / "images", pass_sample_rate=0.0), **FAST_RETRY)
    camera = open_camera(uri_or_camera) if isinstance(uri_or_camera, str) else uri_or_camera
    pipeline = Pipeline(camera, engine, rule or DecisionRule(threshold=0.05), writer, **kwargs)
    recorder = recorder or Recorder()
    pipeline.subscribe(recorder.result)
    pipeline.on_alarm(recorder.alarm)
    return pipeline, recorder, db


def rows(db_path: Path) -> list[tuple]:
    """(uid, id, frame_id, decision, score, threshold) of every stored inspection, by id."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute(
            "SELECT uid, id, frame_id, decision, score, threshold FROM inspections ORDER BY id"
        ).fetchall()


def assert_recorded_in_order(results: list[InspectionResult], db_path: Path) -> None:
    """Every result is in the database once, with the id it was announced with, in frame order."""
    stored = rows(db_path)
    assert [r[0] for r in stored] == [r.uid for r in results], "database rows differ from the results"
    assert [r[1] for r in stored] == [r.inspection_id for r in results]
    frame_ids = [r.frame_id for r in results]
    assert frame_ids == sorted(frame_ids) and len(set(frame_ids)) == len(frame_ids)


# -- decision rule --------------------------------------------------------------------------------


def test_score_rule_fails_strictly_above_the_threshold() -> None:
    rule = DecisionRule(threshold=0.5)
    flat = np.zeros((8, 8), np.float32)
    assert rule.decide(0.5, flat).decision == "PASS"
    assert rule.decide(0.5001, flat).decision == "FAIL"
    assert rule.decide(0.1, flat).defect_area_px is None


def test_pixel_rule_fails_on_the_largest_connected_region() -> None:
    anomaly_map = np.zeros((40, 40), np.float32)
    anomaly_map[2:5, 2:5] = 1.0  # 9 px
    anomaly_map[20:24, 20:25] = 1.0  # 20 px
    anomaly_map[30, 30] = anomaly_map[31, 31] = 1.0  # diagonal neighbours: one 8-connected region
    assert largest_region_px(anomaly_map, 0.5) == 20
    assert largest_region_px(anomaly_map, 2.0) == 0
    rule = DecisionRule(threshold=10.0, pixel_threshold=0.5, min_defect_area_px=20)
    assert rule.decide(1.0, anomaly_map).decision == "FAIL"
    assert rule.decide(1.0, anomaly_map).defect_area_px == 20
    anomaly_map[20:24, 24] = 0.0  # now 16 px: too small
    assert rule.decide(1.0, anomaly_map).decision == "PASS"
    assert rule.decide(11.0, anomaly_map).decision == "FAIL"  # the score alone still fails it
    # Without a minimum area any pixel above the pixel threshold fails the part.
    assert DecisionRule(10.0, pixel_threshold=0.5).decide(1.0, anomaly_map).decision == "FAIL"


@pytest.mark.parametrize(
    "kwargs",
    [dict(threshold=float("nan")), dict(threshold=0.1, pixel_threshold=float("inf")),
     dict(threshold=0.1, min_defect_area_px=5), dict(threshold=0.1, pixel_threshold=0.2, min_defect_area_px=0)],
)
def test_bad_rules_are_refused_with_a_clear_error(kwargs: dict) -> None:
    with pytest.raises(InspectorError):
        DecisionRule(**kwargs)


# -- cameras --------------------------------------------------------------------------------------


def test_folder_camera_every_frame_recorded_in_order_despite_a_slow_sink(engine, db_path: Path, tmp_path: Path) -> None:
    """Triggered mode with a tiny queue and a subscriber slower than the engine: backpressure,
    every frame inspected and recorded once, in order, before it is announced."""
    paths = good_images(3) + defective_images("crack", 2)
    folder = copy_images(paths, tmp_path / "frames")
    observer = sqlite3.connect(db_path, check_same_thread=False)
    committed: list[bool] = []
    counted: list[tuple[int, int, int]] = []  # the run's (passed, failed, errors) as each result arrives

    class SlowCheckingSink(Recorder):
        def result(self, result: InspectionResult) -> None:
            row = observer.execute("SELECT id FROM inspections WHERE uid = ?", (result.uid,)).fetchone()
            committed.append(row is not None and row[0] == result.inspection_id)
            m = pipeline.metrics()
            counted.append((m.passed, m.failed, m.errors))
            super().result(result)

    # The first image's score as threshold: the others fail or pass on their own scores.
    threshold = engine.predict(cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)).score + 1e-6
    pipeline, rec, _ = build(f"folder://{folder}?fps=0", engine, db_path, tmp_path, DecisionRule(threshold),
                             recorder=SlowCheckingSink(sleep_s=0.3), queue_size=1)
    pipeline.start()
    assert pipeline.wait(timeout=120)
    assert pipeline.stop()
    observer.close()

    m = pipeline.metrics()
    assert m.acquired == m.inspected == m.recorded == len(paths) and m.dropped == m.unrecorded == 0
    assert all(committed), "a result was announced before its row was committed"
    assert_recorded_in_order(rec.results, db_path)
    assert [r.frame_id for r in rec.results] == list(range(len(paths)))
    assert QUEUE_FULL in rec.kinds()
    for n, r in enumerate(rec.results, start=1):
        image = cv2.imread(str(folder / sorted(os.listdir(folder))[r.frame_id]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(r.image, image) and r.anomaly_map.shape == image.shape
        assert r.anomaly_map.dtype == np.float32 and r.score == pytest.approx(float(r.anomaly_map.max()))
        assert r.decision == ("FAIL" if r.score > threshold else "PASS") and r.threshold == threshold
        passed, failed, errors = counted[n - 1]  # the metrics count each result before it is announced
        assert passed + failed == n and errors == 0 and failed == sum(x.decision == "FAIL" for x in rec.results[:n])
        assert r.latency_total_ms >= r.latency_model_ms > 0 and r.durable and not r.journaled
        assert (r.image_path is not None) == (r.decision == "FAIL")  # rejects always kept, passes 0 %
        assert (r.heatmap_low is not None) == (r.decision == "FAIL")  # ... with their map's value range
        assert r.image_path is None or Path(r.image_path).is_file()
    assert rec.results[0].decision == "PASS" and m.failed == sum(r.decision == "FAIL" for r in rec.results)
    assert m.latency_p50_ms > 0 and m.model_p50_ms > 0 and m.rate_fps > 0


def test_pylon_emulator_with_software_triggers(engine, db_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("pypylon", reason="pypylon (the 'basler' extra) is not installed")
    folder = copy_images(good_images(4, skip=20), tmp_path / "frames")
    with warnings.catch_warnings():  # pypylon's SWIG bindings warn on import under Python 3.11+
        warnings.filterwarnings("ignore", "builtin type .* has no __module__", DeprecationWarning)
        camera = open_camera(f"basler://emulated?images={folder}")
        camera.open()
    try:
        camera.configure(roi=(0, 0, 400, 400), pixel_format="Mono8")
        pipeline, rec, _ = build(camera, engine, db_path, tmp_path, trigger=TriggerMode.SOFTWARE, queue_size=2)
        pipeline.start()
        for n in range(1, 5):
            camera.trigger()
            wait_until(lambda: pipeline.metrics().acquired == n, what=f"frame {n} of the emulator")
        assert pipeline.stop()
    finally:
        camera.close()
    m = pipeline.metrics()
    assert m.acquired == m.recorded == 4 and m.camera_lost == 0
    assert_recorded_in_order(rec.results, db_path)
    assert all(r.image.ndim == 2 and r.anomaly_map.shape == r.image.shape for r in rec.results)
    assert all(r.camera_id == "basler://emulated?images=" + str(folder) for r in rec.results)


def test_opencv_camera_on_a_video_file_ends_with_the_file(engine, db_path: Path, tmp_path: Path) -> None:
    video = tmp_path / "parts.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    assert writer.isOpened()
    for path in good_images(3, skip=40):
        writer.write(cv2.resize(cv2.imread(str(path)), (256, 256)))
    writer.release()
    # Every part fails, so every frame is stored.
    pipeline, rec, _ = build(f"file://{video}?realtime=0", engine, db_path, tmp_path, DecisionRule(-1e6))
    pipeline.start()
    assert pipeline.wait(timeout=120) and pipeline.source_ended
    assert pipeline.stop()
    assert pipeline.metrics().acquired == len(rec.results) == 3
    assert_recorded_in_order(rec.results, db_path)
    # Colour frames are the camera's RGB throughout: in the result, and read back from the history.
    capture = cv2.VideoCapture(str(video))
    decoded = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(3)]
    capture.release()
    for r in rec.results:
        assert r.image.shape == (256, 256, 3) and np.array_equal(r.image, decoded[r.frame_id])
        assert np.array_equal(read_stored_image(r.image_path), r.image)


# -- modes and stopping ---------------------------------------------------------------------------


def test_live_mode_drops_the_oldest_waiting_frames_and_counts_them(engine, db_path: Path, tmp_path: Path) -> None:
    folder = copy_images(good_images(4, skip=60), tmp_path / "frames")
    pipeline, rec, _ = build(f"folder://{folder}?fps=50&loop=1", engine, db_path, tmp_path,
                             mode="live", queue_size=1, max_frames=20)
    pipeline.start()
    assert pipeline.wait(timeout=120)
    assert pipeline.stop()
    m = pipeline.metrics()
    assert m.acquired == 20 and m.dropped > 0 and m.acquisition_fps > m.rate_fps
    assert m.acquired == m.inspected + m.dropped and m.recorded == m.inspected == len(rec.results)
    assert_recorded_in_order(rec.results, db_path)


def test_graceful_stop_inspects_and_records_every_acquired_frame(engine, db_path: Path, tmp_path: Path) -> None:
    folder = copy_images(good_images(4, skip=80), tmp_path / "frames")
    pipeline, rec, _ = build(f"folder://{folder}?fps=0&loop=1", engine, db_path, tmp_path, queue_size=3)
    pipeline.start()
    wait_until(lambda: pipeline.metrics().queue_depth == 3, what="a full queue")
    assert pipeline.stop(timeout=120)
    m = pipeline.metrics()
    assert m.acquired >= 4 and m.acquired == m.inspected == m.recorded == len(rows(db_path))
    assert_recorded_in_order(rec.results, db_path)
    assert [r.frame_id for r in rec.results] == list(range(m.acquired))
    assert not pipeline.camera.is_open  # the pipeline opened it, so it closed it


# -- faults ---------------------------------------------------------------------------------------


def test_locked_database_acquisition_goes_on_and_nothing_is_lost(engine, db_path: Path, tmp_path: Path) -> None:
    folder = copy_images(good_images(3, skip=100), tmp_path / "frames")
    pipeline, rec, _ = build(f"folder://{folder}?fps=0", engine, db_path, tmp_path, busy_timeout_ms=50)
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another program holding the write lock
    try:
        pipeline.start()
        assert pipeline.wait(timeout=120)
        wait_until(lambda: len(rec.results) == 3, what="results made durable in the journal")
        assert pipeline.metrics().acquired == 3
        assert all(r.journaled and r.inspection_id is None for r in rec.results)
        assert "db_unavailable" in rec.kinds()
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: "db_recovered" in rec.kinds(), what="the database to recover")
    assert pipeline.stop()
    assert [r[0] for r in rows(db_path)] == [r.uid for r in rec.results]
    assert pipeline.metrics().writer.failed == 0


def test_a_frame_the_engine_cannot_score_fails_and_inspection_goes_on(engine, db_path: Path, tmp_path: Path) -> None:
    folder = copy_images(good_images(2, skip=120), tmp_path / "frames")
    cv2.imwrite(str(folder / "000a_tiny.png"), np.full((4, 4), 128, np.uint8))  # between the two
    pipeline, rec, _ = build(f"folder://{folder}?fps=0", engine, db_path, tmp_path, DecisionRule(1e6))
    pipeline.start()
    assert pipeline.wait(timeout=120)
    assert pipeline.stop()
    assert [r.error is not None for r in rec.results] == [False, True, False]
    bad = rec.results[1]
    assert bad.decision == "FAIL" and bad.score == 0.0 and bad.anomaly_map is None
    assert "too small" in bad.error and bad.latency_model_ms is None
    assert [r.decision for r in rec.results] == ["PASS", "FAIL", "PASS"]
    assert ENGINE_ERROR in rec.kinds()
    assert_recorded_in_order(rec.results, db_path)
    m = pipeline.metrics()
    assert (m.passed, m.failed, m.errors) == (2, 0, 1)


def test_decision_subscribers_hear_every_verdict_before_it_is_stored(engine, db_path: Path, tmp_path: Path) -> None:
    """A PLC link hears a part's verdict on the inspection thread, before the history has its row;
    a decision subscriber that fails is alarmed and costs no record."""
    folder = copy_images(good_images(3, skip=130), tmp_path / "frames")
    pipeline, rec, _ = build(f"folder://{folder}?fps=0", engine, db_path, tmp_path)
    heard: list[tuple[str, int]] = []

    def plc(result: InspectionResult) -> None:
        heard.append((result.uid, len(rows(db_path))))  # rows stored when the verdict was heard

    def broken(result: InspectionResult) -> None:
        raise RuntimeError("link bug")

    pipeline.on_decision(plc)
    pipeline.on_decision(broken)
    pipeline.start()
    assert pipeline.wait(timeout=120)
    assert pipeline.stop()
    assert [uid for uid, _ in heard] == [r.uid for r in rec.results]  # every verdict, in order
    assert heard[0][1] == 0  # the first before any row
    assert all(stored <= i for i, (_, stored) in enumerate(heard))  # never after its own row
    assert "subscriber_failed" in rec.kinds()
    assert_recorded_in_order(rec.results, db_path)


def test_camera_lost_and_reconnected_are_alarmed(engine, db_path: Path, tmp_path: Path) -> None:
    folder = copy_images(good_images(2, skip=140), tmp_path / "frames")
    camera = FolderCamera(folder, fps=5, loop=True, backoff_s=(0.05, 0.2))  # quick reconnect attempts
    pipeline, rec, _ = build(camera, engine, db_path, tmp_path, mode="live", queue_size=1)
    pipeline.start()
    try:
        wait_until(lambda: len(rec.results) >= 1, what="a first result")
        away = folder.rename(tmp_path / "unplugged")
        wait_until(lambda: CAMERA_LOST in rec.kinds(), what="the camera-lost alarm")
        away.rename(folder)
        wait_until(lambda: CAMERA_RECONNECTED in rec.kinds(), what="the reconnect alarm")
        recorded = len(rec.results)
        wait_until(lambda: len(rec.results) > recorded, what="inspection to resume")
    finally:
        assert pipeline.stop()
    m = pipeline.metrics()
    assert m.camera_disconnects == 1 and m.camera_reconnects == 1
    assert len(rows(db_path)) == m.recorded == m.inspected


# -- switching models -----------------------------------------------------------------------------


def test_set_model_and_shadow_apply_from_the_next_frame(engine, db_path: Path, tmp_path: Path) -> None:
    folder = copy_images(good_images(3, skip=160), tmp_path / "frames")
    pipeline, rec, _ = build(f"folder://{folder}", engine, db_path, tmp_path, DecisionRule(1e6),
                             trigger=TriggerMode.SOFTWARE)
    pipeline.start()
    try:
        pipeline.camera.trigger()
        wait_until(lambda: len(rec.results) == 1, what="the first result")
        pipeline.set_model(engine, DecisionRule(-1e6))
        pipeline.set_shadow(engine)
        for _ in range(2):
            pipeline.camera.trigger()
        wait_until(lambda: len(rec.results) == 3, what="two more results")
    finally:
        assert pipeline.stop()
    first, *later = rec.results
    assert first.decision == "PASS" and first.threshold == 1e6 and first.shadow_score is None
    assert all(r.decision == "FAIL" and r.threshold == -1e6 for r in later)
    assert all(r.shadow_score == pytest.approx(r.score, abs=1e-5) for r in later)
    assert [r[5] for r in rows(db_path)] == [1e6, -1e6, -1e6]


def test_start_fails_cleanly_for_a_camera_that_cannot_open(engine, db_path: Path, tmp_path: Path) -> None:
    pipeline, _, _ = build(f"folder://{tmp_path / 'absent'}", engine, db_path, tmp_path)
    with pytest.raises(InspectorError, match="does not exist"):
        pipeline.start()
    assert not pipeline.running
    assert not any(t.name == "history-writer" and t.is_alive() for t in threading.enumerate())
