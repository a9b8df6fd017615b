"""Desktop: the Settings page -- camera, storage, product and users, technician only, audited."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.roles import AccessDenied  # noqa: E402
from inspector.errors import CameraError, InspectorError  # noqa: E402
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
    assert "first" in line.config.cameras[0]
    page.camera_edit.setText(f"folder://{second}?fps=0")
    page.camera_button.click()
    assert "second" in line.config.cameras[0] and GuiSettings.load(path).camera_uri == line.config.cameras[0]
    qtbot.waitUntil(lambda: line.counters.total == 5, timeout=60_000)
    line.stop()

    # A product without an active model cannot go on the line; the line keeps its product.
    page.product_combo.setCurrentText("other")
    page.product_button.click()
    qtbot.waitUntil(lambda: any(error for _, error in messages), timeout=30_000)
    assert "no active model" in [text for text, error in messages if error][-1]
    assert line.recipe.product == "tile" and "choose_product" not in audit_actions(db)  # nothing changed

    page.user_name.setText("olga")
    page.user_role.setCurrentText("operator")
    page.user_pin.setText("246800")
    page.user_button.click()
    assert db.verify_pin("olga", "246800") == "operator"
    for action in ("set_storage_denied", "manage_users_denied", "set_storage", "set_camera", "add_user"):
        assert action in audit_actions(db), action


def test_plant_links_are_tested_saved_run_with_the_line_and_their_state_shown(qtbot, tmp_path, tiny_model, shared_data):
    """Real servers on 127.0.0.1: a pymodbus PLC, an amqtt broker; the station's own OPC UA server;
    a SQLite file as the plant database."""
    pytest.importorskip("pymodbus")
    pytest.importorskip("amqtt")
    pytest.importorskip("asyncua")
    from test_link_probe import free_port
    from test_modbus_link import PlcMemory, PlcServer
    from test_mqtt_link import BrokerThread

    from inspector.engine import Engine
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui.settings_model import GuiSettings, SettingsModel
    from ui.settings_page import SettingsPage

    engine = Engine(tiny_model, device="cpu", backend="eager")
    good = sorted((shared_data / "magnetic_tile" / "test" / "good").glob("*.jpg"))
    frames = resized_copies(good[:2], tmp_path / "frames")
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    line = make_line(db, engine, frames, 1.0, tmp_path / "images", product_id, version_id)
    session = Session(db)
    path = tmp_path / "gui.json"
    model = SettingsModel(db, line, session, GuiSettings(), path, device="cpu", backend="eager")
    page = SettingsPage(model, session)
    operator = OperatorPage(line, session)
    qtbot.addWidget(page)
    qtbot.addWidget(operator)
    plc = PlcServer(PlcMemory())
    plc.start()
    broker = BrokerThread(free_port())
    broker.start()
    try:
        # The demo's default: no links, nothing shown.
        assert line.link_states == {} and operator.links.isHidden()
        plc_uri = f"modbus://127.0.0.1:{plc.port}?unit=1"
        mqtt_uri = f"mqtt://127.0.0.1:{broker.port}/plant/results"
        opcua_uri = f"opcua://127.0.0.1:{free_port()}"
        plant_url = f"sqlite:///{tmp_path / 'plant.db'}"

        # Anyone may test a connection (off the GUI thread); the answer is one line.
        page.link_edits["plc"].setText(plc_uri)
        page.link_tests["plc"].click()
        page.link_edits["mqtt"].setText(f"mqtt://127.0.0.1:{free_port()}/plant/results")  # nobody there
        page.link_tests["mqtt"].click()
        qtbot.waitUntil(lambda: "connected to PLC 127.0.0.1" in page.link_results["plc"].text()
                        and "cannot reach MQTT broker" in page.link_results["mqtt"].text(), timeout=10_000)
        assert page.link_tests["plc"].isEnabled()

        # Changing them is a technician's.
        assert not page.links_button.isEnabled() and page.link_edits["plc"].isReadOnly()
        with pytest.raises(AccessDenied):
            model.set_links(plc_uri, "ng", None, None, None)
        sign_in(session, "tina")
        with pytest.raises(InspectorError, match="not an MQTT link"):  # checked before anything changes
            model.set_links(plc_uri, "ng", "mqtt://broker", None, None)
        assert line.config.plc == ()
        for name, uri in (("plc", plc_uri), ("mqtt", mqtt_uri), ("opcua", opcua_uri), ("plant_db", plant_url)):
            page.link_edits[name].setText(uri)
        page.links_button.click()
        saved = GuiSettings.load(path)
        assert (saved.plc_uri, saved.mqtt_uri, saved.opcua_uri, saved.plant_db_url) == (plc_uri, mqtt_uri, opcua_uri, plant_url)
        assert line.config.plc == (plc_uri,) and set(line.links) == {"plc", "mqtt", "opcua", "plant_db"}

        # The line runs them: every verdict reaches the PLC; the operator page shows each state.
        connected = {"plc": "connected", "mqtt": "connected", "opcua": "serving", "plant_db": "connected"}
        qtbot.waitUntil(lambda: line.link_states == connected and len(plc.memory.seen()) == 2, timeout=60_000)
        assert "PLC <b style='color:#2e7d32'>connected</b>" in operator.links.text()
        assert "OPC UA <b style='color:#2e7d32'>serving</b>" in operator.links.text()
        assert not operator.links.isHidden() and "connected" in page.link_states["plc"].text()
        page.link_tests["opcua"].click()  # its own server: serving
        qtbot.waitUntil(lambda: "serving at opc.tcp://127.0.0.1" in page.link_results["opcua"].text(), timeout=5_000)

        # The PLC goes away: its alarm reaches the GUI thread and the state says so.
        plc.stop()
        qtbot.waitUntil(lambda: line.link_states["plc"] == "retrying", timeout=10_000)
        assert any(a.kind == "plc_down" for a in line.alarms) and "retrying" in operator.links.text()
        plc.start()
        qtbot.waitUntil(lambda: line.link_states["plc"] == "connected", timeout=10_000)
        assert any(a.kind == "plc_recovered" for a in line.alarms)
    finally:
        line.stop()
        plc.close()
        broker.close()
    assert set(line.link_states.values()) == {"stopped"} and db.outbox_message is None
    (entry,) = [e for e in db.audit_events(limit=100) if e.action == "set_links"]
    assert entry.user == "tina" and entry.after["plc"] == [plc_uri] and entry.before["plc"] == []
    assert "configure_camera_denied" in audit_actions(db)


def test_the_settings_file_is_readable_by_its_owner_only(tmp_path):
    """A link's URI in it may hold a password."""
    import stat

    from ui.settings_model import GuiSettings

    path = tmp_path / "gui.json"
    GuiSettings(plant_db_url="postgresql://inspector:secret@plant/history").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert GuiSettings.load(path).plant_db_url == "postgresql://inspector:secret@plant/history"


def test_a_product_whose_line_does_not_start_says_so(qtbot, tmp_path, monkeypatch):
    """Putting a product on the line restarts it; where the line then does not start (here its
    camera's folder is gone), the message line says so as an error, as the other settings do --
    not that the product is on the line."""
    import shutil

    import ui.settings_model
    from test_decisions import FramedStub, _frames
    from ui.session import Session
    from ui.settings_model import GuiSettings, SettingsModel
    from ui_support import loaded_recipe

    db = make_db(tmp_path)
    model_file = tmp_path / "stub.model"
    model_file.write_bytes(b"a stand-in: the stub scores")
    product_id, version_id = register_model(db, model_file)
    other_id, other_version = register_model(db, model_file, product="other")
    stub = FramedStub()
    stub.model_path = model_file
    monkeypatch.setattr(ui.settings_model, "load_active_recipe",
                        lambda db, name, **_: loaded_recipe(stub, 0.7, other_id, other_version, product=name))
    frames = _frames(tmp_path / "frames", [0, 0])
    line = make_line(db, stub, frames, 0.7, tmp_path / "images", product_id, version_id)
    session = Session(db)
    model = SettingsModel(db, line, session, GuiSettings(), tmp_path / "gui.json", device="cpu", backend="eager")
    messages: list[tuple[str, bool]] = []
    model.message.connect(lambda text, error: messages.append((text, error)))
    sign_in(session, "tina")
    shutil.rmtree(frames)  # the camera cannot open any more

    model.choose_product("other")
    qtbot.waitUntil(lambda: bool(messages), timeout=30_000)
    assert line.recipe.product == "other" and not line.running
    text, error = messages[-1]
    assert error and "could not be started" in text, messages
    line.stop()
    db.close()
