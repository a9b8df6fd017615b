#!/usr/bin/env python
"""Several cameras on one engine: throughput against one camera (a benchmark that prints, not a test).

Each run replays real frames from folder cameras (free run, ``fps=0``: a frame whenever the line
asks, so the engine is the bottleneck) through the whole line as ``inspector run`` builds it --
``build_line`` for one camera, ``build_lines`` for several -- into a fresh SQLite history (the
threshold is set above every score and no pass images are kept, so the disk does not compete).
Configurations, interleaved within each repeat so that a busy spell of the machine spreads over
all of them:

* ``1 camera``: the one-camera line, the engine called directly;
* ``N cameras, batched``: one engine, frames that arrive together in one forward pass
  (``max_batch`` = N, ``--max-wait-ms``);
* ``N cameras, one frame per pass``: the same batcher with ``max_batch`` = 1 (forward passes
  one after another on one thread);
* ``N cameras, concurrent``: every camera's pipeline calls the shared engine itself, no batcher
  (frames an engine cannot score from several threads at once are counted, not timed).

Figures per configuration: frames/s over all cameras in steady state (decisions after the first
pass, over the time they took), p50/p99 of the time a frame spends in ``predict`` (``model``: the
wait for its batch and the shared pass) and from its arrival to its decision (``total``; each
camera's queue holds one frame), as the median and range over ``--repeats``. The engine's own
time per frame at each batch size (``predict_batch`` of real frames) is printed first: it says
what batching can buy on this device.

    python scripts/bench_multicamera.py [--model M ...] [--json docs/evidence/multicamera_cpu.json]

On a machine shared with other jobs the figures are upper bounds for time and lower bounds for rate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivers import FolderCamera  # noqa: E402
from inspector.devices import cpu_description  # noqa: E402
from inspector.engine import Engine  # noqa: E402
from inspector.history import HistoryDB, file_sha256  # noqa: E402
from inspector.image_io import list_images, read_image  # noqa: E402
from inspector.line import DecisionRule, build_line, build_lines  # noqa: E402
from inspector.recipes import LoadedRecipe, register_model  # noqa: E402

DEFAULT_MODEL = REPO / "inspector" / "assets" / "demo" / "demo_model.safetensors"
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "magnetic_tile" / "train" / "good"
NEVER_FAILS = 1e9  # a threshold above every score: every part passes, no reject images written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", type=Path, default=None,
                   help=f"model file (repeatable; default: the shipped demo model {DEFAULT_MODEL.name})")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of real frames to replay")
    p.add_argument("--cameras", default="2,4", help="camera counts to compare with one camera")
    p.add_argument("--frames", type=int, default=12, help="frames per camera per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration (interleaved)")
    p.add_argument("--max-wait-ms", type=float, default=3.0, help="the batcher's bounded wait")
    p.add_argument("--backend", action="append", default=None,
                   help="engine backend (auto: the fastest here); one for all models, or one per --model in order")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-concurrent", action="store_true", help="leave out the configuration without a batcher")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--append", action="store_true",
                   help="add this run's models to the --json file's, replacing earlier figures of the same model and "
                   "backend (each model keeps its own command and settings)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    counts = [int(n) for n in args.cameras.split(",")]
    load_start = os.getloadavg()
    machine = f"{cpu_description()}; {platform.platform()}; Python {platform.python_version()}"
    print(f"machine: {machine}; load average {', '.join(f'{x:.2f}' for x in load_start)} at the start")
    report: dict[str, Any] = {
        "benchmark": "multicamera",
        "command": "python scripts/bench_multicamera.py " + " ".join(sys.argv[1:]),
        "machine": machine,
        "note": "shared machine: times are upper bounds, rates lower bounds",
        "models": [],
    }
    models = args.model or [DEFAULT_MODEL]
    backends = args.backend or ["auto"]
    if len(backends) not in (1, len(models)):
        raise SystemExit("give one --backend, or one per --model")
    with tempfile.TemporaryDirectory() as tmp:
        folders = camera_folders(args.images, max(counts), args.frames, Path(tmp))
        for m, (model, backend) in enumerate(zip(models, backends * len(models) if len(backends) == 1 else backends)):
            engine = Engine(model, device=args.device, backend=backend)
            load_before = os.getloadavg()
            figures = bench_model(engine, folders, counts, args, Path(tmp) / f"model{m}")
            report["models"].append({"command": report["command"], "frames_per_camera": args.frames,
                                     "repeats": args.repeats, "max_wait_ms": args.max_wait_ms,
                                     "load_average": {"start": load_before, "end": os.getloadavg()}, **figures})
    load_end = os.getloadavg()
    print(f"load average {', '.join(f'{x:.2f}' for x in load_end)} at the end")
    if args.json:
        if args.append and args.json.is_file():
            earlier = json.loads(args.json.read_text())
            now = {(m["model"], m["backend"]) for m in report["models"]}
            report["models"] = [m for m in earlier["models"] if (m["model"], m["backend"]) not in now] + report["models"]
            report["command"] = "; ".join(dict.fromkeys(m["command"] for m in report["models"]))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def camera_folders(images: Path, cameras: int, frames: int, tmp: Path) -> list[Path]:
    """One folder per camera with ``frames`` real images of its own (links, not copies)."""
    paths = list_images(images)
    if len(paths) < cameras * frames:
        raise SystemExit(f"{images}: {len(paths)} images, {cameras * frames} needed")
    folders = []
    for c in range(cameras):
        folder = tmp / f"cam{c}"
        folder.mkdir()
        for k, path in enumerate(paths[c * frames:(c + 1) * frames]):
            (folder / f"{k:03d}{path.suffix}").symlink_to(path.resolve())
        folders.append(folder)
    return folders


def bench_model(engine: Engine, folders: list[Path], counts: list[int], args: argparse.Namespace, tmp: Path) -> dict:
    info = engine.info
    print(f"\n{Path(info['model']).name}: {info['architecture'] or info['kind']}, {info['device']}, "
          f"{info['backend']} ({info['precision']}), {info['threads']} threads")
    per_frame = engine_ms_per_frame(engine, folders[0], sorted({1, *counts}), args.repeats)
    print("engine alone, ms per frame at batch size " +
          ", ".join(f"{k}: {v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f})" for k, v in per_frame.items()))
    configs = [("1 camera", 1, "single")]
    for n in counts:
        configs += [(f"{n} cameras, batched", n, "batched"), (f"{n} cameras, one frame per pass", n, "serial")]
        if not args.no_concurrent:
            configs.append((f"{n} cameras, concurrent", n, "concurrent"))
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    tmp.mkdir()
    for repeat in range(args.repeats):
        for name, n, how in configs:
            runs[name].append(run_once(engine, folders[:n], how, args, tmp / f"r{repeat}-{how}-{n}"))
    results = {name: {**summarise(rs), "errors": sum(r["errors"] for r in rs)} for name, rs in runs.items()}
    print(f"{'configuration':<34} {'frames/s (range)':>20} {'model p50/p99 ms':>18} {'total p50/p99 ms':>18} {'frames/pass':>11}")
    for name, r in results.items():
        print(f"{name:<34} {r['fps']['median']:>8.2f} ({r['fps']['min']:.2f}-{r['fps']['max']:.2f}) "
              f"{r['model_p50_ms']['median']:>8.0f}/{r['model_p99_ms']['median']:<8.0f} "
              f"{r['total_p50_ms']['median']:>8.0f}/{r['total_p99_ms']['median']:<8.0f} "
              f"{r['frames_per_pass']['median']:>11.2f}" + (f"  {r['errors']} NOT SCORED" if r["errors"] else ""))
    one = results["1 camera"]["fps"]["median"]
    # A configuration that lost frames has no throughput worth the name.
    ratios = {name: r["fps"]["median"] / one for name, r in results.items() if name != "1 camera" and not r["errors"]}
    print("throughput against one camera: " + ", ".join(f"{name} {x:.2f}x" for name, x in ratios.items()))
    return {"model": Path(info["model"]).name, "architecture": info["architecture"], "kind": info["kind"],
            "device": info["device"], "backend": info["backend"], "precision": info["precision"],
            "threads": info["threads"], "engine_ms_per_frame_by_batch": per_frame, "configurations": results,
            "throughput_vs_one_camera": ratios, "runs": runs}


def engine_ms_per_frame(engine: Engine, folder: Path, sizes: list[int], repeats: int) -> dict[int, dict[str, float]]:
    """The engine's own ms per frame at each batch size: median and range of ``repeats`` x 3 calls."""
    images = [read_image(path) for path in list_images(folder)]
    out = {}
    for size in sizes:
        batch = images[:size]
        engine.predict_batch(batch)
        times = []
        for _ in range(3 * repeats):
            started = time.perf_counter()
            engine.predict_batch(batch)
            times.append((time.perf_counter() - started) * 1000.0 / size)
        out[size] = {"median": statistics.median(times), "min": min(times), "max": max(times)}
    return out


def run_once(engine: Engine, folders: list[Path], how: str, args: argparse.Namespace, tmp: Path) -> dict:
    """One run of ``how`` (single, batched, serial, concurrent) over ``folders``' cameras."""
    tmp.mkdir()
    db = HistoryDB(f"sqlite:///{tmp / 'history.db'}")
    db.upgrade()
    product_id, version_id = register_model(db, engine.model_path, file_sha256(engine.model_path), "bench")
    rule = DecisionRule(NEVER_FAILS)
    recipe = LoadedRecipe(engine, rule, version_id, product_id, "bench", engine.model_path, (), "bench")
    cameras = [FolderCamera(folder, fps=0, camera_id=f"cam{i}") for i, folder in enumerate(folders)]
    options = dict(image_dir=tmp / "images", pass_sample_rate=0.0, queue_size=1, max_frames=args.frames,
                   drift_window=0, stall_after_s=None)
    if how == "single":
        line = build_line(cameras[0], recipe, db, **options)
        pipelines, batcher = [line.pipeline], None
    else:
        line = build_lines(cameras, recipe, db, max_batch=1 if how == "serial" else len(cameras),
                           max_wait_ms=args.max_wait_ms, **options)
        pipelines, batcher = [each.pipeline for each in line.lines], line.batcher
        if how == "concurrent":
            for pipeline in pipelines:
                pipeline.set_model(engine, rule, version_id)
    decided: list[tuple[float, float, float | None]] = []  # (when, total ms, model ms) of scored frames
    errors: list[str] = []  # frames the engine could not score
    lock = threading.Lock()

    def note(result: Any) -> None:
        with lock:
            if result.error is None:
                decided.append((time.perf_counter(), result.latency_total_ms, result.latency_model_ms))
            else:
                errors.append(result.error)

    for pipeline in pipelines:
        pipeline.on_decision(note)
    line.start()
    try:
        if not line.wait(600.0):
            raise SystemExit(f"a {how} run with {len(folders)} cameras did not finish")
    finally:
        line.stop(60.0)
        for camera in cameras:
            camera.close()
        db.close()
    warm = len(folders)  # the first pass: warm-up, and the cameras' start-up in it
    steady = decided[warm:]
    if len(steady) < 2:  # (nearly) every frame failed: nothing to time
        nan = float("nan")
        print(f"  {how}, {len(folders)} cameras: {len(errors)} frames not scored, e.g. {errors[0] if errors else '-'}")
        return {"frames": len(decided), "errors": len(errors), "fps": nan, "model_p50_ms": nan, "model_p99_ms": nan,
                "total_p50_ms": nan, "total_p99_ms": nan, "frames_per_pass": nan}
    fps = (len(steady) - 1) / (steady[-1][0] - steady[0][0])
    stats = batcher.stats if batcher is not None and how != "concurrent" else None
    if errors:
        print(f"  {how}, {len(folders)} cameras: {len(errors)} frames not scored, e.g. {errors[0]}")
    return {
        "frames": len(decided),
        "errors": len(errors),
        "fps": fps,
        "model_p50_ms": float(np.percentile([d[2] for d in steady if d[2] is not None], 50)),
        "model_p99_ms": float(np.percentile([d[2] for d in steady if d[2] is not None], 99)),
        "total_p50_ms": float(np.percentile([d[1] for d in steady], 50)),
        "total_p99_ms": float(np.percentile([d[1] for d in steady], 99)),
        "frames_per_pass": stats.mean_batch if stats is not None else 1.0,
    }


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Median and range of each figure over the repeats."""
    keys = [k for k in runs[0] if k not in ("frames", "errors")]
    return {k: {"median": statistics.median(r[k] for r in runs), "min": min(r[k] for r in runs),
                "max": max(r[k] for r in runs)} for k in keys}


if __name__ == "__main__":
    raise SystemExit(main())
