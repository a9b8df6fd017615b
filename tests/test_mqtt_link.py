"""Results to the MES over MQTT: a real amqtt broker on 127.0.0.1, a real history database and
writer (or a whole built line), paho-mqtt in the link.

What the broker received is recorded by a broker plugin (every PUBLISH, before its PUBACK), so a
test sees the wire as the broker saw it, also across a broker restart, when no subscriber's
session survives. A paho subscriber checks the end-to-end path as the MES would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("amqtt")
paho = pytest.importorskip("paho.mqtt.client")

from amqtt.broker import Broker  # noqa: E402
from amqtt.plugins.base import BasePlugin  # noqa: E402

from drivers import open_camera  # noqa: E402
from inspector.history import HistoryDB, HistoryWriter  # noqa: E402
from inspector.inspection import InspectionResult  # noqa: E402
from inspector.line import build_line  # noqa: E402
from inspector.links.mqtt import MQTT_DOWN, MQTT_RECOVERED, SCHEMA, MqttLink, parse_mqtt_uri  # noqa: E402
from pipeline_support import copy_images, good_images, wait_until  # noqa: E402
from test_line_build import recipe  # noqa: E402

TOPIC = "plant/line1/results"
#: What every broker of this module received: (topic, JSON body), in arrival order.
RECEIVED: list[tuple[str, dict[str, Any]]] = []
_RECEIVED_LOCK = threading.Lock()


class Recorder(BasePlugin):
    """A broker plugin: keeps every application message the broker receives."""

    async def on_broker_message_received(self, *, client_id: str, message: Any) -> None:
        with _RECEIVED_LOCK:
            RECEIVED.append((message.topic, json.loads(bytes(message.data))))


def received() -> list[dict[str, Any]]:
    with _RECEIVED_LOCK:
        return [body for topic, body in RECEIVED if topic == TOPIC]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerThread:
    """An amqtt broker on 127.0.0.1:``port`` in its own event loop thread; stop and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.broker: Broker | None = None

    def start(self) -> None:
        async def start() -> Broker:
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                    f"{__name__}.Recorder": {},
                },
            }
            broker = Broker(config, loop=self.loop)
            await broker.start()
            return broker

        self.broker = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        """The broker goes away: its clients' connections are cut (as in a crash; amqtt's own
        shutdown can hang while a client is mid-publish), then it shuts down."""
        broker = self.broker
        if broker is None:
            return

        async def stop() -> None:
            for _session, handler in list(broker._sessions.values()):
                writer = getattr(handler, "writer", None)
                if writer is not None:
                    writer._writer.transport.abort()
            await asyncio.sleep(0.05)
            await broker.shutdown()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.broker = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Subscriber:
    """The MES: a paho client subscribed to the topic, keeping every message's body."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mes")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber did not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker():
    RECEIVED.clear()
    thread = BrokerThread(free_port())
    thread.start()
    yield thread
    thread.close()


def results(n: int, start: int = 0) -> list[InspectionResult]:
    now = datetime.now(timezone.utc)
    return [InspectionResult(now, "cam", i, score=i / 1000, decision="FAIL" if i % 7 == 0 else "PASS",
                             threshold=0.5, part_id=f"P{i:05d}", defect_area_px=i % 7 * 10)
            for i in range(start, start + n)]


def first_seen(bodies: list[dict[str, Any]]) -> list[str]:
    """The uids in the order they first arrived: what a consumer deduping by uid keeps."""
    seen: dict[str, None] = {}
    for body in bodies:
        seen.setdefault(body["uid"], None)
    return list(seen)


def test_the_uri_names_broker_topic_and_station() -> None:
    target = parse_mqtt_uri("mqtt://mes.plant:1884/plant/line1/results?station=line-1")
    assert (target.host, target.port, target.topic, target.station) == ("mes.plant", 1884, TOPIC, "line-1")
    assert parse_mqtt_uri("mqtt://10.0.0.5/r").port == 1883
    for bad in ("http://h/t", "mqtt://h:1883/", "mqtt://h/a/#"):
        with pytest.raises(Exception, match="MQTT"):
            parse_mqtt_uri(bad)


def test_every_decision_of_a_built_line_reaches_the_mes_once_in_order(broker, db, tmp_path) -> None:
    frames = copy_images(good_images(6, skip=200), tmp_path / "frames")
    mes = Subscriber(broker.port)
    link = MqttLink(db, f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?station=line-1")
    loaded = recipe(db, tmp_path, threshold=0.5)
    camera = open_camera(f"folder://{frames}?fps=0")
    line = build_line(camera, loaded, db, image_dir=tmp_path / "images", pass_sample_rate=1.0, links=[link])
    link.start()
    line.start()
    try:
        assert line.wait(60)
    finally:
        assert line.stop(30)
        camera.close()
    assert link.stop(10) == 0  # everything acknowledged: the outbox is empty
    wait_until(lambda: len(mes.messages) >= 6, 10, "six messages at the MES")
    mes.close()
    rows = sorted(db.query_inspections(limit=100), key=lambda r: r.id)
    assert [m["uid"] for m in mes.messages] == [r.uid for r in rows]  # once each, in recording order
    first = mes.messages[0]
    assert set(first) == {"schema", "uid", "station", "part_id", "time", "product", "model_version", "score",
                          "decision", "threshold", "defect_area_px", "defect_area_mm2", "match_quality", "image_path",
                          "heatmap_path", "error"}
    assert (first["schema"], first["station"], first["product"]) == (SCHEMA, "line-1", "tile")
    assert first["model_version"] == loaded.model_version_id and first["threshold"] == 0.5
    assert first["decision"] in ("PASS", "FAIL") and first["error"] is None
    assert Path(first["image_path"]).is_file()  # pass_sample_rate 1: every image kept
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert np.isclose(first["score"], rows[0].score)


def test_a_broker_outage_loses_nothing_and_keeps_the_order(broker, db) -> None:
    alarms: list[str] = []
    link = MqttLink(db, f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", on_alarm=lambda kind, msg: alarms.append(kind),
                    retry_initial_s=0.05, retry_max_s=0.2)
    writer = HistoryWriter(db, subscribers=[link.on_result])
    writer.start()
    link.start()
    batch = results(300)
    for r in batch[:100]:
        writer.submit(r)
    wait_until(lambda: link.sent >= 30, 20, "the first messages acknowledged")
    broker.stop()  # mid-run: some of the first 100 may be in flight
    for r in batch[100:200]:  # recorded while the broker is down: they wait in the outbox
        writer.submit(r)
    assert writer.flush(20)
    wait_until(lambda: MQTT_DOWN in alarms, 10, "mqtt_down")
    assert link.sent + link.pending() == 200  # every recorded result: acknowledged, or once in the outbox
    broker.start()
    for r in batch[200:]:
        writer.submit(r)
    wait_until(lambda: link.sent >= 300, 30, "all 300 acknowledged")
    writer.stop()
    assert link.stop(5) == 0
    assert alarms == [MQTT_DOWN, MQTT_RECOVERED]
    uids = first_seen(received())
    assert uids == [r.uid for r in batch]  # nothing lost; deduped by uid, the recording order
    assert len(received()) - len(batch) <= link.window  # duplicates: only what was in flight at the drop


def test_recheck_and_no_part_reach_the_mes_with_sizes_in_mm_and_the_match_quality(broker, db) -> None:
    from inspector.inspection import DecisionRule

    link = MqttLink(db, f"mqtt://127.0.0.1:{broker.port}/{TOPIC}")
    writer = HistoryWriter(db, subscribers=[link.on_result])
    writer.start()
    link.start()
    now = datetime.now(timezone.utc)
    rule = DecisionRule(0.5, 0.3, 20, recheck_threshold=0.4, mm_per_px=0.1)
    sent = [InspectionResult(now, "cam", 0, score=0.45, decision="RECHECK", threshold=0.5, rule=rule, defect_area_px=12,
                             match_quality=0.92),
            InspectionResult(now, "cam", 1, score=0.0, decision="NO_PART", threshold=0.5, rule=rule, match_quality=0.2),
            InspectionResult(now, "cam", 2, score=0.2, decision="PASS", threshold=0.5, defect_area_px=3)]
    for r in sent:
        writer.submit(r)
    wait_until(lambda: link.sent >= 3, 20, "three messages acknowledged")
    writer.stop()
    assert link.stop(5) == 0
    by_uid = {body["uid"]: body for body in received()}
    recheck, no_part, plain = (by_uid[r.uid] for r in sent)
    assert (recheck["decision"], recheck["defect_area_px"], recheck["match_quality"]) == ("RECHECK", 12, 0.92)
    assert recheck["defect_area_mm2"] == pytest.approx(0.12)
    assert (no_part["decision"], no_part["score"], no_part["defect_area_mm2"], no_part["match_quality"]) == (
        "NO_PART", None, None, 0.2)  # never scored: no 0.0 for a MES to average in
    assert (plain["defect_area_px"], plain["defect_area_mm2"], plain["match_quality"]) == (3, None, None)  # px only


def test_a_restarted_process_sends_what_the_outbox_kept(broker, db) -> None:
    broker.stop()  # the MES is away during the whole first run
    link = MqttLink(db, f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", retry_initial_s=0.05, retry_max_s=0.2)
    writer = HistoryWriter(db, subscribers=[link.on_result])
    writer.start()
    link.start()
    batch = results(50)
    for r in batch:
        writer.submit(r)
    writer.stop()
    assert link.stop(0.5) == 50  # none could go: all wait in the database
    db.outbox_message = None  # the process ends; the next one opens the same database

    broker.start()
    again = MqttLink(db, f"mqtt://127.0.0.1:{broker.port}/{TOPIC}")
    again.start()
    assert again.stop(10) == 0
    assert first_seen(received()) == [r.uid for r in batch]
    assert len(received()) == len(batch)  # one connection, no drop: no duplicates


def test_inspector_run_publishes_and_leaves_what_the_broker_missed_for_the_next_run(
    broker, tmp_path, request, tmp_path_factory, monkeypatch
) -> None:
    from cli.main import main
    from pipeline_support import trained_model

    model = trained_model(request.config, tmp_path_factory)
    frames = copy_images(good_images(3, skip=200), tmp_path / "frames")
    db_path = tmp_path / "history.db"
    staff = HistoryDB(f"sqlite:///{db_path}")
    staff.upgrade()
    staff.add_user("tina", "technician", "471108")
    staff.close()
    monkeypatch.setenv("INSPECTOR_PIN", "471108")
    argv = ["run", "--camera", f"folder://{frames}?fps=0", "--model", str(model), "--db", f"sqlite:///{db_path}",
            "--image-dir", str(tmp_path / "images"), "--backend", "eager", "--device", "cpu", "--user", "tina", "--threshold", "0.05",
            "--publish", f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?station=line-1"]

    def run() -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        assert status == 0, err.getvalue()
        return out.getvalue()

    broker.stop()
    monkeypatch.setattr("station.links.PUBLISH_DRAIN_S", 0.5)  # the broker is away: do not wait 3 s for it
    first = run()
    assert "published 0 results" in first and "3 wait in the outbox" in first
    broker.start()
    out = run()
    assert "published 6 results" in out and "0 wait in the outbox" in out
    with sqlite3.connect(db_path) as connection:
        uids = [uid for (uid,) in connection.execute("SELECT uid FROM inspections ORDER BY id")]
    assert len(uids) == 6 and first_seen(received()) == uids


def test_results_spilled_while_the_database_was_locked_reach_the_mes_when_it_is_back(broker, tmp_path) -> None:
    db_path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}", busy_timeout_ms=50)
    db.upgrade()
    link = MqttLink(db, f"mqtt://127.0.0.1:{broker.port}/{TOPIC}")
    writer = HistoryWriter(db, subscribers=[link.on_result], retry_initial_s=0.05, retry_max_s=0.1)
    writer.start()
    link.start()
    locker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock: the writer spills
    batch = results(20)
    try:
        for r in batch:
            writer.submit(r)
        assert writer.flush(20) and writer.stats.journal_pending == 20
        assert received() == []  # no inspection row yet, so no message
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: writer.stats.journal_pending == 0, 20, "the journal replayed")
    assert writer.stop()
    assert link.stop(10) == 0
    assert first_seen(received()) == [r.uid for r in batch] and len(received()) == len(batch)
    db.close()
