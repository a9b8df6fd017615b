"""One station process for the restart tests (``tests/test_link_restarts.py``): a plant link over a
history database file, ``-n`` results recorded at a steady pace, then one JSON line on stdout, and
the link left running until the test kills the process (SIGKILL: no stop, no drain, no goodbye)
or, with ``--drain``, stopped with time to deliver everything and the process ended.

    python tests/link_child.py mqtt  --db URL --uri mqtt://HOST:PORT/TOPIC -n 30 [--start 0] [--drain]
    python tests/link_child.py plant --db URL --uri postgresql://...?station=NAME -n 30 [--drain]
    python tests/link_child.py plc   --uri modbus://HOST:PORT -n 3 [--start 100] [--drain]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.inspection import InspectionResult  # noqa: E402

FAST = dict(retry_initial_s=0.05, retry_max_s=0.2)


def result(i: int) -> InspectionResult:
    return InspectionResult(uid=uuid.uuid4().hex, time=datetime.now(timezone.utc), camera_id="cam0", frame_id=i,
                            part_id=str(i), score=(i % 9) / 10, decision="FAIL" if i % 9 == 8 else "PASS",
                            threshold=0.75)


def mqtt(args: argparse.Namespace) -> dict:
    from inspector.history import HistoryDB, HistoryWriter
    from inspector.links.mqtt import MqttLink

    db = HistoryDB(args.db)
    db.upgrade()
    link = MqttLink(db, args.uri, **FAST)
    writer = HistoryWriter(db, subscribers=[link.on_result])
    writer.start()
    link.start()
    for i in range(args.start, args.start + args.n):
        writer.submit(result(i))
        time.sleep(args.interval)
    assert writer.flush(30), "the writer did not record everything"
    if args.drain:
        writer.stop()
        return {"left": link.stop(30), "sent": link.sent}
    return {"recorded": args.n, "pending": link.pending()}


def plant(args: argparse.Namespace) -> dict:
    from inspector.history import HistoryDB
    from inspector.links.plant import PlantLink

    db = HistoryDB(args.db)
    db.upgrade()
    link = PlantLink(db, args.uri, batch=5, **FAST)
    link.start()
    for i in range(args.start, args.start + args.n):
        for stored in db.write_inspections([result(i)]):
            link.on_result(stored)
        time.sleep(args.interval)
    if args.drain:
        return {"left": link.stop(60), "forwarded": link.forwarded}
    return {"recorded": args.n, "pending": link.pending()}


def plc(args: argparse.Namespace) -> dict:
    from inspector.links.modbus import ModbusLink

    link = ModbusLink(args.uri, poll_s=0.005, handshake_poll_s=0.001, timeout_s=0.5, **FAST)
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected:
        assert time.monotonic() < deadline, "the PLC link did not connect"
        time.sleep(0.01)
    for i in range(args.start, args.start + args.n):
        link.on_decision(result(i))
    if args.drain:
        return {"left": link.stop(10), "acknowledged": link.acknowledged}
    return {"decided": args.n}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("link", choices=("mqtt", "plant", "plc"))
    p.add_argument("--db")
    p.add_argument("--uri", required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--drain", action="store_true")
    args = p.parse_args()
    figures = {"mqtt": mqtt, "plant": plant, "plc": plc}[args.link](args)
    print(json.dumps(figures), flush=True)
    if args.drain:
        return 0 if figures["left"] == 0 else 1
    while True:  # the link keeps working until the test kills this process
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
