"""One view of a result: every frame carries the rule it was decided with."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers import TriggerMode, open_camera
from inspector.history import HistoryDB, HistoryWriter, ImageStore, InspectionResult
from inspector.line import DecisionRule, Pipeline
from pipeline_support import copy_images, good_images, trained_model, wait_until


@pytest.fixture(scope="module")
def engine(request, tmp_path_factory):
    from inspector.engine import Engine

    return Engine(trained_model(request.config, tmp_path_factory), device="cpu", backend="eager")


def test_each_result_carries_the_rule_it_was_decided_with(engine, tmp_path: Path) -> None:
    """The pixel rule changes between two frames, the image threshold does not: each result
    keeps the whole rule of its own verdict."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    folder = copy_images(good_images(3, skip=170), tmp_path / "frames")
    before = DecisionRule(1e6, pixel_threshold=1e6, min_defect_area_px=2)  # nothing above it: PASS
    after = DecisionRule(1e6, pixel_threshold=-1e6, min_defect_area_px=1)  # everything: FAIL
    results: list[InspectionResult] = []
    pipeline = Pipeline(open_camera(f"folder://{folder}"), engine, before,
                        HistoryWriter(db, ImageStore(tmp_path / "images", pass_sample_rate=0.0)),
                        trigger=TriggerMode.SOFTWARE)
    pipeline.subscribe(results.append)
    pipeline.start()
    try:
        pipeline.camera.trigger()
        wait_until(lambda: len(results) == 1, what="the first result")
        pipeline.set_model(engine, after)
        for _ in range(2):
            pipeline.camera.trigger()
        wait_until(lambda: len(results) == 3, what="two more results")
    finally:
        assert pipeline.stop()
    assert [(r.rule, r.decision) for r in results] == [(before, "PASS"), (after, "FAIL"), (after, "FAIL")]
    db.close()
