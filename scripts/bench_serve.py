#!/usr/bin/env python
"""List and part pages of ``inspector serve`` under 20 concurrent reviewers, over N inspections in
PostgreSQL (a benchmark that prints, and writes JSON with ``--json``).

A throw-away PostgreSQL server starts on 127.0.0.1 (``tests/pg_support.py``; fsync off while it is
filled, which changes nothing for reads). N inspections of ten stations over 30 days go in through
``HistoryDB.write_inspections`` (as the plant forwarder writes them, sealed), in batches; a few
hundred of them point at real stored frames and 16-bit maps (``tests/web_support.py``), the rest
at files that are not here (the plant database holds paths, not images). ``inspector serve`` then
runs as its own process, and C clients (threads of this process, each signed in as the quality
engineer with its own session) ask, for ``--seconds`` each:

* the list: newest first with one of the filters a reviewer uses (none, a station, rejects, a
  station's rejects, a product, a day, a score range) and, one time in three, a page deep in the
  list by key;
* a part: the page of a random inspection with an image, then its frame and heat layer (the three
  requests one after another, as one figure; the page alone too).

It prints p50/p95/max of each, requests per second, the CPU time of the server, PostgreSQL and
the load generator, the database's size and what counting all its rows takes.

    python scripts/bench_serve.py -n 100000 --clients 20 --seconds 30 --json docs/evidence/web_serve_100k.json
    python scripts/bench_serve.py -n 1000000 --fill sql --json docs/evidence/web_serve_1m.json

``--fill sql`` makes the rows in PostgreSQL (INSERT ... SELECT over generate_series, unsealed):
a million in about a minute, where the writer takes about a quarter of an hour.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlencode


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pg_support import PostgresServer, free_port  # noqa: E402
from web_support import QUALITY, QUALITY_PIN, T0, make_history  # noqa: E402

from inspector.devices import cpu_description  # noqa: E402
from inspector.history import HistoryDB, InspectionFilter  # noqa: E402
from inspector.inspection import DecisionRule, InspectionResult  # noqa: E402

STATIONS = tuple(f"line-{i}" for i in range(1, 11))
SPAN = timedelta(days=30)


def _seeded(url: str, images: Path) -> tuple[list, list[int]]:
    """Users, products and a few real rows with images (make_history); the rows whose images lie
    in ``images`` are the templates the bulk rows copy, with the product ids."""
    make_history(url, images, per_station=30)
    seed = HistoryDB(url)
    templates = [r for r in seed.query_inspections(InspectionFilter(), 1000)
                 if r.image_exists and r.heatmap_exists and r.image_path.startswith(str(images))]
    products = [pid for _, pid in seed.products()]
    seed.close()
    return templates, products


def fill(url: str, images: Path, n: int, batch: int) -> dict:
    """Users, products and image rows from make_history, then ``n`` rows over 30 days."""
    started = time.perf_counter()
    templates, products = _seeded(url, images)
    rule = DecisionRule(0.5, 0.4, 12)
    rng = random.Random(1)
    step = SPAN / n
    writers = {name: HistoryDB(url, station=name) for name in STATIONS}
    written = 0
    while written < n:
        size = min(batch, n - written)
        by_station: dict[str, list[InspectionResult]] = {}
        for i in range(written, written + size):
            station = STATIONS[i % len(STATIONS)]
            fail = rng.random() < 0.08
            kept = fail and rng.random() < 0.05  # a few rows with images here, the rest only on the stations' disks
            t = templates[i % len(templates)] if kept else None
            by_station.setdefault(station, []).append(InspectionResult(
                T0 - SPAN + step * i, "cam0", i, (0.55 + rng.random()) if fail else rng.random() * 0.45,
                "FAIL" if fail else "PASS", 0.5, None, products[i % len(products)], part_id=f"P{i:08d}",
                uid=uuid.uuid4().hex, rule=rule, latency_total_ms=20.0,
                image_path=t.image_path if t else f"/var/lib/inspector/images/{station}/{i}.png",
                heatmap_path=t.heatmap_path if t else f"/var/lib/inspector/images/{station}/{i}_heatmap.png",
                heatmap_low=t.heatmap_low if t else 0.0, heatmap_high=t.heatmap_high if t else 1.0))
        for station, records in by_station.items():
            writers[station].write_inspections(records)
        written += size
        if written % (10 * batch) == 0 or written == n:
            print(f"{written}/{n} inspections written ({time.perf_counter() - started:.0f} s)", flush=True)
    for db in writers.values():
        db.close()
    return {"fill_s": round(time.perf_counter() - started, 1)}


FILL_SQL = """
INSERT INTO inspections (station, uid, time, camera_id, frame_id, part_id, score, decision, threshold,
                         product_id, latency_total_ms, image_path, heatmap_path, heatmap_low, heatmap_high,
                         label, pixel_threshold, min_defect_area_px, rule_recorded)
SELECT 'line-' || (i %% 10 + 1), md5('bench' || i), %(start)s + i * %(step)s, 'cam0', i, 'P' || lpad(i::text, 8, '0'),
       CASE WHEN kept OR fail THEN 0.55 + random() ELSE random() * 0.45 END,
       CASE WHEN kept OR fail THEN 'FAIL' ELSE 'PASS' END, 0.5,
       (%(products)s::int[])[1 + i %% cardinality(%(products)s::int[])], 20.0,
       CASE WHEN kept THEN (%(images)s::text[])[1 + (i / 250) %% cardinality(%(images)s::text[])]
            ELSE '/var/lib/inspector/images/line-' || (i %% 10 + 1) || '/' || i || '.png' END,
       CASE WHEN kept THEN (%(maps)s::text[])[1 + (i / 250) %% cardinality(%(maps)s::text[])]
            ELSE '/var/lib/inspector/images/line-' || (i %% 10 + 1) || '/' || i || '_heatmap.png' END,
       CASE WHEN kept THEN (%(lows)s::float8[])[1 + (i / 250) %% cardinality(%(lows)s::float8[])] ELSE 0.0 END,
       CASE WHEN kept THEN (%(highs)s::float8[])[1 + (i / 250) %% cardinality(%(highs)s::float8[])] ELSE 1.0 END,
       'none', 0.4, 12, true
FROM (SELECT i, i %% 250 = 0 AS kept, random() < 0.08 AS fail FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) AS rows
"""


def fill_sql(plant: str, url: str, images: Path, n: int, batch: int) -> dict:
    """As :func:`fill`, the ``n`` rows made by PostgreSQL itself (INSERT ... SELECT over
    generate_series: a million in a minute or two rather than a quarter of an hour through the
    writer). The pages read them alike; they carry no seals, which the pages do not read."""
    import psycopg

    started = time.perf_counter()
    templates, products = _seeded(url, images)
    values = {"start": T0 - SPAN, "step": SPAN / n, "products": products,
              "images": [t.image_path for t in templates], "maps": [t.heatmap_path for t in templates],
              "lows": [t.heatmap_low for t in templates], "highs": [t.heatmap_high for t in templates]}
    with psycopg.connect(plant, autocommit=True) as c:
        c.execute("SELECT setseed(0.5)")
        for first in range(0, n, batch):
            c.execute(FILL_SQL, {**values, "first": first, "last": min(n, first + batch) - 1})
            if (first + batch) % (10 * batch) == 0 or first + batch >= n:
                print(f"{min(n, first + batch)}/{n} inspections made ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"fill_s": round(time.perf_counter() - started, 1), "fill": "sql"}


class Client(threading.Thread):
    """One reviewer: a keep-alive connection of its own (``http.client``: the load generator shares
    the two cores with the server, so it should cost little), signed in with its own session."""

    def __init__(self, base: str, seconds: float, ids: list[int], products: list[str], seed: int) -> None:
        super().__init__(daemon=True)
        self.base, self.seconds, self.ids, self.products = base, seconds, ids, products
        self.rng = random.Random(seed)
        self.list_ms: list[float] = []
        self.part_ms: list[float] = []
        self.part_page_ms: list[float] = []
        self.errors: list[str] = []
        host, port = base.removeprefix("http://").split(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=60)
        self.cookie = ""
        status, page = self.get("/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.decode()).group(1)
        form = urlencode({"csrf_token": token, "name": QUALITY, "pin": QUALITY_PIN})
        status, _ = self.send("POST", "/sign-in", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 303:
            raise RuntimeError(f"sign-in failed: {status}")

    def send(self, method: str, path: str, body: str | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        headers = {**(headers or {}), **({"Cookie": self.cookie} if self.cookie else {})}
        self.http.request(method, path, body=body, headers=headers)
        response = self.http.getresponse()
        data = response.read()
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data

    def get(self, path: str) -> tuple[int, bytes]:
        return self.send("GET", path)

    def list_query(self) -> str:
        day = (T0 - timedelta(days=self.rng.randrange(1, 30))).date().isoformat()
        station = self.rng.choice(STATIONS)
        query = self.rng.choice([
            "", f"station={station}", "decision=FAIL", f"station={station}&decision=FAIL",
            f"product={self.rng.choice(self.products)}", f"since={day}&until={day}T23:59:59",
            "min_score=0.7&max_score=0.9",
        ])
        if self.rng.random() < 1 / 3:  # deep in the list, by key
            deep = T0 - SPAN * self.rng.random()
            query += ("&" if query else "") + "before=" + quote(f"{deep.isoformat()}~999999999")
        return query

    def timed(self, path: str) -> float:
        started = time.perf_counter()
        status, _ = self.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            self.errors.append(f"{status} {path}")
        return elapsed

    def run(self) -> None:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            if self.rng.random() < 0.5:
                self.list_ms.append(self.timed(f"/inspections?{self.list_query()}"))
            else:
                part = self.rng.choice(self.ids)
                page = self.timed(f"/inspections/{part}")
                pictures = sum(self.timed(f"/inspections/{part}/{name}.png") for name in ("frame", "heat"))
                self.part_page_ms.append(page)
                self.part_ms.append(page + pictures)


def figures(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1),
            "p95_ms": round(values[min(len(values) - 1, int(0.95 * len(values)))], 1), "max_ms": round(values[-1], 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=100_000, help="inspections in the plant database")
    p.add_argument("--clients", type=int, default=20, help="concurrent reviewers")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the clients ask")
    p.add_argument("--threads", type=int, default=8, help="the server's threads (inspector serve --threads)")
    p.add_argument("--batch", type=int, default=5000, help="inspections per write while filling")
    p.add_argument("--fill", choices=("writer", "sql"), default="writer",
                   help="writer: through HistoryDB.write_inspections, sealed, as the forwarder writes (default); "
                   "sql: made by PostgreSQL (generate_series), unsealed, for a million rows in minutes")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # through the finally below: the server and the folder go

    signal.signal(signal.SIGTERM, interrupted)
    server = PostgresServer(durable=False)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    serve = None
    try:
        server.start()
        server.create_database("plant")
        url = server.url("plant")
        result: dict = {"inspections": args.n, "clients": args.clients, "seconds": args.seconds,
                        "server_threads": args.threads, "cpu": cpu_description(), "cores": _cores(),
                        "python": platform.python_version()}
        if args.fill == "sql":
            result.update(fill_sql(server.url("plant"), url, work / "images", args.n, max(args.batch, 50_000)))
        else:
            result.update(fill(url, work / "images", args.n, args.batch))
        import psycopg

        with psycopg.connect(server.url("plant"), autocommit=True) as c:
            c.execute("ANALYZE")
            result["database_mb"] = round(c.execute("SELECT pg_database_size('plant')").fetchone()[0] / 2**20, 1)
            started = time.perf_counter()
            c.execute("SELECT count(*) FROM inspections").fetchone()
            result["count_all_ms"] = round((time.perf_counter() - started) * 1000, 1)
        print("analyzed", flush=True)
        db = HistoryDB(url)
        ids = [r.id for r in db.query_inspections(InspectionFilter(decision="FAIL"), 10_000)
               if r.image_exists and r.image_path.startswith(str(work / "images"))]
        products = [str(pid) for _, pid in db.products()]
        result["rows"] = db.count_inspections()
        db.close()
        port = free_port()
        serve = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--db", url, "--port", str(port), "--images",
                                  str(work / "images"), "--threads", str(args.threads)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = serve.stdout.readline()
        if "review of" not in line:
            raise RuntimeError(f"inspector serve did not start: {line}")
        # Read what it says from here on, or a full pipe would stop it.
        threading.Thread(target=lambda: [None for _ in serve.stdout], daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        print(f"serving at {base}; {len(ids)} parts with images to open; signing {args.clients} reviewers in", flush=True)
        clients = [Client(base, args.seconds, ids, products, seed) for seed in range(args.clients)]
        print(f"{args.clients} reviewers asking for {args.seconds:g} s", flush=True)
        cpu_before = _cpu_s(serve.pid), _postgres_cpu_s(), _own_cpu_s(), _machine_cpu_s()
        started = time.perf_counter()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        wall = time.perf_counter() - started
        result["cpu_s"] = {"inspector_serve": round(_cpu_s(serve.pid) - cpu_before[0], 1),
                           "postgresql": round(_postgres_cpu_s() - cpu_before[1], 1),
                           "load_generator": round(_own_cpu_s() - cpu_before[2], 1)}
        # The machine is shared: what everything else took of its cores meanwhile
        result["cpu_s"]["everything_else"] = round(_machine_cpu_s() - cpu_before[3] - sum(result["cpu_s"].values()), 1)
        result["wall_s"] = round(wall, 1)
        result["list"] = figures([v for c in clients for v in c.list_ms])
        result["part_page"] = figures([v for c in clients for v in c.part_page_ms])
        result["part_with_images"] = figures([v for c in clients for v in c.part_ms])
        requests_done = sum(len(c.list_ms) + 3 * len(c.part_ms) for c in clients)
        result["requests_per_s"] = round(requests_done / wall, 1)
        result["errors"] = sorted({e for c in clients for e in c.errors})[:10]
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if not result["errors"] else 1
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(20)
        server.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _machine_cpu_s() -> float:
    """CPU seconds every process of the machine has used (Linux /proc/stat: user, nice, system, irq, softirq)."""
    import os

    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process now running (the benchmark's server is the only one)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if "postgres" in stat.read_text().split(" ", 2)[1]:
                total += _cpu_s(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
