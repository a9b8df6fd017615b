"""Desktop, issue 30: the teach page's inspection region, the operator page's outline, NO PART
and RECHECK, and the review page's recheck queue.

- The teach page: a region and don't-care areas drawn by program (as the mouse draws them:
  the same ROIs and brush) make the framing the recipe keeps; a drawing that cannot work is a
  message in the page, and Train writes nothing.
- The operator page on a real run (a folder camera replaying a line scene through the real
  engine with a framing that finds the part first, the real pipeline and history): the region's
  outline where the part was found, a frame without the part shown NO PART in grey, one in the
  recheck band RECHECK in amber, and the counts in their own columns.
- The review page's recheck queue: RECHECK parts without a verdict; the verdict becomes the label.

The README's and the manual's screenshots come from the real thing, not these tests' synthetic
scenes: the teach page's teach-region.png from scripts/docs/teach_screenshots.py, the operator
page's (operator-recheck.png, operator-no-part.png, operator-fail-outline.png) from
scripts/docs/operator_screenshots.py.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from framing_support import REGION, belt, frame_with_part, make_scene  # noqa: E402
from inspector.errors import InspectorError  # noqa: E402
from ui_support import audit_actions, loaded_recipe, make_db, register_model, sign_in  # noqa: E402


def save_picture(widget, name: str, tmp_path: Path) -> Path:
    """An offscreen grab of ``widget`` as PNG in tmp_path (the page draws; the manual's pictures
    are the scripts' in scripts/docs/)."""
    path = tmp_path / name
    assert widget.grab().save(str(path))
    return path


def woven(rng: np.random.Generator, size: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] + rng.uniform(0, 2 * np.pi * 3, (2, 1, 1))
    base = 120 + 40 * np.sin(x / 3.0) * np.sin(y / 3.0) + rng.normal(0, 4, (size, size)) + rng.uniform(-8, 8)
    return np.clip(base, 0, 255).astype(np.uint8)


# --- the teach page -------------------------------------------------------------------------------


def test_the_teach_page_draws_the_region_and_dont_care_areas_and_refuses_a_bad_drawing(qtbot, tmp_path):
    from ui.session import Session
    from ui.teach_model import TeachModel
    from ui.teach_page import TeachPage

    db = make_db(tmp_path)
    model_file = tmp_path / "m.safetensors"
    model_file.write_bytes(b"stand-in")
    product_id, v1 = register_model(db, model_file)
    from ui_support import make_line

    line = make_line(db, SimpleNamespace(model_path=model_file), tmp_path, 1.0, tmp_path / "images", product_id, v1)
    session = Session(db)
    teach = TeachModel(db, line, session, workdir=tmp_path / "teach", device="cpu", backend="eager")
    page = TeachPage(teach, line, session)
    qtbot.addWidget(page)
    page.resize(1400, 1000)
    page.show()
    sign_in(session, "tina")
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        cv2.imwrite(str(samples / f"part_{i:02d}.png"), woven(rng))
    teach.import_samples(samples)

    # The first sample is the reference until the technician picks another.
    editor = page.framing_editor
    assert editor.reference is not None and editor.reference.shape == (160, 160)
    assert "part_00.png" in editor.reference_source
    assert page.framing_for_training() is None  # nothing drawn, one tile: the whole frame, as before

    # A rectangle region, a painted don't-care spot and a don't-care polygon.
    page.left_tabs.setCurrentIndex(1)
    editor.set_region((16, 12, 128, 136))
    editor.brush_box.setChecked(True)
    editor.paint(40, 40, radius=3)
    editor.paint(40, 40, radius=1, erase=True)
    # The mouse's brush stroke (pyqtgraph's draw kernel on the mask, as a drag calls it), and its eraser.
    from PyQt6.QtCore import QPointF

    editor.brush_size.setValue(2)
    editor.mask_item.drawAt(QPointF(70, 30))
    assert editor.mask[30, 70] == 1 and editor.mask[30, 72] == 1 and editor.mask[30, 73] == 0
    editor.erase_box.setChecked(True)
    editor.mask_item.drawAt(QPointF(70, 30))
    assert editor.mask[30, 70] == 0
    editor.erase_box.setChecked(False)
    editor.add_ignore_polygon([(100, 100), (120, 100), (120, 120), (100, 120)])
    editor.tiles_combo.setCurrentText("N tiles")
    editor.tiles_count.setValue(2)
    editor.defect_px.setValue(4.0)
    editor.mm_per_px.setValue(0.05)
    framing = page.framing_for_training()
    assert framing.region == (16, 12, 128, 136) and framing.tiles == 2 and framing.defect_px == 4.0
    assert framing.ignore[40, 43] and not framing.ignore[40, 40]  # painted, then erased at the centre
    assert framing.ignore[110, 110] and not framing.ignore[80, 80]
    assert editor.pixel_size == 0.05
    assert page.check_framing()
    assert "region 16,12,128,136" in editor.summary.text() and "don't-care px" in editor.summary.text()

    # A polygon region: its bounding rectangle, the outside don't-care.
    editor.clear_ignore()
    editor.set_polygon([(20, 20), (140, 30), (120, 140), (30, 120)])
    framing = page.framing_for_training()
    assert framing.region == (20, 20, 120, 120)
    assert framing.ignore[21, 139] and not framing.ignore[80, 80]

    # A region off the reference: the message in the page, and Train writes nothing.
    editor.set_region((100, 100, 120, 120))
    before = (len(teach.versions()), audit_actions(db).count("train_started"))
    page.train_button.click()
    assert not teach.state.running
    text = page.message_label.text()
    assert "inspection region: the region 100,100,120,120 does not lie inside the 160x160 image" in text, text
    assert page.left_tabs.currentIndex() == 1  # the drawing is shown
    assert (len(teach.versions()), audit_actions(db).count("train_started")) == before
    assert not (tmp_path / "teach" / "tile" / "models").exists() or not any((tmp_path / "teach" / "tile" / "models").glob("*.safetensors"))
    # So is alignment without a region, and a mask drawn on another image.
    editor.clear_region()
    editor.align_box.setChecked(True)
    assert not page.check_framing() and "alignment needs a region" in page.message_label.text()
    editor.align_box.setChecked(False)
    editor.paint_mask(np.ones((100, 100), bool))
    with pytest.raises(InspectorError, match="the don't-care mask is 100x100, the reference 160x160"):
        page.framing_for_training()
    editor.clear_ignore()

    # A line camera's frame as the reference (another size: the drawing starts again): the part's
    # region, found first in every frame, a scratch-prone edge painted don't-care, a polygon too.
    _, reference, _ = make_scene()
    editor.set_reference(reference, "live frame of the line scene")
    assert not editor.region_box.isChecked() or editor.drawing().region is not None
    editor.set_region(REGION)
    x, y, w, h = REGION
    for t in np.linspace(0, 1, 40):
        editor.paint(x + 40 + t * (w - 80), y + h - 30, radius=14)
    editor.add_ignore_polygon([(x + 40, y + 40), (x + 110, y + 40), (x + 110, y + 100), (x + 40, y + 100)])
    editor.align_box.setChecked(True)
    editor.tiles_combo.setCurrentText("auto")
    editor.defect_px.setValue(6.0)
    editor.mm_per_px.setValue(0.08)
    # The woven samples are far smaller than the box the part is searched by: refused, naming one.
    assert not page.check_framing()
    assert "part_00.png: the frame is 160x160, smaller than the part's region" in page.message_label.text()
    # Without them the drawing alone is checked (the line's own frames would be the samples).
    assert teach.remove_samples(teach.sample_paths()) == 16
    framing = page.framing_for_training()
    assert framing.region == REGION and framing.align and framing.reference is not None
    assert page.check_framing() and "part found first" in editor.summary.text()
    save_picture(page, "teach-region.png", tmp_path)  # the manual's: scripts/docs/teach_screenshots.py


def test_the_recheck_band_of_a_version_is_set_in_the_teach_page_and_on_the_line_at_once(qtbot, tmp_path):
    from ui.session import Session
    from ui.teach_model import TeachModel
    from ui.teach_page import TeachPage
    from ui_support import make_line

    db = make_db(tmp_path)
    model_file = tmp_path / "m.safetensors"
    model_file.write_bytes(b"stand-in")
    product_id, v1 = register_model(db, model_file)  # threshold 1.0 over 40 good scores, active
    line = make_line(db, SimpleNamespace(model_path=model_file), tmp_path, 1.0, tmp_path / "images", product_id, v1)
    session = Session(db)
    teach = TeachModel(db, line, session, workdir=tmp_path / "teach")
    page = TeachPage(teach, line, session)
    qtbot.addWidget(page)
    page.select_version(v1)
    assert not page.recheck_box.isChecked() and not page.recheck_rate.isEnabled()  # off by default
    assert page.recheck_rate.value() == pytest.approx(3.0)
    assert not page.recheck_button.isEnabled()  # the operator may not
    sign_in(session, "tina")
    page.recheck_box.setChecked(True)
    page.recheck_rate.setValue(10.0)
    page.recheck_button.click()
    cal = db.latest_calibration(v1)
    assert cal.recheck_threshold is not None and cal.recheck_threshold < 1.0 and cal.target_recheck_rate == pytest.approx(0.1)
    assert line.recipe.rule.recheck_threshold == cal.recheck_threshold  # the active version: on the line now
    assert "are RECHECK, about 9.8 % of good parts" in page.message_label.text(), page.message_label.text()
    assert page.calib_plot.recheck_line.isVisible() and page.calib_plot.recheck_line.value() == pytest.approx(cal.recheck_threshold)
    assert "recheck band above" in page.frr_label.text()
    assert audit_actions(db)[0] == "set_recheck"
    page.recheck_box.setChecked(False)
    page.recheck_button.click()
    assert db.latest_calibration(v1).recheck_threshold is None and line.recipe.rule.recheck_threshold is None
    assert not page.calib_plot.recheck_line.isVisible()


# --- the operator page on a real run ---------------------------------------------------------------


@pytest.fixture(scope="module")
def framed_model(tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny real model with a framing that finds the part on the line scene's belt first."""
    from inspector.framing.recipe import make_framing
    from inspector.model_file import load_model, save_model

    rng, reference, _ = make_scene()
    framing = make_framing(reference, region=REGION, align=True, tiles="off")
    model, meta = load_model(tiny_model)
    path = tmp_path_factory.mktemp("framed") / "framed.safetensors"
    save_model(path, model, {k: v for k, v in meta.items() if k not in ("threshold", "pixel_threshold", "min_defect_area_px")}, framing)
    return path, {"rng": rng, "reference": reference}


def test_the_operator_page_shows_the_outline_no_part_and_recheck(qtbot, tmp_path, framed_model):
    from inspector.engine import Engine
    from inspector.line import DecisionRule
    from ui.line import LineModel, desktop_config
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui.widgets import NO_PART_COLOR, RECHECK_COLOR

    path, scene = framed_model
    engine = Engine(path, device="cpu", backend="eager")
    rng, reference = np.random.default_rng(3), scene["reference"]
    frames = [frame_with_part(rng, reference, angle, dx, dy)[0] for angle, dx, dy in ((4, 30, -20), (-6, -40, 25), (8, 60, 10))]
    scores = [engine.predict(f).score for f in frames]
    order = np.argsort(scores)  # lowest first: PASS, RECHECK, FAIL
    s = sorted(scores)
    assert s[0] < s[1] < s[2]
    folder = tmp_path / "frames"
    folder.mkdir()
    for rank, i in enumerate(order):
        cv2.imwrite(str(folder / f"{rank}.png"), frames[i])
    cv2.imwrite(str(folder / "3.png"), belt(rng))  # the part is missing: NO PART
    rule = DecisionRule((s[1] + s[2]) / 2, recheck_threshold=(s[0] + s[1]) / 2)

    db = make_db(tmp_path)
    product_id, version_id = register_model(db, path)
    config = desktop_config([f"folder://{folder}?fps=2&loop=0"], tmp_path / "images", trigger="free_run",
                            pass_sample_rate=1.0, quota_gb=1.0)
    recipe = loaded_recipe(engine, rule.threshold, product_id, version_id)
    from dataclasses import replace

    line = LineModel(db, config, replace(recipe, rule=rule))
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    page.resize(1400, 850)
    page.show()
    seen: dict[str, dict] = {}

    def look() -> bool:  # what is on screen, each decision the first time it is
        r = page.shown
        if r is not None and r.decision not in seen:
            seen[r.decision] = {"banner": page.banner.decision, "text": page.banner.text(),
                                "color": page.banner.color().name(), "outline": page.image_view.outline,
                                "result_outline": r.outline, "result": r}
        return line.counters.frames == 4 and len(seen) == 4

    def on_drawn() -> None:  # after the result, its counts and trend: the whole picture
        r = line.latest
        name = None if r is None else f"operator-{r.decision.lower().replace('_', '-')}.png"
        if r is not None and r.decision in ("RECHECK", "NO_PART") and not (tmp_path / name).exists():
            save_picture(page, name, tmp_path)  # the manual's: scripts/docs/operator_screenshots.py

    line.trend_changed.connect(on_drawn)
    assert line.start()
    # The display shows the newest result at most ten times a second, and results become durable
    # (and reach the screen) in the writer's batches: two may come at once and the first never be
    # drawn. Here every result is drawn as it comes, so each decision's screen can be looked at.
    line._bridge.result_received.connect(lambda r: line._on_display_tick())
    try:
        qtbot.waitUntil(look, timeout=120_000)  # the NO PART after the FAIL shows once the FAIL's hold ends
    finally:
        line.stop()

    assert set(seen) == {"PASS", "RECHECK", "FAIL", "NO_PART"}
    for decision, shown in seen.items():
        assert shown["banner"] == decision
    assert seen["RECHECK"]["color"] == RECHECK_COLOR and "RECHECK" in seen["RECHECK"]["text"]
    assert "recheck above" in seen["RECHECK"]["text"]
    assert seen["NO_PART"]["color"] == NO_PART_COLOR and "NO PART" in seen["NO_PART"]["text"]
    assert "not found" in seen["NO_PART"]["text"] and "PASS" not in seen["NO_PART"]["text"]
    assert seen["NO_PART"]["outline"] is None  # the part is not there: nothing outlined
    # The outline drawn is the region where the part was found: turned, so not the reference's rectangle.
    outline = seen["RECHECK"]["outline"]
    assert outline is not None and outline.shape == (5, 2)
    assert np.allclose(outline[:4], seen["RECHECK"]["result_outline"], atol=1e-3)
    x, y, w, h = REGION
    assert not np.allclose(outline[:4], [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], atol=2)

    # A reject stays on screen for HOLD_S: a pass (or an empty belt) right after it waits its turn.
    from ui.operator_page import HOLD_S

    page._on_result_changed(seen["FAIL"]["result"])
    start = time.monotonic()
    page._on_result_changed(seen["PASS"]["result"])
    assert page.banner.decision == "FAIL"
    qtbot.waitUntil(lambda: page.banner.decision == "PASS", timeout=int(HOLD_S * 1000) + 3000)
    assert time.monotonic() - start >= HOLD_S - 0.05
    page._on_result_changed(seen["RECHECK"]["result"])  # a later reject replaces it at once
    page._on_result_changed(seen["FAIL"]["result"])
    assert page.banner.decision == "FAIL"

    # The counts: their own columns; yield is PASS over the parts inspected (NO PART is none).
    c = page.counters.labels
    assert [c[k].text() for k in ("total", "pass", "fail", "recheck", "no_part")] == ["3", "1", "1", "1", "1"]
    assert c["yield"].text() == "33.3 %"
    rows = {r.decision for r in db.query_inspections(limit=10)}
    assert rows == {"PASS", "RECHECK", "FAIL", "NO_PART"}


# --- the review page's recheck queue ---------------------------------------------------------------


def test_the_recheck_queue_turns_the_verdict_into_a_label(qtbot, tmp_path):
    from inspector.history import InspectionResult
    from inspector.line import DecisionRule
    from ui.review_model import ReviewModel, column
    from ui.review_page import ReviewPage
    from ui.session import Session

    db = make_db(tmp_path)
    model_file = tmp_path / "m.safetensors"
    model_file.write_bytes(b"stand-in")
    product_id, v1 = register_model(db, model_file)
    rule = DecisionRule(1.0, 0.5, 10, recheck_threshold=0.6, mm_per_px=0.1)
    t0 = datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)
    decisions = ["PASS", "RECHECK", "FAIL", "RECHECK", "NO_PART", "RECHECK"]
    records = [InspectionResult(t0 + timedelta(minutes=i), "cam", i, 0.0 if d == "NO_PART" else {"PASS": 0.3, "RECHECK": 0.8, "FAIL": 1.4}[d],
                                d, 1.0, v1, product_id, rule=rule, defect_area_px=None if d == "NO_PART" else 25,
                                match_quality=0.1 if d == "NO_PART" else 0.9)
               for i, d in enumerate(decisions)]
    db.write_inspections(records)
    session = Session(db)
    model = ReviewModel(db, session)
    page = ReviewPage(model, session)
    qtbot.addWidget(page)
    page.show()

    # The decision filter knows the new values; the table says them as people read them.
    page.decision_combo.setCurrentIndex(page.decision_combo.findData("NO_PART"))
    page.apply_button.click()
    assert model.table.rowCount() == 1
    assert model.table.data(model.table.index(0, column("decision"))) == "NO PART"
    page.decision_combo.setCurrentIndex(0)
    page.apply_button.click()
    assert model.table.data(model.table.index(0, column("defect_size"))) == "0.25 mm²"  # 25 px of 0.1 mm

    # The queue: the three RECHECK parts, newest first; the verdict labels one and the next is selected.
    page.show_recheck_queue()
    assert model.table.rowCount() == 3 and "3 parts waiting for a verdict" in page.count_label.text()
    assert page.selected_indexes() == [0]
    first = model.table.row(0)
    assert first.decision == "RECHECK" and first.frame_id == 5
    assert "largest defect 0.25 mm²" in page.detail_label.text() and "recheck above 0.6" in page.detail_label.text()
    assert "part found, match 0.90" in page.detail_label.text()
    assert not page.false_reject_button.isEnabled()  # the operator may not label
    sign_in(session, "quinn")
    page.false_reject_button.click()
    assert model.table.rowCount() == 2 and page.selected_indexes() == [0]
    assert model.table.row(0).frame_id == 3
    page.defect_button.click()
    assert model.table.rowCount() == 1
    labels = {r.frame_id: (r.label, r.labelled_by) for r in db.query_inspections(limit=10)}
    assert labels[5] == ("false_reject", "quinn") and labels[3] == ("confirmed_defect", "quinn") and labels[1] == ("none", None)
    assert audit_actions(db).count("label") == 2
    page.show_recheck_queue(False)
    assert model.table.rowCount() == len(decisions)
