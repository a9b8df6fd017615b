"""Review: the selected part's pixel rule is said in the unit its largest defect is given in. With
a pixel size the detail line said "pixel threshold 0.2332 over 281 px ...; largest defect 10.4 mm²"
(a FAIL under the image threshold, failed by the pixel rule, whose two numbers could not be
compared without a calculator), and a rule without a minimum area (--pixel-threshold alone:
any pixel above it) was said "over None px". The browser's part page said the rule in px only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.history import InspectionResult  # noqa: E402
from inspector.inspection import DecisionRule  # noqa: E402
from ui_support import make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
MM_RULE = DecisionRule(0.34, 0.23, 281, recheck_threshold=0.27, mm_per_px=0.1)
ANY_PIXEL = DecisionRule(0.34, 0.23)  # no minimum area: one pixel above it fails the part


@pytest.fixture
def db(tmp_path):
    history = make_db(tmp_path)
    history.write_inspections([
        InspectionResult(T0, "cam", 1, 0.33, "FAIL", 0.34, rule=MM_RULE, defect_area_px=1040),
        InspectionResult(T0 + timedelta(seconds=1), "cam", 2, 0.2, "PASS", 0.34, rule=ANY_PIXEL, defect_area_px=0),
    ])
    return history


def test_the_desktop_says_the_pixel_rule_in_mm2_and_never_none(qtbot, db) -> None:
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    session = Session(db)
    page = ReviewPage(ReviewModel(db, session), session)
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    frames = [page.model.table.row(i).frame_id for i in range(page.model.table.rowCount())]
    page.table.selectRow(frames.index(1))
    detail = page.detail_label.text()
    assert "pixel threshold 0.23 over 281 px (2.81 mm²)" in detail and "largest defect 10.4 mm²" in detail
    page.table.selectRow(frames.index(2))
    detail = page.detail_label.text()
    assert "pixel threshold 0.23 over 1 px;" in detail and "None px" not in detail and "mm²" not in detail


def test_the_browser_says_the_pixel_rule_in_mm2(db, tmp_path) -> None:
    pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra: pip install -e '.[web]'")
    from inspector.history import InspectionFilter
    from web import WebOptions, create_app

    client = create_app(db, WebOptions(image_folders=[str(tmp_path)])).test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    assert client.post("/sign-in", data={"csrf_token": csrf, "name": "quinn", "pin": "567800"}).status_code == 303
    [row] = [r for r in db.query_inspections(InspectionFilter()) if r.frame_id == 1]
    page = client.get(f"/inspections/{row.id}").get_data(as_text=True)
    assert "over ≥ 281 px (2.81 mm²) (recorded)" in page
