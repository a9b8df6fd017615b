"""Each part's verdict to the PLC over Modbus TCP: ``modbus://HOST[:PORT]?unit=1&map=FILE.toml``.

The PLC is the Modbus server and the station its client: everything goes through registers in the
PLC's memory, named by a register map (a TOML file; the documented default is
``inspector/assets/plc/modbus_map.toml``, see :func:`load_register_map`).

Per part, the station writes the part id, the result code (:data:`RESULT_CODES`: 1 OK, 2 NG,
3 RECHECK, 4 NO PART), the score (scaled to an integer) and flags, then sets the result-valid
strobe. The PLC reads them and sets its acknowledge; the station clears the
strobe, the PLC clears its acknowledge, and only then does the next result go out (a four-phase
handshake: a result is never overwritten before the PLC has read it). The part id echoes the one
the PLC wrote when it triggered the part (results answer triggers in order, one each), so the PLC
can tell which part a result is for; a record's own part id wins where it is a number, and 0 means
"not known" (no trigger to answer: a free-running line).

Why a thread of its own: :meth:`ModbusLink.on_decision` runs on the line's inspection thread as
soon as a part is decided (before the record is stored: the PLC needs the verdict now, the
history can follow), and acquisition must never wait for a PLC. It only appends a few numbers (not the record, which holds the image) to
a bounded queue; the link's thread owns the connection, writes the results in order, and polls
the PLC's trigger counter, product number and part id between them (``on_trigger()``,
``on_product(number)``).

Why nothing is lost to an outage: a result leaves the queue only when the PLC has acknowledged it.
While the PLC is unreachable, results wait (up to ``max_queued``; beyond, the oldest go, alarmed
as ``plc_queue_full``), the thread reconnects with exponential backoff, and the outage is alarmed
as ``plc_down`` and ``plc_recovered`` through ``on_alarm`` (in ``inspector run``: the line's alarm
path). A result that was decided before the link came back reaches the PLC as NG with the *late*
flag -- the part has most likely passed the diverter already, so NG is the safe answer -- whatever
its verdict (the history keeps the real one). A result whose strobe was up when the connection
dropped goes out again after the reconnect: at least once, like MQTT's QoS 1; the PLC recognises a
repeat by its part id. The queue lives in memory on purpose: after a restart of the station, the
parts it held are long gone from the line, and the history has their verdicts.

``down_policy`` says what the line does meanwhile: ``"ng"`` (the default) goes on inspecting, and
every part of the outage reaches the PLC as late NG once it is back; ``"stop"`` also calls
``on_stop(reason)`` once per outage, so that the line can stop (``inspector run --plc-down stop``).

pymodbus is imported only when the link starts, so the rest of the project works without it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from inspector import ASSETS_DIR
from inspector.errors import InspectorError
from inspector.inspection import InspectionResult
from inspector.links.sender import SenderThread

log = logging.getLogger(__name__)

PLC_DOWN: Final = "plc_down"
PLC_RECOVERED: Final = "plc_recovered"
PLC_QUEUE_FULL: Final = "plc_queue_full"
PLC_NO_ACK: Final = "plc_no_ack"
DEFAULT_PORT: Final = 502
DEFAULT_UNIT: Final = 1
DEFAULT_MAP: Final = ASSETS_DIR / "plc" / "modbus_map.toml"
DOWN_POLICIES: Final = ("ng", "stop")

#: The ``result`` register's values: OK (PASS), NG (FAIL; also an engine error and every late
#: result), RECHECK (the part goes to a person: the recheck band) and NO_PART (the part was not
#: found in the frame: nothing was inspected; whether that stops the line is the PLC's to say).
#: A PLC program written for OK/NG alone must take anything but 1 as "not OK".
OK: Final = 1
NG: Final = 2
RECHECK: Final = 3
NO_PART: Final = 4
RESULT_CODES: Final = {"PASS": OK, "FAIL": NG, "RECHECK": RECHECK, "NO_PART": NO_PART}
#: Bits of the ``flags`` register.
FLAG_ERROR: Final = 1 << 0  # the engine could not score the frame: a fail-safe NG
FLAG_LATE: Final = 1 << 1  # decided while the link was down: reported NG whatever the verdict

#: The map's fields and how many registers each takes; only the single bits may be coils.
STATION_FIELDS: Final = {"part_id": 2, "result": 1, "score": 1, "flags": 1, "strobe": 1}
PLC_FIELDS: Final = {"trigger": 1, "product": 1, "part_id": 2, "ack": 1}
_BIT_FIELDS: Final = {("station", "strobe"), ("plc", "ack")}
_MAX_RUN: Final = 123  # registers in one request (a write's limit; a read's is 125)
_UINT16: Final = 0xFFFF
_UINT32: Final = 0xFFFFFFFF
_TRIGGER_IDS: Final = 64  # PLC part ids of triggered parts waiting for their result, at most

AlarmSink = Callable[[str, str], None]


# --- the register map ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """Where one value lives in the PLC: a holding register (``coil`` False) or a coil, at the
    0-based protocol ``address``, over ``words`` registers."""

    address: int
    words: int = 1
    coil: bool = False


@dataclass(frozen=True)
class RegisterMap:
    """The registers of the handshake: ``station`` (written by the station), ``plc`` (written by
    the PLC), keyed like :data:`STATION_FIELDS` and :data:`PLC_FIELDS`; the score goes out as
    ``round(score * score_scale)``. ``source``: the file it was read from."""

    station: Mapping[str, Field]
    plc: Mapping[str, Field]
    score_scale: float
    source: str


def load_register_map(path: str | Path | None = None) -> RegisterMap:
    """The register map in the TOML file ``path`` (None: :data:`DEFAULT_MAP`, whose comments
    document the keys). Every key must be there, unknown keys are refused (a typo would otherwise
    leave a default in place), and no register may serve two fields."""
    path = Path(path) if path is not None else DEFAULT_MAP
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise InspectorError("reading a register map needs Python 3.11, or the tomli package") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InspectorError(f"cannot read the register map {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InspectorError(f"register map {path} is not valid TOML: {exc}") from None
    where = str(path)
    _exact_keys(data, ("station", "plc", "score"), where)
    _exact_keys(data["station"], tuple(STATION_FIELDS), f"{where} [station]")
    _exact_keys(data["plc"], tuple(PLC_FIELDS), f"{where} [plc]")
    station = {name: _field(data, "station", name, words, where) for name, words in STATION_FIELDS.items()}
    plc = {name: _field(data, "plc", name, words, where) for name, words in PLC_FIELDS.items()}
    _exact_keys(data["score"], ("scale",), f"{where} [score]")
    scale = data["score"]["scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise InspectorError(f"register map {where}: [score] scale must be a positive number, got {scale!r}")
    _no_overlap({**{f"station.{k}": v for k, v in station.items()}, **{f"plc.{k}": v for k, v in plc.items()}}, where)
    return RegisterMap(station, plc, float(scale), where)


def _exact_keys(table: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(table, dict):
        raise InspectorError(f"register map {where}: expected a table with {', '.join(keys)}")
    missing = [k for k in keys if k not in table]
    unknown = sorted(set(table) - set(keys))
    if missing or unknown:
        said = [f"missing {', '.join(missing)}"] if missing else []
        said += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise InspectorError(f"register map {where}: {'; '.join(said)} (expected {', '.join(keys)})")


def _field(data: dict, section: str, name: str, words: int, where: str) -> Field:
    value = data[section][name]
    coil = isinstance(value, str) and value.startswith("coil:") and value[5:].isdigit()
    address = int(value[5:]) if coil else value
    if coil and (section, name) not in _BIT_FIELDS:
        raise InspectorError(f"register map {where}: {section}.{name} must be a holding register "
                             "(only station.strobe and plc.ack may be coils)")
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFF - (words - 1):
        raise InspectorError(f"register map {where}: {section}.{name} = {value!r} is not a register address "
                             "(0..65535) or 'coil:N'")
    return Field(address, words, coil)


def _no_overlap(fields: dict[str, Field], where: str) -> None:
    owner: dict[tuple[bool, int], str] = {}
    for name, f in fields.items():
        for address in range(f.address, f.address + f.words):
            other = owner.setdefault((f.coil, address), name)
            if other != name:
                kind = "coil" if f.coil else "register"
                raise InspectorError(f"register map {where}: {other} and {name} share {kind} {address}")


def _runs(fields: Mapping[str, Field]) -> list[tuple[int, list[str]]]:
    """The register fields grouped into runs of adjacent registers: one request per run."""
    runs: list[tuple[int, list[str]]] = []
    end = -1
    for name, f in sorted(((n, f) for n, f in fields.items() if not f.coil), key=lambda item: item[1].address):
        if runs and f.address == end and end + f.words - runs[-1][0] <= _MAX_RUN:
            runs[-1][1].append(name)
        else:
            runs.append((f.address, [name]))
        end = f.address + f.words
    return runs


# --- the URI ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModbusTarget:
    """The PLC: ``host``:``port``, Modbus ``unit`` id, and the register ``map``; ``products``: the
    product (recipe) names by the PLC's product number (``?products=1:tile,2:disc``; empty: none)."""

    host: str
    port: int
    unit: int
    map: RegisterMap
    products: Mapping[int, str] = field(default_factory=dict)


def parse_modbus_uri(uri: str) -> ModbusTarget:
    """``modbus://HOST[:PORT][?unit=N][&map=FILE.toml][&products=1:tile,2:disc]`` (port 502, unit 1,
    the default map, no product numbers). The map is read here, so that a bad one is reported
    before anything starts. ``products`` names the product (recipe) each of the PLC's product
    numbers (1..65535; 0 means "none chosen") selects."""
    parts = urlsplit(uri)
    if parts.scheme != "modbus" or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise InspectorError(f"not a Modbus PLC link: {uri!r} (expected modbus://HOST:PORT?unit=1&map=FILE.toml)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise InspectorError(f"bad port in {uri!r}") from None
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InspectorError(f"bad options in {uri!r} (expected ?unit=N&map=FILE.toml)") from None
    unknown = sorted(set(query) - {"unit", "map", "products"})
    if unknown or any(len(v) > 1 for v in query.values()):
        raise InspectorError(f"bad options in {uri!r}: the options are unit and map (and products), each once")
    unit_text = query.get("unit", [str(DEFAULT_UNIT)])[0]
    if not re.fullmatch(r"\d{1,3}", unit_text) or int(unit_text) > 255:
        raise InspectorError(f"bad unit in {uri!r}: a Modbus unit id is 0..255, got {unit_text!r}")
    map_path = query.get("map", [None])[0]
    if map_path == "":
        raise InspectorError(f"empty map in {uri!r}: give map=FILE.toml or leave it out for the default")
    products = _product_numbers(query["products"][0], uri) if "products" in query else {}
    return ModbusTarget(parts.hostname, port, int(unit_text), load_register_map(map_path), products)


def _product_numbers(text: str, uri: str) -> dict[int, str]:
    """``1:tile,2:disc`` as ``{1: "tile", 2: "disc"}``: each number once, 1..65535."""
    products: dict[int, str] = {}
    for item in text.split(","):
        number, sep, name = item.partition(":")
        number, name = number.strip(), name.strip()
        if not sep or not re.fullmatch(r"\d{1,5}", number) or not 0 < int(number) <= _UINT16 or not name:
            raise InspectorError(f"bad products in {uri!r}: expected products=NUMBER:NAME,... with numbers "
                                 f"1..65535 (0 means no product chosen), got {item!r}")
        if int(number) in products:
            raise InspectorError(f"bad products in {uri!r}: product number {int(number)} given twice")
        products[int(number)] = name
    return products


# --- the link --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    """What the PLC gets of one result; ``seq`` counts results from 1 in arrival order."""

    seq: int
    part_id: int | None  # the record's own part id, where it is a number that fits 32 bits
    code: int  # the result register's value for the verdict (RESULT_CODES), before lateness
    error: bool
    score: float


@dataclass(frozen=True)
class _Inputs:
    """One poll of what the PLC writes."""

    trigger: int
    product: int
    part_id: int
    ack: bool


class _LinkDown(Exception):
    """The exchange with the PLC failed: the connection is dropped and made again."""


def _pymodbus() -> tuple[Any, type[Exception]]:
    """The client class and pymodbus's exception base, imported on first use."""
    try:
        from pymodbus.client import ModbusTcpClient
        from pymodbus.exceptions import ModbusException
    except ImportError as exc:
        raise InspectorError("the Modbus PLC link needs pymodbus: pip install 'inspector[plant]'") from exc
    # pymodbus logs an error on every failed connect; during an outage the link's own plc_down
    # alarm says it once. A level set by the user is left alone.
    quiet = logging.getLogger("pymodbus")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.CRITICAL)
    return ModbusTcpClient, ModbusException


def _part_number(part_id: str | None) -> int | None:
    if part_id is not None and part_id.isascii() and part_id.isdigit() and int(part_id) <= _UINT32:
        return int(part_id)
    return None


class ModbusLink(SenderThread):
    """A line link (``build_line(..., links=[link])``) that hands every durable result to the PLC
    at ``uri`` (see the module docstring for the handshake, the outage and the down policy).

    Callbacks, each optional and settable until :meth:`start`: ``on_alarm(kind, message)`` gets
    ``plc_down``, ``plc_recovered``, ``plc_queue_full`` and ``plc_no_ack`` (without it they are
    logged; set it after ``build_line``, as ``inspector run`` does, since ``build_line`` would take
    an ``on_alarm`` already set for a subscriber of the line's alarms); ``on_trigger()`` once per
    step of the PLC's trigger counter; ``on_product(number)`` with the PLC's product number when
    first read and on every change; ``on_stop(reason)`` once per outage under
    ``down_policy="stop"``. They run on the link's thread (``plc_queue_full`` on the caller's of
    :meth:`on_decision`) and must be quick: the handshake waits for them.

    ``max_queued``: results waiting for the PLC at most; ``poll_s``: seconds between polls of the
    PLC while nothing is under way, ``handshake_poll_s`` while a handshake is open (the PLC
    answers within its scan time); ``ack_timeout_s``: a result not acknowledged within that
    raises ``plc_no_ack`` (the link goes on waiting: a result is never overwritten unread);
    ``timeout_s``: for connecting and for each request; reconnects back off from
    ``retry_initial_s`` doubling to ``retry_max_s``.
    """

    DOWN_ALARM, RECOVERED_ALARM = PLC_DOWN, PLC_RECOVERED
    WAITING = "results wait and go to the PLC as NG when it is back"
    NAME = "PLC link"

    def __init__(
        self,
        uri: str,
        *,
        on_alarm: AlarmSink | None = None,
        on_trigger: Callable[[], None] | None = None,
        on_product: Callable[[int], None] | None = None,
        on_stop: Callable[[str], None] | None = None,
        down_policy: str = "ng",
        max_queued: int = 1000,
        poll_s: float = 0.01,
        handshake_poll_s: float = 0.001,
        ack_timeout_s: float = 1.0,
        timeout_s: float = 1.0,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        if down_policy not in DOWN_POLICIES:
            raise InspectorError(f"PLC down policy must be one of {', '.join(DOWN_POLICIES)}, not {down_policy!r}")
        if max_queued < 1:
            raise InspectorError(f"the PLC link must queue at least one result, got {max_queued}")
        self.target = parse_modbus_uri(uri)
        self.on_alarm = on_alarm
        self.on_trigger = on_trigger
        self.on_product = on_product
        self.on_stop = on_stop
        self.down_policy = down_policy
        self.max_queued = max_queued
        self.poll_s, self.handshake_poll_s, self.ack_timeout_s = poll_s, handshake_poll_s, ack_timeout_s
        self.timeout_s = timeout_s
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.acknowledged = 0  # results the PLC acknowledged
        self.late = 0  # of those, reported NG because the link was down when they were decided
        self.dropped = 0  # results dropped from a full queue: never reached the PLC
        self.product: int | None = None  # the PLC's product number, as last read
        self.plc_part_id: int | None = None  # the part id the PLC wrote, as last read
        self._station_runs = _runs({k: v for k, v in self.target.map.station.items() if k != "strobe"})
        self._plc_runs = _runs(self.target.map.plc)
        self._cv = threading.Condition()
        self._queue: deque[_Result] = deque()
        self._seq = 0
        self._late_through = 0  # results up to this seq were decided before the last recovery
        self._overflowing = False
        self._stop_at: float | None = None
        self._thread: threading.Thread | None = None
        # The link thread's own state.
        self._client: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._down = False
        self._open: _Result | None = None  # the result in the handshake: out until acknowledged
        self._open_part_id = 0
        self._open_late = False
        self._strobed_at: float | None = None  # when the open result's strobe went up
        self._no_ack_alarmed = False
        self._ack = False
        self._trigger: int | None = None  # the PLC's trigger counter as last read (None: not yet)
        self._triggered: deque[int | None] = deque(maxlen=_TRIGGER_IDS)  # PLC part ids by trigger

    # -- the line's side: quick, never blocks ------------------------------------------------

    def on_decision(self, result: InspectionResult) -> None:
        """Queue the verdict for the PLC (on the line's inspection thread, as soon as it is decided)."""
        with self._cv:
            full = len(self._queue) >= self.max_queued
            if full:  # the oldest go: of all the parts waiting, they are the furthest past the diverter
                self._queue.popleft()
                self.dropped += 1
            self._seq += 1
            error = result.error is not None
            code = NG if error else RESULT_CODES.get(result.decision, NG)  # an unknown verdict is no OK
            self._queue.append(_Result(self._seq, _part_number(result.part_id), code, error, result.score))
            first_drop = full and not self._overflowing  # alarmed once until the queue has drained
            self._overflowing = self._overflowing or full
            self._cv.notify_all()
        if first_drop:
            self._alarm(PLC_QUEUE_FULL, f"{self.max_queued} results wait for {self._where()}: the oldest are "
                        "dropped and never reach it (the history keeps them)")

    # -- state --------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def state(self) -> str:
        """``"stopped"`` (not started, or stopped), ``"connecting"`` (started, no answer yet),
        ``"connected"``, or ``"retrying"`` (the link is down and reconnecting)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return "stopped"
        if self._client is not None:
            return "connected"
        return "retrying" if self._down else "connecting"

    def pending(self) -> int:
        """Results not yet acknowledged by the PLC: queued, and the one in the handshake."""
        with self._cv:
            return len(self._queue) + (self._open is not None)

    # -- the link's thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the link's thread: it connects, then exchanges with the PLC until :meth:`stop`."""
        _pymodbus()  # fail now, on the caller's thread, if pymodbus is missing
        if self._thread is not None:
            raise RuntimeError("a ModbusLink can be started once")
        self._thread = threading.Thread(target=self._run, name="plc-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> int:
        """Hand the PLC what it acknowledges within ``timeout`` seconds, then disconnect. Returns
        the results it did not acknowledge (they are in the history, not at the PLC). Safe to
        repeat."""
        with self._cv:
            now = time.monotonic()
            self._stop_at = now + timeout if self._stop_at is None else min(self._stop_at, now + timeout)
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        return self.pending()

    def _run(self) -> None:
        try:
            self._exchange_until_stopped()
        except Exception as exc:  # a bug: say so loudly rather than go quiet
            log.exception("PLC link crashed")
            self._alarm(PLC_DOWN, f"the PLC link stopped by an internal error ({exc}); results no longer "
                        "reach the PLC")
        finally:
            self._disconnect()

    def _exchange_until_stopped(self) -> None:
        backoff = self.retry_initial_s
        while not self._finished():
            if self._client is None:
                if self._connect():
                    backoff = self.retry_initial_s
                else:
                    self._sleep(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
                continue
            try:
                progressed = self._step()
            except _LinkDown as exc:
                self._disconnect()
                self._went_down(f"lost {self._where()}: {exc}")
                continue
            if not progressed:
                self._wait(self.handshake_poll_s if self._strobed_at is not None or self._ack else self.poll_s)

    def _finished(self) -> bool:
        with self._cv:
            if self._stop_at is None:
                return False
            return time.monotonic() >= self._stop_at or (not self._queue and self._open is None)

    def _connect(self) -> bool:
        client_class, modbus_error = _pymodbus()
        self._errors = (modbus_error, OSError)
        client = client_class(self.target.host, port=self.target.port, timeout=self.timeout_s, retries=0)
        if not client.connect():
            self._went_down(f"cannot reach {self._where()}")
            return False
        self._client = client
        self._strobed_at = None
        self._trigger = None  # triggers missed meanwhile are gone: their parts have passed
        try:
            # A strobe left up by the last connection would otherwise read as a new result.
            self._write_bit("strobe", False)
            self._take(self._read_inputs())
        except _LinkDown as exc:
            self._disconnect()
            self._went_down(f"{self._where()} does not answer as mapped: {exc}")
            return False
        if self._down:
            self._down = False
            with self._cv:
                self._late_through = self._seq
                waiting = len(self._queue) + (self._open is not None)
            self._alarm(PLC_RECOVERED, f"{self._where()} reachable again; {waiting} results go to it as late NG")
        return True

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _went_down(self, message: str) -> None:
        if self._down:
            log.debug("%s", message)
            return
        self._down = True
        stop = self.down_policy == "stop"
        self._alarm(PLC_DOWN, f"{message}; {self.WAITING}"
                    + ("; the line is asked to stop (down policy 'stop')" if stop else ""))
        if stop and self.on_stop is not None:
            self._call(self.on_stop, message)

    def _step(self) -> bool:
        """One exchange: poll the PLC, then move the handshake on if it can. False when nothing
        could move (the caller waits a poll interval)."""
        inputs = self._read_inputs()
        self._take(inputs)
        if self._strobed_at is not None:  # the open result is up: wait for the PLC's ack
            if not inputs.ack:
                self._check_ack_time()
                return False
            self._write_bit("strobe", False)
            self._strobed_at = None
            with self._cv:
                self._open = None
                self._overflowing = self._overflowing and bool(self._queue)
            self.acknowledged += 1
            self.late += self._open_late
            return True
        if inputs.ack:  # the PLC has not released the last handshake yet
            return False
        if self._open is None and not self._next():
            return False
        self._write_result()
        self._write_bit("strobe", True)
        self._strobed_at = time.monotonic()
        self._no_ack_alarmed = False
        return True

    def _next(self) -> bool:
        """Take the queue's first result into the handshake, with the part id it answers."""
        with self._cv:
            if not self._queue:
                return False
            self._open = self._queue.popleft()
        plc_id = self._triggered.popleft() if self._triggered else None  # one result per trigger
        own = self._open.part_id
        self._open_part_id = own if own is not None else (plc_id or 0)
        return True

    def _write_result(self) -> None:
        item = self._open
        assert item is not None
        late = self._open_late = item.seq <= self._late_through
        scaled = round(item.score * self.target.map.score_scale)
        words = {
            "part_id": [self._open_part_id >> 16, self._open_part_id & _UINT16],
            "result": [NG if late else item.code],
            "score": [min(max(scaled, 0), _UINT16)],
            "flags": [(FLAG_ERROR if item.error else 0) | (FLAG_LATE if late else 0)],
        }
        for start, names in self._station_runs:
            self._request("write_registers", start, [w for name in names for w in words[name]])

    def _read_inputs(self) -> _Inputs:
        fields = self.target.map.plc
        words: dict[str, list[int]] = {}
        for start, names in self._plc_runs:
            count = sum(fields[name].words for name in names)
            registers = self._request("read_holding_registers", start, count=count).registers
            for name in names:
                offset = fields[name].address - start
                words[name] = registers[offset:offset + fields[name].words]
        ack_field = fields["ack"]
        if ack_field.coil:
            ack = bool(self._request("read_coils", ack_field.address, count=1).bits[0])
        else:
            ack = words["ack"][0] != 0
        part_id = words["part_id"][0] << 16 | words["part_id"][1]
        return _Inputs(words["trigger"][0], words["product"][0], part_id, ack)

    def _take(self, inputs: _Inputs) -> None:
        """What the PLC wrote: triggers (each remembers the PLC's part id for the result that
        answers it), the product number, the acknowledge."""
        self._ack = inputs.ack
        self.plc_part_id = inputs.part_id
        if self._trigger is None:  # the first read of a connection is the baseline
            self._trigger = inputs.trigger
        steps = (inputs.trigger - self._trigger) % (_UINT16 + 1)
        if steps:
            self._trigger = inputs.trigger
            if steps > 1:
                log.warning("%d triggers of %s between two polls: the part ids of all but the last are "
                            "unknown (echoed as 0)", steps, self._where())
            self._triggered.extend([None] * (steps - 1) + [inputs.part_id])
            for _ in range(steps):
                if self.on_trigger is not None:
                    self._call(self.on_trigger)
        if inputs.product != self.product:
            self.product = inputs.product
            if self.on_product is not None:
                self._call(self.on_product, inputs.product)
            else:
                log.info("%s selects product number %d", self._where(), inputs.product)

    def _check_ack_time(self) -> None:
        assert self._strobed_at is not None
        if not self._no_ack_alarmed and time.monotonic() - self._strobed_at > self.ack_timeout_s:
            self._no_ack_alarmed = True
            self._alarm(PLC_NO_ACK, f"{self._where()} has not acknowledged part {self._open_part_id} for "
                        f"{self.ack_timeout_s:g} s; the next results wait for it")

    def _write_bit(self, name: str, value: bool) -> None:
        field = self.target.map.station[name]
        if field.coil:
            self._request("write_coil", field.address, value)
        else:
            self._request("write_register", field.address, int(value))

    def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One Modbus request; any failure, or an exception response, is a :class:`_LinkDown`."""
        client = self._client
        if client is None:
            raise _LinkDown("not connected")
        try:
            response = getattr(client, method)(*args, slave=self.target.unit, **kwargs)
        except self._errors as exc:
            raise _LinkDown(str(exc) or type(exc).__name__) from exc
        if response.isError():
            raise _LinkDown(f"{method} at address {args[0]} refused: {response} (does the register map fit the PLC?)")
        return response

    def _wait(self, seconds: float) -> None:
        """A poll interval, cut short by a new result or a stop. Checked under the lock: a result
        queued since the last step would otherwise wait out the interval unnoticed."""
        with self._cv:
            if not (self._queue and self._open is None and not self._ack):
                self._cv.wait(seconds)

    # -- helpers --------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"PLC {self.target.host}:{self.target.port} (unit {self.target.unit})"

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("PLC link callback %r failed", callback)

