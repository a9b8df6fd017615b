"""Every recorded result to the MES as one JSON message over MQTT: ``mqtt://HOST:PORT/TOPIC``.

Why an outbox: the broker may be down for hours, the line must not wait for it, and nothing may be
lost. So a result's message is written to the ``outbox`` table **in the same transaction as its
inspection** (:attr:`HistoryDB.outbox_message`, set by :class:`MqttLink`): a crash can never keep
one without the other, and a record replayed from the writer's spill journal queues its message
exactly like a direct write. The line's writer thus never talks to the network.

A sender thread publishes outbox rows in id (recording) order with QoS 1 and deletes a row only
once its PUBACK arrived. When the connection drops, the rows not acknowledged yet are published
again, in order, after the reconnect: duplicates on the wire happen only across a reconnect, and
the consumer drops them by ``uid``. Reconnects back off exponentially; the outage raises
``mqtt_down`` and the reconnect ``mqtt_recovered`` through ``on_alarm`` (the line's alarm path in
``inspector run``), or the log without one.

paho-mqtt is imported only when the link starts, so the rest of the project works without it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from inspector.errors import InspectorError
from inspector.history.db import HistoryDB
from inspector.history.tables import OutboxMessage, Product
from inspector.inspection import InspectionResult
from inspector.links.sender import SenderThread

log = logging.getLogger(__name__)

#: The message schema's name and version; a consumer checks it before reading the fields.
SCHEMA: Final = "inspector.result/1"
MQTT_DOWN: Final = "mqtt_down"
MQTT_RECOVERED: Final = "mqtt_recovered"
DEFAULT_PORT: Final = 1883

AlarmSink = Callable[[str, str], None]


@dataclass(frozen=True)
class MqttTarget:
    """Where messages go: broker ``host``:``port`` and ``topic``; ``station`` names the sender."""

    host: str
    port: int
    topic: str
    station: str


def parse_mqtt_uri(uri: str) -> MqttTarget:
    """``mqtt://HOST[:PORT]/TOPIC[?station=NAME]`` (port 1883, station the host name by default)."""
    parts = urlsplit(uri)
    topic = unquote(parts.path.lstrip("/"))
    if parts.scheme != "mqtt" or not parts.hostname or not topic:
        raise InspectorError(f"not an MQTT link: {uri!r} (expected mqtt://HOST:PORT/TOPIC)")
    if "+" in topic or "#" in uri:  # '#' would otherwise read as the URI's fragment
        raise InspectorError(f"MQTT topic {topic!r} has a wildcard; a message goes to one topic")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise InspectorError(f"bad port in {uri!r}") from exc
    station = parse_qs(parts.query).get("station", [socket.gethostname()])[0]
    return MqttTarget(parts.hostname, port, topic, station)


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity (an uncalibrated threshold may be one): null instead."""
    return value if value is None or math.isfinite(value) else None


def result_message(result: InspectionResult, *, station: str, product: str | None) -> dict[str, Any]:
    """The :data:`SCHEMA` message of one result (documented in docs/plant-links.md, "Results to the MES")."""
    return {
        "schema": SCHEMA,
        "uid": result.uid,
        "station": station,
        "part_id": result.part_id,
        "time": result.time.isoformat(),
        "product": product,
        "model_version": result.model_version_id,
        # A NO PART frame was never scored: its 0.0 would read as a part scoring zero in a MES mean.
        "score": None if result.decision == "NO_PART" else _number(result.score),
        "decision": result.decision,
        "threshold": _number(result.threshold),
        "defect_area_px": result.defect_area_px,
        "defect_area_mm2": _number(result.defect_area_mm2),
        "match_quality": _number(result.match_quality),
        "image_path": result.image_path,
        "heatmap_path": result.heatmap_path,
        "error": result.error,
    }


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise InspectorError("the MQTT link needs paho-mqtt: pip install 'inspector[plant]'") from exc
    return mqtt


@dataclass
class _Connection:
    """One broker connection: its client and what is in flight on it. Discarded when it drops, so
    its in-flight rows go out again on the next one, in order."""

    client: Any
    connected: threading.Event = field(default_factory=threading.Event)
    lost: bool = False
    reason: str = ""
    inflight: dict[int, int] = field(default_factory=dict)  # message id -> outbox row id
    acked: list[int] = field(default_factory=list)  # message ids acknowledged (loop thread)
    last_id: int = 0  # highest outbox row id published on this connection


class MqttLink(SenderThread):
    """A line link (``build_line(..., links=[link])``) that publishes every durable result to
    ``uri`` through the outbox of ``db`` (see the module docstring).

    ``window``: messages in flight at most; ``on_alarm(kind, message)``: where ``mqtt_down`` and
    ``mqtt_recovered`` go (may be set later, before :meth:`start`). Construct it before the line
    writes anything; :meth:`start` the sender, :meth:`stop` it after the line.
    """

    DOWN_ALARM, RECOVERED_ALARM = MQTT_DOWN, MQTT_RECOVERED
    WAITING = "results wait in the outbox"
    NAME = "MQTT link"

    def __init__(
        self,
        db: HistoryDB,
        uri: str,
        *,
        on_alarm: AlarmSink | None = None,
        window: int = 200,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        keepalive_s: int = 10,
    ) -> None:
        if db.outbox_message is not None:
            raise InspectorError("the history database already has an outbox link")
        self.db = db
        self.target = parse_mqtt_uri(uri)
        self.on_alarm = on_alarm
        self.window = window
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.connect_timeout_s, self.keepalive_s = connect_timeout_s, keepalive_s
        self.client_id = f"inspector-{self.target.station}-{os.getpid()}"
        self.sent = 0  # messages acknowledged by the broker (and deleted from the outbox)
        self._products: dict[int, str] = {}
        self._cv = threading.Condition()
        self._woken = False
        self._stop_at: float | None = None
        self._down = False
        self._conn: _Connection | None = None
        self._thread: threading.Thread | None = None
        db.outbox_message = self._message

    # -- the line's side: quick, never blocks ------------------------------------------------

    def on_result(self, result: InspectionResult) -> None:
        """A result is durable, its message in the outbox: wake the sender."""
        self._wake()

    def _message(self, result: InspectionResult, session: Session) -> str:
        """The outbox payload, on the writer's thread inside its transaction; never raises."""
        try:
            product = self._product_name(result.product_id, session)
        except SQLAlchemyError:
            product = None
        try:
            body = result_message(result, station=self.target.station, product=product)
            return json.dumps(body, separators=(",", ":"))
        except (TypeError, ValueError) as exc:  # a bug must not turn into a refused inspection
            log.exception("MQTT message of %s", result.uid)
            return json.dumps({"schema": SCHEMA, "uid": result.uid, "station": self.target.station,
                               "error": f"message not built: {exc}"})

    def _product_name(self, product_id: int | None, session: Session) -> str | None:
        if product_id is None:
            return None
        if product_id not in self._products:
            name = session.scalar(select(Product.name).where(Product.id == product_id))
            if name is None:
                return None
            self._products[product_id] = name
        return self._products[product_id]

    # -- the sender -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected.is_set() and not conn.lost

    @property
    def state(self) -> str:
        """``"stopped"`` (not started, or stopped), ``"connecting"`` (started, no answer yet),
        ``"connected"``, or ``"retrying"`` (the broker is away and the link reconnecting)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return "stopped"
        if self.connected:
            return "connected"
        return "retrying" if self._down else "connecting"

    def pending(self) -> int:
        """Messages in the outbox: not yet acknowledged by the broker."""
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(OutboxMessage)) or 0)

    def start(self) -> None:
        """Start the sender thread (it sends what an earlier run left in the outbox first)."""
        _paho()  # fail now, on the caller's thread, if paho-mqtt is missing
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> int:
        """Send what can be sent within ``timeout`` seconds, then disconnect; the rest stays in
        the outbox for the next run. Returns the messages left there."""
        self._end_thread(timeout)
        return self.pending()

    def _run(self) -> None:
        try:
            self._send_until_stopped()
        except Exception as exc:  # a bug: say so loudly; the outbox keeps the messages
            log.exception("MQTT link sender crashed")
            self._alarm(MQTT_DOWN, f"MQTT sender stopped by an internal error ({exc}); results wait in the outbox")

    def _send_until_stopped(self) -> None:
        backoff = self.retry_initial_s
        while not self._finished():
            conn = self._conn
            if conn is None:
                if self._connect():
                    backoff = self.retry_initial_s
                else:
                    self._sleep(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
                continue
            try:
                self._settle(conn)
                if conn.lost:
                    self._drop(conn)
                    continue
                self._publish_more(conn)
            except SQLAlchemyError as exc:  # the writer spills meanwhile; try again shortly
                log.warning("MQTT link cannot read the outbox: %s", exc)
                self._sleep(backoff)
                continue
            self._wait(conn)
        if self._conn is not None:
            try:
                self._settle(self._conn)
            except SQLAlchemyError:
                pass  # left in the outbox, sent again next time
            self._close(self._conn)
            self._conn = None

    def _finished(self) -> bool:
        """Stopping, and either the deadline passed or everything was acknowledged."""
        if self._stop_at is None:
            return False
        if time.monotonic() >= self._stop_at:
            return True
        conn = self._conn
        if conn is not None and (conn.inflight or conn.acked):
            return False
        try:
            return self.pending() == 0
        except SQLAlchemyError:
            return False

    def _connect(self) -> bool:
        mqtt = _paho()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.max_inflight_messages_set(self.window)
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)  # reconnecting is ours, see _drop
        client.connect_timeout = self.connect_timeout_s
        conn = _Connection(client)
        client.on_connect = lambda c, u, flags, rc, props: self._on_connect(conn, rc)
        client.on_disconnect = lambda c, u, flags, rc, props: self._on_lost(conn, f"disconnected ({rc})")
        client.on_publish = lambda c, u, mid, rc, props: self._on_ack(conn, mid)
        try:
            client.connect(self.target.host, self.target.port, keepalive=self.keepalive_s)
        except (OSError, ValueError) as exc:
            self._alarm_down(f"cannot reach {self._where()}: {exc}")
            return False
        client.loop_start()
        deadline = time.monotonic() + self.connect_timeout_s
        if self._stop_at is not None:
            deadline = min(deadline, self._stop_at)
        with self._cv:
            while not (conn.connected.is_set() or conn.lost or time.monotonic() >= deadline):
                self._cv.wait(deadline - time.monotonic())
        if not conn.connected.is_set() or conn.lost:
            self._close(conn)
            self._alarm_down(f"{self._where()} refused the connection: {conn.reason or 'no answer'}")
            return False
        self._conn = conn
        if self._down:
            self._down = False
            self._alarm(MQTT_RECOVERED, f"{self._where()} reachable again; {self.pending()} messages to send")
        return True

    def _on_connect(self, conn: _Connection, reason_code: Any) -> None:
        with self._cv:
            if getattr(reason_code, "is_failure", False):
                conn.lost, conn.reason = True, str(reason_code)
            else:
                conn.connected.set()
            self._cv.notify_all()

    def _on_lost(self, conn: _Connection, reason: str) -> None:
        with self._cv:
            conn.lost, conn.reason = True, conn.reason or reason
            self._cv.notify_all()

    def _on_ack(self, conn: _Connection, mid: int) -> None:
        with self._cv:
            conn.acked.append(mid)
            self._cv.notify_all()

    def _settle(self, conn: _Connection) -> None:
        """Delete the acknowledged rows. Ids stay in flight until deleted, so a failed delete
        only means sending them again after the next reconnect."""
        with self._cv:
            mids, conn.acked = conn.acked, []
        ids = [conn.inflight[mid] for mid in mids if mid in conn.inflight]
        if not ids:
            return
        try:
            with self.db.session() as s:
                s.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        except SQLAlchemyError:
            with self._cv:
                conn.acked = mids + conn.acked
            raise
        for mid in mids:
            conn.inflight.pop(mid, None)
        self.sent += len(ids)

    def _publish_more(self, conn: _Connection) -> None:
        room = self.window - len(conn.inflight)
        if room <= 0:
            return
        with self.db.session() as s:
            rows = s.execute(
                select(OutboxMessage.id, OutboxMessage.payload)
                .where(OutboxMessage.id > conn.last_id).order_by(OutboxMessage.id).limit(room)
            ).all()
        for row_id, payload in rows:
            info = conn.client.publish(self.target.topic, payload, qos=1)
            if info.rc != 0:  # the connection went; these rows go again on the next one
                self._on_lost(conn, f"publish failed (rc {info.rc})")
                return
            conn.inflight[info.mid] = row_id
            conn.last_id = row_id

    def _wait(self, conn: _Connection) -> None:
        """Until an ack, a loss or a new result (:meth:`_nap`)."""
        self._nap(lambda: bool(conn.acked or conn.lost))

    def _drop(self, conn: _Connection) -> None:
        self._close(conn)
        self._conn = None
        self._alarm_down(f"lost {self._where()}: {conn.reason}; {len(conn.inflight)} messages go again")

    def _close(self, conn: _Connection) -> None:
        try:
            conn.client.disconnect()
        finally:
            conn.client.loop_stop()

    def _sleep(self, seconds: float) -> None:
        """The retry backoff, cut short by a stop's deadline."""
        end = time.monotonic() + seconds
        with self._cv:
            stopping = self._stop_at is not None
            while stopping or self._stop_at is None:  # a stop wakes it to check what is left
                limit = end if self._stop_at is None else min(end, self._stop_at)
                left = limit - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(left)

    def _where(self) -> str:
        return f"MQTT broker {self.target.host}:{self.target.port}"

