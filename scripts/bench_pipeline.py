#!/usr/bin/env python
"""Figures of the inspection pipeline (a benchmark that prints, not a test).

1. Overhead: the engine's predict() alone on a list of frames, against the whole line as
   ``inspector run`` builds it (``inspector.line.build_line``: folder camera -> queue -> engine ->
   decision -> history writer with image store -> subscriber) on the same frames; time per frame in steady state, median and spread over several alternating runs,
   and the ratio. Target: <= 5 % on a CPU.
2. Sustained rate with pylon's emulated Basler camera: triggered mode paced by backpressure
   (a software trigger whenever the queue has room: every frame inspected) and live mode with
   the camera free-running at its own rate (drops counted).
3. History insert rate through the writer (``benchmark_inserts``).
4. Optionally (``--long N``) an N-frame triggered run on the emulated camera that checks no
   decision was lost (inspections in the database == frames acquired). On a 2-core CPU 10,000
   frames take about an hour; run it in the background and watch the progress lines:

       nohup python scripts/bench_pipeline.py --model M --long 10000 --skip-overhead \\
           --skip-basler --inserts 0 > bench_10k.log 2>&1 &

Any model file works (timing does not depend on how well it was trained).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivers import open_camera  # noqa: E402
from inspector import ENGINE_BACKENDS  # noqa: E402
from inspector.engine import Engine  # noqa: E402
from inspector.history import HistoryDB, benchmark_inserts  # noqa: E402
from inspector.line import DecisionRule, Line, build_line  # noqa: E402
from inspector.recipes import LoadedRecipe  # noqa: E402

DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "magnetic_tile" / "train" / "good"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model file (.safetensors)")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of real frames to replay")
    p.add_argument("--frames", type=int, default=12, help="frames per overhead run")
    p.add_argument("--runs", type=int, default=5, help="overhead runs of each kind (alternating)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize replayed frames / emulator ROI to this square size (default: frames as they are, "
                   "emulator 256)")
    p.add_argument("--basler-seconds", type=float, default=20.0, help="length of each emulated-camera run")
    p.add_argument("--inserts", type=int, default=5000, help="records for the insert benchmark (0: skip)")
    p.add_argument("--long", type=int, default=0, help="frames of the long zero-loss run (0: skip)")
    p.add_argument("--progress-s", type=float, default=30.0, help="seconds between progress lines of the long run")
    p.add_argument("--pass-sample-rate", type=float, default=0.01)
    p.add_argument("--queue-size", type=int, default=None, help="default: 8 triggered, 1 live")
    p.add_argument("--in-flight", type=int, default=2,
                   help="triggered runs: software triggers fired ahead of the engine (2: one scored, one waiting)")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-basler", action="store_true")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--backend", default="auto", choices=ENGINE_BACKENDS)
    p.add_argument("--keep", type=Path, default=None, help="folder to keep databases and images in (default: a temporary one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)  # alarms such as queue_full are expected here
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    engine = Engine(args.model, device=args.device, backend=args.backend)
    print(machine_note(engine), flush=True)
    frames = load_frames(args.images, max(args.frames, 12), args.image_size)
    threshold = float(np.percentile([engine.predict(f).score for f in frames[:12]], 90))
    print(f"threshold {threshold:.4g} (90th percentile of the first frames' scores: ~10 % FAIL, images kept)\n", flush=True)
    status = 0
    try:
        if not args.skip_overhead:
            overhead(engine, frames[: args.frames], threshold, args, work)
        if not args.skip_basler:
            basler_rates(engine, threshold, args, work)
        if args.inserts:
            rate = benchmark_inserts(f"sqlite:///{work / 'inserts.db'}", args.inserts)
            print(f"history inserts (SQLite, WAL, synchronous=FULL, batched by the writer): "
                  f"{rate:,.0f} records/s over {args.inserts} records\n", flush=True)
        if args.long:
            status = long_run(engine, threshold, args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return status


def machine_note(engine: Engine) -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    info = engine.info
    return (f"machine: {platform.platform()}, {cpu}, {os.cpu_count()} logical CPUs, load average {load} at start "
            f"(a CPU shared with other work makes every figure noisy)\n"
            f"engine: {info['architecture']} on {info['device']}, backend {info['backend']}, {info['precision']}, "
            f"threads {info['threads']}; python {platform.python_version()}")


def load_frames(folder: Path, n: int, size: int | None) -> list[np.ndarray]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png", ".bmp"))[:n]
    if len(paths) < n:
        sys.exit(f"error: {folder} holds {len(paths)} images, {n} needed")
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths]
    if size:
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    return frames


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} ms (min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"


# -- 1. overhead ------------------------------------------------------------------------------------


def overhead(engine: Engine, frames: list[np.ndarray], threshold: float, args: argparse.Namespace, work: Path) -> None:
    folder = work / "frames"
    folder.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame)  # lossless: the camera replays the same pixels
    alone, piped, model_in_pipeline = [], [], []
    for run in range(args.runs):
        alone.append(engine_alone_ms(engine, frames))
        per_frame, model_p50 = pipeline_ms(engine, folder, threshold, args, work / f"overhead_{run}")
        piped.append(per_frame)
        model_in_pipeline.append(model_p50)
        print(f"  run {run + 1}: engine alone {alone[-1]:.1f} ms/frame, pipeline {piped[-1]:.1f} ms/frame", flush=True)
    # Each pipeline run is paired with the engine run just before it: load from other work drifts.
    per_run = [p / a - 1 for p, a in zip(piped, alone)]
    ratio = statistics.median(per_run)
    print(f"overhead, {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]} per run, steady state:\n"
          f"  engine.predict alone: {spread(alone)}\n"
          f"  full pipeline:        {spread(piped)}\n"
          f"  pipeline overhead (median of paired runs): {ratio:+.1%} of the model's time (per run: "
          f"{', '.join(f'{r:+.1%}' for r in per_run)}); target <= 5 %\n"
          f"  model p50 inside the pipeline: {spread(model_in_pipeline)} (the other threads share the CPU)\n"
          f"  per frame outside the model, same runs (pipeline - its own model p50): "
          f"{spread([p - m for p, m in zip(piped, model_in_pipeline)])}\n",
          flush=True)


def engine_alone_ms(engine: Engine, frames: list[np.ndarray]) -> float:
    """Time per frame from the first result to the last, as measured for the pipeline.

    Run on a thread of its own like the pipeline's engine worker: on this machine the same
    predict() measured up to 1.5x slower on the main thread than on another thread, which would
    flatter the pipeline."""
    stamps: list[float] = []

    def score_all() -> None:
        for frame in frames:
            engine.predict(frame)
            stamps.append(time.perf_counter())

    thread = threading.Thread(target=score_all, name="engine-alone")
    thread.start()
    thread.join()
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000


def pipeline_ms(engine: Engine, folder: Path, threshold: float, args: argparse.Namespace, work: Path) -> tuple[float, float]:
    """Time per frame between the first and the last durable result of a triggered run."""
    work.mkdir(parents=True)
    db = HistoryDB(f"sqlite:///{work / 'history.db'}")
    db.upgrade()
    stamps: list[float] = []
    line = bench_line(open_camera(f"folder://{folder}?fps=0"), engine, threshold, db, work, args,
                      links=[Stamps(stamps)])
    line.start()
    line.wait()
    line.stop()
    db.close()
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000, line.metrics().model_p50_ms


class Stamps:
    """A line link noting when each durable result arrives."""

    def __init__(self, stamps: list[float]) -> None:
        self.stamps = stamps

    def on_result(self, result) -> None:
        self.stamps.append(time.perf_counter())


def bench_line(camera, engine: Engine, threshold: float, db: HistoryDB, work: Path, args: argparse.Namespace,
               **options) -> Line:
    """The line as ``inspector run`` builds it, deciding by ``threshold``, images under ``work``;
    no drift monitor (no calibration here)."""
    return build_line(camera, LoadedRecipe(engine, DecisionRule(threshold)), db, image_dir=work / "images",
                      pass_sample_rate=args.pass_sample_rate, queue_size=args.queue_size, **options)


# -- 2. emulated Basler ---------------------------------------------------------------------------


def emulated_camera(args: argparse.Namespace, work: Path):
    with warnings.catch_warnings():  # pypylon's SWIG bindings warn on import under Python 3.11+
        warnings.filterwarnings("ignore", "builtin type .* has no __module__", DeprecationWarning)
        images = work / "emulator_images"
        if not images.is_dir():
            images.mkdir(parents=True)
            for i, frame in enumerate(load_frames(args.images, 12, None)):
                cv2.imwrite(str(images / f"{i:03d}.png"), frame)
        camera = open_camera(f"basler://emulated?images={images}")
        camera.open()
    size = args.image_size or 256
    camera.configure(roi=(0, 0, size, size), pixel_format="Mono8")
    return camera


def paced_triggers(line: Line, stop: threading.Event, in_flight: int, limit: int | None = None) -> threading.Thread:
    """Fire a software trigger whenever fewer than ``in_flight`` frames are fired and not yet
    inspected: the engine never waits for a frame, and a frame waits for the engine at most
    ``in_flight - 1`` model times (latency as on a line whose rate the inspection keeps up with).
    At most ``limit`` triggers."""

    def fire() -> None:
        fired = 0
        while not stop.is_set() and (limit is None or fired < limit):
            if fired - line.metrics().inspected < in_flight:
                try:
                    line.camera.trigger()
                    fired += 1
                except Exception as exc:  # not ready for a trigger yet: try again shortly
                    print(f"  trigger refused: {exc}", flush=True)
                    time.sleep(0.1)
            else:
                time.sleep(0.002)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def basler_rates(engine: Engine, threshold: float, args: argparse.Namespace, work: Path) -> None:
    try:
        import pypylon  # noqa: F401
    except ImportError:
        print("emulated Basler: skipped (pypylon is not installed)\n")
        return
    for mode in ("triggered", "live"):
        run_dir = work / f"basler_{mode}"
        run_dir.mkdir()
        camera = emulated_camera(args, work)
        db = HistoryDB(f"sqlite:///{run_dir / 'history.db'}")
        db.upgrade()
        trigger = "software" if mode == "triggered" else "free_run"
        line = bench_line(camera, engine, threshold, db, run_dir, args, mode=mode, trigger=trigger)
        stop = threading.Event()
        line.start()
        if mode == "triggered":
            paced_triggers(line, stop, args.in_flight)
        time.sleep(args.basler_seconds)
        stop.set()
        m_running = line.metrics()
        line.stop()
        camera.close()
        m = line.metrics()
        stored = count_rows(run_dir / "history.db")
        print(f"emulated Basler, {mode} mode, {args.image_size or 256}x{args.image_size or 256} Mono8, "
              f"{args.basler_seconds:g} s:\n"
              f"  rate {m_running.rate_fps:.2f} frames/s; latency p50 {m.latency_p50_ms:.0f} ms, p99 {m.latency_p99_ms:.0f} ms "
              f"(camera -> decision); model p50 {m.model_p50_ms:.0f} ms\n"
              f"  acquired {m.acquired}, inspected {m.inspected}, recorded {m.recorded}, in database {stored}, "
              f"dropped {m.dropped}, camera lost {m.camera_lost}, skipped {m.camera_skipped}\n", flush=True)
        db.close()


def count_rows(db_path: Path) -> int:
    with sqlite3.connect(db_path) as connection:
        return connection.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]


# -- 4. long run ----------------------------------------------------------------------------------


def long_run(engine: Engine, threshold: float, args: argparse.Namespace, work: Path) -> int:
    run_dir = work / "long"
    run_dir.mkdir(exist_ok=True)
    db_path = run_dir / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    before = count_rows(db_path)
    camera = emulated_camera(args, work)
    alarms: list[str] = []
    line = bench_line(camera, engine, threshold, db, run_dir, args, quota_bytes=2_000_000_000,
                      trigger="software", max_frames=args.long)
    line.pipeline.on_alarm(lambda alarm: alarms.append(alarm.kind))
    stop = threading.Event()
    started = time.monotonic()
    print(f"long run: {args.long} frames, triggered, emulated Basler; database {db_path}", flush=True)
    line.start()
    paced_triggers(line, stop, args.in_flight, limit=args.long)
    try:
        while not line.wait(args.progress_s):
            m = line.metrics()
            elapsed = time.monotonic() - started
            eta = (args.long - m.acquired) / m.rate_fps if m.rate_fps > 0 else float("nan")
            print(f"  {elapsed / 60:6.1f} min: acquired {m.acquired}/{args.long}, recorded {m.recorded}, "
                  f"{m.rate_fps:.2f} frames/s, latency p50 {m.latency_p50_ms:.0f} ms p99 {m.latency_p99_ms:.0f} ms, "
                  f"queue {m.queue_depth}, drops {m.dropped}, unrecorded {m.unrecorded}, ETA {eta / 60:.0f} min",
                  flush=True)
    finally:
        stop.set()
        line.stop()
        camera.close()
        db.close()
    m = line.metrics()
    stored = count_rows(db_path) - before
    elapsed = time.monotonic() - started
    ok = stored == m.acquired == args.long and m.dropped == m.unrecorded == m.writer.failed == 0
    print(f"long run done in {elapsed / 60:.1f} min ({m.acquired / elapsed:.2f} frames/s): acquired {m.acquired}, "
          f"inspections in database {stored}, dropped {m.dropped}, unrecorded {m.unrecorded}, "
          f"writer failed {m.writer.failed}, camera lost {m.camera_lost}; alarms: "
          f"{', '.join(sorted(set(alarms))) or 'none'}\n"
          f"zero lost decisions: {'YES' if ok else 'NO'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
