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

from drivers import open_camera
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


@pytest.fixture
def db(tmp_path: Path):
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    yield db
    db.close()


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


def test_set_recipe_switches_rule_version_product_and_drift_reference(db, tmp_path, frames) -> None:
    first = recipe(db, tmp_path, reference=[0.1, 0.2, 0.3])
    line = build_line(open_camera(f"folder://{frames}"), first, db, image_dir=tmp_path / "images")
    second = recipe(db, tmp_path, threshold=0.7, reference=[0.4, 0.5], product="other")
    line.set_recipe(second)
    assert line.recipe is second and line.pipeline.rule == DecisionRule(0.7)
    assert line.pipeline.model_version_id == second.model_version_id and line.pipeline.product_id == second.product_id
    assert list(line.drift.reference) == [0.4, 0.5]


def test_a_link_without_on_result_or_on_alarm_is_refused(db, tmp_path, frames) -> None:
    with pytest.raises(TypeError, match="on_result or on_alarm"):
        build_line(open_camera(f"folder://{frames}"), recipe(db, tmp_path), db, image_dir=tmp_path / "images",
                   links=[object()])
