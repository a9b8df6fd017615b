"""Desktop review: a NO PART frame was never scored (the part was not found), so its Score cell is
empty and its detail line says so, as the CSV and the browser say; before, both showed score 0."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("PyQt6")

from ui.review_model import column  # noqa: E402
from ui_support import make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_a_no_part_row_shows_no_score(qtbot, tmp_path) -> None:
    from sqlalchemy import insert

    from inspector.history.tables import Inspection
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db = make_db(tmp_path)
    rows = [{"uid": f"{i:032x}", "time": T0 + timedelta(seconds=i), "camera_id": "cam", "frame_id": i,
             "score": score, "decision": decision, "threshold": 0.25, "label": "none"}
            for i, (score, decision) in enumerate([(0.125, "PASS"), (0.0, "NO_PART")])]
    with db.session() as s:
        s.execute(insert(Inspection), rows)
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session), session, product_provider=lambda: None)
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page._on_filter_changed()
    table = page.table.model()
    cells = {table.data(table.index(r, column("decision"))): table.data(table.index(r, column("score")))
             for r in range(table.rowCount())}
    assert cells == {"PASS": "0.125", "NO PART": ""}
    page.table.selectRow(0)  # the newest: the NO PART frame
    detail = page.detail_label.text()
    assert "NO PART" in detail and "not scored: the part was not found" in detail and "score 0" not in detail
    # Its frame was not kept for the reason the browser gives: NO PART frames are sampled as passes are.
    assert "NO PART frames are sampled as passes are" in detail and "passes are sampled" not in detail
    page.table.selectRow(1)
    assert "score 0.125" in page.detail_label.text()
