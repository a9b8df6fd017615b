"""Desktop: the NO PART alarm's count (issue 30) on the Settings page -- a technician's, refused
for an operator or a bad count with nothing written, audited, kept in gui.json across a restart of
the desktop, and what the running line raises ``no_part_run`` after."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.errors import InspectorError  # noqa: E402
from inspector.line import NO_PART_RUN  # noqa: E402
from inspector.roles import AccessDenied  # noqa: E402
from test_decisions import FramedStub, _frames  # noqa: E402
from ui_support import audit_actions, loaded_recipe, make_db, register_model, sign_in  # noqa: E402

#: Dark frames: NO PART, every one (see FramedStub).
NO_PART_FRAMES = 3


@pytest.fixture
def desktop(monkeypatch, tmp_path):
    """Opens the desktop as ``inspector gui --camera`` does, on a folder of NO PART frames, its
    recipe a framing stub (no model to load); ``desktop()`` again is the desktop started anew."""
    import launcher.desktop
    from launcher.desktop import DesktopApp, GuiOptions

    model_file = tmp_path / "stub.model"
    model_file.write_bytes(b"a stand-in: the stub scores")
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, model_file)
    db.close()

    stub = FramedStub()
    stub.model_path = model_file

    def recipe(*_):
        return loaded_recipe(stub, 0.7, product_id, version_id)

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(launcher.desktop, "resolve_recipe", recipe)
    frames = _frames(tmp_path / "frames", [0] * NO_PART_FRAMES)
    options = GuiOptions(db=f"sqlite:///{tmp_path / 'history.db'}", cameras=(f"folder://{frames}?fps=0",))
    apps = []

    def start():
        apps.append(DesktopApp(options))
        return apps[-1]

    yield start
    for app in apps:
        app.close()


def _no_part_alarms(line) -> int:
    return sum(a.kind == NO_PART_RUN for a in line.alarms)


def test_the_no_part_alarm_is_set_by_a_technician_kept_and_raised_by_the_line(qtbot, desktop, tmp_path):
    app = desktop()
    qtbot.addWidget(app.window)
    page, model, line = app.pages["settings"], app.settings_model, app.line
    saved = app.settings_path
    assert page.no_part_alarm.value() == 5 and line.config.no_part_alarm_after == 5  # the line's default, shown

    # Three NO PART frames in a row raise nothing under the default count.
    assert app.start()
    qtbot.waitUntil(lambda: line.counters.no_part == NO_PART_FRAMES, timeout=30_000)
    qtbot.wait(200)
    assert _no_part_alarms(line) == 0

    # An operator sees the setting but may not change it.
    sign_in(app.session, "otto")
    assert not page.no_part_button.isEnabled() and page.no_part_alarm.isReadOnly()
    with pytest.raises(AccessDenied):
        model.set_no_part_alarm(3)
    assert line.config.no_part_alarm_after == 5 and not saved.exists()

    # A technician's bad counts are refused before anything is written or audited.
    sign_in(app.session, "tina")
    assert page.no_part_button.isEnabled() and not page.no_part_alarm.isReadOnly()
    for bad in (0, -2, 2.5, True, "3"):
        with pytest.raises(InspectorError, match="NO PART alarm's count must be a whole number >= 1"):
            model.set_no_part_alarm(bad)
    assert line.config.no_part_alarm_after == 5 and not saved.exists()
    assert "set_no_part_alarm" not in audit_actions(app.db)

    # Three it is: saved, audited, and the restarted line raises the alarm on the third frame.
    page.no_part_alarm.setValue(3)
    page.no_part_button.click()
    assert line.config.no_part_alarm_after == 3 and json.loads(saved.read_text())["no_part_alarm_after"] == 3
    qtbot.waitUntil(lambda: _no_part_alarms(line) == 1, timeout=30_000)
    assert "3 frames in a row without the part" in next(a.message for a in line.alarms if a.kind == NO_PART_RUN)
    (entry,) = [e for e in app.db.audit_events(limit=100) if e.action == "set_no_part_alarm"]
    assert (entry.user, entry.before, entry.after) == ("tina", {"no_part_alarm_after": 5}, {"no_part_alarm_after": 3})
    assert "configure_camera_denied" in audit_actions(app.db)
    app.close()

    # The desktop started again runs and shows the saved count; "off" is kept as never.
    again = desktop()
    qtbot.addWidget(again.window)
    assert again.line.config.no_part_alarm_after == 3 and again.pages["settings"].no_part_alarm.value() == 3
    sign_in(again.session, "tina")
    again.pages["settings"].no_part_alarm.setValue(0)
    assert again.pages["settings"].no_part_alarm.text() == "off"
    again.pages["settings"].no_part_button.click()
    qtbot.waitUntil(lambda: again.line.counters.no_part == NO_PART_FRAMES, timeout=30_000)
    qtbot.wait(200)
    assert _no_part_alarms(again.line) == 0 and json.loads(saved.read_text())["no_part_alarm_after"] is None
    again.close()
    third = desktop()
    qtbot.addWidget(third.window)
    assert third.line.config.no_part_alarm_after is None and third.pages["settings"].no_part_alarm.text() == "off"


def test_a_hand_edited_count_the_line_would_refuse_leaves_the_default(desktop, tmp_path):
    """The desktop still starts: a count of 0 in gui.json is not one it can run with."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gui.json").write_text(json.dumps({"no_part_alarm_after": 0}))
    assert desktop().line.config.no_part_alarm_after == 5
