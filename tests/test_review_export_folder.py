"""Review: "Export CSV + images ..." into a folder that holds an earlier export. The second export
replaced the first inspections.csv without a word (its rows gone from the folder) and added its
images beside the first one's: 15 FAIL rows exported, then 7 RECHECK rows into the same folder,
left a CSV of 7 RECHECK rows with 44 images, 30 of them of rows it does not list."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

pytest.importorskip("PyQt6")

from inspector.errors import InspectorError  # noqa: E402
from inspector.history import ImageStore, InspectionFilter, InspectionResult  # noqa: E402
from ui_support import make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_an_earlier_export_is_kept_and_a_new_one_needs_an_empty_folder(qtbot, tmp_path) -> None:
    from ui.review_model import ReviewModel
    from ui.session import Session

    db = make_db(tmp_path)
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0)
    rng = np.random.default_rng(0)
    decisions = ["FAIL", "FAIL", "RECHECK", "PASS"]
    db.write_inspections([store.save(InspectionResult(T0 + timedelta(seconds=i), "cam", i, 0.5, d, 0.4,
                                                      image=rng.integers(0, 255, (32, 32), dtype=np.uint8)))
                          for i, d in enumerate(decisions)])
    session = Session(db)
    model = ReviewModel(db, session)
    sign_in(session, "quinn")
    folder = tmp_path / "export"

    model.table.set_filters(InspectionFilter(decision="FAIL"))
    _, rows, images = model.export(folder)
    assert (rows, images) == (2, 2)
    first = (folder / "inspections.csv").read_bytes()

    model.table.set_filters(InspectionFilter(decision="RECHECK"))
    with pytest.raises(InspectorError, match="already holds an export .*choose an empty folder"):
        model.export(folder)
    assert (folder / "inspections.csv").read_bytes() == first  # the earlier export is kept whole
    assert len(list((folder / "images").iterdir())) == 2
    assert [e.action for e in db.audit_events(100)].count("export") == 1

    _, rows, images = model.export(tmp_path / "export2")  # an empty folder: this CSV and its images only
    with open(tmp_path / "export2" / "inspections.csv", newline="") as f:
        assert [r["decision"] for r in csv.DictReader(f)] == ["RECHECK"]
    assert (rows, images) == (1, 1) and len(list((tmp_path / "export2" / "images").iterdir())) == 1
    (tmp_path / "empty").mkdir()
    assert model.export(tmp_path / "empty")[1] == 1  # a folder made empty beforehand is fine
