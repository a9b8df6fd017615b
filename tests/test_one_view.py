"""One view of a result: every frame carries the rule it was decided with, the history keeps it,
and the operator page, review and ``inspector predict`` draw a frame with that rule -- the same
colour scale and contour level for the same frame, also after the threshold has changed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers import TriggerMode, open_camera
from inspector.history import HistoryDB, HistoryWriter, ImageStore, InspectionResult
from inspector.line import DecisionRule, Pipeline
from inspector.overlay import heatmap_view
from pipeline_support import copy_images, good_images, trained_model, wait_until

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def engine(request, tmp_path_factory):
    from inspector.engine import Engine

    return Engine(trained_model(request.config, tmp_path_factory), device="cpu", backend="eager")


@pytest.fixture(scope="module")
def scored(engine, tmp_path_factory):
    """A real frame (192 x 192 magnetic tile) with the engine's map of it."""
    from inspector.image_io import read_image

    image = cv2.resize(read_image(good_images(1, skip=40)[0]), (192, 192))
    return image, engine.predict(image)


def pixel_rule(pred, at: float) -> DecisionRule:
    """A rule whose pixel threshold sits at quantile ``at`` of the map (outlining a region
    smaller than the image threshold would) and whose image threshold is above the score."""
    return DecisionRule(pred.score * 1.5, pixel_threshold=float(np.quantile(pred.anomaly_map, at)), min_defect_area_px=4)


def result_of(pred, image, rule: DecisionRule, frame_id: int = 1, **kwargs) -> InspectionResult:
    decision = rule.decide(pred.score, pred.anomaly_map)
    return InspectionResult(T0 + timedelta(seconds=frame_id), "cam", frame_id, pred.score, decision.decision,
                            rule.threshold, rule=rule, image=image, heatmap=pred.anomaly_map,
                            defect_area_px=decision.defect_area_px, **kwargs)


def test_each_result_carries_the_rule_it_was_decided_with_and_its_row_keeps_it(engine, tmp_path: Path) -> None:
    """The pixel rule changes between two frames, the image threshold does not: each result and
    each row keep the whole rule of its own verdict."""
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
    rows = sorted(db.query_inspections(), key=lambda r: r.frame_id)
    assert [r.rule for r in rows] == [before, after, after]
    assert [db.decided_rule(r).source for r in rows] == ["recorded"] * 3
    db.close()


def test_operator_page_draws_a_frame_with_its_own_rule_after_a_threshold_change(qtbot, tmp_path, scored, engine) -> None:
    """The frame on screen was decided before a threshold change: its colours, its contour, its
    banner and its point on the trend stay those of its own rule; the next frame has the new one."""
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui.widgets import contour_path
    from ui_support import make_db, make_line, register_model

    image, pred = scored
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, engine.model_path)
    old, new = pixel_rule(pred, 0.99), DecisionRule(pred.score / 2)
    line = make_line(db, engine, tmp_path, old.threshold, tmp_path / "images", product_id, version_id)
    line.set_threshold(old)
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    page.show()

    decided_before = result_of(pred, image, old, 1)
    line._on_result_received(decided_before)  # as the pipeline's subscription delivers it
    line.set_threshold(new)  # the technician changes the rule; status_changed redraws the page
    page._draw(line.latest)
    view = page.image_view
    assert view.levels == heatmap_view(old) and view.levels.contour_level == old.pixel_threshold
    assert view.heat_item.levels is not None and list(view.heat_item.levels) == [0.0, 2 * old.threshold]
    assert len(view.contour_item.xData) == len(contour_path(pred.anomaly_map, old.pixel_threshold)[0]) > 0
    assert f"{old.threshold:.4g}" in page.banner.text()

    decided_after = result_of(pred, image, new, 2)
    line._on_result_received(decided_after)
    page._on_trend_changed()
    assert list(page.trend.threshold_curve.yData) == pytest.approx([old.threshold, new.threshold])
    page._draw(line.latest)
    assert view.levels == heatmap_view(new) and list(view.heat_item.levels) == [0.0, 2 * new.threshold]
    assert len(view.contour_item.xData) == len(contour_path(pred.anomaly_map, new.threshold)[0])


def test_review_draws_the_contour_with_the_rule_the_frame_was_decided_with(qtbot, tmp_path, scored, engine) -> None:
    """The part was decided with a pixel rule the product's calibration no longer has: review
    outlines what that rule outlined. A row from before the history kept rules borrows its
    calibration's (same threshold) or draws no contour, and says which."""
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session
    from ui_support import make_db, register_model

    image, pred = scored
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, engine.model_path)  # calibrated at 1.0, no pixel rule
    rule = pixel_rule(pred, 0.98)
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0)
    kept_rule = store.save(result_of(pred, image, rule, 1, model_version_id=version_id, product_id=product_id))
    calibrated = store.save(InspectionResult(datetime.now(timezone.utc) + timedelta(hours=1), "cam", 2, pred.score,
                                             "PASS", 1.0, version_id, product_id, image=image, heatmap=pred.anomaly_map))
    unknown = store.save(InspectionResult(datetime.now(timezone.utc) + timedelta(hours=2), "cam", 3, pred.score,
                                          "PASS", 0.77, version_id, product_id, image=image, heatmap=pred.anomaly_map))
    db.write_inspections([kept_rule, calibrated, unknown])
    db.add_calibration(version_id, image_threshold=rule.threshold * 2, target_frr=0.01, expected_frr=0.01,
                       pixel_threshold=0.0, min_defect_area_px=1, created_by="test")  # the rule changes later

    session = Session(db)
    model = ReviewModel(db, session, teach_workdir=tmp_path / "teach")
    page = ReviewPage(model, session)
    qtbot.addWidget(page)
    page.show()
    index = {model.table.row(i).frame_id: i for i in range(model.table.rowCount())}

    page.table.selectRow(index[1])
    view = page.image_view
    assert view.levels == heatmap_view(rule) and view.levels.contour_level == rule.pixel_threshold
    assert len(view.contour_item.xData) > 0 and "pixel rule not stored" not in page.detail_label.text()
    assert f"pixel threshold {rule.pixel_threshold:.4g} over 4 px" in page.detail_label.text()

    page.table.selectRow(index[2])  # no rule stored: the calibration of its threshold (1.0), made before it
    assert view.levels.contour_level == 1.0 and view.levels.vmax == 2.0
    assert "contour from calibration" in page.detail_label.text()

    page.table.selectRow(index[3])  # no calibration has its threshold: scale only, no contour
    assert view.levels.contour_level is None and view.levels.vmax == pytest.approx(2 * 0.77)
    assert len(view.contour_item.xData) == 0 and "no defect contour" in page.detail_label.text()


def test_predict_operator_and_review_draw_one_result_alike(qtbot, tmp_path, scored, engine, capsys) -> None:
    """One frame decided with a pixel rule: the operator page, review (from its stored row) and
    ``inspector predict`` (with the model calibrated with that rule) draw it over the same colour
    scale with the same contour level, and predict's PNG outlines the defect too."""
    from cli.main import main
    from inspector.model_file import load_model, save_model
    from inspector.overlay import CONTOUR_RGB
    from ui.operator_page import OperatorPage
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session
    from ui_support import make_db, make_line, register_model

    image, pred = scored
    rule = pixel_rule(pred, 0.99)
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, engine.model_path)
    result = result_of(pred, image, rule, 1, model_version_id=version_id, product_id=product_id)

    line = make_line(db, engine, tmp_path, rule.threshold, tmp_path / "images", product_id, version_id)
    operator = OperatorPage(line, Session(db))
    qtbot.addWidget(operator)
    operator._show(operator.image_view, operator.banner, result)

    db.write_inspections([ImageStore(tmp_path / "store", pass_sample_rate=1.0).save(result)])
    session = Session(db)
    review = ReviewPage(ReviewModel(db, session), session)
    qtbot.addWidget(review)
    review.show()
    review.table.selectRow(0)

    model, meta = load_model(engine.model_path)
    calibrated = tmp_path / "calibrated.safetensors"
    save_model(calibrated, model, {**meta, "threshold": rule.threshold, "pixel_threshold": rule.pixel_threshold,
                                   "min_defect_area_px": rule.min_defect_area_px})
    frame = tmp_path / "part.png"
    cv2.imwrite(str(frame), image)
    assert main(["predict", str(calibrated), str(frame), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--backend", "eager"]) == 0
    printed = capsys.readouterr().out.splitlines()[1]

    levels = operator.image_view.levels
    assert levels == review.image_view.levels == heatmap_view(result) == heatmap_view(rule)
    assert f"colours 0 .. {levels.vmax:.4g}" in printed and f"outlined above {levels.contour_level:.4g}" in printed
    assert len(operator.image_view.contour_item.xData) == len(review.image_view.contour_item.xData) > 0
    picture = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "part_heatmap.png")), cv2.COLOR_BGR2RGB)
    assert (picture == CONTOUR_RGB).all(axis=2).any()
