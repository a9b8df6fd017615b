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
