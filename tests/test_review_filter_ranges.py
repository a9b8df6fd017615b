"""Review: a time or score range that ends before it starts is refused with one line, as
``inspector history export`` (--since/--until, --min-score/--max-score) and the browser refuse
it. The desktop applied it and said "0 parts", as if the history held none in it; the table now
keeps the parts it showed and the message line says why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from PyQt6.QtCore import QDateTime  # noqa: E402

from inspector.history import InspectionResult  # noqa: E402
from ui_support import make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_reversed_ranges_are_refused_not_shown_as_no_parts(qtbot, tmp_path) -> None:
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db = make_db(tmp_path)
    db.write_inspections([InspectionResult(T0 + timedelta(minutes=i), "cam", i, 0.1 * i, "PASS", 0.5) for i in range(4)])
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session), session)
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    assert page.count_label.text() == "4 parts"

    page.use_time.setChecked(True)
    page.start_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int((T0 + timedelta(hours=1)).timestamp())))
    page.end_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(T0.timestamp())))
    page.apply_button.click()
    assert "does not end after it starts: no part can match" in page.message_label.text()
    assert page.count_label.text() == "4 parts" and page.model.table.rowCount() == 4
    page.end_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int((T0 + timedelta(hours=2)).timestamp())))
    page.start_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(T0.timestamp())))
    page.apply_button.click()
    assert page.model.table.rowCount() == 4

    page.use_score.setChecked(True)
    page.min_score.setValue(0.25)
    page.max_score.setValue(0.05)
    page.apply_button.click()
    assert "score range 0.25 to 0.05 ends below its start: no part can match" in page.message_label.text()
    assert page.model.table.rowCount() == 4
    page.max_score.setValue(0.35)
    page.apply_button.click()
    assert page.model.table.rowCount() == 1  # 0.3
