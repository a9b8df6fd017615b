"""build_line: the one way a line is put together (``inspector run``, the desktop, the benchmark).

Real magnetic-tile frames replayed by a folder camera through the real pipeline, history writer
and SQLite; the engine is a stub scoring each frame by its mean brightness (fast and known), as
the builder does not care what scores.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from drivers import FolderCamera, open_camera
from inspector.history import HistoryDB, file_sha256
from inspector.line import DecisionRule, Line, PartFeeder, build_line
from inspector.line.drift import DRIFT_ALARM
from inspector.recipes import LoadedRecipe, register_model
from pipeline_support import copy_images, good_images

N_FRAMES = 4


class BrightnessScorer:
    """Score: the frame's mean brightness in 0..1; map: that value everywhere."""

    def predict(self, image: np.ndarray) -> SimpleNamespace:
        score = float(np.mean(image)) / 255.0
        return SimpleNamespace(score=score, anomaly_map=np.full(image.shape[:2], score, dtype=np.float32))


class Link:
    """A line link (as a PLC link would be): every durable result and every alarm."""

    def __init__(self) -> None:
        self.results: list = []
        self.alarms: list = []
        self._lock = threading.Lock()

    def on_result(self, result) -> None:
        with self._lock:
            self.results.append(result)

    def on_alarm(self, alarm) -> None:
        with self._lock:
            self.alarms.append(alarm)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_images(good_images(N_FRAMES, skip=200), tmp_path_factory.mktemp("frames"))


def recipe(db: HistoryDB, tmp_path: Path, threshold: float = 0.5, reference=(), product: str = "tile") -> LoadedRecipe:
    path = tmp_path / f"{product}.safetensors"
    path.write_bytes(product.encode())
    product_id, version_id = register_model(db, path, file_sha256(path), product)
    return LoadedRecipe(BrightnessScorer(), DecisionRule(threshold), version_id, product_id, product, path,
                        tuple(reference), "test")


def run(line: Line, camera, timeout: float = 120.0) -> None:
    line.start()
    try:
        assert line.wait(timeout), "the line did not finish"
    finally:
        assert line.stop(30.0)
        camera.close()


def test_a_built_line_records_every_frame_and_feeds_its_links(db, tmp_path, frames) -> None:
    camera = open_camera(f"folder://{frames}?fps=0")
    link = Link()
    loaded = recipe(db, tmp_path, reference=np.linspace(0.1, 0.5, 40))
    line = build_line(camera, loaded, db, image_dir=tmp_path / "images", quota_bytes=10**9, pass_sample_rate=1.0,
                      links=[link])
    assert line.camera is camera and line.recipe is loaded and line.drift is not None and not line.running
    run(line, camera)
    m = line.metrics()
    assert line.source_ended and m.acquired == m.recorded == N_FRAMES and m.unrecorded == 0
    assert [r.frame_id for r in link.results] == list(range(N_FRAMES))
    rows = db.query_inspections(limit=100)
    assert len(rows) == N_FRAMES and {r.model_version_id for r in rows} == {loaded.model_version_id}
    assert {r.product_id for r in rows} == {loaded.product_id}
    assert all(r.image_exists for r in rows)  # every image kept at pass_sample_rate 1
    assert line.store.root == tmp_path / "images"


def test_the_drift_monitor_is_wired_and_alarms_through_the_pipeline(db, tmp_path, frames) -> None:
    """Good scores far below the parts' scores now: a drift alarm (to every alarm subscriber)
    and the on_drift callback; off with window 0 or without good scores."""
    camera = open_camera(f"folder://{frames}?fps=0&loop=1")
    link, changes = Link(), []
    loaded = recipe(db, tmp_path, threshold=1.0, reference=[1e-6 * (i + 1) for i in range(40)])
    line = build_line(camera, loaded, db, image_dir=tmp_path / "images", max_frames=50, links=[link],
                      on_drift=changes.append)
    run(line, camera)
    drift_alarms = [a for a in link.alarms if a.kind == DRIFT_ALARM]
    assert len(drift_alarms) == 1 and "higher than at calibration" in drift_alarms[0].message  # once per episode
    assert [s.status for s in changes] == ["warning"] and line.drift.status.status == "warning"
    assert line.metrics().recorded == 50

    off = build_line(open_camera(f"folder://{frames}"), loaded, db, image_dir=tmp_path / "images", drift_window=0)
    assert off.drift is None
    no_scores = build_line(open_camera(f"folder://{frames}"), recipe(db, tmp_path, reference=[0.1]), db,
                           image_dir=tmp_path / "images")
    assert no_scores.drift is None


def test_a_software_triggered_line_is_fed_one_part_at_a_time(db, tmp_path, frames) -> None:
    camera = open_camera(f"folder://{frames}?fps=0&loop=1")
    line = build_line(camera, recipe(db, tmp_path), db, image_dir=tmp_path / "images", trigger="software",
                      feeder_rate=50.0, max_frames=3)
    assert line.feeder is None  # started with the line
    line.start()
    try:
        feeder = line.feeder
        assert isinstance(feeder, PartFeeder)
        assert line.wait(60.0)
    finally:
        line.stop()
        camera.close()
    assert line.feeder is None and line.metrics().recorded == 3 and feeder.triggered >= 3
    assert db.count_inspections() == 3


def test_the_feeder_goes_on_past_a_frame_the_camera_lost(db, tmp_path, frames) -> None:
    """pylon's emulator loses a frame for a file it cannot read (here a text file among the
    images, as the demo folder once had): the feeder presents the next part all the same, and
    the emulated camera replays its folder in a loop."""
    pytest.importorskip("pypylon", reason="pylon's emulator ('basler' extra)")
    folder = copy_images(good_images(2, skip=200), tmp_path / "replay")
    (folder / "README.txt").write_text("not an image\n")
    camera = open_camera(f"basler://emulated?images={folder}")
    line = build_line(camera, recipe(db, tmp_path), db, image_dir=tmp_path / "images", trigger="software",
                      feeder_rate=50.0, max_frames=7)  # three times round the folder and more
    run(line, camera)
    m = line.metrics()
    assert m.recorded == 7 and m.camera_lost >= 3


class DeafCamera(FolderCamera):
    """A software-triggered folder camera that ignores every third trigger (no frame, no loss)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, fps=0, loop=True)
        self.triggers = 0

    def _trigger(self) -> None:
        self.triggers += 1
        if self.triggers % 3:
            super()._trigger()


def test_the_feeder_gives_up_a_trigger_no_frame_answers(db, tmp_path, frames) -> None:
    camera = DeafCamera(frames)
    line = build_line(camera, recipe(db, tmp_path), db, image_dir=tmp_path / "images", trigger="software",
                      feeder_rate=100.0, max_frames=5)
    line.start()
    try:
        feeder = line.feeder
        feeder.frame_timeout_s = 0.05
        assert line.wait(60.0), "the feeder waited for a frame that never came"
    finally:
        line.stop()
        camera.close()
    assert line.metrics().recorded == 5 and feeder.missed >= 2 and feeder.triggered >= 7


class GatedCamera(FolderCamera):
    """A free-running folder camera whose frames stop while :attr:`gate` is clear (a jammed
    feed: the camera stays connected, nothing comes)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, fps=50, loop=True)
        self.gate = threading.Event()

    def _grab(self, timeout_s: float):
        if not self.gate.wait(timeout_s):
            return None
        return super()._grab(timeout_s)


def wait_until(condition, timeout_s: float = 60.0) -> bool:
    deadline = threading.Event()
    timer = threading.Timer(timeout_s, deadline.set)
    timer.start()
    try:
        while not condition():
            if deadline.wait(0.02):
                return condition()
        return True
    finally:
        timer.cancel()


def test_a_stalled_line_alarms_once_and_again_when_frames_come_back(db, tmp_path, frames) -> None:
    from inspector.line import LINE_RESUMED, LINE_STALLED

    camera = GatedCamera(frames)
    camera.gate.set()
    link = Link()
    line = build_line(camera, recipe(db, tmp_path), db, image_dir=tmp_path / "images", links=[link],
                      stall_after_s=0.5)  # well above a busy CI machine's hiccups at 50 fps
    assert line.pipeline.stall_after_s == 0.5
    kinds = lambda: [a.kind for a in link.alarms if a.kind in (LINE_STALLED, LINE_RESUMED)]  # noqa: E731
    line.start()
    try:
        assert wait_until(lambda: line.metrics().recorded >= 2)
        camera.gate.clear()
        assert wait_until(lambda: LINE_STALLED in kinds()), "no stall alarm"
        recorded = line.metrics().recorded
        threading.Event().wait(2.5)  # five more stall periods: still one alarm for the episode
        assert kinds() == [LINE_STALLED]
        camera.gate.set()
        assert wait_until(lambda: LINE_RESUMED in kinds() and line.metrics().recorded > recorded)
    finally:
        line.stop()
        camera.close()
    assert kinds() == [LINE_STALLED, LINE_RESUMED]
    stalled = next(a for a in link.alarms if a.kind == LINE_STALLED)
    assert "stalled" in stalled.message and camera.camera_id in stalled.message


def test_only_a_line_that_expects_frames_watches_for_a_stall(db, tmp_path, frames) -> None:
    from inspector.line.build import STALL_AFTER_S

    def stall(**kwargs):
        line = build_line(open_camera(f"folder://{frames}"), recipe(db, tmp_path), db, image_dir=tmp_path / "images",
                          **kwargs)
        return line.pipeline.stall_after_s

    assert stall() == STALL_AFTER_S  # free run
    assert stall(trigger="software", feeder_rate=4.0) == STALL_AFTER_S
    assert stall(trigger="software") is None  # someone else triggers, maybe never
    assert stall(trigger="hardware") is None  # a line with no parts is idle, not stalled
    assert stall(stall_after_s=None) is None


def test_set_recipe_switches_rule_version_product_and_drift_reference(db, tmp_path, frames) -> None:
    first = recipe(db, tmp_path, reference=[0.1, 0.2, 0.3])
    line = build_line(open_camera(f"folder://{frames}"), first, db, image_dir=tmp_path / "images")
    second = recipe(db, tmp_path, threshold=0.7, reference=[0.4, 0.5], product="other")
    line.set_recipe(second)
    assert line.recipe is second and line.pipeline.rule == DecisionRule(0.7)
    assert line.pipeline.model_version_id == second.model_version_id and line.pipeline.product_id == second.product_id
    assert list(line.drift.reference) == [0.4, 0.5]


def test_a_threshold_set_by_hand_keeps_the_drift_monitors_scores_and_a_new_model_starts_it_over(db, tmp_path, frames) -> None:
    """A threshold or recheck band set by hand swaps the recipe's rule only: the drift monitor
    keeps the scores it was judging (it started over, so a drift under way went unseen for
    another window); a new model, or new good scores, starts it over. A frame the old model
    scored, in the engine during the change, is not fed to the new model's monitor."""
    from dataclasses import replace

    first = recipe(db, tmp_path, reference=[0.1, 0.2, 0.3])
    line = build_line(open_camera(f"folder://{frames}"), first, db, image_dir=tmp_path / "images")
    monitor = line.drift
    scored = SimpleNamespace(error=None, decision="PASS", score=0.2, model_version_id=first.model_version_id)
    line._feed_drift(scored)
    line.set_recipe(replace(first, rule=DecisionRule(0.7, recheck_threshold=0.5), source="set by hand"))
    assert line.pipeline.rule == DecisionRule(0.7, recheck_threshold=0.5)
    assert line.drift is monitor and len(monitor._window) == 1

    second = recipe(db, tmp_path, reference=[0.1, 0.2, 0.3], product="other")  # another model, same good scores
    assert second.model_version_id != first.model_version_id
    line.set_recipe(second)
    assert line.drift is not monitor and len(line.drift._window) == 0
    line._feed_drift(scored)  # the old version's score of the frame that was in the engine
    assert len(line.drift._window) == 0
    line._feed_drift(SimpleNamespace(**{**vars(scored), "model_version_id": second.model_version_id}))
    assert len(line.drift._window) == 1


def test_a_link_without_on_result_or_on_alarm_is_refused(db, tmp_path, frames) -> None:
    with pytest.raises(TypeError, match="on_result or on_alarm"):
        build_line(open_camera(f"folder://{frames}"), recipe(db, tmp_path), db, image_dir=tmp_path / "images",
                   links=[object()])


class HeldScorer(BrightnessScorer):
    """Scores as BrightnessScorer, but the first frame waits in the engine until ``release`` is set."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, image: np.ndarray) -> SimpleNamespace:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30), "the test did not release the frame"
        return super().predict(image)


def test_a_product_change_while_a_frame_is_in_the_engine_leaves_its_row_to_the_product_that_scored_it(
        db, tmp_path, frames) -> None:
    """The frame in the engine finishes with the old recipe: its row names the old product with the
    old model version (the product was set on the pipeline apart from the model, so it named the new
    product beside the old model's version, and the review, the yield per product and the MES had
    a part of one product judged by another's model); the next frame is the new product's."""
    first = recipe(db, tmp_path)
    first = LoadedRecipe(HeldScorer(), first.rule, first.model_version_id, first.product_id, first.product,
                         first.model_path, (), "test")
    second = recipe(db, tmp_path, product="other")
    camera = open_camera(f"folder://{frames}?fps=0")
    line = build_line(camera, first, db, image_dir=tmp_path / "images", drift_window=0, queue_size=1)
    line.start()
    try:
        assert first.engine.entered.wait(30)
        line.set_recipe(second)
        first.engine.release.set()
        assert line.wait(120), "the line did not finish"
    finally:
        first.engine.release.set()
        assert line.stop(30.0)
        camera.close()
    rows = sorted(db.query_inspections(limit=100), key=lambda r: r.frame_id)
    assert len(rows) == N_FRAMES
    assert (rows[0].product_id, rows[0].model_version_id) == (first.product_id, first.model_version_id)
    assert {(r.product_id, r.model_version_id) for r in rows[1:]} == {(second.product_id, second.model_version_id)}
