#!/usr/bin/env python
"""Latency per frame against tile count, and what scoring a frame's tiles as one batch buys (a
benchmark that prints; issue 30, part 3).

For each model (the instant model and EfficientAD-S) and each CPU backend (``eager`` and the one
the engine chooses with ``auto``), a frame whose region is cut into N square tiles of the model's
input (N = ``--tiles``, at native scale, overlapping by a quarter as :mod:`inspector.framing.tiles`
plans them) is scored through :class:`inspector.framing.FramedScorer` in passes of at most K
tiles, for each K of ``--passes`` (``FramedScorer(tiles_per_pass=K)``: the same cutting and
blending, the same results):

- ``batch`` (``all``): the N tiles in one forward pass;
- ``one_by_one`` (``1``): one forward pass each;
- ``K_per_pass``: passes of K tiles.

Each is timed ``--repeats`` times, the ways alternating, after a warm-up; printed and written
(``--json``): the median and the spread (p10..p90) of the milliseconds per frame, the milliseconds
per tile, and the batch's speed-up over one by one (the ratio of the medians; ``batch_cpu_ratio``
the batch's median CPU time over one by one's), with the machine's load
average at the start, at each row and at the end (a shared CPU slows every figure alike), and the
median CPU time per frame (``cpu_median_ms``, all of the process's threads): under ``OMP_NUM_THREADS=1``
what one quiet core would take, whatever else the machine runs. The models' weights do not
matter for time: the instant model is built from ``--images`` good magnetic tiles in seconds, and
EfficientAD is trained for two iterations (untrained, but the same network). The frame is real
magnetic-tile texture.

    python scripts/bench_tiles.py [--tiles 1,2,3,4,6,8,12,16] [--repeats 10] [--models instant,efficientad]
        [--backends eager,auto] [--passes all,1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.framing import FramedScorer, Framing
from inspector.framing.tiles import OVERLAP, plan_tiles
from inspector.model_file import save_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="1,2,3,4,6,8,12,16", help="tile counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=10, help="timed frames per tile count and way")
    parser.add_argument("--models", default="instant,efficientad")
    parser.add_argument("--backends", default="eager,auto")
    parser.add_argument("--passes", default="all,1", help="tiles per forward pass to compare: all, or a number")
    parser.add_argument("--data", type=Path, default=DATA, help="the folder holding magnetic_tile and natural/bsds500")
    parser.add_argument("--images", type=int, default=20, help="good images the instant model is built from")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    counts = [int(v) for v in args.tiles.split(",")]
    passes = [None if v == "all" else int(v) for v in args.passes.split(",")]
    good = sorted((args.data / "magnetic_tile" / "train" / "good").glob("*.jpg"))
    if len(good) < args.images:
        raise SystemExit(f"no magnetic tile images in {args.data}")
    cpu = cpu_description()
    print(f"CPU: {cpu}", flush=True)
    results: dict = {"command": "python " + " ".join(sys.argv), "commit": _commit(), "cpu": cpu,
                     "cpu_flags": _avx_flags(), "threads": torch.get_num_threads(), "repeats": args.repeats,
                     "tile_px": None, "overlap": OVERLAP, "load_average_at_start": os.getloadavg(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models.split(","):
            model_path = _model(kind, good[:: len(good) // args.images][: args.images], args.data, Path(tmp))
            results["models"][kind] = {}
            for backend in args.backends.split(","):
                engine = Engine(model_path, device="cpu", backend=backend)
                side = engine.image_size
                results["tile_px"] = side
                rows = []
                print(f"{kind} {backend}: runs {engine.backend} ({engine.backend_reason})", flush=True)
                for count in counts:
                    rows.append(_time(engine, _frame(good, count, side), count, args.repeats, passes))
                    r = rows[-1]
                    ways = "  ".join(f"{name} {r[name]['median_ms']:.1f} ms ({r[name]['p10_ms']:.1f}.."
                                     f"{r[name]['p90_ms']:.1f}; cpu {r[name]['cpu_median_ms']:.1f})"
                                     for name in map(_name, passes))
                    ratios = (f"  batch speed-up {r['batch_speedup']:.2f}x, cpu ratio {r['batch_cpu_ratio']:.2f}"
                              if "batch_speedup" in r else "")
                    print(f"  {count:3d} tiles  {ways}{ratios}", flush=True)
                results["models"][kind][backend] = {"runs": engine.backend, "reason": engine.backend_reason, "rows": rows}
                _write(args.json, results)  # as it goes: a long run stopped early keeps what it measured
    # The machine may be shared: its load says how far the figures are from a quiet CPU's.
    results["load_average_at_end"] = os.getloadavg()
    _write(args.json, results)


def _commit() -> str:
    """The commit the script ran at, ``-dirty`` when the code differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "inspector", "scripts"], cwd=root).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _avx_flags() -> list[str]:
    """The CPU's AVX flags, as ``grep -o 'avx[^ ]*' /proc/cpuinfo | sort -u`` lists them."""
    try:
        return sorted({word for word in Path("/proc/cpuinfo").read_text().split() if word.startswith("avx")})
    except OSError:
        return []


def _name(per_pass: int | None) -> str:
    return "batch" if per_pass is None else "one_by_one" if per_pass == 1 else f"{per_pass}_per_pass"


def _write(path: Path | None, results: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


def _model(kind: str, images: list[Path], data: Path, tmp: Path) -> Path:
    path = tmp / f"{kind}.safetensors"
    if kind == "instant":
        from inspector.method.instant_build import InstantConfig, build_instant

        result = build_instant(images, InstantConfig(), device="cpu", show_progress=False)
    elif kind == "efficientad":
        from inspector.method.training import TrainConfig, train

        penalty = tmp / "penalty"
        penalty.mkdir()
        for photo in sorted((data / "natural" / "bsds500").glob("*.jpg"))[:4]:
            shutil.copy(photo, penalty / photo.name)
        result = train(images, TrainConfig(iterations=2), penalty_dir=penalty, device="cpu", show_progress=False)
    else:
        raise SystemExit(f"unknown model {kind!r}: instant or efficientad")
    save_model(path, result.model, result.metadata)
    return path


def _frame(good: list[Path], count: int, side: int) -> np.ndarray:
    """A region ``side`` high and as long as ``count`` tiles of ``side`` overlapping by OVERLAP,
    filled with magnetic tiles side by side."""
    length = round(side * (1 + (count - 1) * (1 - OVERLAP)))
    pieces, width = [], 0
    for path in good:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        piece = cv2.resize(image, (max(1, round(image.shape[1] * side / image.shape[0])), side))
        pieces.append(piece)
        width += piece.shape[1]
        if width >= length:
            break
    return np.hstack(pieces)[:, :length]


def _time(engine: Engine, frame: np.ndarray, count: int, repeats: int, passes: list[int | None]) -> dict:
    framing = Framing(tiles=count)
    plan = plan_tiles((frame.shape[1], frame.shape[0]), engine.image_size, count)
    assert plan.count == count, (plan.count, count)
    ways = {_name(k): FramedScorer(engine, framing, tiles_per_pass=k) for k in passes}
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for scorer in ways.values():  # warm-up: a new batch size may build or plan anew
        scorer.predict(frame)
    load = os.getloadavg()  # a shared CPU: how busy it was as this row was timed
    for _ in range(repeats):
        for name, scorer in ways.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            scorer.predict(frame)
            times[name].append(1000 * (time.perf_counter() - started))
            cpu[name].append(1000 * (time.process_time() - started_cpu))
    row: dict = {"tiles": count, "frame": [frame.shape[1], frame.shape[0]], "load_average": load}
    for name, values in times.items():
        values.sort()
        median = statistics.median(values)
        row[name] = {"median_ms": round(median, 1), "p10_ms": round(values[len(values) // 10], 1),
                     "p90_ms": round(values[(9 * len(values)) // 10], 1), "per_tile_ms": round(median / count, 1),
                     "tiles_per_s": round(1000 * count / median, 1),
                     "cpu_median_ms": round(statistics.median(cpu[name]), 1)}
    if "batch" in row and "one_by_one" in row:
        row["batch_speedup"] = round(row["one_by_one"]["median_ms"] / row["batch"]["median_ms"], 3)
        row["batch_cpu_ratio"] = round(row["batch"]["cpu_median_ms"] / row["one_by_one"]["cpu_median_ms"], 3)
    row["load_average_after"] = os.getloadavg()
    return row


if __name__ == "__main__":
    main()
