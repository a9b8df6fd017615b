"""The teach page's inspection region as a line technician uses it (issue 30), at its edges:
re-opening a product that has a framing, switching products, a reference the samples do not
fit, a polygon without an inside, a region dragged past the picture's edge, Erase alone, a
decimal comma, tiles that do not fit the memory or cannot show the smallest defect -- and that
what the page draws is what the model file keeps. Each is driven through the page's own
widgets and model, offscreen; a drawing that cannot work is a message and nothing is written.

Synthetic parts (a woven texture, tests/teach_support.py) and stand-in engines keep it fast;
one test trains an instant model for real.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from teach_support import woven, write_parts  # noqa: E402
from ui_support import audit_actions, make_db, make_line, register_model, sign_in  # noqa: E402


def teach_page(qtbot, tmp_path: Path, engine=None, rule=None, samples: int = 16):
    """A teach page over a line whose active recipe runs ``engine`` (a stand-in: only its
    ``framing`` is looked at), the technician signed in, ``samples`` woven parts imported."""
    from ui.session import Session
    from ui.teach_model import TeachModel
    from ui.teach_page import TeachPage

    db = make_db(tmp_path)
    model_file = tmp_path / "m.safetensors"
    model_file.write_bytes(b"stand-in")
    product_id, v1 = register_model(db, model_file)
    engine = engine or SimpleNamespace(model_path=model_file)
    line = make_line(db, engine, tmp_path, 1.0, tmp_path / "images", product_id, v1)
    if rule is not None:
        line.set_recipe(replace(line.recipe, rule=rule))
    session = Session(db)
    sign_in(session, "tina")
    if samples:
        from calibration.teach import TeachSession

        TeachSession(db, "tile", tmp_path / "teach").collect_from_folder(write_parts(tmp_path / "parts", woven, samples, seed=0))
    teach = TeachModel(db, line, session, workdir=tmp_path / "teach", device="cpu", backend="eager")
    page = TeachPage(teach, line, session)
    qtbot.addWidget(page)
    return SimpleNamespace(db=db, line=line, teach=teach, page=page, editor=page.framing_editor, model_file=model_file)


def test_reopening_a_product_draws_its_framing_again_and_another_product_starts_blank(qtbot, tmp_path):
    from inspector.framing.recipe import make_framing
    from inspector.line import DecisionRule

    reference = woven(np.random.default_rng(5))
    painted = np.zeros(reference.shape, bool)
    painted[50:60, 50:60] = True
    framing = make_framing(reference, region=(16, 12, 128, 136), ignore=painted, tiles=2, defect_px=4.0, min_quality=0.5)
    t = teach_page(qtbot, tmp_path, SimpleNamespace(model_path=tmp_path / "m.safetensors", framing=framing),
                   DecisionRule(1.0, mm_per_px=0.05))

    # The active model's drawing, on its own reference: training again keeps what the line runs.
    assert t.editor.reference is not None and np.array_equal(t.editor.reference, framing.reference)
    assert t.editor.region_box.isChecked() and "version" in t.editor.reference_source
    again = t.page.framing_for_training()
    assert again.region == framing.region and np.array_equal(again.ignore, framing.ignore)
    assert (again.tiles, again.defect_px, again.min_quality, again.align) == (2, 4.0, 0.5, False)
    assert t.editor.pixel_size == 0.05

    # Another product: its own drawing (none), not the last product's region on its parts.
    product_id = t.db.add_product("other")
    t.line.set_recipe(replace(t.line.recipe, product="other", product_id=product_id,
                              engine=SimpleNamespace(model_path=t.model_file), rule=DecisionRule(1.0)))
    assert t.teach.product == "other"
    assert t.editor.reference is None and not t.editor.region_box.isChecked()
    assert t.editor.pixel_size is None and t.editor.tiles_combo.currentText() == "auto"
    assert t.page.framing_for_training() is None


def test_a_reference_of_another_size_than_the_samples_is_refused_at_check_and_train_writes_nothing(qtbot, tmp_path):
    t = teach_page(qtbot, tmp_path)
    camera = np.random.default_rng(0).integers(0, 255, (300, 400), np.uint8)  # a live frame, not the samples' size
    t.editor.set_reference(camera, "live frame 7 of cam0")
    t.editor.set_region((40, 30, 200, 150))
    assert not t.page.check_framing()
    text = t.page.message_label.text()
    assert "part_00.png: the frame is 160x160, the recipe's reference 400x300" in text, text
    assert "select a sample in the list, press 'Use selected sample' and draw the region on it" in text, text
    before = audit_actions(t.db)
    t.page.kind.setCurrentIndex(t.page.kind.findData("instant"))
    t.page.train_button.click()
    assert not t.teach.state.running and audit_actions(t.db) == before  # nothing started, nothing audited
    assert not list((tmp_path / "teach").rglob("*.safetensors"))
    # A reference of the samples' size: the check passes.
    t.editor.set_reference(woven(np.random.default_rng(9)), "sample")
    t.editor.set_region((16, 16, 128, 128))
    assert t.page.check_framing()


@pytest.mark.parametrize("corners", [
    [(10, 10), (100, 100), (50, 50)],  # on one line
    [(40, 40), (41, 40), (41, 41), (40, 41)],  # dragged onto one another
])
def test_a_region_polygon_without_an_inside_is_refused(qtbot, tmp_path, corners):
    t = teach_page(qtbot, tmp_path)
    t.editor.set_polygon(corners)
    assert not t.page.check_framing()
    assert "the region polygon encloses no area: drag its corners apart" in t.page.message_label.text()
    # A crossing outline encloses its two lobes, as drawn: inspected.
    t.editor.set_polygon([(10, 10), (100, 10), (10, 100), (100, 100)])
    framing = t.page.framing_for_training()
    assert framing.region == (10, 10, 90, 90)
    assert not framing.ignore[20, 55] and not framing.ignore[90, 55] and framing.ignore[55, 20]


def test_erase_ticked_alone_takes_paint_away_with_the_mouse(qtbot, tmp_path):
    from PyQt6.QtCore import QPointF

    t = teach_page(qtbot, tmp_path)
    editor = t.editor
    editor.set_region((16, 16, 128, 128))
    editor.brush_box.setChecked(True)
    editor.brush_size.setValue(4)
    editor.mask_item.drawAt(QPointF(60, 60))
    assert editor.mask[60, 60] == 1
    editor.brush_box.setChecked(False)
    editor.erase_box.setChecked(True)
    # A left drag on the picture draws where the image has a draw kernel (pyqtgraph's mouseDragEvent).
    assert editor.mask_item.drawKernel is not None and not editor.region_roi.translatable
    editor.mask_item.drawAt(QPointF(60, 60))
    assert editor.mask[60, 60] == 0
    editor.erase_box.setChecked(False)
    assert editor.mask_item.drawKernel is None and editor.region_roi.translatable  # a drag moves the region again


def test_the_region_dragged_or_pulled_past_the_pictures_edge_stops_at_it(qtbot, tmp_path):
    from PyQt6.QtCore import QPointF

    t = teach_page(qtbot, tmp_path)
    t.editor.set_region((30, 30, 60, 60))
    roi = t.editor.region_roi
    # The whole rectangle pushed against the left edge (a mouse drag translates it), a bit too far.
    roi.translate((-50.6, 0), finish=True)
    assert t.editor.drawing().region == (0.0, 30.0, 60.0, 60.0)
    # Its corners pulled past the edges (a handle's drag: movePoint in scene coordinates).
    bottom_right, top_left = roi.getHandles()[0], roi.getHandles()[1]
    roi.handleMoveStarted()
    roi.movePoint(bottom_right, roi.mapToScene(roi.mapFromParent(QPointF(170.4, 163.2))), coords="scene", finish=True)
    roi.handleMoveStarted()
    roi.movePoint(top_left, roi.mapToScene(roi.mapFromParent(QPointF(-7.3, 20))), coords="scene", finish=True)
    assert t.editor.drawing().region == (0.0, 20.0, 160.0, 140.0)
    assert t.page.check_framing() and "region 0,20,160,140" in t.page.message_label.text()
    # Typed in (or loaded) past the edge, it is still refused, not moved.
    t.editor.set_region((100, 100, 120, 120))
    assert not t.page.check_framing() and "does not lie inside the 160x160 image" in t.page.message_label.text()


def test_the_region_polygon_dragged_or_pulled_past_the_pictures_edge_stops_at_it(qtbot, tmp_path):
    from PyQt6.QtCore import QPointF

    t = teach_page(qtbot, tmp_path)
    t.editor.set_polygon([(30, 30), (90, 30), (90, 90), (30, 90)])
    roi = t.editor.polygon_roi
    roi.translate((-40.6, 0), finish=True)  # a drag of the whole polygon, a bit past the left edge
    assert t.page.framing_for_training().region == (0, 30, 60, 60)
    corner = roi.getHandles()[2]  # the bottom right, pulled past the bottom right of the picture
    roi.movePoint(corner, roi.mapToScene(roi.mapFromParent(QPointF(170.4, 163.2))), coords="scene", finish=True)
    assert t.page.framing_for_training().region == (0, 30, 160, 130)
    assert t.page.check_framing()


@pytest.mark.parametrize("region, says", [
    ((10, 10, 5, 5), "the region 10,10,5,5 is under 16 pixels across: pull its corners apart round the part"),
    ((100, 100, 120, 120), "the region 100,100,120,120 does not lie inside the 160x160 image: drag it onto the picture"),
])
def test_a_region_too_small_or_off_the_picture_says_which_and_what_to_do(qtbot, tmp_path, region, says):
    t = teach_page(qtbot, tmp_path)
    t.editor.set_region(region)
    assert not t.page.check_framing()
    assert says in t.page.message_label.text() and " or " not in t.page.message_label.text()


def test_tiles_that_would_not_fit_the_memory_are_refused_at_check_and_train_writes_nothing(qtbot, tmp_path, monkeypatch):
    import inspector.framing.recipe as recipe

    t = teach_page(qtbot, tmp_path)
    t.editor.set_region((16, 16, 128, 128))
    t.editor.tiles_combo.setCurrentText("N tiles")
    t.editor.tiles_count.setValue(8)
    assert t.page.check_framing()
    monkeypatch.setattr(recipe, "available_memory_bytes", lambda: 100_000_000)  # a small machine
    assert not t.page.check_framing()
    # 12 of the 16 samples train (4 calibrate), as the training counts them.
    assert "12 training images of 64 tiles each would take about" in t.page.message_label.text(), t.page.message_label.text()
    before = audit_actions(t.db)
    t.page.kind.setCurrentIndex(t.page.kind.findData("instant"))
    t.page.train_button.click()
    assert not t.teach.state.running and audit_actions(t.db) == before


@pytest.mark.parametrize("language", ["C", "German"])
def test_a_decimal_comma_or_point_typed_is_the_number_meant(qtbot, tmp_path, language):
    from PyQt6.QtCore import QLocale, Qt
    from PyQt6.QtTest import QTest

    t = teach_page(qtbot, tmp_path, samples=0)
    locale = QLocale.c() if language == "C" else QLocale(QLocale.Language.German, QLocale.Country.Germany)

    def typed(box, text: str) -> float:
        box.setLocale(locale)
        box.lineEdit().selectAll()
        QTest.keyClick(box.lineEdit(), Qt.Key.Key_Delete)
        QTest.keyClicks(box.lineEdit(), text)
        box.interpretText()
        return box.value()

    for text in ("0,05", "0.05"):  # a hundred times too coarse, 5 mm/px, where the other mark was dropped
        assert typed(t.editor.mm_per_px, text) == pytest.approx(0.05), text
    assert typed(t.editor.defect_px, "2,5") == pytest.approx(2.5)
    t.page.recheck_box.setChecked(True)
    assert typed(t.page.recheck_rate, "2,5") == pytest.approx(2.5)
    assert typed(t.page.target_frr, "0,5") == pytest.approx(0.5)


def test_a_reference_of_another_size_says_that_the_drawing_starts_again(qtbot, tmp_path):
    import cv2

    t = teach_page(qtbot, tmp_path)
    t.editor.set_region((16, 16, 128, 128))
    t.editor.paint(60, 60, radius=5)
    camera = tmp_path / "camera.png"
    cv2.imwrite(str(camera), np.random.default_rng(0).integers(0, 255, (300, 400), np.uint8))
    t.page.use_sample_reference(camera)  # "Open image ..." of a frame at the camera's resolution
    assert t.editor.reference.shape == (300, 400) and not t.editor.mask.any()
    text = t.page.message_label.text()
    assert "the sample camera.png is 400x300, the drawing was on 160x160: draw the region and don't-care areas again" in text, text
    # One of the same size keeps the drawing, and says nothing of it.
    t.editor.paint(60, 60, radius=5)
    t.page.message_label.say("", False)
    t.page.use_sample_reference(camera)
    assert t.editor.mask.any() and "again" not in t.page.message_label.text()


@pytest.mark.parametrize("tiles, count", [("off", None), ("N tiles", 1)])
def test_a_smallest_defect_the_tiles_chosen_cannot_show_is_refused(qtbot, tmp_path, tiles, count):
    from framing_support import REGION, make_scene

    t = teach_page(qtbot, tmp_path, samples=0)
    _, reference, _ = make_scene()  # a line camera's frame: the part's region is 400x340
    t.editor.set_reference(reference, "live frame")
    t.editor.set_region(REGION)
    t.editor.tiles_combo.setCurrentText(tiles)
    if count:
        t.editor.tiles_count.setValue(count)
    t.editor.defect_px.setValue(6.0)  # 3.8 px squeezed whole; auto tiles show it 4.5 px
    assert not t.page.check_framing()
    assert f"with tiles {count or tiles} a 6-px defect is 3.8 px" in t.page.message_label.text()
    assert "choose auto tiles" in t.page.message_label.text()
    t.editor.defect_px.setValue(8.0)  # large enough for what those tiles show: allowed
    assert t.page.check_framing()
    t.editor.defect_px.setValue(6.0)
    t.editor.tiles_combo.setCurrentText("auto")  # auto tiles are cut for it
    assert t.page.check_framing()


def test_a_smallest_defect_no_tiles_could_show_larger_is_not_refused_for_tiles_off(qtbot, tmp_path):
    t = teach_page(qtbot, tmp_path)
    t.editor.set_region((16, 16, 128, 128))  # smaller than the model's input: one tile whatever is chosen
    t.editor.tiles_combo.setCurrentText("off")
    t.editor.defect_px.setValue(1.0)
    assert t.page.check_framing(), t.page.message_label.text()


def test_what_the_page_draws_is_what_the_model_file_keeps_and_the_page_draws_it_again(qtbot, tmp_path):
    from inspector.engine import Engine
    from inspector.recipes import load_active_recipe
    from ui.teach_model import TeachModel
    from ui.teach_page import TeachPage

    t = teach_page(qtbot, tmp_path, samples=24)
    t.editor.set_polygon([(20, 20), (140, 30), (120, 140), (30, 120)])
    t.editor.paint(80, 80, radius=5)
    t.editor.add_ignore_polygon([(100, 60), (110, 60), (110, 70), (100, 70)])
    t.editor.defect_px.setValue(3.0)
    t.editor.mm_per_px.setValue(0.05)
    drawn = t.page.framing_for_training()
    t.page.kind.setCurrentIndex(t.page.kind.findData("instant"))
    t.page.target_frr.setValue(25.0)
    t.page.train_button.click()
    qtbot.waitUntil(lambda: not t.teach.state.running, timeout=300_000)
    version = max(t.teach.versions(), key=lambda v: v.id)
    kept = Engine(version.path, device="cpu", backend="eager").framing
    # In reference pixels, the mask the reference's size.
    assert kept.region == drawn.region == (20, 20, 120, 120)
    assert kept.ignore.shape == kept.reference.shape == t.editor.reference.shape
    assert np.array_equal(kept.ignore, drawn.ignore) and kept.defect_px == 3.0
    assert kept.polygon == drawn.polygon == ((20, 20), (140, 30), (120, 140), (30, 120))

    # Active on the line, the page opened again draws it (and its pixel size) as it was.
    t.teach.teach.activate(t.page.session.caller(), version.id)
    t.line.set_recipe(load_active_recipe(t.db, "tile", device="cpu", backend="eager"))
    again = TeachPage(TeachModel(t.db, t.line, t.page.session, workdir=tmp_path / "teach"), t.line, t.page.session)
    qtbot.addWidget(again)
    restored = again.framing_for_training()
    assert restored.region == kept.region and np.array_equal(restored.ignore, kept.ignore)
    assert restored.polygon == kept.polygon and again.framing_editor.shape_combo.currentText() == "polygon"
    assert again.framing_editor.pixel_size == 0.05 and restored.defect_px == 3.0


def test_a_recheck_band_the_samples_cannot_resolve_is_a_message_and_nothing_is_audited(qtbot, tmp_path):
    t = teach_page(qtbot, tmp_path)
    t.page.kind.setCurrentIndex(t.page.kind.findData("instant"))
    t.page.target_frr.setValue(25.0)
    t.page.recheck_box.setChecked(True)  # 3 %: 33 calibration images, 16 samples give 4
    before = audit_actions(t.db)
    t.page.train_button.click()
    qtbot.waitUntil(lambda: not t.teach.state.running, timeout=120_000)
    assert audit_actions(t.db) == before and not list((tmp_path / "teach").rglob("*.safetensors"))
    text = t.page.message_label.text()
    # The training's own refusal, before its start is audited.
    assert "4 calibration images cannot resolve a recheck rate of 3 %: it needs at least 33" in text, text
    assert "collect about 165 samples or ask for a larger rate" in text


def test_a_target_false_reject_rate_the_samples_cannot_resolve_is_a_message_and_nothing_is_audited(qtbot, tmp_path):
    t = teach_page(qtbot, tmp_path)
    t.page.kind.setCurrentIndex(t.page.kind.findData("instant"))
    t.page.target_frr.setValue(1.0)  # 16 samples give 4 calibration images: 20 % is the least they show
    before = audit_actions(t.db)
    t.page.train_button.click()
    qtbot.waitUntil(lambda: not t.teach.state.running, timeout=120_000)
    assert audit_actions(t.db) == before and not list((tmp_path / "teach").rglob("*.safetensors"))
    assert "4 good calibration images cannot resolve a false-reject rate of 1 %" in t.page.message_label.text()


def test_switching_the_regions_shape_keeps_where_it_was_drawn(qtbot, tmp_path):
    t = teach_page(qtbot, tmp_path)
    t.editor.set_region((50, 40, 60, 70))
    t.editor.shape_combo.setCurrentText("polygon")  # to drag a corner of the rectangle just placed
    assert t.page.framing_for_training().region == (50, 40, 60, 70)
    assert t.editor._points(t.editor.polygon_roi) == [(50, 40), (110, 40), (110, 110), (50, 110)]
    t.editor.set_polygon([(20, 20), (140, 30), (120, 140), (30, 120)])
    t.editor.shape_combo.setCurrentText("rectangle")
    assert t.page.framing_for_training().region == (20, 20, 120, 120)


def test_one_dont_care_polygon_is_taken_away_without_the_painting(qtbot, tmp_path):
    t = teach_page(qtbot, tmp_path)
    t.editor.set_region((16, 16, 128, 128))
    t.editor.paint(40, 40, radius=4)
    keep = t.editor.add_ignore_polygon([(100, 100), (120, 100), (120, 120), (100, 120)])
    wrong = t.editor.add_ignore_polygon([(60, 60), (80, 60), (80, 80), (60, 80)])
    assert wrong.removable  # its right-click menu has "Remove ROI"
    wrong.sigRemoveRequested.emit(wrong)  # what that menu entry does
    framing = t.page.framing_for_training()
    assert not framing.ignore[70, 70] and framing.ignore[110, 110] and framing.ignore[40, 40]
    assert t.editor.ignore_rois == [keep] and wrong.scene() is None
