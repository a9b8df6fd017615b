"""Desktop: a region drawn as a polygon stays a polygon. The operator page outlines the polygon,
turned with the part where it was found, not its bounding rectangle."""

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
