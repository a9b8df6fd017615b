"""Review: a label is said one way on the page. The table said "false reject" while the selected
part's detail line said "label: false_reject by quinn" (and "label: none" for an unlabelled one),
and the Label filter offered the history's values "none", "false_reject", "confirmed_defect"; the
browser says "false reject", "not labelled". The filter still filters by the history's values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.history import InspectionResult  # noqa: E402
from ui_support import make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_labels_read_alike_in_the_table_the_detail_and_the_filter(qtbot, tmp_path) -> None:
    from ui.review_model import ReviewModel, column
    from ui.review_page import ReviewPage
    from ui.session import Session

    db = make_db(tmp_path)
    db.write_inspections([InspectionResult(T0 + timedelta(seconds=i), "cam", i, 0.4, "RECHECK", 0.5) for i in range(3)])
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session), session)
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    page.table.selectRow(0)
    assert "label: not labelled" in page.detail_label.text()
    page.false_reject_button.click()
    table = page.model.table
    assert table.data(table.index(0, column("label"))) == "false reject"
    detail = page.detail_label.text()
    assert "label: false reject by quinn" in detail and "false_reject" not in detail
    page.table.selectRow(1)
    page.defect_button.click()
    assert "label: confirmed defect by quinn" in page.detail_label.text()

    offered = [page.label_combo.itemText(i) for i in range(page.label_combo.count())]
    assert offered == ["any", "not labelled", "false reject", "confirmed defect"]
    for text, frames in (("false reject", [2]), ("confirmed defect", [1]), ("not labelled", [0]), ("any", [2, 1, 0])):
        page.label_combo.setCurrentText(text)
        page.apply_button.click()
        assert [table.row(i).frame_id for i in range(table.rowCount())] == frames, text
