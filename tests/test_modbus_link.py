"""The PLC link over Modbus TCP: a real pymodbus server on 127.0.0.1 plays the PLC, the link's
real client talks to it.

The PLC's program is played by its memory (:class:`PlcMemory`): like a PLC scanning its
registers, it notices the station's writes as they land -- a rising strobe records the result and,
when acknowledging on its own, raises the ack; a falling strobe lowers it -- and the test writes
the PLC's side (trigger, product, part id, a manual ack) straight into that memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pymodbus")

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext  # noqa: E402
from pymodbus.server import ModbusTcpServer  # noqa: E402

from drivers import open_camera  # noqa: E402
from inspector.errors import InspectorError  # noqa: E402
from inspector.inspection import InspectionResult  # noqa: E402
from inspector.line import build_line  # noqa: E402
from inspector.links.modbus import (  # noqa: E402
    FLAG_ERROR, FLAG_LATE, NG, NO_PART, OK, PLC_DOWN, PLC_NO_ACK, PLC_QUEUE_FULL, PLC_RECOVERED, RECHECK, RESULT_CODES,
    ModbusLink, RegisterMap, load_register_map, parse_modbus_uri,
)
from pipeline_support import wait_until  # noqa: E402
from test_line_build import BrightnessScorer, recipe  # noqa: E402

MAP = load_register_map()
MAP_TEXT = Path(MAP.source).read_text(encoding="utf-8")
_HOLDING, _WRITE_REGISTERS, _COILS, _WRITE_COILS = 3, 16, 1, 15  # function codes: which table
_COIL_WRITES = (5, 15)


@dataclass(frozen=True)
class Seen:
    """One result as the PLC saw it when the strobe rose."""

    part_id: int
    result: int
    score: int
    flags: int


class PlcMemory(ModbusSlaveContext):
    """The PLC's holding registers and coils as mapped by ``regmap`` (protocol addresses, through
    the context, so that pymodbus's own address offset stays its business), and the PLC program's
    reaction to the station's strobe."""

    def __init__(self, auto_ack: bool = True, regmap: RegisterMap = MAP) -> None:
        super().__init__(hr=ModbusSequentialDataBlock(0, [0] * 300), co=ModbusSequentialDataBlock(0, [False] * 300))
        self.map = regmap
        self.auto_ack = auto_ack
        self.results: list[Seen] = []
        self.cut_at: int | None = None  # the part whose strobe pulls the cable, before the PLC's ack
        self.on_cut: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._strobe_up = False

    # the server's side: every write from the station
    def setValues(self, fc_as_hex, address, values):  # noqa: N802 (pymodbus's name)
        done = super().setValues(fc_as_hex, address, values)
        strobe = self.map.station["strobe"]
        if (fc_as_hex in _COIL_WRITES) == strobe.coil and address <= strobe.address < address + len(values):
            with self._lock:
                self._strobe(bool(self.get("strobe")))
        return done

    def _strobe(self, up: bool) -> None:
        if up and not self._strobe_up:
            self.results.append(Seen(self.get("part_id"), self.get("result"), self.get("score"), self.get("flags")))
            if self.results[-1].part_id == self.cut_at:
                self.cut_at = None
                self.on_cut()
                return
        self._strobe_up = up
        if self.auto_ack:
            self.set("ack", int(up))

    # the PLC program's side
    def get(self, name: str, section: str = "station") -> int:
        field = getattr(self.map, section)[name]
        value = 0
        for word in super().getValues(_COILS if field.coil else _HOLDING, field.address, field.words):
            value = value << 16 | int(word)
        return value

    def set(self, name: str, value: int, section: str = "plc") -> None:
        field = getattr(self.map, section)[name]
        if field.coil:
            super().setValues(_WRITE_COILS, field.address, [bool(value)])
        else:
            super().setValues(_WRITE_REGISTERS, field.address, [value >> 16, value & 0xFFFF][2 - field.words:])

    def trigger(self, part_id: int) -> None:
        """A part arrives: the PLC writes its id, then steps the trigger counter."""
        with self._lock:
            self.set("part_id", part_id)
            self.set("trigger", (self.get("trigger", "plc") + 1) & 0xFFFF)

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self.results)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PlcServer:
    """A pymodbus TCP server on 127.0.0.1:``port`` serving ``memory``, in an event loop thread of
    its own; :meth:`stop` (or, from the PLC's memory, :meth:`cut`) drops every connection (a
    pulled cable), :meth:`start` serves again on the same port with the same memory."""

    def __init__(self, memory: PlcMemory) -> None:
        self.memory = memory
        memory.on_cut = self.cut
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: ModbusTcpServer | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        async def start() -> None:
            if self.task is not None:  # cut: wait until it has gone
                await asyncio.wait_for(self.task, 5)
            context = ModbusServerContext(slaves=self.memory, single=True)
            self.server = ModbusTcpServer(context, address=("127.0.0.1", self.port))
            self.task = asyncio.ensure_future(self.server.serve_forever())
            while self.server.transport is None:
                if self.task.done():
                    self.task.result()  # raises why it did not start
                await asyncio.sleep(0.005)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                await self.server.shutdown()
                await asyncio.wait_for(self.task, 5)
            self.server = self.task = None

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)

    def cut(self) -> None:
        """Drop every connection now; called on the server's loop (by the PLC's memory)."""
        asyncio.ensure_future(self.server.shutdown())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def plc():
    server = PlcServer(PlcMemory())
    server.start()
    yield server
    server.close()


@pytest.fixture
def links():
    """Links made by :func:`link_to`, stopped at the end whatever happened."""
    made: list[ModbusLink] = []
    yield made
    for link in made:
        link.stop(0.0)


def link_to(links: list[ModbusLink], plc: PlcServer, **options) -> ModbusLink:
    fast = dict(poll_s=0.005, handshake_poll_s=0.001, timeout_s=0.5, retry_initial_s=0.02, retry_max_s=0.1)
    link = ModbusLink(f"modbus://127.0.0.1:{plc.port}?unit=1", **{**fast, **options})
    links.append(link)
    return link


def result(i: int, score: float = 0.1, decision: str = "PASS", part_id: str | None = None,
           error: str | None = None) -> InspectionResult:
    return InspectionResult(datetime.now(timezone.utc), "cam", i, score=score, decision=decision, threshold=0.5,
                            part_id=part_id, error=error)


# --- the URI and the map ---------------------------------------------------------------------------


def test_the_uri_names_the_plc_its_unit_and_its_register_map(tmp_path: Path) -> None:
    target = parse_modbus_uri("modbus://10.0.0.5:1502?unit=3")
    assert (target.host, target.port, target.unit) == ("10.0.0.5", 1502, 3)
    assert target.map == MAP and MAP.station["part_id"].words == 2 and MAP.score_scale == 1000
    assert parse_modbus_uri("modbus://plc").port == 502 and parse_modbus_uri("modbus://plc").unit == 1
    own = tmp_path / "line3.toml"
    own.write_text(MAP_TEXT.replace('strobe = 5', 'strobe = "coil:0"').replace("ack = 14", 'ack = "coil:1"'))
    mapped = parse_modbus_uri(f"modbus://plc?map={own}").map
    assert mapped.station["strobe"].coil and mapped.plc["ack"].coil and mapped.source == str(own)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("tcp://plc:502", "not a Modbus PLC link"),
        ("modbus://:502", "not a Modbus PLC link"),
        ("modbus://plc/holding", "not a Modbus PLC link"),
        ("modbus://plc:port", "bad port"),
        ("modbus://plc?unit=256", "unit id is 0..255"),
        ("modbus://plc?unit=one", "unit id"),
        ("modbus://plc?slave=1", "the options are unit and map"),
        ("modbus://plc?unit=1&unit=2", "the options are unit and map"),
        ("modbus://plc?map=", "empty map"),
        ("modbus://plc?map=/no/such/map.toml", "cannot read the register map"),
    ],
)
def test_a_bad_uri_says_what_is_wrong(uri: str, fragment: str) -> None:
    with pytest.raises(InspectorError, match=fragment):
        parse_modbus_uri(uri)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda t: t.replace("flags = 4", "flag = 4"), r"missing flags; unknown flag"),
        (lambda t: t.replace("ack = 14", "ack = 3"), "station.score and plc.ack share register 3"),
        (lambda t: t.replace("part_id = 12", "part_id = 13"), "plc.part_id and plc.ack share register 14"),
        (lambda t: t.replace("product = 11", 'product = "coil:2"'), "only station.strobe and plc.ack may be coils"),
        (lambda t: t.replace("result = 2", "result = -2"), "not a register address"),
        (lambda t: t.replace("scale = 1000", "scale = 0"), "positive number"),
        (lambda t: t.replace("[score]", "[score"), "not valid TOML"),
    ],
)
def test_a_bad_register_map_says_what_is_wrong(tmp_path: Path, edit, fragment: str) -> None:
    path = tmp_path / "map.toml"
    path.write_text(edit(MAP_TEXT))
    with pytest.raises(InspectorError, match=fragment):
        load_register_map(path)


# --- the handshake -----------------------------------------------------------------------------------


def test_a_result_waits_for_the_plcs_ack_before_the_next_goes_out(plc, links) -> None:
    plc.memory.auto_ack = False
    link = link_to(links, plc)
    link.start()
    link.on_decision(result(0, score=0.1234, part_id="17"))
    link.on_decision(result(1, score=70.0, decision="FAIL", part_id="18"))  # beyond the scaled range
    wait_until(lambda: len(plc.memory.seen()) == 1, 5, "the first result at the PLC")
    assert plc.memory.seen()[0] == Seen(part_id=17, result=OK, score=123, flags=0)
    assert plc.memory.get("strobe") == 1
    time.sleep(0.05)
    assert len(plc.memory.seen()) == 1 and link.pending() == 2  # the second waits for the ack

    plc.memory.set("ack", 1)
    wait_until(lambda: plc.memory.get("strobe") == 0, 5, "the ack clearing the strobe")
    assert link.acknowledged == 1
    time.sleep(0.05)
    assert len(plc.memory.seen()) == 1  # ... and for the PLC to release its ack
    plc.memory.set("ack", 0)
    wait_until(lambda: len(plc.memory.seen()) == 2, 5, "the second result")
    assert plc.memory.seen()[1] == Seen(part_id=18, result=NG, score=65535, flags=0)
    plc.memory.set("ack", 1)
    wait_until(lambda: link.acknowledged == 2, 5, "the second ack")
    assert link.stop(1.0) == 0 and link.late == 0 and link.dropped == 0


def test_recheck_and_no_part_reach_the_plc_with_codes_of_their_own(plc, links) -> None:
    """3 = RECHECK and 4 = NO PART in the result register; an engine error stays NG whatever."""
    link = link_to(links, plc)
    link.start()
    link.on_decision(result(0, score=0.45, decision="RECHECK", part_id="1"))
    link.on_decision(result(1, score=0.0, decision="NO_PART", part_id="2"))
    link.on_decision(result(2, score=0.8, decision="FAIL", part_id="3"))
    link.on_decision(result(3, score=0.1, part_id="4"))
    wait_until(lambda: link.acknowledged == 4, 5, "four results at the PLC")
    assert plc.memory.seen() == [Seen(1, RECHECK, 450, 0), Seen(2, NO_PART, 0, 0), Seen(3, NG, 800, 0),
                                 Seen(4, OK, 100, 0)]
    assert (RESULT_CODES["RECHECK"], RESULT_CODES["NO_PART"]) == (3, 4)
    assert link.stop(1.0) == 0


def test_the_strobe_and_the_ack_may_be_coils(links, tmp_path: Path) -> None:
    path = tmp_path / "coils.toml"
    path.write_text(MAP_TEXT.replace("strobe = 5", 'strobe = "coil:0"').replace("ack = 14", 'ack = "coil:1"'))
    plc = PlcServer(PlcMemory(regmap=load_register_map(path)))
    plc.start()
    try:
        link = ModbusLink(f"modbus://127.0.0.1:{plc.port}?map={path}", handshake_poll_s=0.001)
        links.append(link)
        link.start()
        for i in range(3):
            link.on_decision(result(i, part_id=str(i)))
        wait_until(lambda: link.acknowledged == 3, 5, "three results over coils")
        assert plc.memory.seen() == [Seen(i, OK, 100, 0) for i in range(3)]
        assert link.stop(1.0) == 0
        assert plc.memory.get("strobe") == 0 and plc.memory.get("ack", "plc") == 0
    finally:
        plc.close()


def test_the_station_echoes_the_plcs_part_id_and_reports_triggers_and_products(plc, links) -> None:
    triggers: list[int | None] = []
    products: list[int] = []
    link = link_to(links, plc, on_product=products.append)
    link.on_trigger = lambda: triggers.append(link.plc_part_id)  # a camera.trigger() on a real line
    plc.memory.set("product", 7)
    link.start()
    wait_until(lambda: products == [7], 5, "the product number read at connect")

    plc.memory.trigger(4711)
    wait_until(lambda: triggers == [4711], 5, "the first trigger")
    link.on_decision(result(0))
    plc.memory.trigger(4712)
    wait_until(lambda: len(triggers) == 2, 5, "the second trigger")  # two in one poll would lose the first id
    plc.memory.trigger(4713)
    wait_until(lambda: triggers == [4711, 4712, 4713], 5, "the third trigger")
    link.on_decision(result(1, score=0.6, decision="FAIL"))
    link.on_decision(result(2, error="engine failed", decision="FAIL", score=0.0))
    link.on_decision(result(3, part_id="900"))  # the line knew this part's id: that one goes back
    link.on_decision(result(4))  # no trigger left to answer: 0, "unknown part"
    plc.memory.set("product", 8)
    wait_until(lambda: link.acknowledged == 5 and products == [7, 8], 5, "five results and the product change")
    assert plc.memory.seen() == [
        Seen(4711, OK, 100, 0), Seen(4712, NG, 600, 0), Seen(4713, NG, 0, FLAG_ERROR), Seen(900, OK, 100, 0),
        Seen(0, OK, 100, 0),
    ]
    assert link.product == 8 and link.plc_part_id == 4713


# --- outages -------------------------------------------------------------------------------------------


def test_a_plc_outage_is_alarmed_and_loses_no_decision(plc, links) -> None:
    alarms: list[tuple[str, str]] = []
    link = link_to(links, plc, on_alarm=lambda kind, message: alarms.append((kind, message)))
    link.start()
    batch = [result(i, score=i / 100, decision="FAIL" if i % 7 == 0 else "PASS", part_id=str(i)) for i in range(60)]
    plc.memory.cut_at = 10  # the cable goes while part 10's strobe is up, before the PLC's ack
    for r in batch[:40]:
        link.on_decision(r)
    wait_until(lambda: [k for k, _ in alarms] == [PLC_DOWN], 5, "plc_down")
    time.sleep(0.1)  # reconnects fail meanwhile
    assert link.acknowledged == 10 and link.pending() == 30 and not link.connected
    plc.start()  # the same port, the same memory: the cable is back
    wait_until(lambda: [k for k, _ in alarms] == [PLC_DOWN, PLC_RECOVERED], 5, "plc_recovered")
    for r in batch[40:]:
        link.on_decision(r)
    wait_until(lambda: link.acknowledged == 60, 10, "every result acknowledged")
    assert link.stop(1.0) == 0 and link.dropped == 0

    seen = plc.memory.seen()
    assert [s.part_id for s in seen] == [*range(11), *range(10, 60)]  # every decision in order; 10 twice
    verdict = [Seen(i, NG if i % 7 == 0 else OK, i * 10, 0) for i in range(60)]
    late = [Seen(i, NG, i * 10, FLAG_LATE) for i in range(60)]
    assert seen[:11] == verdict[:11]  # up to the cut: the real verdicts
    assert seen[11:41] == late[10:40]  # out during the outage: late NG (10 again: at least once)
    assert seen[41:] == verdict[40:]  # decided after the recovery: the real verdicts again
    assert link.late == 30


def test_down_policy_stop_asks_the_line_to_stop_once(plc, links) -> None:
    plc.stop()  # the PLC is away from the start
    stops: list[str] = []
    alarms: list[str] = []
    link = link_to(links, plc, down_policy="stop", on_stop=stops.append,
                   on_alarm=lambda kind, message: alarms.append(kind))
    link.start()
    link.on_decision(result(0, part_id="1"))
    wait_until(lambda: alarms == [PLC_DOWN], 5, "plc_down")
    time.sleep(0.2)  # reconnects keep failing: still one alarm, one stop
    assert alarms == [PLC_DOWN] and len(stops) == 1 and "cannot reach PLC 127.0.0.1" in stops[0]
    plc.start()
    wait_until(lambda: link.acknowledged == 1, 5, "the waiting result acknowledged")
    assert plc.memory.seen() == [Seen(1, NG, 100, FLAG_LATE)] and alarms == [PLC_DOWN, PLC_RECOVERED]
    with pytest.raises(InspectorError, match="down policy"):
        ModbusLink("modbus://plc", down_policy="pause")


def test_a_plc_that_does_not_acknowledge_is_alarmed_and_a_full_queue_drops_the_oldest(plc, links) -> None:
    plc.memory.auto_ack = False
    alarms: list[str] = []
    link = link_to(links, plc, max_queued=3, ack_timeout_s=0.1, on_alarm=lambda kind, message: alarms.append(kind))
    link.start()
    link.on_decision(result(0, part_id="0"))
    wait_until(lambda: PLC_NO_ACK in alarms, 5, "plc_no_ack")
    for i in range(1, 6):  # 1 and 2 are pushed out by 3, 4 and 5
        link.on_decision(result(i, part_id=str(i)))
    assert alarms == [PLC_NO_ACK, PLC_QUEUE_FULL] and link.dropped == 2 and link.pending() == 4
    plc.memory.auto_ack = True
    plc.memory.set("ack", 1)  # the PLC program wakes up
    wait_until(lambda: link.acknowledged == 4, 5, "the rest acknowledged")
    assert [s.part_id for s in plc.memory.seen()] == [0, 3, 4, 5]
    assert link.stop(1.0) == 0


# --- on a line --------------------------------------------------------------------------------------------


def test_every_verdict_of_a_built_line_reaches_the_plc_in_frame_order(plc, links, db, tmp_path: Path) -> None:
    levels = [30, 220, 40, 230, 50]
    frames = gray_frames(tmp_path / "frames", levels)
    link = link_to(links, plc)
    camera = open_camera(f"folder://{frames}?fps=0")
    line = build_line(camera, recipe(db, tmp_path, threshold=0.5), db, image_dir=tmp_path / "images",
                      pass_sample_rate=0.0, links=[link])
    link.on_alarm = line.pipeline.raise_alarm
    link.start()
    line.start()
    try:
        assert line.wait(30)
    finally:
        assert line.stop(30)
        camera.close()
    assert link.stop(5.0) == 0
    assert plc.memory.seen() == [Seen(0, OK if v < 128 else NG, round(v / 255 * 1000), 0) for v in levels]
    assert not [a for a in line.pipeline.alarms if a.kind.startswith("plc_")]


# --- inspector run --plc ----------------------------------------------------------------------------------


class StubEngine(BrightnessScorer):
    """What ``inspector run`` asks of an engine besides scores: the wiring is under test here, the
    real engine's runs are in test_line_commands."""

    backend = "stub"
    info = {"device": "cpu"}

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path


def inspector_run(tmp_path: Path, monkeypatch, camera: str | list[str], *options: str) -> tuple[int, str, str]:
    """``inspector run`` on ``camera`` (a list: several cameras) as a technician's override (a
    model file and a threshold), the model file's engine a :class:`StubEngine`; (status, stdout, stderr)."""
    from cli.main import main
    from inspector.history import HistoryDB

    db_path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    db.add_user("tina", "technician", "471108")
    loaded = recipe(db, tmp_path, threshold=0.5)
    db.close()
    loaded = dataclasses.replace(loaded, engine=StubEngine(loaded.model_path))
    monkeypatch.setattr("cli.line_commands.load_run_recipe", lambda args, db, active: loaded)
    monkeypatch.setenv("INSPECTOR_PIN", "471108")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cameras = [arg for uri in ([camera] if isinstance(camera, str) else camera) for arg in ("--camera", uri)]
        status = main(["run", *cameras, "--model", str(loaded.model_path), "--threshold", "0.5",
                       "--user", "tina", "--db", f"sqlite:///{db_path}", "--image-dir", str(tmp_path / "images"),
                       *options])
    return status, out.getvalue(), err.getvalue()


def gray_frames(folder: Path, levels: list[int]) -> Path:
    """One PNG per level; the stub engine's score is the mean brightness: dark parts pass."""
    folder.mkdir()
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), level, np.uint8))
    return folder


def test_inspector_run_refuses_a_bad_plc_uri_before_opening_the_camera(tmp_path: Path, monkeypatch) -> None:
    cases = [("modbus://plc:port", "bad port"), ("modbus://plc?map=/no/map.toml", "register map")]
    for i, (uri, fragment) in enumerate(cases):
        work = tmp_path / str(i)
        work.mkdir()
        status, _, err = inspector_run(work, monkeypatch, "folder:///no/such/folder", "--plc", uri)
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_inspector_run_hands_every_verdict_to_the_plc(plc, tmp_path: Path, monkeypatch) -> None:
    frames = gray_frames(tmp_path / "frames", [30, 220, 40])
    uri = f"modbus://127.0.0.1:{plc.port}?unit=1"
    status, out, err = inspector_run(tmp_path, monkeypatch, f"folder://{frames}?fps=0", "--plc", uri)
    assert status == 0, err
    assert f"PLC {uri}: 3 results acknowledged (0 of them as late NG), 0 not acknowledged" in out
    assert [(s.result, s.flags) for s in plc.memory.seen()] == [(OK, 0), (NG, 0), (OK, 0)]


def test_inspector_run_stops_when_the_plc_goes_down_under_plc_down_stop(plc, tmp_path: Path, monkeypatch) -> None:
    plc.stop()
    monkeypatch.setattr("station.links.PLC_DRAIN_S", 0.2)  # the PLC is away: do not wait 2 s for it
    frames = gray_frames(tmp_path / "frames", [30, 220])
    status, out, err = inspector_run(tmp_path, monkeypatch, f"folder://{frames}?fps=20&loop=1",  # endless
                                     "--plc", f"modbus://127.0.0.1:{plc.port}", "--plc-down", "stop")
    assert status == 2 and "the line stopped because the PLC link went down" in err
    assert "stopped (the PLC link went down (--plc-down stop))" in out


def test_each_camera_hands_its_verdicts_to_its_own_plc(plc, tmp_path: Path, monkeypatch) -> None:
    second = PlcServer(PlcMemory())
    second.start()
    try:
        levels = {"a": [30, 220, 40], "b": [230, 50, 240, 60]}
        uris = [f"folder://{gray_frames(tmp_path / name, values)}?fps=0" for name, values in levels.items()]
        plcs = [f"modbus://127.0.0.1:{server.port}?unit=1" for server in (plc, second)]
        status, out, err = inspector_run(tmp_path, monkeypatch, uris, "--plc", plcs[0], "--plc", plcs[1],
                                         "--max-batch", "2")
        assert status == 0, err
        for server, values, uri in zip((plc, second), levels.values(), plcs):  # in each camera's frame order
            assert [s.result for s in server.memory.seen()] == [OK if v < 128 else NG for v in values]
            assert f"PLC {uri}: {len(values)} results acknowledged (0 of them as late NG)" in out
    finally:
        second.close()


def test_several_cameras_need_one_plc_each_and_one_product_chooser(tmp_path: Path, monkeypatch) -> None:
    cameras = ["folder:///no/such/a", "folder:///no/such/b"]
    cases = [(["--plc", "modbus://127.0.0.1:1502"], "--plc given 1 times for 2 cameras"),
             (["--plc", "modbus://127.0.0.1:1502", "--plc", "modbus://127.0.0.1:1502"], "given twice"),
             (["--plc", "modbus://127.0.0.1:1502?products=1:a", "--plc", "modbus://127.0.0.1:1503?products=1:a"],
              "only one PLC may choose it")]
    for i, (options, fragment) in enumerate(cases):
        work = tmp_path / str(i)
        work.mkdir()
        status, _, err = inspector_run(work, monkeypatch, cameras, *options)  # before any camera opens
        assert status == 2 and fragment in err, err
