"""Desktop: sign-in and rights, live frames on the operator page, a blocked GUI losing nothing.

Real parts throughout: magnetic-tile images replayed by a folder camera through the real engine
(a 2-iteration model), pipeline and SQLite history.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.roles import AccessDenied, authorize  # noqa: E402
from ui_support import audit_actions, resized_copies, make_db, make_line, register_model, sign_in  # noqa: E402

N_FRAMES = 5


@pytest.fixture(scope="module")
def engine(tiny_model):
    from inspector.engine import Engine

    return Engine(tiny_model, device="cpu", backend="eager")


@pytest.fixture(scope="module")
def frames(tmp_path_factory, shared_data, engine) -> tuple[Path, float]:
    """Real frames ordered by the model's score (highest last) and a threshold between the
    lowest and the highest, so the first part passes and the last one fails."""
    from inspector.image_io import read_image

    src = sorted((shared_data / "magnetic_tile" / "test" / "good").glob("*.jpg"))[:N_FRAMES]
    raw = resized_copies(src, tmp_path_factory.mktemp("raw"))
    paths = sorted(raw.glob("*.png"))
    scores = [engine.predict(read_image(p)).score for p in paths]
    folder = tmp_path_factory.mktemp("frames")
    for rank, i in enumerate(np.argsort(scores)):
        shutil.copy(paths[i], folder / f"{rank:03d}.png")
    lo, hi = min(scores), max(scores)
    assert hi > lo
    return folder, (lo + hi) / 2


def test_sign_in_by_pin_and_rights_by_role(qtbot, tmp_path):
    from ui.main_window import MainWindow
    from ui.session import Session
    from PyQt6.QtWidgets import QLabel

    db = make_db(tmp_path)
    session = Session(db)
    pages = {name: QLabel(name) for name in ("operator", "teach", "review", "settings")}
    window = MainWindow(session, pages)
    qtbot.addWidget(window)

    # The operator by default: watches, changes nothing, sees one page.
    assert (session.user, session.role) == ("operator", "operator")
    assert window.nav.count() == 1
    assert not session.can("set_threshold") and not session.can("activate_model") and not session.can("label")
    with pytest.raises(AccessDenied):
        authorize(db, session.caller(), "set_threshold", "model_version:1")
    with pytest.raises(Exception, match="not open to the operator"):
        window.show_page("teach")

    with pytest.raises(AccessDenied, match="wrong PIN"):
        session.sign_in("tina", "999900")
    assert session.role == "operator"

    # The dialog a person uses: a wrong PIN keeps it open with the reason, the right one signs in.
    from ui.main_window import SignInDialog, about_text

    from PyQt6.QtWidgets import QDialogButtonBox

    dialog = SignInDialog(session, window)
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    dialog.name_edit.setText("tina")
    dialog.pin_edit.setText("111100")
    ok.click()
    assert "wrong PIN" in dialog.error_label.text() and session.role == "operator" and dialog.pin_edit.text() == ""
    dialog.pin_edit.setText("123400")
    ok.click()
    assert session.role == "technician" and window.sign_in_button.text() == "Sign out"
    assert "CC BY-NC-SA 4.0" in about_text() and "ELPV" in about_text()
    assert [window.nav.item(i).text() for i in range(window.nav.count())] == ["Operator", "Teach", "Review", "Settings"]
    window.show_page("teach")
    assert window.stack.currentWidget() is pages["teach"]
    assert authorize(db, session.caller(), "set_threshold", "model_version:1").role == "technician"
    assert not session.can("label")

    session.sign_out()  # back to the operator, and off the technician's page
    assert session.role == "operator" and window.current_page() == "operator"

    sign_in(session, "quinn")
    assert session.can("label") and session.can("export") and not session.can("set_threshold")
    with pytest.raises(AccessDenied, match="quality"):
        authorize(db, session.caller(), "activate_model", "product:1")  # the database refuses too, not only the view

    actions = audit_actions(db)
    for expected in ("sign_in_denied", "sign_in", "sign_out", "set_threshold_denied", "activate_model_denied"):
        assert expected in actions


def fully_shown(label) -> bool:
    """Whether a label has at least the room its text needs (nothing clipped)."""
    hint = label.sizeHint()
    return label.isVisible() and label.width() >= hint.width() and label.height() >= hint.height()


def test_a_new_database_offers_to_create_the_first_technician_once(qtbot, tmp_path):
    from PyQt6.QtWidgets import QDialogButtonBox, QLabel

    from inspector.errors import DatabaseError
    from inspector.history import HistoryDB
    from ui.main_window import MainWindow, SignInDialog
    from ui.session import Session

    db = HistoryDB(f"sqlite:///{tmp_path / 'new.db'}")
    db.upgrade()
    db.add_user("quinn", "quality", "567800")  # a quality engineer is no technician
    session = Session(db)
    window = MainWindow(session, {name: QLabel(name) for name in ("operator", "teach", "review", "settings")})
    qtbot.addWidget(window)
    assert session.needs_first_technician() and window.sign_in_button.text() == "Create first technician …"

    dialog = SignInDialog(session, window)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.first_start and "no technician yet" in dialog.hint_label.text() and fully_shown(dialog.hint_label)
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    dialog.name_edit.setText("tina")
    dialog.pin_edit.setText("123400")
    dialog.repeat_edit.setText("124300")
    ok.click()
    assert "differ" in dialog.error_label.text() and session.role == "operator" and not db.has_technician()
    assert dialog.pin_edit.placeholderText() == "at least 6 characters"
    dialog.pin_edit.setText("12345")
    dialog.repeat_edit.setText("12345")
    ok.click()
    assert "at least 6" in dialog.error_label.text() and not db.has_technician()
    dialog.pin_edit.setText("123400")
    dialog.repeat_edit.setText("123400")
    ok.click()
    assert (session.user, session.role) == ("tina", "technician") and dialog.result() == dialog.DialogCode.Accepted
    assert db.verify_pin("tina", "123400") == "technician" and window.nav.count() == 4
    first = [e for e in db.audit_events() if e.action == "add_first_technician"]
    assert len(first) == 1 and (first[0].user, first[0].role, first[0].target) == ("tina", "technician", "user:tina")

    # Once: afterwards the dialog signs in, and a second bootstrap is refused by the database.
    session.sign_out()
    assert window.sign_in_button.text() == "Sign in …" and not session.needs_first_technician()
    again = SignInDialog(session, window)
    qtbot.addWidget(again)
    again.show()
    assert not again.first_start and not again.repeat_edit.isVisible() and fully_shown(again.hint_label)
    with pytest.raises(DatabaseError, match="exists already"):
        session.create_first_technician("mallory", "999900")
    assert db.verify_pin("mallory", "999900") is None and session.role == "operator"
    assert [e.action for e in db.audit_events()].count("add_first_technician") == 1


def test_sign_in_after_five_wrong_pins_says_until_when_the_account_is_locked(qtbot, tmp_path):
    from PyQt6.QtWidgets import QDialogButtonBox, QLabel

    from ui.main_window import MainWindow, SignInDialog
    from ui.session import Session

    db = make_db(tmp_path)
    session = Session(db)
    window = MainWindow(session, {name: QLabel(name) for name in ("operator", "teach", "review", "settings")})
    qtbot.addWidget(window)
    dialog = SignInDialog(session, window)
    qtbot.addWidget(dialog)
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    dialog.name_edit.setText("tina")
    for _ in range(5):
        dialog.pin_edit.setText("000001")
        ok.click()
        assert "wrong PIN" in dialog.error_label.text()
    dialog.pin_edit.setText("123400")  # the right one, refused while locked
    ok.click()
    assert "sign-in refused: 'tina' is locked until" in dialog.error_label.text() and session.role == "operator"
    newest = db.audit_events(limit=1)[0]
    assert newest.action == "sign_in_denied" and "locked until" in newest.after["reason"]
    assert audit_actions(db).count("pin_locked") == 1


def test_live_frames_update_image_overlay_banner_and_counters(qtbot, tmp_path, tiny_model, engine, frames):
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui.widgets import FAIL_COLOR

    folder, threshold = frames
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    line = make_line(db, engine, folder, threshold, tmp_path / "images", product_id, version_id)
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    page.show()
    shown = []
    line.result_changed.connect(lambda r: shown.append((r, page.banner.decision)))
    assert line.start()
    try:
        # The station counts on the writers' threads; the page has every result once the trend does.
        qtbot.waitUntil(lambda: line.counters.total == N_FRAMES and len(line.trend) == N_FRAMES
                        and page.shown is not None and page.shown.frame_id == line.latest.frame_id, timeout=120_000)
    finally:
        line.stop()

    # Every picture shown had the banner of its own verdict; the last part (highest score) failed.
    assert shown and all(decision == r.decision for r, decision in shown)
    last = page.shown
    assert last.decision == "FAIL" and last.score > threshold
    assert page.banner.decision == "FAIL" and page.banner.color().name() == FAIL_COLOR
    assert f"{last.score:.4g}" in page.banner.text() and f"{threshold:.4g}" in page.banner.text()

    # The frame at fixed levels, the map above it with its own opacity, outlined where it exceeds
    # the threshold (a FAIL by score has such a region: the score is the map's maximum).
    view = page.image_view
    assert view.image_item.image.shape == last.image.shape
    assert view.image_item.levels is not None and list(view.image_item.levels) == [0.0, 255.0]
    assert view.heat_item.image.shape == last.anomaly_map.shape
    assert view.heat_item.zValue() > view.image_item.zValue()
    assert view.contour_item.xData is not None and len(view.contour_item.xData) > 0
    view.opacity_slider.setValue(80)
    assert view.heat_item.opacity() == pytest.approx(0.8)
    view.overlay_box.setChecked(False)
    assert not view.heat_item.isVisible()
    lut = view._lut.copy()
    view.cmap_combo.setCurrentText("viridis")
    assert not np.array_equal(lut, view._lut)
    view.contour_box.setChecked(False)
    assert len(view.contour_item.xData) == 0

    c = line.counters
    assert (c.total, c.passed + c.failed) == (N_FRAMES, N_FRAMES) and c.passed >= 1 and c.failed >= 1
    assert page.counters.labels["total"].text() == str(N_FRAMES)
    assert len(page.trend.curve.yData) == N_FRAMES
    assert list(page.trend.threshold_curve.yData) == pytest.approx([threshold] * N_FRAMES)  # each part's own
    assert db.count_inspections() == N_FRAMES


def test_blocking_the_gui_thread_loses_no_inspection(qtbot, tmp_path, tiny_model, engine, frames):
    from ui.operator_page import OperatorPage
    from ui.session import Session

    folder, threshold = frames
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    line = make_line(db, engine, folder, threshold, tmp_path / "images", product_id, version_id)
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    page.show()
    assert line.start()
    try:
        # The GUI thread does nothing for seconds at a time while parts are inspected.
        for _ in range(3):
            time.sleep(1.0)
            if line.pipeline.wait(0):
                break
        assert line.pipeline.wait(120), "the pipeline did not finish the replay"
    finally:
        line.stop()
    # Every frame is in the database, and every result reached the desktop once the GUI woke up.
    assert db.count_inspections() == N_FRAMES
    assert line.last_metrics.recorded == N_FRAMES and line.last_metrics.unrecorded == 0
    assert line.counters.total == N_FRAMES  # the station counted every durable result itself
    last = N_FRAMES - 1  # the folder camera numbers its frames from 0
    qtbot.waitUntil(lambda: line.latest is not None and line.latest.frame_id == last, timeout=10_000)
    qtbot.waitUntil(lambda: page.shown is not None and page.shown.frame_id == last, timeout=10_000)


def test_alarms_reach_the_operator_camera_unavailable_and_score_drift(qtbot, tmp_path, tiny_model, engine, frames):
    from inspector.line.drift import DRIFT_ALARM as DRIFT
    from ui.operator_page import OperatorPage
    from ui.session import Session

    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    line = make_line(db, engine, tmp_path / "no such folder", 1.0, tmp_path / "images", product_id, version_id)
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    assert not line.start()
    assert line.camera_state == "unavailable" and line.alarms[0].kind == "camera_error"
    assert "no such folder" in page.alarm_list.item(0).text() and "(1)" in page.ack_button.text()
    page.ack_button.click()
    assert not line.unacknowledged and page.ack_button.text() == "Acknowledge alarms"
    assert "acknowledge_alarms" in audit_actions(db)

    # The calibration's good scores far below what the parts score now (as after a lighting
    # change): the line's drift monitor raises a drift alarm, and the page shows the status.
    folder, threshold = frames
    reference = tuple(1e-6 * (i + 1) for i in range(40))
    drifting = make_line(db, engine, folder, threshold, tmp_path / "images", product_id, version_id, loop=True,
                         reference=reference)
    page = OperatorPage(drifting, Session(db))
    qtbot.addWidget(page)
    assert drifting.start()
    try:
        qtbot.waitUntil(lambda: any(a.kind == DRIFT for a in drifting.alarms) and drifting.drift_status is not None,
                        timeout=120_000)
    finally:
        drifting.stop()
    alarm = next(a for a in drifting.alarms if a.kind == DRIFT)
    assert "higher than at calibration" in alarm.message
    assert drifting.drift_status.status == "warning" and "drift: warning" in page.status.text()
    texts = [page.alarm_list.item(i).text() for i in range(page.alarm_list.count())]
    assert any("drift" in t and "higher than at calibration" in t for t in texts)
    assert db.count_inspections() == drifting.last_metrics.recorded >= 50

    # A threshold set by hand changes no score: the warning stays on show (it went blank, and the
    # monitor, started over, needed another window to see the drift again).
    from dataclasses import replace

    from inspector.line import DecisionRule

    drifting.set_threshold(DecisionRule(threshold * 2))
    assert drifting.drift_status.status == "warning"
    # Good scores of another calibration: the monitor starts over, and so does what is shown.
    drifting.set_recipe(replace(drifting.recipe, reference_scores=tuple(np.linspace(0.1, 1.0, 40))))
    assert drifting.drift_status is None


def test_a_stalled_line_raises_the_alarm_on_the_operator_page(qtbot, tmp_path, tiny_model, engine, frames):
    """A camera that stays connected but sends one frame in ages (a jammed feed): the page says
    the line is stalled instead of "connected" with a rate of nought."""
    from dataclasses import replace

    from inspector.line import LINE_STALLED
    from ui.operator_page import OperatorPage
    from ui.session import Session

    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    folder, threshold = frames
    line = make_line(db, engine, folder, threshold, tmp_path / "images", product_id, version_id, loop=True)
    # One frame now, the next in 20 s; the engine takes well under the 3 s allowed for a part.
    line.config = replace(line.config, cameras=(f"folder://{folder}?fps=0.05&loop=1",), stall_after_s=3.0)
    page = OperatorPage(line, Session(db))
    qtbot.addWidget(page)
    assert line.start()
    try:
        qtbot.waitUntil(lambda: line.camera_state == "stalled", timeout=60_000)
        assert "stalled" in page.status.text() and "(1)" in page.ack_button.text()
        stalled = [a for a in line.alarms if a.kind == LINE_STALLED]
        assert len(stalled) == 1 and "stalled" in stalled[0].message
        assert any("line_stalled" in page.alarm_list.item(i).text() for i in range(page.alarm_list.count()))
    finally:
        line.stop()


def test_a_long_camera_id_is_cut_in_the_middle_on_the_operator_page() -> None:
    from ui.operator_page import CAMERA_ID_CHARS, short_camera_id

    uri = "basler://emulated?images=/srv/station/line-7/replay/cells/of/a/very/long/folder/name"
    short = short_camera_id(uri)
    assert len(short) == CAMERA_ID_CHARS and short.startswith("basler://emulated") and short.endswith("folder/name")
    assert short_camera_id("basler://22912345") == "basler://22912345"
