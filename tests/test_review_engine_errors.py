"""An engine error (ERROR: a fail-safe FAIL, the frame never scored; the line stores 0.0, as for
NO PART) has no score. The desktop's Score cell said 0, its detail line "ERROR (FAIL, the engine
could not score it: ...), score 0", the CSV's score 0.0, and a score bound (the desktop's "Score
from", --min-score/--max-score, the browser's) kept it as a part that scored 0: "Score from 0 to
0.1" listed the frames 'not inspected' at a stop among the best parts. Now its score is empty
everywhere and a score bound leaves it out, as it leaves NO PART frames out."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import pytest

from inspector.history import HistoryDB, InspectionFilter, InspectionResult
from inspector.inspection import DecisionRule

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
RULE = DecisionRule(0.5, recheck_threshold=0.3)


@pytest.fixture
def db(tmp_path):
    history = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    history.upgrade()
    history.write_inspections([
        InspectionResult(T0, "cam", 1, 0.05, "PASS", 0.5, rule=RULE),
        InspectionResult(T0 + timedelta(seconds=1), "cam", 2, 0.0, "FAIL", 0.5, rule=RULE,
                         error="not inspected: the line stopped"),  # as the pipeline records one
        InspectionResult(T0 + timedelta(seconds=2), "cam", 3, 0.4, "RECHECK", 0.5, rule=RULE),
    ])
    yield history
    history.close()


def test_a_score_bound_leaves_engine_errors_out(db) -> None:
    assert [r.frame_id for r in db.query_inspections(InspectionFilter(min_score=0.0, max_score=0.1))] == [1]
    assert db.count_inspections(InspectionFilter(max_score=1.0)) == 2
    assert db.count_inspections(InspectionFilter(errors_only=True)) == 1  # still there, as an error


def test_the_csv_gives_an_engine_error_no_score(db, tmp_path) -> None:
    db.export_csv(tmp_path / "out.csv", InspectionFilter())
    with open(tmp_path / "out.csv", newline="") as f:
        rows = {int(r["frame_id"]): r for r in csv.DictReader(f)}
    assert rows[2]["score"] == "" and rows[2]["error"] == "not inspected: the line stopped"
    assert float(rows[1]["score"]) == 0.05 and float(rows[3]["score"]) == 0.4


def test_the_desktop_shows_an_engine_error_unscored(qtbot, tmp_path) -> None:
    pytest.importorskip("PyQt6")
    pytest.importorskip("pyqtgraph")
    from ui.review_model import ReviewModel, column
    from ui.review_page import ReviewPage
    from ui.session import Session
    from ui_support import make_db, sign_in

    history = make_db(tmp_path / "desk")  # with the users
    history.write_inspections([
        InspectionResult(T0, "cam", 1, 0.05, "PASS", 0.5, rule=RULE),
        InspectionResult(T0 + timedelta(seconds=1), "cam", 2, 0.0, "FAIL", 0.5, rule=RULE,
                         error="not inspected: the line stopped"),
    ])
    session = Session(history)
    page = ReviewPage(ReviewModel(history, session), session)
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    table = page.model.table
    cells = {table.data(table.index(r, column("decision"))): table.data(table.index(r, column("score")))
             for r in range(table.rowCount())}
    assert cells == {"ERROR": "", "PASS": "0.05"}
    page.table.selectRow(0)  # the newest: the error
    detail = page.detail_label.text()
    assert "could not score it" in detail and "not scored" in detail and "score 0" not in detail
    page.use_score.setChecked(True)
    page.min_score.setValue(0.0)
    page.max_score.setValue(0.1)
    page.apply_button.click()
    assert [table.row(i).frame_id for i in range(table.rowCount())] == [1]


def test_the_browser_shows_an_engine_error_unscored(db, tmp_path) -> None:
    pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra: pip install -e '.[web]'")
    import re

    from web import WebOptions, create_app
    from web_support import QUALITY, QUALITY_PIN

    db.add_user(QUALITY, "quality", QUALITY_PIN, by="test")
    client = create_app(db, WebOptions(image_folders=[str(tmp_path)])).test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    assert client.post("/sign-in", data={"csrf_token": csrf, "name": QUALITY, "pin": QUALITY_PIN}).status_code == 303
    [error] = db.query_inspections(InspectionFilter(errors_only=True))
    page = client.get(f"/inspections/{error.id}").get_data(as_text=True)
    assert re.search(r'id="score">not scored: the engine could not score it<', page)
    listing = client.get("/inspections").get_data(as_text=True)
    row = re.search(r'<tr class="fail">.*?</tr>', listing, re.S).group(0)
    assert ">ERROR<" in row and '<td class="num"></td><td class="num">0.5</td>' in row
