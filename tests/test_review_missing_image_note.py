"""Review: why a part shows no image. Every FAIL and RECHECK frame is kept, yet a RECHECK in the
recheck queue whose image was gone said "(image not kept: passes are sampled, or the quota removed
it)": a cause that is never its own. The note now says what happened to each: removed since by
the image quota (naming the file), a pass or NO PART frame not sampled, a reject the full disk
had no room for."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.history import ImageStore, InspectionResult  # noqa: E402
from ui_support import make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_the_note_says_why_each_part_has_no_image(qtbot, tmp_path) -> None:
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db = make_db(tmp_path)
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0)
    frame = np.zeros((16, 16), np.uint8)
    removed = store.save(InspectionResult(T0, "cam", 1, 0.45, "RECHECK", 0.5, image=frame))
    db.write_inspections([
        removed,
        InspectionResult(T0 + timedelta(seconds=1), "cam", 2, 0.45, "RECHECK", 0.5),  # the disk had no room
        InspectionResult(T0 + timedelta(seconds=2), "cam", 3, 0.1, "PASS", 0.5),
        InspectionResult(T0 + timedelta(seconds=3), "cam", 4, 0.0, "NO_PART", 0.5),
        InspectionResult(T0 + timedelta(seconds=4), "cam", 5, 0.0, "FAIL", 0.5, error="not inspected: stopped"),
    ])
    removed_path = removed.image_path
    Path(removed_path).unlink()  # as the image quota deletes the oldest files
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session), session)
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    table = page.model.table
    notes = {}
    for i in range(table.rowCount()):
        page.table.selectRow(i)
        notes[table.row(i).frame_id] = page.detail_label.text()
    assert f"image removed since it was kept: the image quota deletes the oldest images first; it was {removed_path}" in notes[1]
    assert "the disk had no room for it" in notes[2] and "passes are sampled" not in notes[2]
    assert "(image not kept: passes are sampled)" in notes[3]
    assert "NO PART frames are sampled as passes are" in notes[4]
    assert "the disk had no room for it (images dropped), or the frame was not inspected" in notes[5]

