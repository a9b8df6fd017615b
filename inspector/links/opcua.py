"""The station's state and two commands for SCADA and PLC clients, as an OPC UA server:
``opcua://HOST[:PORT][?readonly=1&station=NAME&security=MODE&cert=FILE&key=FILE&trust=DIR&users=FILE]``.

Unlike the MQTT and Modbus links, here the station is the server: a SCADA or PLC client connects,
reads (or subscribes to) one object ``Station`` -- running, product, model version, threshold, the
last part's verdict, counters, alarms -- and may call ``ChangeProduct(name)`` and
``AcknowledgeAlarms()``. The address space is documented in docs/plant-links.md ("The station over OPC
UA") and in each node's Description; its NodeIds are strings (``ns=<index of
urn:inspector:station>;s=Station.Running``), so that a client's configuration survives a restart
of the station.

Why a thread and an event loop of its own: asyncua is asynchronous, and the line's threads must
never wait for a client. :meth:`OpcUaLink.on_result` (the history writer's thread) and
:meth:`OpcUaLink.on_alarm` (any thread) only change a few fields under a lock and, at most once
until it has run, schedule a flush on the server's loop (``call_soon_threadsafe``), which writes
the changed values into the address space. A burst of results is thus written once, with the
latest values; a subscribed client sees the last part, not every part (the history and the MQTT
link have every part).

What the commands do is not this module's business: ``ChangeProduct`` calls ``on_change_product``
and ``AcknowledgeAlarms`` ``on_acknowledge``, on a worker thread of the link's own (one at a time,
so that the server keeps answering while a new model loads). Without ``on_change_product`` the
method answers BadNotSupported; an :class:`~inspector.errors.InspectorError` from it (an unknown
product, say) answers BadInvalidArgument. In both cases, and on success, ``LastCommand`` says what
happened in words, since an OPC UA status code carries no text.

Security (:mod:`inspector.links.opcua_security`): by default none -- anonymous clients, no signing or
encryption (the only endpoint is ``None``), for an isolated plant network only.
``security=Sign|SignAndEncrypt`` with the server's certificate and key, a folder of trusted client
certificates and a users file offers that mode only: trusted clients read, and only a user with
a password may call the methods. ``readonly=1`` leaves the methods out, so that nothing on the
network can change the station. The variables are never writable by clients.

asyncua is imported only when the server starts, so the rest of the project works without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from inspector import __version__
from inspector.alarms import Alarm
from inspector.errors import InspectorError
from inspector.inspection import InspectionResult
from inspector.links.opcua_security import APPLICATION_URI, STATION_NAME, OpcUaSecurity, check_security, session_user

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 4840
NAMESPACE: Final = APPLICATION_URI
#: The object under Objects that holds everything, and the prefix of every NodeId.
OBJECT: Final = "Station"
#: Alarms kept for ``on_acknowledge`` at most; the count goes on beyond.
MAX_KEPT_ALARMS: Final = 200
#: Seconds ``start`` waits for the server to listen. asyncua builds the whole standard address
#: space in Python first: about 4 s on an idle 2-core PC, 11 s with its cores oversubscribed,
#: and over 30 s on a loaded CI machine. A port that is taken is reported at once, not by this.
START_TIMEOUT_S: Final = 120.0
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")

#: The variables of ``Station``: name, OPC UA type (asyncua's VariantType name), description.
VARIABLES: Final = (
    ("StationName", "String", "The station's name (the URI's station=, else the host name)"),
    ("Running", "Boolean", "True while the line inspects"),
    ("Product", "String", "The product on the line"),
    ("ModelVersion", "Int64", "The model version (history id) that decides; 0 when not known"),
    ("Threshold", "Double", "The image-score threshold: a score above it FAILs"),
    ("LastPartId", "String", "The last part's id where the line knows it, else empty"),
    ("LastUid", "String", "The last inspection's uid (the history's and the MES message's key)"),
    ("LastDecision", "String", "PASS, FAIL, RECHECK or NO_PART of the last frame; empty before the first"),
    ("LastScore", "Double", "The last part's anomaly score (0 for NO_PART: nothing was scored)"),
    ("Inspected", "UInt64", "Parts inspected and recorded since the station started (NO_PART frames are no part)"),
    ("Passed", "UInt64", "Of those, PASS"),
    ("Failed", "UInt64", "Of those, FAIL (engine errors included)"),
    ("Errors", "UInt64", "Of the FAILs, parts the engine could not score"),
    ("Rechecked", "UInt64", "Of those, RECHECK: set aside for a person (the recheck band)"),
    ("NoPart", "UInt64", "Frames the part was not found in (NO_PART), not among Inspected"),
    ("Yield", "Double", "Passed / Inspected, 0..1; NaN before the first part"),
    ("ActiveAlarms", "String", "Kinds of the alarms raised since the last acknowledgement, first raised first"),
    ("UnacknowledgedAlarms", "UInt32", "Alarms raised since the last acknowledgement"),
    ("LastAlarm", "String", "The last alarm: 'kind: message'; empty before the first"),
    ("LastCommand", "String", "What the last method call did, or why it was refused"),
)
_ARRAYS: Final = frozenset({"ActiveAlarms"})

#: ``(product name, who asked) -> message``; who asked, for the audit: ``opcua``, or
#: ``opcua:<user>`` for a user signed in to a secured server.
ProductChanger = Callable[[str, str], str]


# --- the URI ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpcUaTarget:
    """Where the server listens (``host`` may be ``0.0.0.0``: every interface), whether it leaves
    the methods out (``readonly``), the ``station`` name it shows, and its ``security`` (None:
    none)."""

    host: str
    port: int
    readonly: bool
    station: str
    security: OpcUaSecurity | None = None

    @property
    def security_mode(self) -> str:
        return "None" if self.security is None else self.security.mode

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"opc.tcp://{host}:{self.port}"


#: The URI's options; those after ``station`` secure the server (see opcua_security).
OPTIONS: Final = ("readonly", "station", "security", "cert", "key", "trust", "users")


def parse_opcua_uri(uri: str) -> OpcUaTarget:
    """``opcua://HOST[:PORT][?readonly=1][&station=NAME][&security=MODE&cert=...]`` (port 4840,
    methods exposed, the station named after the host, no security). The security options' files
    are read and checked here, so that a bad one is refused before anything starts."""
    parts = urlsplit(uri)
    if parts.scheme != "opcua" or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise InspectorError(f"not an OPC UA server address: {uri!r} (expected opcua://HOST:PORT, "
                             "e.g. opcua://0.0.0.0:4840)")
    if parts.username is not None or parts.password is not None:
        # Never echo it: what stands before '@' may be a password.
        raise InspectorError("an OPC UA server address holds no user or password (users come from users=FILE)")
    try:
        port = parts.port if parts.port is not None else DEFAULT_PORT
    except ValueError:
        raise InspectorError(f"bad port in {uri!r}") from None
    if not 0 < port < 65536:
        raise InspectorError(f"bad port in {uri!r}: 1..65535")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InspectorError(f"bad options in {uri!r} (expected ?readonly=1&station=NAME)") from None
    if set(query) - set(OPTIONS) or any(len(v) > 1 for v in query.values()):
        raise InspectorError(f"bad options in {uri!r}: the options are {', '.join(OPTIONS)}, each once")
    readonly_text = query.get("readonly", ["0"])[0].lower()
    if readonly_text not in _TRUE + _FALSE:
        raise InspectorError(f"bad readonly in {uri!r}: 1 or 0, got {readonly_text!r}")
    station = query.get("station", [socket.gethostname()])[0]
    if not STATION_NAME.fullmatch(station):
        raise InspectorError(f"bad station in {uri!r}: letters, digits, '.', '-' and '_', 64 at most")
    readonly = readonly_text in _TRUE
    option = {name: values[0] for name, values in query.items()}
    try:
        security = check_security(option.get("security", "None"), option.get("cert"), option.get("key"),
                                  option.get("trust"), option.get("users"), readonly)
    except InspectorError as exc:
        raise InspectorError(f"OPC UA security: {exc}") from None
    return OpcUaTarget(parts.hostname, port, readonly, station, security)


def _asyncua() -> tuple[Any, Any]:
    """asyncua's ``Server`` and ``ua``, imported on first use."""
    try:
        from asyncua import Server, ua
    except ImportError as exc:
        raise InspectorError("the OPC UA server needs asyncua: pip install 'inspector[plant]'") from exc
    # asyncua logs every connection and call at info level, the level of `inspector run`'s console.
    # A level set by the user is left alone.
    quiet = logging.getLogger("asyncua")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    return Server, ua


# --- the link --------------------------------------------------------------------------------------


class OpcUaLink:
    """A line link (``build_line(..., links=[link])``) that serves the station's state over OPC UA
    at ``uri`` (see the module docstring).

    The line's side: :meth:`on_result` (every durable result) and :meth:`on_alarm` (every alarm of
    the line, an :class:`~inspector.alarms.Alarm`): ``build_line`` subscribes both. The run's side:
    :meth:`set_running` and :meth:`set_recipe` fill in what the line does not report itself.

    Callbacks, each optional and settable at any time: ``on_change_product(name, user) -> message``
    puts the product's recipe on the line for ``user`` (``opcua``, or ``opcua:<name>`` on a secured
    server: who called, for the audit) and returns what to tell the client; it raises
    :class:`~inspector.errors.InspectorError` to refuse (an unknown product), and is expected to
    call :meth:`set_recipe` itself. ``on_acknowledge(alarms, user)`` gets the alarms a client
    (``user``, as for a product change) acknowledged (the :data:`MAX_KEPT_ALARMS` most recent), e.g. for the audit trail. Both run on
    the link's worker thread, one call at a time, and may take seconds (a model loading): the
    client waits, the server does not.
    """

    def __init__(
        self,
        uri: str,
        *,
        on_change_product: ProductChanger | None = None,
        on_acknowledge: Callable[[list[Alarm], str], None] | None = None,
    ) -> None:
        self.target = parse_opcua_uri(uri)
        self.on_change_product = on_change_product
        self.on_acknowledge = on_acknowledge
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {
            "StationName": self.target.station, "Running": False, "Product": "", "ModelVersion": 0,
            "Threshold": math.nan, "LastPartId": "", "LastUid": "", "LastDecision": "", "LastScore": 0.0,
            "Inspected": 0, "Passed": 0, "Failed": 0, "Errors": 0, "Rechecked": 0, "NoPart": 0, "Yield": math.nan,
            "ActiveAlarms": [], "UnacknowledgedAlarms": 0, "LastAlarm": "", "LastCommand": "",
        }
        self._alarms: deque[Alarm] = deque(maxlen=MAX_KEPT_ALARMS)  # not acknowledged yet
        self._loop: asyncio.AbstractEventLoop | None = None  # set while the server serves
        self._flush_scheduled = False
        self._thread: threading.Thread | None = None
        self._stop_flag = threading.Event()  # stop() was called, maybe before the server was up
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="opcua-command")
        # The server thread's own, set up there.
        self._ua: Any = None
        self._server: Any = None
        self._nodes: dict[str, Any] = {}
        self._written: dict[str, Any] = {}  # what the address space holds, by variable name
        self._stop_requested: asyncio.Event | None = None
        self._write_lock: asyncio.Lock | None = None

    @property
    def endpoint(self) -> str:
        """The server's address for clients, ``opc.tcp://HOST:PORT``."""
        return self.target.endpoint

    @property
    def serving(self) -> bool:
        return self._loop is not None

    def state(self) -> dict[str, Any]:
        """A copy of what the server shows (or will show, before :meth:`start`), by variable name."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {**self._state, "ActiveAlarms": list(self._state["ActiveAlarms"])}

    # -- the line's side and the run's: quick, never block ------------------------------------------

    def on_result(self, result: InspectionResult) -> None:
        """A durable result: the last part and the counters (on the history writer's thread)."""
        with self._lock:
            s = self._state
            if result.decision == "NO_PART" and result.error is None:
                s["NoPart"] += 1  # no part inspected: neither a pass nor a reject, not in the yield
            else:
                s["Inspected"] += 1
                counter = {"PASS": "Passed", "RECHECK": "Rechecked"}.get(result.decision, "Failed")
                s["Failed" if result.error is not None else counter] += 1
                s["Errors"] += result.error is not None
                s["Yield"] = s["Passed"] / s["Inspected"]
            s["LastPartId"] = result.part_id or ""
            s["LastUid"] = result.uid
            s["LastDecision"] = result.decision
            s["LastScore"] = result.score
        self._changed()

    def on_alarm(self, alarm: Alarm) -> None:
        """An alarm of the line (``build_line`` subscribes this): active until a client acknowledges."""
        with self._lock:
            self._alarms.append(alarm)
            s = self._state
            if alarm.kind not in s["ActiveAlarms"]:
                s["ActiveAlarms"] = [*s["ActiveAlarms"], alarm.kind]
            s["UnacknowledgedAlarms"] += 1
            s["LastAlarm"] = f"{alarm.kind}: {alarm.message}"
        self._changed()

    def set_running(self, running: bool) -> None:
        self._set(Running=bool(running))

    def set_recipe(self, product: str, model_version: int | None, threshold: float) -> None:
        """What decides now: the product's name, the model version id (None: not known), the threshold."""
        self._set(Product=product, ModelVersion=model_version or 0, Threshold=float(threshold))

    def _set(self, **values: Any) -> None:
        with self._lock:
            self._state.update(values)
        self._changed()

    def _changed(self) -> None:
        """Have the server's loop write the state, unless a write is already due (it will read the
        latest values when it runs)."""
        with self._lock:
            if self._flush_scheduled or self._loop is None:
                return  # not serving: start() writes the state as it is
            self._flush_scheduled = True
            loop = self._loop
        try:
            loop.call_soon_threadsafe(self._flush_now)
        except RuntimeError:  # the loop closed meanwhile: the server has stopped
            pass

    # -- the server's thread ------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start serving; returns once clients can connect. InspectorError when the server cannot
        listen (the port is taken, the address is not this machine's)."""
        _asyncua()  # fail now, on the caller's thread, if asyncua is missing
        if self._thread is not None:
            raise RuntimeError("an OpcUaLink can be started once")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="opcua-server", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self.stop()
            raise InspectorError(f"the OPC UA server at {self.endpoint} did not start within {timeout:g} s") from None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (clients are disconnected); a command under way finishes. Safe to repeat."""
        self._stop_flag.set()  # before looking for the loop: _serve sets the loop, then reads the flag
        with self._lock:
            loop, stop = self._loop, self._stop_requested
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # already stopped
        if self._thread is not None:
            self._thread.join(timeout)
        self._worker.shutdown(wait=True)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        except Exception as exc:  # a bug: say so loudly rather than go quiet
            log.exception("OPC UA server crashed")
            if not ready.done():
                ready.set_exception(InspectorError(f"the OPC UA server at {self.endpoint} failed: {exc}"))
        finally:
            with self._lock:
                self._loop = None
            loop.close()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        server_class, ua = _asyncua()
        self._ua = ua
        server = server_class()
        await server.init()
        try:
            await self._configure(server)
        except InspectorError as exc:  # a security file changed since the URI was checked
            ready.set_exception(InspectorError(f"cannot serve OPC UA at {self.endpoint}: {exc}"))
            return
        self._nodes = await self._add_nodes(server)
        quiet = _DropStartTraceback()  # the reason goes to the caller, in one line
        logging.getLogger("asyncua.server.server").addFilter(quiet)
        try:
            await server.start()
        except OSError as exc:
            if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
                reason = exc.strerror or str(exc)  # a host name that does not resolve
            else:
                reason = os.strerror(exc.errno)  # asyncio's own text repeats the address
            ready.set_exception(InspectorError(f"cannot serve OPC UA at {self.endpoint}: {reason} (is the port "
                                               "taken, or the address not this machine's?)"))
            return
        finally:
            logging.getLogger("asyncua.server.server").removeFilter(quiet)
        self._server = server
        self._write_lock = asyncio.Lock()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._stop_requested = stop = asyncio.Event()
        if self._stop_flag.is_set():  # stop() came while the server was starting (a start that timed out)
            stop.set()
        await self._flush()  # what was set before start, and meanwhile
        log.debug("serving the station over OPC UA at %s (read-only: %s, security: %s)", self.endpoint,
                  self.target.readonly, self.target.security_mode)
        ready.set_result(None)
        try:
            await stop.wait()
        finally:
            with self._lock:
                self._loop = None
            await server.stop()

    async def _configure(self, server: Any) -> None:
        from inspector.links.opcua_security import certificate_uri, load_certificate_file, secure_server

        ua = self._ua
        server.set_endpoint(f"{self.endpoint}/")
        server.set_server_name(f"inspector station {self.target.station}")
        security = self.target.security
        # A client checks that the server's application URI is the one its certificate names.
        uri = certificate_uri(load_certificate_file(security.cert)) if security is not None else None
        await server.set_application_uri(uri or f"{NAMESPACE}:{self.target.station}")
        await server.set_build_info("urn:inspector", "inspector", "inspector station", __version__, __version__,
                                    datetime.now(timezone.utc))
        if security is not None:
            await secure_server(server, security)
            return
        # Only what is offered: no certificate, so no signed or encrypted endpoint (asyncua would
        # warn about each), and no user names or certificates it could not check.
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])

    async def _add_nodes(self, server: Any) -> dict[str, Any]:
        ua = self._ua
        idx = await server.register_namespace(NAMESPACE)
        station = await server.nodes.objects.add_object(ua.NodeId(OBJECT, idx), ua.QualifiedName(OBJECT, idx))
        initial = self.state()
        nodes = {}
        for name, vtype, description in VARIABLES:
            node = await station.add_variable(ua.NodeId(f"{OBJECT}.{name}", idx), ua.QualifiedName(name, idx),
                                              initial[name], varianttype=ua.VariantType[vtype])
            await self._describe(node, description)
            if name in _ARRAYS:  # one dimension of any length, also while empty (asyncua cannot tell then)
                await node.write_attribute(ua.AttributeIds.ValueRank, ua.DataValue(ua.Variant(1, ua.VariantType.Int32)))
                await node.write_attribute(ua.AttributeIds.ArrayDimensions,
                                           ua.DataValue(ua.Variant([0], ua.VariantType.UInt32)))
            nodes[name] = node
        if not self.target.readonly:
            await self._add_method(station, idx, "ChangeProduct", self._change_product,
                                   "Put the product's active recipe on the line; returns what was done",
                                   [("Product", "String", "The product's name")],
                                   [("Message", "String", "What was done")])
            await self._add_method(station, idx, "AcknowledgeAlarms", self._acknowledge,
                                   "Acknowledge every alarm raised so far; returns how many",
                                   [], [("Acknowledged", "UInt32", "Alarms acknowledged")])
        return nodes

    async def _add_method(self, station: Any, idx: int, name: str, handler: Callable[..., Any], description: str,
                          inputs: list[tuple[str, str, str]], outputs: list[tuple[str, str, str]]) -> None:
        ua = self._ua

        def argument(arg: tuple[str, str, str]) -> Any:
            arg_name, vtype, text = arg
            return ua.Argument(Name=arg_name, DataType=ua.NodeId(ua.VariantType[vtype].value),
                               Description=ua.LocalizedText(text))

        node = await station.add_method(ua.NodeId(f"{OBJECT}.{name}", idx), ua.QualifiedName(name, idx), handler,
                                        [argument(a) for a in inputs], [argument(a) for a in outputs])
        await self._describe(node, description)

    async def _describe(self, node: Any, text: str) -> None:
        """The node's Description: what a client's browser shows beside it (asyncua puts the name there)."""
        ua = self._ua
        await node.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(text))))

    def _flush_now(self) -> None:
        loop = self._loop
        if loop is not None:
            task = loop.create_task(self._flush())
            task.add_done_callback(_log_failure)

    async def _flush(self) -> None:
        """Write the variables whose values changed since the last flush."""
        ua = self._ua
        assert self._write_lock is not None
        async with self._write_lock:  # one flush at a time: an older one must not land last
            with self._lock:
                self._flush_scheduled = False
                state = self._snapshot()
            now = datetime.now(timezone.utc)
            for name, vtype, _ in VARIABLES:
                value = state[name]
                if name in self._written and _same(self._written[name], value):
                    continue
                variant = ua.Variant(value, ua.VariantType[vtype])
                await self._server.write_attribute_value(
                    self._nodes[name].nodeid, ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now))
                self._written[name] = value

    # -- the methods (on the server's loop) ---------------------------------------------------------

    async def _change_product(self, parent: Any, name_arg: Any) -> Any:
        ua = self._ua
        name = name_arg.Value
        callback = self.on_change_product
        if not isinstance(name, str) or not name.strip():
            return self._refuse(ua.StatusCodes.BadInvalidArgument, f"ChangeProduct({name!r}) refused: no product name")
        if callback is None:
            return self._refuse(ua.StatusCodes.BadNotSupported,
                                f"ChangeProduct({name!r}) refused: this station takes no product changes over OPC UA")
        who = session_user.get()  # the secured server's signed-in user; None: anonymous or unsecured
        user = "opcua" if who is None else f"opcua:{who}"
        try:
            message = await asyncio.get_running_loop().run_in_executor(self._worker, callback, name, user)
        except InspectorError as exc:
            return self._refuse(ua.StatusCodes.BadInvalidArgument, f"ChangeProduct({name!r}) refused: {exc}")
        except Exception as exc:
            log.exception("OPC UA ChangeProduct(%r) failed", name)
            return self._refuse(ua.StatusCodes.BadInternalError, f"ChangeProduct({name!r}) failed: {exc}")
        message = str(message)
        log.info("OPC UA client %s: ChangeProduct(%r): %s", user, name, message)
        self._set(LastCommand=f"ChangeProduct({name!r}): {message}")
        return [ua.Variant(message, ua.VariantType.String)]

    async def _acknowledge(self, parent: Any) -> Any:
        ua = self._ua
        with self._lock:
            alarms = list(self._alarms)
            count = self._state["UnacknowledgedAlarms"]
            self._alarms.clear()
            self._state.update(ActiveAlarms=[], UnacknowledgedAlarms=0)
        kinds = sorted({a.kind for a in alarms})
        log.info("OPC UA client acknowledged %d alarms%s", count, f" ({', '.join(kinds)})" if kinds else "")
        self._set(LastCommand=f"AcknowledgeAlarms(): {count} acknowledged")
        callback = self.on_acknowledge
        who = session_user.get()  # read here: the worker thread does not see the session
        user = "opcua" if who is None else f"opcua:{who}"
        if callback is not None and count:
            try:
                await asyncio.get_running_loop().run_in_executor(self._worker, callback, alarms, user)
            except Exception:  # acknowledged all the same: the audit's failure is the log's
                log.exception("OPC UA on_acknowledge failed")
        return [ua.Variant(count, ua.VariantType.UInt32)]

    def _refuse(self, code: int, message: str) -> Any:
        log.warning("OPC UA client: %s", message)
        self._set(LastCommand=message)
        return self._ua.StatusCode(code)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (an uncalibrated yield stays unwritten)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


class _DropStartTraceback(logging.Filter):
    """Drops asyncua's traceback of a server that could not listen: :meth:`OpcUaLink.start` says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "error starting server" not in record.getMessage()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("OPC UA server could not update its nodes", exc_info=task.exception())
