#!/usr/bin/env python
"""Time from a result reaching the Modbus PLC link to its strobe in the PLC's memory (a benchmark that prints).

A pymodbus server on 127.0.0.1 in a process of its own (so it does not share this process's GIL)
plays the PLC: its memory notes the time each strobe rises, and acknowledges at once, so the
figures are the station's and the loopback's. A real PLC adds its scan time to the acknowledge,
which delays the next part only when parts come faster than the handshake. The link gets N
results at ``--rate`` per second through ``on_decision``, as the line's inspection thread hands
them over the moment a part is decided; the latency of a part is the strobe's time minus the
``on_decision`` call's, both on the system-wide
monotonic clock. A part takes three requests before its strobe is up (poll the PLC, write the
result, raise the strobe), so the round trip of one bare request to the same server is printed
too, as the floor. The issue's target: OK/NG written within 5 ms of the decision; ``on_decision``
is called right after the decision, before the record is stored, so these are that figure.

    python scripts/bench_plc_latency.py --results 2000 --rate 100 [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inspector.devices import cpu_description
from inspector.inspection import InspectionResult
from inspector.links.modbus import ModbusLink, load_register_map


def _serve_plc(port: int, conn: Any) -> None:
    """The PLC process: serves 127.0.0.1:``port`` until told "done" on ``conn``, then sends back
    ``[(part id, strobe time)]``."""
    from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
    from pymodbus.server import ModbusTcpServer

    regmap = load_register_map()
    part, strobe, ack = regmap.station["part_id"].address, regmap.station["strobe"].address, regmap.plc["ack"].address
    seen: list[tuple[int, float]] = []

    class Memory(ModbusSlaveContext):
        def setValues(self, fc_as_hex, address, values):  # noqa: N802 (pymodbus's name)
            done = super().setValues(fc_as_hex, address, values)
            if address <= strobe < address + len(values):
                up = super().getValues(3, strobe, 1)[0]
                if up:
                    hi, lo = super().getValues(3, part, 2)
                    seen.append((hi << 16 | lo, time.monotonic()))
                super().setValues(16, ack, [up])  # the PLC's acknowledge, at once
            return done

    async def serve() -> None:
        memory = Memory(hr=ModbusSequentialDataBlock(0, [0] * 100))
        server = ModbusTcpServer(ModbusServerContext(slaves=memory, single=True), address=("127.0.0.1", port))
        task = asyncio.ensure_future(server.serve_forever())
        while server.transport is None and not task.done():
            await asyncio.sleep(0.01)
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(seen)
        await server.shutdown()

    asyncio.run(serve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def round_trips_ms(port: int, n: int = 300) -> list[float]:
    """``n`` bare reads of the PLC's inputs by a client of its own, 3 ms apart."""
    from pymodbus.client import ModbusTcpClient

    inputs = load_register_map().plc["trigger"].address  # the default map's PLC block: 5 registers
    client = ModbusTcpClient("127.0.0.1", port=port)
    client.connect()
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            client.read_holding_registers(inputs, count=5, slave=1)
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.003)
    finally:
        client.close()
    return times


def measure(n: int, rate: float) -> dict[str, Any]:
    """Latencies (ms) of ``n`` results pushed at ``rate`` per second, with what went wrong, and
    the round trips of bare requests."""
    port = free_port()
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks inherited
    here, there = spawn.Pipe()
    plc = spawn.Process(target=_serve_plc, args=(port, there), daemon=True)
    plc.start()
    try:
        if not here.poll(30) or here.recv() != "ready":
            raise RuntimeError("the PLC server did not start")
        bare = round_trips_ms(port)
        alarms: list[str] = []
        link = ModbusLink(f"modbus://127.0.0.1:{port}?unit=1", on_alarm=lambda kind, message: alarms.append(kind))
        now = datetime.now(timezone.utc)
        results = [InspectionResult(now, "bench", i, score=0.2, decision="PASS" if i % 10 else "FAIL", threshold=0.5,
                                    part_id=str(i)) for i in range(1, n + 1)]
        link.start()
        deadline = time.monotonic() + 10
        while not link.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        handed: dict[int, float] = {}
        next_at = time.monotonic()
        for i, result in enumerate(results, 1):
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            handed[i] = time.monotonic()
            link.on_decision(result)
            next_at += 1.0 / rate
        left = link.stop(10.0)
        here.send("done")
        seen = here.recv()
    finally:
        plc.join(10)
        if plc.is_alive():
            plc.terminate()
    first: dict[int, float] = {}
    for part_id, at in seen:
        first.setdefault(part_id, at)
    latencies = [(first[i] - handed[i]) * 1000 for i in handed if i in first]
    return {"latencies_ms": latencies, "missing": n - len(latencies), "not_acknowledged": left, "alarms": alarms,
            "round_trips_ms": bare}


def cpu_note() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {platform.platform()}, {cpu_description()}, load average {load} at start; "
            f"python {platform.python_version()}; PLC: pymodbus server on 127.0.0.1 (own process), acknowledging at once")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=2000, help="results pushed through the link")
    parser.add_argument("--rate", type=float, default=100.0, help="results per second")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    if args.results < 1 or not args.rate > 0:
        parser.error("--results must be >= 1 and --rate positive")
    import pymodbus

    machine = cpu_note()
    print(machine, flush=True)
    run = measure(args.results, args.rate)
    ms = run["latencies_ms"]
    if not ms:
        print(f"error: no strobe reached the PLC; alarms {run['alarms']}")
        return 1
    figures = {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 99), "max_ms": max(ms),
               "within_5ms": sum(1 for v in ms if v <= 5.0) / len(ms)}
    bare = run["round_trips_ms"]
    floor = {"round_trip_p50_ms": statistics.median(bare), "round_trip_p99_ms": percentile(bare, 99)}
    print(f"one bare request to the same PLC ({len(bare)}): p50 {floor['round_trip_p50_ms']:.2f} ms, "
          f"p99 {floor['round_trip_p99_ms']:.2f} ms", flush=True)
    print(f"decision -> strobe in the PLC, {len(ms)} results at {args.rate:g}/s (pymodbus {pymodbus.__version__}): "
          f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.2f} ms; "
          f"{figures['within_5ms']:.1%} within 5 ms", flush=True)
    if run["missing"] or run["not_acknowledged"] or run["alarms"]:
        print(f"problems: {run['missing']} never strobed, {run['not_acknowledged']} not acknowledged, "
              f"alarms {run['alarms']}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "benchmark": "plc_latency", "machine": machine, "pymodbus": pymodbus.__version__,
            "results": args.results, "rate_per_s": args.rate, **figures, **floor, "missing": run["missing"],
            "not_acknowledged": run["not_acknowledged"], "alarms": run["alarms"],
        }, indent=2) + "\n")
    return 0 if not (run["missing"] or run["not_acknowledged"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
