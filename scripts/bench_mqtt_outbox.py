#!/usr/bin/env python
"""Time to drain an N-message MQTT outbox after a broker outage (a benchmark that prints).

Each repeat: a fresh SQLite history; N results recorded through ``write_inspections`` with the MQTT
link's outbox hook set while no broker listens (the outage); then an amqtt broker starts on
127.0.0.1 in a process of its own (so it does not share this process's GIL), the link starts, and
the clock runs until every message was acknowledged and deleted from the outbox. Prints the median
and spread over the repeats, and the machine. The broker (pure-Python amqtt) is likely the
bottleneck; a production broker (Mosquitto, EMQX) drains faster.

    python scripts/bench_mqtt_outbox.py --messages 2000 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import socket
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from inspector.history import HistoryDB
from inspector.inspection import InspectionResult
from inspector.links.mqtt import MqttLink

TOPIC = "bench/results"


def _serve_broker(port: int) -> None:
    """The broker process: amqtt on 127.0.0.1:``port`` until terminated (quiet: the readiness
    probe's empty connection makes it log an error)."""
    from amqtt.broker import Broker

    logging.disable(logging.CRITICAL)

    async def serve() -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no broker on port {port} after {timeout_s:g} s")


def fill_outbox(db: HistoryDB, n: int, batch: int = 500) -> None:
    now = datetime.now(timezone.utc)
    records = [InspectionResult(now, "cam", i, score=0.1, decision="PASS", threshold=0.5, part_id=f"P{i}",
                                image_path=f"/data/images/{i:08d}.png") for i in range(n)]
    for start in range(0, n, batch):
        db.write_inspections(records[start:start + batch])


def drain_s(n: int, work: Path) -> float:
    """Seconds from the broker's return until the outbox of ``n`` messages is empty."""
    db = HistoryDB(f"sqlite:///{work / f'history-{n}-{time.monotonic_ns()}.db'}")
    db.upgrade()
    port = free_port()
    link = MqttLink(db, f"mqtt://127.0.0.1:{port}/{TOPIC}?station=bench")
    fill_outbox(db, n)
    assert link.pending() == n
    broker = multiprocessing.Process(target=_serve_broker, args=(port,), daemon=True)
    broker.start()
    try:
        wait_listening(port)
        start = time.perf_counter()
        link.start()
        left = link.stop(timeout=600.0)  # returns once everything is acknowledged
        elapsed = time.perf_counter() - start
    finally:
        broker.terminate()
        broker.join(10)
        db.close()
    if left:
        raise RuntimeError(f"{left} of {n} messages still in the outbox")
    return elapsed


def machine_note() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {platform.platform()}, {platform.processor() or '?'}, {os.cpu_count()} logical CPUs, "
            f"load average {load}; python {platform.python_version()}; broker amqtt on 127.0.0.1 (own process)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[2000], help="outbox sizes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine_note(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for n in args.messages:
            times = [drain_s(n, Path(folder)) for _ in range(args.repeats)]
            median = statistics.median(times)
            print(f"drain {n} messages: median {median:.2f} s ({n / median:.0f} msg/s), "
                  f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} repeats", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
