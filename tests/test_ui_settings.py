"""Desktop: the Settings page -- camera, storage, product and users, technician only, audited."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.roles import AccessDenied  # noqa: E402
from inspector.errors import CameraError  # noqa: E402
from ui_support import audit_actions, make_db, make_line, register_model, resized_copies, sign_in  # noqa: E402


def test_settings_change_camera_storage_product_and_users(qtbot, tmp_path, tiny_model, shared_data):
    from inspector.engine import Engine
    from ui.session import Session
    from ui.settings_model import GuiSettings, SettingsModel
    from ui.settings_page import SettingsPage

    engine = Engine(tiny_model, device="cpu", backend="eager")
    good = sorted((shared_data / "magnetic_tile" / "test" / "good").glob("*.jpg"))
    first = resized_copies(good[:2], tmp_path / "first")
    second = resized_copies(good[2:5], tmp_path / "second")
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    db.add_product("other")  # never taught: no active model
    line = make_line(db, engine, first, 1.0, tmp_path / "images", product_id, version_id)
    session = Session(db)
    path = tmp_path / "gui.json"
    model = SettingsModel(db, line, session, GuiSettings(), path, device="cpu", backend="eager")
    page = SettingsPage(model, session)
    qtbot.addWidget(page)
    messages: list[tuple[str, bool]] = []
    model.message.connect(lambda text, error: messages.append((text, error)))

    assert not page.camera_button.isEnabled() and not page.storage_button.isEnabled()
    with pytest.raises(AccessDenied):
        model.set_storage(2.0, 0.5)
    sign_in(session, "quinn")
    with pytest.raises(AccessDenied):
        model.add_user("x", "operator", "111100")

    sign_in(session, "tina")
    assert page.camera_button.isEnabled() and page.storage_button.isEnabled()
    page.quota.setValue(2.0)
    page.pass_rate.setValue(50.0)
    page.storage_button.click()
    assert (line.config.quota_gb, line.config.pass_sample_rate) == (2.0, 0.5)
    assert json.loads(path.read_text())["quota_gb"] == 2.0
    qtbot.waitUntil(lambda: line.counters.total == 2, timeout=60_000)  # the line restarted with the new store

    # A malformed camera is refused before anything changes; a good one restarts the line on it.
    with pytest.raises(CameraError):
        model.apply_camera("nonsense", "free_run", None, None)
    assert "first" in line.config.camera_uri
    page.camera_edit.setText(f"folder://{second}?fps=0")
    page.camera_button.click()
    assert "second" in line.config.camera_uri and GuiSettings.load(path).camera_uri == line.config.camera_uri
    qtbot.waitUntil(lambda: line.counters.total == 5, timeout=60_000)
    line.stop()

    # A product without an active model cannot go on the line; the line keeps its product.
    page.product_combo.setCurrentText("other")
    page.product_button.click()
    qtbot.waitUntil(lambda: any(error for _, error in messages), timeout=30_000)
    assert "no active model" in [text for text, error in messages if error][-1]
    assert line.recipe.product == "tile"

    page.user_name.setText("olga")
    page.user_role.setCurrentText("operator")
    page.user_pin.setText("246800")
    page.user_button.click()
    assert db.verify_pin("olga", "246800") == "operator"
    for action in ("set_storage_denied", "manage_users_denied", "set_storage", "set_camera", "add_user"):
        assert action in audit_actions(db), action
