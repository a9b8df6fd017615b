"""The station's OPC UA server: the link's real asyncua server on 127.0.0.1, a real asyncua client
reading its nodes and calling its methods, as a SCADA or a PLC would.

Starting a server takes about 1.5 s (asyncua builds the standard address space), so the tests
that only read and call share one (``station``) and reset what they touch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("asyncua")

from asyncua import Client, ua  # noqa: E402
from asyncua.ua.uaerrors import BadInvalidArgument, BadNotSupported, UaStatusCodeError  # noqa: E402

from station import links as station_links  # noqa: E402
from inspector.alarms import Alarm  # noqa: E402
from inspector.errors import InspectorError  # noqa: E402
from inspector.history import HistoryDB, file_sha256  # noqa: E402
from inspector.inspection import InspectionResult  # noqa: E402
from inspector.links.opcua import (  # noqa: E402
    NAMESPACE, OBJECT, START_TIMEOUT_S, VARIABLES, OpcUaLink, parse_opcua_uri)
from inspector.recipes import LoadedRecipe, register_model  # noqa: E402
from test_line_build import BrightnessScorer  # noqa: E402

#: A client of ``inspector run`` waits this long for the station: the run opens the cameras and
#: loads the model before its server starts.
RUN_SERVES_WITHIN_S = START_TIMEOUT_S + 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def result(i: int, score: float, decision: str, part_id: str | None = None, error: str | None = None) -> InspectionResult:
    return InspectionResult(datetime.now(timezone.utc), "cam", i, score=score, decision=decision, threshold=0.5,
                            part_id=part_id, error=error)


def alarm(kind: str, message: str = "something happened") -> Alarm:
    return Alarm(kind, message, datetime.now(timezone.utc))


Work = Callable[["Station"], Awaitable[Any]]


@dataclasses.dataclass
class Station:
    """What a client sees of the station: its namespace index and the ``Station`` object."""

    client: Client
    ns: int
    node: Any

    def var(self, name: str) -> Any:
        return self.client.get_node(ua.NodeId(f"{OBJECT}.{name}", self.ns))

    async def read(self, name: str) -> Any:
        return await self.var(name).read_value()

    async def read_until(self, name: str, expected: Any, timeout: float = 5.0) -> Any:
        """The server writes the line's values on its own loop, shortly after they come."""
        deadline = time.monotonic() + timeout
        while (value := await self.read(name)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {value!r} after {timeout:g} s, expected {expected!r}")
            await asyncio.sleep(0.01)
        return value

    async def call(self, method: str, *args: Any) -> Any:
        return await self.node.call_method(ua.NodeId(f"{OBJECT}.{method}", self.ns), *args)


def as_client(endpoint: str, work: Work, connect_within: float = 0.0) -> Any:
    """Connect to ``endpoint`` (retrying for ``connect_within`` seconds: a server still starting),
    find the station by its namespace URI and run ``work`` on it."""

    async def run() -> Any:
        deadline = time.monotonic() + connect_within
        while True:
            client = Client(endpoint, timeout=10)
            client.session_timeout = 60_000  # within the server's limit: no warning
            try:
                await client.connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        try:
            ns = await client.get_namespace_index(NAMESPACE)
            return await work(Station(client, ns, client.get_node(ua.NodeId(OBJECT, ns))))
        finally:
            await client.disconnect()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def station():
    link = OpcUaLink(f"opcua://127.0.0.1:{free_port()}?station=line-7")
    link.start()
    yield link
    link.stop()


# --- the URI -----------------------------------------------------------------------------------------


def test_the_uri_names_the_address_the_options_and_the_station() -> None:
    target = parse_opcua_uri("opcua://0.0.0.0:4841?readonly=1&station=line-3")
    assert (target.host, target.port, target.readonly, target.station) == ("0.0.0.0", 4841, True, "line-3")
    assert target.endpoint == "opc.tcp://0.0.0.0:4841"
    default = parse_opcua_uri("opcua://scada-net")
    assert (default.port, default.readonly, default.station) == (4840, False, socket.gethostname())
    assert parse_opcua_uri("opcua://[::]:4840/").endpoint == "opc.tcp://[::]:4840"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("opc.tcp://0.0.0.0:4840", "not an OPC UA server address"),
        ("opcua://:4840", "not an OPC UA server address"),
        ("opcua://host/station", "not an OPC UA server address"),
        ("opcua://host:port", "bad port"),
        ("opcua://host:0", "bad port"),
        ("opcua://host?readonly=maybe", "bad readonly"),
        ("opcua://host?secure=1", "the options are readonly, station, security"),
        ("opcua://host?station=a&station=b", "the options are readonly, station, security"),
        ("opcua://host?station=line%201", "bad station"),
    ],
)
def test_a_bad_uri_says_what_is_wrong(uri: str, fragment: str) -> None:
    with pytest.raises(InspectorError, match=fragment) as caught:
        OpcUaLink(uri)
    assert "\n" not in str(caught.value)


# --- reading ----------------------------------------------------------------------------------------


def test_a_client_reads_the_station_state_under_stable_node_ids(station: OpcUaLink) -> None:
    station.set_recipe("tile", 3, 0.5)
    station.set_running(True)
    for r in (result(0, 0.1, "PASS", "P1"), result(1, 0.7, "FAIL", "P2"), result(2, 0.0, "FAIL", error="no engine"),
              result(3, 0.2, "PASS", "P4")):
        station.on_result(r)
    last_uid = r.uid

    async def read(s: Station) -> dict[str, Any]:
        await s.read_until("Inspected", 4)
        names = [(await child.read_browse_name()).Name for child in await s.node.get_children()]
        assert names[:len(VARIABLES)] == [name for name, _, _ in VARIABLES]
        assert names[len(VARIABLES):] == ["ChangeProduct", "AcknowledgeAlarms"]
        counter = s.var("Inspected")
        assert await counter.read_data_type() == ua.NodeId(ua.ObjectIds.UInt64)
        assert (await counter.read_description()).Text.startswith("Parts inspected")
        with pytest.raises(UaStatusCodeError):  # nothing on the network writes the station's state
            await s.var("Threshold").write_value(0.9)
        return {name: await s.read(name) for name, _, _ in VARIABLES}

    seen = as_client(station.endpoint, read)
    assert {k: seen[k] for k in ("StationName", "Running", "Product", "ModelVersion", "Threshold")} == {
        "StationName": "line-7", "Running": True, "Product": "tile", "ModelVersion": 3, "Threshold": 0.5}
    assert (seen["LastPartId"], seen["LastUid"], seen["LastDecision"], seen["LastScore"]) == ("P4", last_uid, "PASS", 0.2)
    assert (seen["Inspected"], seen["Passed"], seen["Failed"], seen["Errors"], seen["Yield"]) == (4, 2, 2, 1, 0.5)
    assert seen == station.state()


def test_rechecks_and_no_part_frames_have_counters_of_their_own(station: OpcUaLink) -> None:
    """RECHECK counts as a part inspected (not passed); NO_PART is no part: its own counter, out
    of Inspected and the yield; LastDecision carries the history's value."""
    before = station.state()
    for r in (result(10, 0.45, "RECHECK", "R1"), result(11, 0.0, "NO_PART"), result(12, 0.0, "NO_PART"),
              result(13, 0.1, "PASS")):
        station.on_result(r)
    station.on_result(result(14, 0.0, "NO_PART"))

    async def read(s: Station) -> dict[str, Any]:
        await s.read_until("NoPart", before["NoPart"] + 3)
        assert await s.var("Rechecked").read_data_type() == ua.NodeId(ua.ObjectIds.UInt64)
        return {name: await s.read(name) for name in ("Inspected", "Passed", "Rechecked", "NoPart", "Yield",
                                                      "LastDecision", "LastScore")}

    seen = as_client(station.endpoint, read)
    assert seen["Inspected"] == before["Inspected"] + 2 and seen["Passed"] == before["Passed"] + 1
    assert (seen["Rechecked"] - before["Rechecked"], seen["NoPart"] - before["NoPart"]) == (1, 3)
    assert seen["Yield"] == pytest.approx(seen["Passed"] / seen["Inspected"])
    assert (seen["LastDecision"], seen["LastScore"]) == ("NO_PART", 0.0)


# --- the methods ------------------------------------------------------------------------------------


def test_alarms_stay_active_until_a_client_acknowledges_them(station: OpcUaLink) -> None:
    acknowledged: list[list[Alarm]] = []
    station.on_acknowledge = lambda alarms, user: acknowledged.append(alarms) if user == "opcua" else None
    raised = [alarm("camera_lost"), alarm("drift"), alarm("camera_lost", "gone again")]
    for a in raised:
        station.on_alarm(a)

    async def acknowledge(s: Station) -> tuple[Any, ...]:
        active = await s.read_until("UnacknowledgedAlarms", 3)
        kinds = await s.read("ActiveAlarms")
        assert await s.var("ActiveAlarms").read_value_rank() == 1
        count = await s.call("AcknowledgeAlarms")
        after = await s.read_until("ActiveAlarms", [])
        again = await s.call("AcknowledgeAlarms")
        return active, kinds, count, after, again, await s.read("LastAlarm"), await s.read("LastCommand")

    try:
        active, kinds, count, after, again, last, command = as_client(station.endpoint, acknowledge)
    finally:
        station.on_acknowledge = None
    assert (active, kinds, count, after, again) == (3, ["camera_lost", "drift"], 3, [], 0)
    assert last == "camera_lost: gone again" and command == "AcknowledgeAlarms(): 0 acknowledged"
    assert acknowledged == [raised]  # once: the second call had nothing to acknowledge


def test_change_product_goes_to_the_hook_and_an_unknown_product_is_refused(station: OpcUaLink) -> None:
    asked: list[str] = []

    def change(name: str, user: str) -> str:
        assert user == "opcua"  # an unsecured server has no signed-in users
        asked.append(name)
        if name != "disc":
            raise InspectorError(f"no product named {name!r}")
        station.set_recipe("disc", 9, 0.8)
        return "disc on the line"

    async def change_products(s: Station) -> list[Any]:
        seen = [await s.call("ChangeProduct", "disc"), await s.read_until("Product", "disc"),
                await s.read("ModelVersion"), await s.read("Threshold")]
        with pytest.raises(BadInvalidArgument):
            await s.call("ChangeProduct", "nope")
        seen.append(await s.read_until("LastCommand", "ChangeProduct('nope') refused: no product named 'nope'"))
        station.on_change_product = None
        with pytest.raises(BadNotSupported):
            await s.call("ChangeProduct", "disc")
        return seen

    station.on_change_product = change
    try:
        seen = as_client(station.endpoint, change_products)
    finally:
        station.on_change_product = None
    assert seen[:4] == ["disc on the line", "disc", 9, 0.8] and asked == ["disc", "nope"]


def test_read_only_leaves_out_the_methods_and_a_taken_port_is_one_line(station: OpcUaLink) -> None:
    link = OpcUaLink(f"opcua://127.0.0.1:{free_port()}?readonly=1")
    link.on_change_product = lambda name, user: pytest.fail("a read-only station changed product")
    link.start()
    try:
        link.on_alarm(alarm("drift"))

        async def try_methods(s: Station) -> list[str]:
            await s.read_until("ActiveAlarms", ["drift"])
            for method, args in (("ChangeProduct", ("disc",)), ("AcknowledgeAlarms", ())):
                with pytest.raises(UaStatusCodeError):
                    await s.call(method, *args)
            return [(await child.read_browse_name()).Name for child in await s.node.get_children()]

        names = as_client(link.endpoint, try_methods)
        assert "ChangeProduct" not in names and "AcknowledgeAlarms" not in names and "Running" in names
        assert link.state()["ActiveAlarms"] == ["drift"]
    finally:
        link.stop()

    taken = OpcUaLink(station.endpoint.replace("opc.tcp", "opcua"))
    try:
        with pytest.raises(InspectorError, match="Address already in use") as caught:
            taken.start()
    finally:
        taken.stop()
    assert "\n" not in str(caught.value)


# --- inspector run --opcua --------------------------------------------------------------------------


class StubEngine(BrightnessScorer):
    """What ``inspector run`` asks of an engine besides scores: the wiring is under test here."""

    backend = "stub"
    info = {"device": "cpu"}

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path


def active_product(db: HistoryDB, folder: Path, name: str, threshold: float) -> int:
    """A product with an active, calibrated model (its file a stand-in); the model version id."""
    path = folder / f"{name}.safetensors"
    path.write_bytes(name.encode())
    product_id, version_id = register_model(db, path, file_sha256(path), name)
    db.add_calibration(version_id, image_threshold=threshold, target_frr=0.01, expected_frr=0.01, created_by="test")
    db.set_active_model(product_id, version_id, user="tina", role="technician")
    return version_id


def tile_and_disc(db_path: Path) -> tuple[int, int]:
    """A new history with the products tile (threshold 0.5) and disc (0.9); their model versions."""
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    try:
        return active_product(db, db_path.parent, "tile", 0.5), active_product(db, db_path.parent, "disc", 0.9)
    finally:
        db.close()


def gray_frames(folder: Path, levels: list[int]) -> Path:
    """One PNG per level; the stub engine's score is the mean brightness: 0.86 (level 220) FAILs
    tile (0.5) and PASSes disc (0.9)."""
    folder.mkdir()
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), level, np.uint8))
    return folder


def inspector_run(db_path: Path, monkeypatch, camera: str | list[str], *options: str) -> tuple[int, str, str]:
    """``inspector run --product tile`` on ``camera`` (a list: several cameras) with the active
    recipe's engine a :class:`StubEngine`."""
    from cli.main import main

    monkeypatch.setattr("cli.line_commands.load_run_recipe",
                        lambda args, db, active: LoadedRecipe.of(active, StubEngine(active.model_path)))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cameras = [arg for uri in ([camera] if isinstance(camera, str) else camera) for arg in ("--camera", uri)]
        status = main(["run", *cameras, "--product", "tile", "--db", f"sqlite:///{db_path}",
                       "--image-dir", str(db_path.parent / "images"), *options])
    return status, out.getvalue(), err.getvalue()


def test_inspector_run_refuses_a_bad_opcua_uri_before_opening_the_camera(tmp_path: Path, monkeypatch) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    active_product(db, tmp_path, "tile", 0.5)
    db.close()
    status, _, err = inspector_run(tmp_path / "history.db", monkeypatch, "folder:///no/such/folder",
                                   "--opcua", "opcua://0.0.0.0:port")
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "bad port" in lines[0], lines


def test_inspector_run_serves_the_station_and_changes_product_between_parts(tmp_path: Path, monkeypatch) -> None:
    db_path = tmp_path / "history.db"
    tile, disc = tile_and_disc(db_path)
    frames = gray_frames(tmp_path / "frames", [30, 220, 40])
    port = free_port()

    async def drive(s: Station) -> list[Any]:
        """As a PLC would: watch parts go by, switch the product, try one that does not exist."""
        seen = [await s.read("Product"), await s.read("ModelVersion"), await s.read("Threshold")]
        await s.read_until("Running", True, timeout=10)
        deadline = time.monotonic() + 10
        while await s.read("Inspected") < 2:
            assert time.monotonic() < deadline, "no parts inspected"
            await asyncio.sleep(0.02)
        seen.append(await s.call("ChangeProduct", "disc"))
        seen += [await s.read("Product"), await s.read("ModelVersion"), await s.read("Threshold")]
        with pytest.raises(BadInvalidArgument):
            await s.call("ChangeProduct", "nope")
        seen.append(await s.read("LastCommand"))
        return seen

    driven: list[Any] = []
    client = threading.Thread(target=lambda: driven.append(
        as_client(f"opc.tcp://127.0.0.1:{port}", drive, connect_within=RUN_SERVES_WITHIN_S)), daemon=True)
    client.start()
    status, out, err = inspector_run(db_path, monkeypatch, f"folder://{frames}?fps=20&loop=1",  # 2 s of parts
                                     "--max-frames", "40", "--opcua", f"opcua://127.0.0.1:{port}?station=line-2")
    client.join(10)
    assert status == 0, err
    assert f"serving the station over OPC UA at opc.tcp://127.0.0.1:{port} (no security)" in out
    (seen,) = driven
    assert seen[:3] == ["tile", tile, 0.5]
    assert seen[3] == f"product 'disc' on the line: model version {disc}, threshold 0.9"
    assert seen[4:7] == ["disc", disc, 0.9]
    assert seen[7].startswith("ChangeProduct('nope') refused: no product named 'nope'")

    db = HistoryDB(f"sqlite:///{db_path}")
    try:
        rows = sorted(db.query_inspections(limit=100), key=lambda r: r.id)
        versions = [r.model_version_id for r in rows]
        switch = versions.index(disc)  # between two parts, for good
        assert switch >= 2 and set(versions[:switch]) == {tile} and set(versions[switch:]) == {disc}
        assert {r.threshold for r in rows[switch:]} == {0.9}
        (change,) = [e for e in db.audit_events(limit=50) if e.action == "change_product"]
        assert (change.user, change.role, change.target) == ("opcua", "system", "product:disc")
        assert (change.before["model_version"], change.after["model_version"]) == (tile, disc)
        (stop,) = [e for e in db.audit_events(limit=50) if e.action == "run_stop"]
        assert stop.target == "product:disc"
    finally:
        db.close()


def test_one_station_serves_several_cameras_and_changes_every_cameras_product(tmp_path: Path, monkeypatch) -> None:
    db_path = tmp_path / "history.db"
    tile, disc = tile_and_disc(db_path)
    uris = [f"folder://{gray_frames(tmp_path / name, levels)}?fps=20&loop=1"
            for name, levels in (("a", [30, 220, 40]), ("b", [50, 230]))]
    port = free_port()
    served: list[OpcUaLink] = []
    make = station_links.StationLinks._make

    def capture(self, name: str, uri: str) -> object:  # the station's own server, to read its state
        link = make(self, name, uri)
        if name == "opcua":
            served.append(link)
        return link

    monkeypatch.setattr(station_links.StationLinks, "_make", capture)

    async def drive(s: Station) -> str:
        await s.read_until("Running", True, timeout=10)
        deadline = time.monotonic() + 10
        while await s.read("Inspected") < 4:
            assert time.monotonic() < deadline, "no parts inspected"
            await asyncio.sleep(0.02)
        return await s.call("ChangeProduct", "disc")

    driven: list[Any] = []
    client = threading.Thread(target=lambda: driven.append(
        as_client(f"opc.tcp://127.0.0.1:{port}", drive, connect_within=RUN_SERVES_WITHIN_S)), daemon=True)
    client.start()
    status, out, err = inspector_run(db_path, monkeypatch, uris, "--max-frames", "40", "--max-batch", "2",
                                     "--opcua", f"opcua://127.0.0.1:{port}")
    client.join(10)
    assert status == 0, err
    assert driven == [f"product 'disc' on the line: model version {disc}, threshold 0.9"]
    db = HistoryDB(f"sqlite:///{db_path}")
    try:
        rows = sorted(db.query_inspections(limit=200), key=lambda r: r.id)
    finally:
        db.close()
    assert len(rows) == 80 and served[0].state()["Inspected"] == 80  # the station counts every camera's parts
    for uri in uris:  # each camera switched between two of its parts, for good
        versions = [r.model_version_id for r in rows if r.camera_id == uri]
        switch = versions.index(disc)
        assert switch >= 1 and set(versions[:switch]) == {tile} and set(versions[switch:]) == {disc}
