"""The built-in demo as the desktop runs it: the ELPV cells replayed by pylon's emulator, parts
presented by the feeder, the shipped demo model deciding -- for as long as it runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")


def test_the_demo_line_keeps_inspecting_past_its_last_cell(qtbot, tmp_path, monkeypatch):
    pytest.importorskip("elpv_dataset", reason="the demo images come from the elpv-dataset package ('demo' extra)")
    pytest.importorskip("pypylon", reason="the demo camera is pylon's emulator ('basler' extra)")
    import demo
    from inspector.line import CAMERA_ERROR, LINE_STALLED
    from launcher.desktop import DesktopApp, GuiOptions

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    app = DesktopApp(GuiOptions(device="cpu", backend="eager"))
    qtbot.addWidget(app.window)
    cells = demo.N_REPLAY_GOOD + demo.N_REPLAY_DEFECT
    app.line.config = replace(app.line.config, feeder_rate=25.0)  # the demo's own pace, only faster
    assert app.line.config.trigger == "software"
    try:
        assert app.start()
        # Once round the cells and well into the second round. The counts are the station's own,
        # read at once; the latest result reaches the GUI thread by a queued signal, a frame or
        # two later: wait for both.
        qtbot.waitUntil(lambda: app.line.counters.total >= cells + 10 and app.line.latest is not None
                        and app.line.latest.frame_id >= cells + 9, timeout=300_000)
    finally:
        app.close()
    m = app.line.last_metrics
    assert m.camera_lost == 0 and m.recorded >= cells + 10
    # The desktop's run is audited as `inspector run`'s is: one station class runs both.
    from inspector.history import HistoryDB, default_db_url

    db = HistoryDB(default_db_url())
    runs = [e for e in reversed(db.audit_events(limit=200)) if e.action in ("run_start", "run_stop")]
    db.close()
    assert [e.action for e in runs] == ["run_start", "run_stop"] and runs[0].user.startswith("gui:")
    assert runs[0].after["product"] == demo.DEMO_PRODUCT and runs[1].after["recorded"] == m.recorded
    assert not [a for a in app.line.alarms if a.kind in (LINE_STALLED, CAMERA_ERROR)]
    assert app.line.latest.frame_id >= cells + 9
    # The emulator replays a folder of cells and nothing else; the attribution sits beside it.
    folder = tmp_path / "data" / demo.REPLAY_DIRNAME
    assert sorted(p.suffix for p in (folder / demo.CELLS_DIRNAME).iterdir()) == [".png"] * cells
    assert "CC BY-NC-SA 4.0" in (folder / "ATTRIBUTION.txt").read_text()
