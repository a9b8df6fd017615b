"""Desktop: a region drawn as a polygon stays a polygon. The teach page opened again on its
framing draws the polygon (not its rectangle with the outside painted don't-care) and gives the
same framing back; the operator page outlines the polygon, turned with the part where it was
found, not its bounding rectangle."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.framing.align import turn_about  # noqa: E402

SIZE = 160
POLYGON = [(20.0, 20.5), (140.25, 30.0), (120.0, 140.0), (30.0, 120.0)]


def reference() -> np.ndarray:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return np.clip(120 + 40 * np.sin(xx / 3.0) * np.sin(yy / 3.0) + rng.normal(0, 4, (SIZE, SIZE)), 0, 255).astype(np.uint8)


def same_framing(a, b) -> bool:
    fields = ("region", "polygon", "align", "min_quality", "max_angle_deg", "tiles", "defect_px")
    return (all(getattr(a, f) == getattr(b, f) for f in fields) and np.array_equal(a.ignore, b.ignore)
            and np.array_equal(a.reference, b.reference))


def test_a_polygon_region_opens_again_as_the_polygon_and_gives_the_same_framing(qtbot) -> None:
    from ui.framing_editor import FramingEditor

    drawn = FramingEditor()
    qtbot.addWidget(drawn)
    drawn.set_reference(reference(), "sample")
    drawn.set_polygon(POLYGON)
    drawn.paint(80, 80, radius=4)  # the technician's own don't-care, inside the polygon
    drawn.add_ignore_polygon([(60, 100), (75, 100), (75, 112), (60, 112)])
    drawn.tiles_combo.setCurrentText("N tiles")
    drawn.tiles_count.setValue(2)
    framing = drawn.framing()
    assert framing.polygon == tuple(POLYGON) and framing.region == (20, 20, 121, 120)

    opened = FramingEditor()
    qtbot.addWidget(opened)
    opened.load_framing(framing, source="the active model")
    assert opened.shape_combo.currentText() == "polygon" and opened.region_box.isChecked()
    assert opened.polygon_roi.isVisible() and not opened.region_roi.isVisible()
    assert np.allclose(opened.drawing().polygon, POLYGON)
    # Painted back: only what the technician drew, not the polygon's outside.
    assert opened.mask[80, 80] and opened.mask[105, 65] and not opened.mask[2, 2] and not opened.mask[135, 25]
    assert same_framing(opened.framing(), framing)

    # A rectangle region opens as a rectangle, with its don't-care, as before.
    drawn.set_region((16, 12, 128, 136))
    rectangle = drawn.framing()
    assert rectangle.polygon is None
    opened.load_framing(rectangle)
    assert opened.shape_combo.currentText() == "rectangle" and same_framing(opened.framing(), rectangle)


def test_the_operator_page_outlines_a_polygon_region_as_the_polygon(qtbot) -> None:
    from calibration.teach.framing import Drawing, drawn_framing
    from inspector.framing import FramedScorer
    from ui.operator_page import region_outline, result_outline
    from ui.widgets import HeatmapView

    framing = drawn_framing(reference(), Drawing(polygon=POLYGON))
    engine = SimpleNamespace(framing=framing)
    assert np.allclose(region_outline(framing), POLYGON, atol=1e-3)  # where the reference has it

    # Where the part was found, turned by 10 degrees: the polygon turned and moved with it.
    matrix = turn_about(10.0, (80, 80), (86, 74))
    alignment = SimpleNamespace(matrix=matrix)
    corners = FramedScorer(None, framing).outline((SIZE, SIZE), alignment)
    found = SimpleNamespace(decision="FAIL", outline=corners)
    shape = result_outline(found, engine)
    assert np.allclose(shape, cv2.transform(np.float32(POLYGON)[None], matrix)[0], atol=1e-2)
    # A result without an outline of its own: the reference's polygon; NO PART: none.
    assert np.allclose(result_outline(SimpleNamespace(decision="PASS", outline=None), engine), POLYGON, atol=1e-3)
    assert result_outline(SimpleNamespace(decision="NO_PART", outline=corners), engine) is None

    view = HeatmapView()
    qtbot.addWidget(view)
    view.show_frame(reference(), np.zeros((SIZE, SIZE), np.float32))
    view.show_outline(shape)
    assert view.outline.shape == (5, 2) and np.allclose(view.outline[:4], shape, atol=1e-3)


def test_a_part_decided_before_a_recipe_change_is_outlined_with_its_own_region(qtbot, tmp_path) -> None:
    """The frame in the engine when a technician activates another version (another polygon) is
    decided by the old recipe and shown after the change: the operator page outlines it with the
    region that was inspected, not with the new recipe's polygon moved to its corners."""
    from datetime import datetime, timezone

    from calibration.teach.framing import Drawing, drawn_framing
    from inspector.framing import FramedScorer
    from inspector.line import DecisionRule, InspectionResult
    from ui.line import LineModel, desktop_config
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui_support import loaded_recipe, make_db

    db = make_db(tmp_path)
    old = drawn_framing(reference(), Drawing(polygon=POLYGON))
    new = drawn_framing(reference(), Drawing(polygon=[(10.0, 80.0), (80.0, 10.0), (150.0, 80.0), (80.0, 150.0)]))
    first = loaded_recipe(SimpleNamespace(framing=old, model_path=tmp_path / "old.safetensors"), 1.0, 1, 1)
    second = loaded_recipe(SimpleNamespace(framing=new, model_path=tmp_path / "new.safetensors"), 1.0, 1, 2)
    config = desktop_config([f"folder://{tmp_path}?fps=0"], tmp_path / "images")
    line = LineModel(db, config, first)
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    page.show()

    matrix = turn_about(10.0, (80, 80), (86, 74))
    corners = FramedScorer(None, old).outline((SIZE, SIZE), SimpleNamespace(matrix=matrix))
    result = InspectionResult(datetime.now(timezone.utc), "cam", 7, 2.0, "FAIL", 1.0, 1, 1, rule=DecisionRule(1.0),
                              image=reference(), heatmap=np.zeros((SIZE, SIZE), np.float32), outline=corners)
    line.set_recipe(second)  # the technician's activation, while the frame was in the engine
    line.result_changed.emit(result)
    assert page.shown is result
    assert np.allclose(page.image_view.outline[:-1], cv2.transform(np.float32(POLYGON)[None], matrix)[0], atol=1e-2)
    db.close()
