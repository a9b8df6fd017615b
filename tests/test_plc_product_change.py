"""A product change asked for by the PLC: its product number, mapped to a product by the PLC URI
(``?products=1:tile,2:disc``), switches the line's recipe between two parts and is audited.

A real pymodbus server on 127.0.0.1 plays the PLC (the fixtures of test_modbus_link); ``inspector
run`` decides with the products' active recipes, each engine a stub scoring brightness (the
wiring is under test here).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pymodbus")

from inspector.errors import InspectorError  # noqa: E402
from inspector.history import HistoryDB, file_sha256  # noqa: E402
from inspector.line.product_change import PLC_PRODUCT_REFUSED, PlcProductSelector  # noqa: E402
from inspector.links.modbus import NG, OK, parse_modbus_uri  # noqa: E402
from inspector.recipes import LoadedRecipe, register_model  # noqa: E402
from test_modbus_link import PlcMemory, PlcServer, StubEngine  # noqa: E402


@pytest.fixture
def plc():
    server = PlcServer(PlcMemory())
    server.start()
    yield server
    server.close()


def test_the_plc_uri_maps_product_numbers_to_products() -> None:
    assert parse_modbus_uri("modbus://plc:5020?unit=3&products=1:tile,2:disc").products == {1: "tile", 2: "disc"}
    assert parse_modbus_uri("modbus://plc").products == {}
    for uri, fragment in [("modbus://plc?products=0:tile", "1..65535"), ("modbus://plc?products=1:tile,1:disc", "twice"),
                          ("modbus://plc?products=tile", "NUMBER:NAME"), ("modbus://plc?products=1:", "NUMBER:NAME"),
                          ("modbus://plc?products=70000:x", "1..65535")]:
        with pytest.raises(InspectorError, match=fragment):
            parse_modbus_uri(uri)


def test_the_selector_changes_on_its_own_thread_and_refuses_what_it_cannot() -> None:
    changed: list[str] = []
    alarms: list[tuple[str, str]] = []

    def change(name: str) -> str:
        if name == "broken":
            raise InspectorError("product 'broken' has no active model")
        time.sleep(0.2)  # a model loading: the PLC link's thread must not wait for it
        changed.append(name)
        return f"product {name!r} on the line"

    selector = PlcProductSelector({1: "tile", 2: "disc", 3: "broken"}, change, on_alarm=lambda k, m: alarms.append((k, m)))
    try:
        started = time.monotonic()
        selector(1)
        assert time.monotonic() - started < 0.05
        assert selector.idle(5)
        selector(0)  # no product chosen: nothing happens
        selector(9)  # not in the map
        assert selector.idle(5)
        selector(3)
        assert selector.idle(5)
    finally:
        selector.close()
    assert changed == ["tile"]
    assert [k for k, _ in alarms] == [PLC_PRODUCT_REFUSED, PLC_PRODUCT_REFUSED]
    assert "number 9" in alarms[0][1] and "known: 1:tile, 2:disc, 3:broken" in alarms[0][1]
    assert "no active model" in alarms[1][1]


def active_product(db: HistoryDB, folder: Path, name: str, threshold: float) -> int:
    """A product with an active, calibrated model (its file a stand-in); the model version id."""
    path = folder / f"{name}.safetensors"
    path.write_bytes(name.encode())
    product_id, version_id = register_model(db, path, file_sha256(path), name)
    db.add_calibration(version_id, image_threshold=threshold, target_frr=0.01, expected_frr=0.01, created_by="test")
    db.set_active_model(product_id, version_id, user="tina", role="technician")
    return version_id


def test_inspector_run_switches_product_on_the_plcs_number_between_parts(plc, tmp_path: Path, monkeypatch,
                                                                        caplog) -> None:
    from cli.main import main

    db_path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    tile, disc = active_product(db, tmp_path, "tile", 0.5), active_product(db, tmp_path, "disc", 0.9)
    db.close()
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, level in enumerate([30, 220, 40]):  # brightness 0.86 FAILs tile (0.5), PASSes disc (0.9)
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((48, 64, 3), level, np.uint8))
    monkeypatch.setattr("cli.line_commands.load_run_recipe",
                        lambda args, db, active: LoadedRecipe.of(active, StubEngine(active.model_path)))
    memory = plc.memory
    memory.set("product", 1)  # the PLC runs tile when the station starts: nothing to change

    def drive() -> None:
        """As the PLC's program would: two parts of tile, then disc, then a number nobody knows."""
        deadline = time.monotonic() + 20
        while len(memory.seen()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        memory.set("product", 2)
        while time.monotonic() < deadline:
            seen = memory.seen()
            if len(seen) >= 12 and all(s.result == OK for s in seen[-6:]):  # a 220 part passed: disc
                break
            time.sleep(0.01)
        memory.set("product", 7)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["run", "--camera", f"folder://{frames}?fps=20&loop=1", "--product", "tile",
                       "--db", f"sqlite:///{db_path}", "--image-dir", str(tmp_path / "images"), "--max-frames", "80",
                       "--plc", f"modbus://127.0.0.1:{plc.port}?unit=1&products=1:tile,2:disc"])
    driver.join(10)
    assert status == 0, err.getvalue()
    printed = out.getvalue()
    assert f"PLC product number 2: product 'disc' on the line: model version {disc}, threshold 0.9" in printed
    assert "PLC product number 1: product 'tile' is already on the line" in printed

    db = HistoryDB(f"sqlite:///{db_path}")
    try:
        rows = sorted(db.query_inspections(limit=100), key=lambda r: r.id)
        versions = [r.model_version_id for r in rows]
        switch = versions.index(disc)  # between two parts, for good: number 7 changed nothing
        assert switch >= 3 and set(versions[:switch]) == {tile} and set(versions[switch:]) == {disc}
        assert {r.threshold for r in rows[switch:]} == {0.9}
        (change,) = [e for e in db.audit_events(limit=100) if e.action == "change_product"]
        assert (change.user, change.role, change.target) == ("plc", "system", "product:disc")
        assert (change.before["model_version"], change.after["model_version"]) == (tile, disc)
        (stop,) = [e for e in db.audit_events(limit=100) if e.action == "run_stop"]
        assert stop.target == "product:disc"
    finally:
        db.close()
    # What the PLC got: tile's verdicts (the bright part NG), then disc's (all OK).
    results = [s.result for s in memory.seen()]
    assert NG in results[:switch] and set(results[switch:]) == {OK}
    # A number the map does not name: alarmed (the line's alarm path: log, console, links), ignored.
    refused = [r.getMessage() for r in caplog.records if PLC_PRODUCT_REFUSED in r.getMessage()]
    assert len(refused) == 1 and "product number 7" in refused[0] and "keeps its product" in refused[0]


def test_the_desktop_runs_a_plc_per_camera_and_follows_the_plcs_product_number(qtbot, tmp_path: Path) -> None:
    """The desktop runs the same station as ``inspector run``: a PLC beside each of two cameras,
    the first PLC's product number switching the desktop's recipe (shown, audited), and the run
    audited as run_start/run_stop."""
    from inspector.recipes import active_recipe
    from ui.line import LineModel, desktop_config

    plc_b = PlcServer(PlcMemory())
    plc_b.start()
    plc_a = PlcServer(PlcMemory())
    plc_a.start()
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    try:
        tile, disc = active_product(db, tmp_path, "tile", 0.5), active_product(db, tmp_path, "disc", 0.9)
        cameras = []
        for name in ("a", "b"):
            frames = tmp_path / f"frames_{name}"
            frames.mkdir()
            for i, level in enumerate([30, 220, 40]):
                cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((48, 64, 3), level, np.uint8))
            cameras.append(f"folder://{frames}?fps=20&loop=1")

        def load(name: str) -> LoadedRecipe:
            recipe = active_recipe(db, name, verify_file=False)
            return LoadedRecipe.of(recipe, StubEngine(recipe.model_path))

        plc_a.memory.set("product", 1)
        config = desktop_config(cameras, tmp_path / "images", trigger="free_run", max_batch=1,
                                plc=[f"modbus://127.0.0.1:{plc_a.port}?unit=1&products=1:tile,2:disc",
                                     f"modbus://127.0.0.1:{plc_b.port}?unit=1"])
        line = LineModel(db, config, load("tile"), load_product=load)
        changes: list[str] = []
        line.status_changed.connect(lambda: changes.append(line.recipe.product))
        assert line.start()
        try:
            qtbot.waitUntil(lambda: len(plc_a.memory.seen()) >= 3 and len(plc_b.memory.seen()) >= 3, timeout=20_000)
            assert set(line.link_states) == {"plc1", "plc2"}
            plc_a.memory.set("product", 2)
            qtbot.waitUntil(lambda: line.recipe.product == "disc", timeout=20_000)
            assert "disc" in changes and line.recipe.model_version_id == disc
            qtbot.waitUntil(lambda: all(s.result == OK for s in plc_b.memory.seen()[-4:]), timeout=20_000)
        finally:
            assert line.stop()
        (change,) = [e for e in db.audit_events(limit=200) if e.action == "change_product"]
        assert (change.user, change.target) == ("plc", "product:disc")
        assert (change.before["model_version"], change.after["model_version"]) == (tile, disc)
        start, stop = [e for e in reversed(db.audit_events(limit=200)) if e.action in ("run_start", "run_stop")]
        assert (start.action, stop.action) == ("run_start", "run_stop") and start.user.startswith("gui:")
        assert start.after["cameras"] == cameras and stop.target == "product:disc"
        assert set(stop.after["cameras"]) == set(cameras) and stop.after["recorded"] >= 6
    finally:
        db.close()
        plc_a.close()
        plc_b.close()
