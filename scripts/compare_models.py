"""Accuracy and CPU latency of several model files side by side, measured in one run.

    python scripts/compare_models.py MODEL [MODEL ...] [--data DIR] [--backend B] [--runs N]
        [--repeats R] [--json FILE]

For each model: ``inspector eval``'s figures on an MVTec-layout test set (``--data``; image AUROC,
pixel AUROC, AU-PRO) and the engine's batch-1 latency on a 256x256 camera image. The latency
repeats are interleaved (A, B, A, B, ...) so that a machine that slows down during the run slows
every model alike, and each model's median is also given as a ratio to the first model's, which is
what compares across machines (figures themselves differ about 3x between AVX2-only and
AVX-512 BF16 CPUs; the CPU's flags are printed with them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from inspector import ENGINE_BACKENDS
from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.evaluate import evaluate


def latency_ms(engine: Engine, image: np.ndarray, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        engine.predict(image)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, help="MVTec-layout folder to evaluate on (default: latency only)")
    parser.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto")
    parser.add_argument("--runs", type=int, default=20, help="timed images per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    engines = [Engine(m, device="cpu", backend=args.backend) for m in args.models]
    rows = [{"model": str(m), "kind": e.kind, "architecture": e.metadata.get("architecture"), "backend": e.backend,
             "precision": e.precision} for m, e in zip(args.models, engines)]
    if args.data is not None:
        for row, engine in zip(rows, engines):
            t = time.perf_counter()
            metrics = evaluate(engine, args.data, show_progress=False)
            row.update({k: metrics[k] for k in ("image_auroc", "pixel_auroc", "aupro", "images")}, eval_seconds=round(time.perf_counter() - t, 1))

    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    for engine in engines:  # warm-up: first calls allocate
        latency_ms(engine, image, 3)
    per_model: list[list[float]] = [[] for _ in engines]
    medians: list[list[float]] = [[] for _ in engines]
    for _ in range(args.repeats):
        for i, engine in enumerate(engines):
            times = latency_ms(engine, image, args.runs)
            per_model[i].extend(times)
            medians[i].append(float(np.median(times)))
    first = float(np.median(per_model[0]))
    for row, times, reps in zip(rows, per_model, medians):
        row.update(latency_ms_p50=float(np.median(times)), latency_ms_p99=float(np.percentile(times, 99)),
                   latency_repeat_medians_ms=reps, latency_ratio_to_first=float(np.median(times)) / first)

    machine = f"{cpu_description()}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"
    print(f"machine: {machine}")
    print(f"{'model':<40} {'kind':<11} {'backend':<11} {'img AUROC':>9} {'pix AUROC':>9} {'AU-PRO':>7} {'p50 ms':>8} {'p99 ms':>8} {'x first':>7}")
    for r in rows:
        fmt = lambda k: f"{100 * r[k]:.1f}" if k in r and r[k] == r[k] else "-"  # noqa: E731 -- NaN shows as '-'
        print(f"{Path(r['model']).name[:40]:<40} {r['kind']:<11} {r['backend']:<11} {fmt('image_auroc'):>9} {fmt('pixel_auroc'):>9} "
              f"{fmt('aupro'):>7} {r['latency_ms_p50']:>8.1f} {r['latency_ms_p99']:>8.1f} {r['latency_ratio_to_first']:>7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "data": str(args.data) if args.data else None,
                                         "runs": args.runs, "repeats": args.repeats, "models": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
