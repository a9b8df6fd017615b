"""Several cameras on one engine (``inspector.line.batcher``, ``build_lines``, ``inspector run
--camera A --camera B``): every frame recorded once, in order per camera, with its own verdict;
batches form when frames arrive together; a lone frame waits no longer than ``max_wait_ms``;
engine errors reach their callers and the line goes on; a clean stop.

The lines run the real engine on the shipped demo model (the instant model: the quickest real
model on a CPU), real folder cameras (three
cameras, each with frames of its own size, so a verdict routed to the wrong camera shows in the
map's shape), the real history writers and SQLite. The batcher's timing is tested on stub
engines whose passes take a known time, which a real forward pass on a shared CPU cannot give.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from drivers import FolderCamera
from inspector.errors import InspectorError
from inspector.history import HistoryDB, file_sha256
from inspector.line import ENGINE_ERROR, DecisionRule, FrameBatcher, Lines, build_lines
from inspector.line.batcher import measure_batching
from inspector.line.build import camera_journal_path
from inspector import ASSETS_DIR
from inspector.recipes import LoadedRecipe, register_model
from pipeline_support import good_images, wait_until

FRAMES = 3  # per camera
#: Each camera's frame size (H, W): different, so a map routed to another camera's frame shows.
SIZES = ((160, 200), (180, 140), (150, 150))


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_path() -> Path:
    return ASSETS_DIR / "demo" / "demo_model.safetensors"


@pytest.fixture(scope="module")
def engine(model_path: Path):
    from inspector.engine import Engine

    return Engine(model_path, device="cpu", backend="eager")


@pytest.fixture(scope="module")
def camera_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One folder per camera: real good tiles, each camera's resized to its own size."""
    paths = good_images(FRAMES * len(SIZES), skip=100)
    folders = []
    for i, (h, w) in enumerate(SIZES):
        folder = tmp_path_factory.mktemp(f"cam{i}")
        for k, path in enumerate(paths[i * FRAMES:(i + 1) * FRAMES]):
            cv2.imwrite(str(folder / f"{k:03d}.png"), cv2.resize(cv2.imread(str(path)), (w, h)))
        folders.append(folder)
    return folders


def cameras(folders: list[Path], loop: bool = False) -> list[FolderCamera]:
    return [FolderCamera(folder, fps=0, loop=loop, camera_id=f"cam{i}") for i, folder in enumerate(folders)]


class Spy:
    """An engine that notes the size of every batch it is given, then asks the real one."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.sizes: list[int] = []
        self.broken = threading.Event()  # while set, every pass raises

    def predict_batch(self, images):
        self.sizes.append(len(images))
        if self.broken.is_set():
            time.sleep(0.1)  # as a device that fails takes its time to say so
            raise RuntimeError("engine broke")
        return self.engine.predict_batch(images)


class Stub:
    """A batch engine whose every pass takes ``pass_s``; its prediction's score is the image's mean."""

    def __init__(self, pass_s: float = 0.0, fail: bool = False) -> None:
        self.pass_s = pass_s
        self.fail = fail
        self.batches: list[list[float]] = []
        self.passes: list[tuple[float, float]] = []  # (start, end) of each pass, time.monotonic()
        self.in_pass = threading.Event()

    def predict_batch(self, images):
        self.in_pass.set()
        self.batches.append([float(np.mean(im)) for im in images])
        started = time.monotonic()
        time.sleep(self.pass_s)
        self.passes.append((started, time.monotonic()))
        if self.fail:
            raise RuntimeError("stub engine failed")
        return [SimpleNamespace(score=float(np.mean(im)), anomaly_map=np.zeros(im.shape[:2], np.float32)) for im in images]


def recipe(db: HistoryDB, model_path: Path, engine, threshold: float = 0.05) -> LoadedRecipe:
    product_id, version_id = register_model(db, model_path, file_sha256(model_path), "tile")
    return LoadedRecipe(engine, DecisionRule(threshold), version_id, product_id, "tile", model_path, (), "test")


def collect(lines: Lines) -> dict[str, list]:
    """Every camera's durable results, in the order its pipeline announced them."""
    results: dict[str, list] = {}
    for line in lines.lines:
        results[line.camera.camera_id] = got = []
        line.pipeline.subscribe(got.append)
    return results


def run(lines: Lines, timeout: float = 120.0) -> None:
    lines.start()
    try:
        assert lines.wait(timeout), "the lines did not finish"
    finally:
        assert lines.stop(30.0)
        for camera in lines.cameras:
            camera.close()


def stored(db: HistoryDB) -> list[tuple]:
    """(camera_id, frame_id, uid, decision, error) of every stored inspection, by row id."""
    with sqlite3.connect(db.sqlite_path) as connection:
        return connection.execute(
            "SELECT camera_id, frame_id, uid, decision, error FROM inspections ORDER BY id").fetchall()


def in_threads(*calls) -> list:
    """Runs the calls at once, each on a thread of its own; their results (or exceptions), in order."""
    out: list = [None] * len(calls)

    def call(i: int) -> None:
        try:
            out[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 -- the test looks at it
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    return out


# -- the lines, on the real engine ----------------------------------------------------------------


def test_every_frame_of_every_camera_is_recorded_once_in_order_with_its_own_verdict(
    engine, model_path, camera_dirs, db, tmp_path
) -> None:
    spy = Spy(engine)
    threads_before = set(threading.enumerate())
    lines = build_lines(cameras(camera_dirs), recipe(db, model_path, spy), db, image_dir=tmp_path / "images",
                        pass_sample_rate=1.0, max_batch=3, max_wait_ms=200.0)
    results = collect(lines)
    run(lines)

    for i, (h, w) in enumerate(SIZES):
        got = results[f"cam{i}"]
        assert [r.frame_id for r in got] == list(range(FRAMES)), f"cam{i}: frames lost, doubled or out of order"
        assert {r.camera_id for r in got} == {f"cam{i}"}
        for r in got:  # the verdict is this frame's: its map has the frame's size
            assert r.error is None and r.image.shape[:2] == r.heatmap.shape == (h, w)
            assert r.score == pytest.approx(float(r.heatmap.max())) and r.decision == ("FAIL" if r.score > 0.05 else "PASS")
        last = got[-1]  # and its score is the frame's own (one frame a camera: a forward pass costs)
        assert last.score == pytest.approx(engine.predict(last.image).score, rel=1e-3, abs=1e-6)
        m = lines.metrics()[f"cam{i}"]
        assert m.acquired == m.inspected == m.recorded == FRAMES and m.unrecorded == 0 and m.writer.failed == 0

    rows = stored(db)
    assert len(rows) == FRAMES * len(SIZES)  # one record per frame, no more
    for i in range(len(SIZES)):
        mine = [row for row in rows if row[0] == f"cam{i}"]
        assert [row[1] for row in mine] == list(range(FRAMES))  # stored in order per camera
        assert [row[2] for row in mine] == [r.uid for r in results[f"cam{i}"]]
    assert max(spy.sizes) >= 2, f"frames arriving together were not batched: {spy.sizes}"
    assert sum(spy.sizes) == FRAMES * len(SIZES) and lines.batcher.stats.frames == sum(spy.sizes)
    assert max(spy.sizes) <= len(SIZES)
    assert set(threading.enumerate()) <= threads_before, "a thread was left behind"


def test_an_engine_error_reaches_every_frame_in_its_pass_and_the_lines_go_on(
    engine, model_path, camera_dirs, db, tmp_path
) -> None:
    """While the engine fails, each camera's frames become error results (FAIL, recorded, alarmed);
    once it works again, the next frames are scored; nothing is lost."""
    spy = Spy(engine)
    spy.broken.set()
    alarms: dict[str, list] = {}
    failed: set[str] = set()
    lines = build_lines(cameras(camera_dirs[:2], loop=True), recipe(db, model_path, spy), db,
                        image_dir=tmp_path / "images", max_frames=FRAMES + 1, max_batch=2, max_wait_ms=200.0)
    results = collect(lines)

    def decided(result) -> None:  # the engine heals once each camera has had a frame fail
        failed.add(result.camera_id) if result.error else None
        if len(failed) == 2:
            spy.broken.clear()

    for line in lines.lines:
        alarms[line.camera.camera_id] = got = []
        line.pipeline.on_alarm(got.append)
        line.pipeline.on_decision(decided)
    lines.start()
    try:
        assert lines.wait(120.0)
    finally:
        assert lines.stop(30.0)
    for camera_id, got in results.items():
        assert [r.frame_id for r in got] == list(range(FRAMES + 1))
        errors = [r for r in got if r.error is not None]
        assert errors and all(r.decision == "FAIL" and "engine broke" in r.error for r in errors)
        assert got[-1].error is None, f"{camera_id}: not scored again once the engine works"
        engine_alarms = [a for a in alarms[camera_id] if a.kind == ENGINE_ERROR]
        # Each says which camera it concerns (the frame id alone is ambiguous beside another camera).
        assert engine_alarms and all(f"camera {camera_id}" in a.message for a in engine_alarms)
    # A station-wide alarm (a link's) is raised as given, not as one camera's.
    lines.raise_alarm("mqtt_down", "MQTT broker down")
    assert lines.lines[0].pipeline.alarms[-1].message == "MQTT broker down"
    assert len(stored(db)) == 2 * (FRAMES + 1)
    assert lines.batcher.stats.failed_passes >= 1 and lines.batcher.stats.errors >= 2


def test_a_frame_the_engine_refuses_fails_alone_not_the_other_cameras(engine) -> None:
    """A pass that raises is retried frame by frame: only the bad frame's caller gets the error."""
    good = (np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)
    bad = np.zeros((120, 90, 5), np.uint8)  # five channels: no camera's picture
    with FrameBatcher(max_batch=2, max_wait_ms=10_000) as batcher:
        ok, refused = in_threads(lambda: batcher.predict(engine, good), lambda: batcher.predict(engine, bad))
        assert isinstance(refused, Exception) and not isinstance(ok, Exception)
        assert ok.score == pytest.approx(engine.predict(good).score, rel=1e-3) and ok.anomaly_map.shape == (120, 90)
        stats = batcher.stats
    assert stats.sizes == {2: 1, 1: 2} and stats.failed_passes == 2 and stats.errors == 1


def test_model_swap_and_shadow_go_through_the_batcher(model_path, camera_dirs, db, tmp_path) -> None:
    """set_recipe on every camera between two frames; a shadow engine scores through the same thread."""
    old, new, shadow = Stub(pass_s=0.05), Stub(), Stub()
    lines = build_lines(cameras(camera_dirs[:2], loop=True), recipe(db, model_path, old), db,
                        image_dir=tmp_path / "images", max_frames=30, max_wait_ms=5.0)
    results = collect(lines)
    product_id, version_id = register_model(db, model_path, file_sha256(model_path), "disc")
    swapped = LoadedRecipe(new, DecisionRule(1e6), version_id, product_id, "disc", model_path, (), "test")
    lines.start()
    try:
        wait_until(lambda: all(len(r) >= 2 for r in results.values()), what="first results")
        lines.set_recipe(swapped)
        lines.set_shadow(shadow)
        assert lines.wait(60.0)
    finally:
        assert lines.stop(30.0)
    for got in results.values():
        assert len(got) == 30 and got[-1].model_version_id == version_id and got[-1].decision == "PASS"
        assert got[-1].shadow_score == pytest.approx(got[-1].score)
        assert got[0].model_version_id != version_id and got[0].shadow_score is None
    assert old.batches and new.batches and shadow.batches
    assert lines.recipe is swapped


def test_build_lines_refuses_a_camera_twice_and_gives_each_its_own_journal(model_path, camera_dirs, db, tmp_path) -> None:
    loaded = recipe(db, model_path, Stub())
    twice = [FolderCamera(camera_dirs[0], camera_id="cam"), FolderCamera(camera_dirs[1], camera_id="cam")]
    with pytest.raises(InspectorError, match="given twice"):
        build_lines(twice, loaded, db, image_dir=tmp_path / "images")
    with pytest.raises(TypeError, match="max_frame"):  # build_line's options, checked by name
        build_lines(cameras(camera_dirs), loaded, db, image_dir=tmp_path / "images", max_frame=3)
    with pytest.raises(TypeError, match="image_dir"):
        build_lines(cameras(camera_dirs), loaded, db)
    with pytest.raises(InspectorError, match="own links given for 3 cameras"):
        build_lines(cameras(camera_dirs), loaded, db, image_dir=tmp_path / "images", camera_links=[[], []])
    lines = build_lines(cameras(camera_dirs), loaded, db, image_dir=tmp_path / "images", max_batch=8)
    journals = {line.writer.journal.path for line in lines.lines}
    assert len(journals) == 3 and journals == {camera_journal_path(db, f"cam{i}") for i in range(3)}
    assert lines.batcher.max_batch == 3  # more than the cameras would never fill
    assert camera_journal_path(db, "a/b") != camera_journal_path(db, "a_b")
    assert {line.store for line in lines.lines} == {lines.store}  # one image store, one quota


# -- the batcher's timing -------------------------------------------------------------------------


def test_a_lone_frame_waits_at_most_max_wait() -> None:
    image = np.zeros((8, 8), np.uint8)
    stub = Stub()
    with FrameBatcher(max_batch=4, max_wait_ms=100.0) as batcher:
        started = time.monotonic()
        batcher.predict(stub, image)
        waited = time.monotonic() - started
    assert 0.1 <= waited < 0.1 + 1.0, f"a lone frame waited {waited * 1000:.0f} ms for a 100 ms window"
    with FrameBatcher(max_batch=1, max_wait_ms=10_000.0) as batcher:  # one frame per pass: no wait at all
        started = time.monotonic()
        batcher.predict(stub, image)
        assert time.monotonic() - started < 1.0


def test_frames_that_arrive_together_share_a_pass_which_closes_once_full() -> None:
    stub = Stub()
    images = [np.full((8, 8), v, np.uint8) for v in (10, 20)]
    with FrameBatcher(max_batch=2, max_wait_ms=10_000.0) as batcher:
        started = time.monotonic()
        a, b = in_threads(*(lambda im=im: batcher.predict(stub, im) for im in images))
        assert time.monotonic() - started < 5.0, "a full batch waited for its window"
    assert stub.batches == [[10.0, 20.0]] or stub.batches == [[20.0, 10.0]]
    assert (a.score, b.score) == (10.0, 20.0)  # each caller its own prediction


def test_a_frame_that_queued_while_the_engine_was_busy_waits_at_most_max_wait_after_the_pass() -> None:
    stub = Stub(pass_s=0.6)
    image = np.zeros((8, 8), np.uint8)
    with FrameBatcher(max_batch=3, max_wait_ms=300.0) as batcher:
        first = threading.Thread(target=batcher.predict, args=(stub, image))
        first.start()
        assert stub.in_pass.wait(5.0)  # after the first frame's 300 ms window
        batcher.predict(stub, image)  # arrives during the pass
        first.join(5.0)
    (_, first_end), (second_start, _) = stub.passes
    assert 0.3 <= second_start - first_end < 0.3 + 0.5


def test_cameras_that_fell_out_of_step_join_up_again() -> None:
    """Two cameras' frames queue during the other two's pass: once it ends, the ones just answered
    join them, so the four do not settle into taking turns with half batches."""
    stub = Stub(pass_s=0.3)
    image = np.zeros((8, 8), np.uint8)

    def camera(delay_s: float) -> None:
        time.sleep(delay_s)
        for _ in range(4):
            batcher.predict(stub, image)

    with FrameBatcher(max_batch=4, max_wait_ms=200.0) as batcher:
        # The first two's batch closes at 0.2 s and takes until 0.5 s; the other two come at 0.25 s.
        in_threads(lambda: camera(0.0), lambda: camera(0.0), lambda: camera(0.25), lambda: camera(0.25))
    sizes = [len(b) for b in stub.batches]
    assert sizes == [2, 4, 4, 4, 2], sizes


def test_batches_never_mix_engines() -> None:
    first, second = Stub(), Stub()
    image = np.zeros((8, 8), np.uint8)
    with FrameBatcher(max_batch=4, max_wait_ms=200.0) as batcher:
        in_threads(*(lambda e=e: batcher.predict(e, image) for e in (first, second, first, second)))
    assert sum(map(len, first.batches)) == 2 and sum(map(len, second.batches)) == 2


def test_an_engine_that_fails_fails_every_caller_and_the_batcher_goes_on() -> None:
    stub = Stub(fail=True)
    image = np.zeros((8, 8), np.uint8)
    with FrameBatcher(max_batch=2, max_wait_ms=10_000.0) as batcher:
        errors = in_threads(lambda: batcher.predict(stub, image), lambda: batcher.predict(stub, image))
        assert all(isinstance(e, RuntimeError) and "stub engine failed" in str(e) for e in errors)
        stub.fail = False
        ok = in_threads(lambda: batcher.predict(stub, image), lambda: batcher.predict(stub, image))
        assert not any(isinstance(r, Exception) for r in ok)
    assert batcher.stats.errors == 2


class Costly:
    """A batch engine whose pass takes ``fixed_ms + n * per_frame_ms`` for n frames, times ``worse``
    for more than one (memory traffic that grows with the batch)."""

    def __init__(self, fixed_ms: float, per_frame_ms: float, worse: float = 1.0) -> None:
        self.fixed_ms, self.per_frame_ms, self.worse = fixed_ms, per_frame_ms, worse

    def predict_batch(self, images):
        n = len(images)
        time.sleep((self.fixed_ms + n * self.per_frame_ms) * (self.worse if n > 1 else 1.0) / 1000.0)
        return [SimpleNamespace(score=0.0, anomaly_map=np.zeros(im.shape[:2], np.float32)) for im in images]


def test_batching_is_chosen_where_it_pays_by_measurement(model_path, camera_dirs, db, tmp_path) -> None:
    """A GPU-like engine (a pass costs about the same for 1 or 3 frames) batches; a CPU-like one
    (the cost grows with the frames, and more than linearly) scores one frame per pass."""
    gpu_like, cpu_like = Costly(fixed_ms=60.0, per_frame_ms=1.0), Costly(0.0, 20.0, worse=1.5)
    choice = measure_batching(gpu_like, 3)
    assert choice.max_batch == 3 and choice.ms_batched < 0.9 * choice.ms_alone and "batching pays" in str(choice)
    assert measure_batching(cpu_like, 3).max_batch == 1
    assert measure_batching(cpu_like, 1).max_batch == 1  # one camera: nothing to measure
    lines = build_lines(cameras(camera_dirs), recipe(db, model_path, gpu_like), db, image_dir=tmp_path / "a")
    assert lines.batcher.max_batch == 3 and lines.batching.max_batch == 3
    lines = build_lines(cameras(camera_dirs), recipe(db, model_path, cpu_like), db, image_dir=tmp_path / "b")
    assert lines.batcher.max_batch == 1 and "does not pay" in str(lines.batching)


# -- a clean stop ---------------------------------------------------------------------------------


def test_close_answers_what_waits_then_refuses_and_leaves_no_thread() -> None:
    stub = Stub(pass_s=0.3)
    image = np.zeros((8, 8), np.uint8)
    before = set(threading.enumerate())
    batcher = FrameBatcher(max_batch=1, max_wait_ms=0.0)
    answers: list = []
    callers = [threading.Thread(target=lambda: answers.append(batcher.predict(stub, image))) for _ in range(2)]
    for caller in callers:
        caller.start()
    assert stub.in_pass.wait(5.0)
    time.sleep(0.05)  # the second request waits behind the pass in flight
    assert batcher.close(10.0)
    for caller in callers:
        caller.join(5.0)
    assert len(answers) == 2  # both answered, none left waiting
    started = time.monotonic()
    with pytest.raises(InspectorError, match="closed"):
        batcher.predict(stub, image)
    assert time.monotonic() - started < 1.0
    assert batcher.close() and set(threading.enumerate()) <= before


def test_lines_that_cannot_start_leave_nothing_running(model_path, camera_dirs, db, tmp_path) -> None:
    missing = FolderCamera(tmp_path / "nowhere", camera_id="gone")
    lines = build_lines([*cameras(camera_dirs[:1]), missing], recipe(db, model_path, Stub()), db,
                        image_dir=tmp_path / "images")
    before = set(threading.enumerate())
    with pytest.raises(Exception):
        lines.start()
    assert not lines.running and lines.batcher.closed
    wait_until(lambda: set(threading.enumerate()) <= before, timeout=10.0, what="threads to end")


# -- inspector run --camera A --camera B ----------------------------------------------------------


def test_run_with_two_cameras_records_each_and_summarises_per_camera(model_path, camera_dirs, tmp_path, monkeypatch) -> None:
    from cli.main import main

    db_path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    db.add_user("tina", "technician", "471108")
    db.close()
    monkeypatch.setenv("INSPECTOR_PIN", "471108")
    uris = [f"folder://{folder}?fps=0" for folder in camera_dirs[:2]]
    argv = ["run", "--camera", uris[0], "--camera", uris[1], "--model", str(model_path), "--threshold", "0.05",
            "--user", "tina", "--db", f"sqlite:///{db_path}", "--image-dir", str(tmp_path / "images"),
            "--max-frames", "2", "--print-results", "--backend", "eager", "--device", "cpu", "--max-batch", "2",
            "--batch-wait-ms", "200"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert "inspecting 2 cameras" in lines[0] and "up to 2 frames per forward pass" in lines[0]
    for uri in uris:
        printed = [line.split() for line in lines if line.startswith(f"result {uri} ")]
        assert [p[2] for p in printed] == ["0", "1"]
        assert any(line.startswith("stopped (2 frames): " + uri) and line.endswith("acquired 2, recorded 2")
                   for line in lines)
    assert lines[-1].startswith("all 2 cameras: acquired 4, recorded 4; engine: 4 frames in")
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT camera_id, frame_id FROM inspections ORDER BY id").fetchall()
        (stop,) = connection.execute("SELECT after FROM audit_events WHERE action = 'run_stop'").fetchone()
    assert sorted(rows) == sorted((uri, k) for uri in uris for k in range(2))
    assert '"recorded": 4' in stop and all(uri in stop for uri in uris)

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err := io.StringIO()):
        refused = main([*argv, "--plc", "modbus://127.0.0.1"])
    assert refused == 2 and "--plc given 1 times for 2 cameras" in err.getvalue()
