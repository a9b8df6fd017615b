"""Desktop: several cameras on one engine (``inspector gui --camera A --camera B``).

The real line: two folder cameras replaying real magnetic-tile images of different sizes (so a
verdict shown on the wrong camera's tile shows in the image's shape) through the real engine (a
2-iteration model), ``build_lines`` and SQLite. Camera A's parts all pass and camera B's all fail
(the threshold lies between the two sets' scores), so counts mixed up between cameras show.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.errors import InspectorError  # noqa: E402
from ui_support import audit_actions, make_db, register_model, resized_copies, sign_in  # noqa: E402

N_A, N_B = 3, 4
SIZE_B = (160, 224)  # (H, W) of camera B's frames; camera A's are ui_support.SIZE square


@pytest.fixture(scope="module")
def engine(tiny_model):
    from inspector.engine import Engine

    return Engine(tiny_model, device="cpu", backend="eager")


@pytest.fixture(scope="module")
def cameras(tmp_path_factory, shared_data, engine) -> tuple[Path, Path, float]:
    """Camera A's folder (the lowest-scoring images), camera B's (the highest, another size) and
    a threshold between the two sets."""
    from inspector.image_io import read_image

    good = sorted((shared_data / "magnetic_tile" / "test" / "good").glob("*.jpg"))[:N_A + N_B]
    raw = resized_copies(good, tmp_path_factory.mktemp("raw")).glob("*.png")
    scored = sorted((engine.predict(read_image(p)).score, p) for p in raw)
    folder_a, folder_b = tmp_path_factory.mktemp("camera_a"), tmp_path_factory.mktemp("camera_b")
    for i, (_, path) in enumerate(scored[:N_A]):
        cv2.imwrite(str(folder_a / f"{i:03d}.png"), cv2.imread(str(path)))
    for i, (_, path) in enumerate(scored[N_A:]):
        cv2.imwrite(str(folder_b / f"{i:03d}.png"), cv2.resize(cv2.imread(str(path)), SIZE_B[::-1]))
    high_a = scored[N_A - 1][0]
    low_b = min(engine.predict(read_image(p)).score for p in folder_b.glob("*.png"))  # at camera B's size
    assert high_a < low_b, "the two sets' scores overlap at camera B's size"
    return folder_a, folder_b, (high_a + low_b) / 2


def test_two_cameras_set_in_the_settings_run_on_one_engine_each_in_its_tile_with_station_totals(
        qtbot, tmp_path, tiny_model, engine, cameras):
    from inspector.line import Lines
    from ui.line import LineModel, desktop_config
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui.settings_model import GuiSettings, SettingsModel
    from ui.settings_page import SettingsPage
    from ui.widgets import FAIL_COLOR, PASS_COLOR
    from ui_support import loaded_recipe

    folder_a, folder_b, threshold = cameras
    uri_a, uri_b = f"folder://{folder_a}?fps=0", f"folder://{folder_b}?fps=0"
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    # One camera to begin with, as the desktop has now; not started.
    line = LineModel(db, desktop_config([uri_a], tmp_path / "images", pass_sample_rate=1.0, quota_gb=1.0),
                     loaded_recipe(engine, threshold, product_id, version_id))
    session = Session(db)
    path = tmp_path / "gui.json"
    settings = SettingsModel(db, line, session, GuiSettings(), path, device="cpu", backend="eager")
    settings_page = SettingsPage(settings, session)
    page = OperatorPage(line, session)
    qtbot.addWidget(settings_page)
    qtbot.addWidget(page)
    page.show()
    assert page.tiles == {} and page.image_view.isVisible() and page.banner.isVisible()

    # The technician gives a second camera; the line restarts with both, on one engine.
    sign_in(session, "tina")
    settings_page.more_cameras_edit.setPlainText(f"{uri_b}\n\n")
    settings_page.camera_button.click()
    try:
        assert isinstance(line.line, Lines) and [one.camera.camera_id for one in line.line.lines] == [uri_a, uri_b]
        assert list(page.tiles) == [uri_a, uri_b] and page.tiles_box.isVisible()
        assert not page.image_view.isVisible() and not page.banner.isVisible()
        tiles = page.tiles
        # The station counts on the writers' threads; the page has every result once the trend does.
        qtbot.waitUntil(lambda: line.counters.total == N_A + N_B and len(line.trend) == N_A + N_B
                        and all(tile.shown is line.views[cid].latest is not None for cid, tile in tiles.items()),
                        timeout=120_000)
    finally:
        assert line.stop()

    # Each tile: its own camera's last part (its frame size), verdict and counts.
    a, b = page.tiles[uri_a], page.tiles[uri_b]
    assert a.image_view.image_item.image.shape[:2] == (192, 192)
    assert b.image_view.image_item.image.shape[:2] == SIZE_B
    assert b.image_view.heat_item.image is not None and len(b.image_view.contour_item.xData) > 0
    assert (a.banner.decision, a.banner.color().name()) == ("PASS", PASS_COLOR)
    assert (b.banner.decision, b.banner.color().name()) == ("FAIL", FAIL_COLOR)
    counts = {cid: (v.counters.total, v.counters.passed, v.counters.rejected) for cid, v in line.views.items()}
    assert counts == {uri_a: (N_A, N_A, 0), uri_b: (N_B, 0, N_B)}
    assert [a.counters.labels[k].text() for k in ("total", "pass", "fail", "yield")] == ["3", "3", "0", "100.0 %"]
    assert [b.counters.labels[k].text() for k in ("total", "pass", "fail", "yield")] == ["4", "0", "4", "0.0 %"]
    # The station: the sum, on the page's own counters; the trend has every part.
    assert (line.counters.total, line.counters.passed, line.counters.failed) == (N_A + N_B, N_A, N_B)
    assert page.counters.labels["total"].text() == str(N_A + N_B) and page.counters.labels["yield"].text() == "42.9 %"
    assert page.station_label.isVisible() and len(page.trend.curve.yData) == N_A + N_B
    assert uri_a in a.title.text() and "stopped" in a.title.text()
    figures = page.figures.text()  # a line per camera
    assert figures.index(uri_a) < figures.index("recorded 3") < figures.index(uri_b) < figures.index("recorded 4")

    # Every part recorded once, with its camera's id and its own verdict; nothing lost.
    with sqlite3.connect(db.sqlite_path) as connection:
        rows = connection.execute("SELECT camera_id, frame_id, decision FROM inspections ORDER BY id").fetchall()
    by_camera = {cid: sorted((f, d) for c, f, d in rows if c == cid) for cid in (uri_a, uri_b)}
    assert len(rows) == N_A + N_B
    assert by_camera == {uri_a: [(i, "PASS") for i in range(N_A)], uri_b: [(i, "FAIL") for i in range(N_B)]}
    for cid, n in ((uri_a, N_A), (uri_b, N_B)):
        m = line.views[cid].metrics
        assert (m.acquired, m.recorded, m.unrecorded, m.writer.failed) == (n, n, 0, 0)

    # Saved as the single camera was, the others beside it; audited.
    saved = GuiSettings.load(path)
    assert (saved.camera_uri, saved.more_camera_uris) == (uri_a, (uri_b,))
    assert json.loads(path.read_text())["more_camera_uris"] == [uri_b]
    entry = next(e for e in db.audit_events(limit=50) if e.action == "set_camera")
    assert entry.before["cameras"] == [uri_a] and entry.after["cameras"] == [uri_a, uri_b]

    # A PLC answers one camera through its register block: with two cameras, one PLC link is
    # refused before anything changes (one per camera, in camera order, is what it takes).
    with pytest.raises(InspectorError, match="1 PLC links for 2 cameras"):
        settings.set_links("modbus://127.0.0.1:1502?unit=1", "ng", None, None, None)
    assert line.config.plc == () and GuiSettings.load(path).plc_uri is None
    assert "set_links" not in audit_actions(db)
    # And a camera given twice.
    with pytest.raises(InspectorError, match="given twice"):
        settings.apply_camera(uri_a, "free_run", None, None, [uri_b, uri_a])
    assert line.config.cameras == (uri_a, uri_b)


def test_one_heatmap_bar_sets_every_camera_tile_and_the_tiles_of_a_camera_added_later(
        qtbot, tmp_path, tiny_model, engine, cameras):
    import numpy as np
    from PyQt6 import sip
    from PyQt6.QtCore import QCoreApplication, QEvent
    from inspector.overlay import HeatmapLevels
    from ui.line import LineModel, desktop_config
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui.widgets import overlay_lut
    from ui_support import loaded_recipe

    folder_a, folder_b, threshold = cameras
    uri_a, uri_b = f"folder://{folder_a}?fps=0", f"folder://{folder_b}?fps=0"
    uri_c = f"folder://{folder_a}?fps=0&loop=0"  # camera A's images again, as another camera
    db = make_db(tmp_path)
    recipe = loaded_recipe(engine, threshold, *register_model(db, tiny_model))
    frame, anomaly = np.zeros((32, 32), np.uint8), np.linspace(0.0, 2.0, 32 * 32).reshape(32, 32)

    def page_of(*uris: str) -> OperatorPage:
        config = desktop_config(uris, tmp_path / "images", max_batch=1)
        page = OperatorPage(LineModel(db, config, recipe), Session(db))
        qtbot.addWidget(page)
        page.show()
        return page

    def shown(page: OperatorPage) -> list:
        """Each tile's view, with a part's map drawn (half of it above the contour level)."""
        views = [tile.image_view for tile in page.tiles.values()]
        for view in views:
            view.show_frame(frame, anomaly, HeatmapLevels(vmax=2.0, contour_level=1.0, threshold=1.0))
        return views

    # One camera: no shared bar; the image's own bar works as before.
    single = page_of(uri_a)
    view = single.image_view
    assert not single.tiles and not single.tile_controls.isVisible() and view.controls.isVisible()
    view.show_frame(frame, anomaly, HeatmapLevels(vmax=2.0, contour_level=1.0, threshold=1.0))
    view.opacity_slider.setValue(30)
    view.cmap_combo.setCurrentText("plasma")
    assert view.heat_item.opacity() == pytest.approx(0.3) and np.array_equal(view.heat_item.lut, overlay_lut("plasma"))
    view.overlay_box.setChecked(False)
    assert not view.heat_item.isVisible()
    assert single.tile_controls.opacity_slider.value() == 50  # the tiles' bar is another

    # Two cameras: one bar below the tiles; each change redraws every tile's part at once.
    page = page_of(uri_a, uri_b)
    bar = page.tile_controls
    assert list(page.tiles) == [uri_a, uri_b] and bar.isVisible()
    views = shown(page)
    assert all(len(v.contour_item.xData) > 0 and v.heat_item.isVisible() for v in views)
    bar.opacity_slider.setValue(20)
    bar.cmap_combo.setCurrentText("viridis")
    bar.contour_box.setChecked(False)
    for v in views:
        assert v.heat_item.opacity() == pytest.approx(0.2) and np.array_equal(v.heat_item.lut, overlay_lut("viridis"))
        assert len(v.contour_item.xData) == 0 and v.heat_item.isVisible()
    bar.overlay_box.setChecked(False)
    assert not any(v.heat_item.isVisible() for v in views)

    # A camera added: the tiles are made again, with the bar's settings.
    old = list(page.tiles.values())
    try:
        assert page.line.restart(desktop_config([uri_a, uri_b, uri_c], tmp_path / "images", max_batch=1))
    finally:
        assert page.line.stop()
    assert list(page.tiles) == [uri_a, uri_b, uri_c] and not set(page.tiles.values()) & set(old) and bar.isVisible()
    views = shown(page)
    for v in views:
        assert v.heat_item.opacity() == pytest.approx(0.2) and np.array_equal(v.heat_item.lut, overlay_lut("viridis"))
        assert len(v.contour_item.xData) == 0 and not v.heat_item.isVisible()
    # The old tiles deleted: the bar sets the new ones and calls nothing of the old (that would raise).
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    assert all(sip.isdeleted(tile) for tile in old)
    bar.overlay_box.setChecked(True)
    bar.opacity_slider.setValue(70)
    assert all(v.heat_item.isVisible() and v.heat_item.opacity() == pytest.approx(0.7) for v in views)


def test_station_config_pairs_one_plc_per_camera_and_refuses_a_camera_twice(tmp_path):
    from ui.line import desktop_config

    plc, plc_b = "modbus://127.0.0.1:1502?unit=1", "modbus://127.0.0.1:1503?unit=1"
    assert desktop_config(["folder:///a"], tmp_path, plc=[plc]).cameras == ("folder:///a",)
    with pytest.raises(InspectorError, match="1 PLC links for 2 cameras"):
        desktop_config(["folder:///a", "folder:///b"], tmp_path, plc=[plc])
    with pytest.raises(InspectorError, match="given twice: two cameras' results would overwrite each other"):
        desktop_config(["folder:///a", "folder:///b"], tmp_path, plc=[plc, plc])
    both = desktop_config(["folder:///a", "folder:///b"], tmp_path, plc=[plc, plc_b])  # the desktop takes a PLC per camera
    assert both.links()["plc"] == (plc, plc_b)
    with pytest.raises(InspectorError, match="camera 'folder:///a' given twice"):
        desktop_config(["folder:///a", "folder:///b", "folder:///a"], tmp_path)
    config = desktop_config(["folder:///a", "folder:///b"], tmp_path)  # a list, as the file holds it
    assert config.cameras == ("folder:///a", "folder:///b")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InspectorError, match="max batch must be a whole number >= 1"):
            desktop_config(["folder:///a", "folder:///b"], tmp_path, max_batch=bad)


def test_a_given_max_batch_is_used_and_nothing_is_measured(tmp_path, tiny_model, engine, cameras):
    """``inspector gui --max-batch N``: the desktop's line takes N as ``run`` does, without the
    start-up measurement (seconds on a CPU, while the window waits)."""
    from ui.line import LineModel, desktop_config
    from ui_support import loaded_recipe

    folder_a, folder_b, threshold = cameras
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    config = desktop_config([f"folder://{folder_a}?fps=0", f"folder://{folder_b}?fps=0"], tmp_path / "images",
                            max_batch=1)
    line = LineModel(db, config, loaded_recipe(engine, threshold, product_id, version_id))
    assert line.start()
    try:
        assert line.line.batching is None and line.line.batcher.max_batch == 1
    finally:
        assert line.stop()


def test_settings_saved_before_several_cameras_still_load(tmp_path):
    from ui.settings_model import GuiSettings

    path = tmp_path / "gui.json"
    path.write_text(json.dumps({"camera_uri": "basler://123", "trigger": "hardware", "quota_gb": 2.0}))
    old = GuiSettings.load(path)
    assert (old.camera_uri, old.more_camera_uris, old.camera_uris, old.trigger) == ("basler://123", (), ("basler://123",), "hardware")
    GuiSettings(camera_uri="basler://1", more_camera_uris=("basler://2",)).save(path)
    assert GuiSettings.load(path).camera_uris == ("basler://1", "basler://2")
    assert GuiSettings().camera_uris == ()


def test_gui_takes_camera_once_per_camera(monkeypatch, tmp_path):
    import launcher.desktop
    from cli.main import main
    from launcher.desktop import GuiOptions, resolve_cameras
    from ui.settings_model import GuiSettings

    given: list[GuiOptions] = []
    monkeypatch.setattr(launcher.desktop, "launch", lambda options, **_: given.append(options) or 0)
    assert main(["gui", "--camera", "folder:///a", "--camera", "basler://emulated"]) == 0
    assert main(["gui", "--camera", "folder:///a"]) == 0
    assert main(["gui"]) == 0
    assert [options.cameras for options in given] == [("folder:///a", "basler://emulated"), ("folder:///a",), ()]
    assert [options.max_batch for options in given] == [None, None, None]
    assert main(["gui", "--camera", "folder:///a", "--camera", "folder:///b", "--max-batch", "2"]) == 0
    assert given[-1].max_batch == 2

    # --camera replaces the saved cameras, all of them; an emulated one among them is fed parts.
    saved = GuiSettings(camera_uri="folder:///s1", more_camera_uris=("folder:///s2",), trigger="hardware")
    assert resolve_cameras(given[0], saved, tmp_path) == (("folder:///a", "basler://emulated"), "software")
    assert resolve_cameras(given[1], saved, tmp_path) == (("folder:///a",), "free_run")
    assert resolve_cameras(given[2], saved, tmp_path) == (("folder:///s1", "folder:///s2"), "hardware")


def test_the_desktop_refuses_saved_plcs_that_do_not_pair_with_the_cameras_before_the_model_loads(monkeypatch, tmp_path):
    import launcher.desktop
    from launcher.desktop import DesktopApp, GuiOptions

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path))
    (tmp_path / "gui.json").write_text(json.dumps({"plc_uri": "modbus://127.0.0.1:1502?unit=1"}))
    monkeypatch.setattr(launcher.desktop, "resolve_recipe", lambda *_: pytest.fail("the model was loaded"))
    with pytest.raises(InspectorError, match="1 PLC links for 2 cameras"):
        DesktopApp(GuiOptions(cameras=("folder:///a", "folder:///b")))
    # So is a batch limit below one (``inspector gui --max-batch 0``), with no PLC in the way.
    (tmp_path / "gui.json").write_text(json.dumps({}))
    with pytest.raises(InspectorError, match="max batch must be a whole number >= 1, got 0"):
        DesktopApp(GuiOptions(cameras=("folder:///a", "folder:///b"), max_batch=0))
