#!/usr/bin/env python
"""Time to find the part in a 5 MP frame (a benchmark that prints; issue 30's target: 15 ms).

A 2592×1944 grey frame (a 5 MP line camera) with a textured part about 1000 px across, moved by
up to ±300 px and turned by up to ±12° on a belt whose look changes from frame to frame. Each
frame is aligned ``--repeats`` times; printed: the median and the spread (p10..p90) of one
:meth:`inspector.framing.Aligner.align`, the worst corner error against the true placement, the
match quality, and the CPU it ran on. Then the whole of the framing's own cost on the same frames:
:meth:`inspector.framing.FramedScorer.predict` in front of an engine that costs nothing (found,
cut, tiled, its map put back into the frame and the score read there), so what the framing adds
to a frame's latency besides the model's forward passes.

    python scripts/bench_align.py [--frames 10] [--repeats 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from inspector.devices import cpu_description
from inspector.framing import Aligner, FramedScorer, Framing
from inspector.framing.align import turn_about

W, H = 2592, 1944
REGION = (800, 500, 1000, 900)


def _part(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    part = np.full((h, w), 110, np.uint8)
    for _ in range(60):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(part, centre, int(rng.integers(5, w // 10)), int(rng.integers(140, 250)), -1)
    return part


def _belt(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.normal(40, 12, (H // 16, W // 16)).astype(np.float32)
    smooth = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 6, (H, W)), 0, 255).astype(np.uint8)


class FreeEngine:
    """An engine that costs nothing: a flat map per tile, so only the framing is timed."""

    image_size = 256

    def predict_batch(self, images):
        return [SimpleNamespace(score=0.0, anomaly_map=np.zeros(image.shape[:2], np.float32)) for image in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y, w, h = REGION
    reference = _belt(rng)
    reference[y : y + h, x : x + w] = _part(rng, w, h)
    started = time.perf_counter()
    aligner = Aligner(reference, REGION, max_angle_deg=15.0)
    build_ms = (time.perf_counter() - started) * 1000
    inside = np.zeros(reference.shape, np.uint8)
    inside[y : y + h, x : x + w] = 255
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64)
    framed = FramedScorer(FreeEngine(), Framing(region=REGION, reference=reference, align=True))
    times, errors, qualities, framing_times = [], [], [], []
    for _ in range(args.frames):
        angle, dx, dy = rng.uniform(-12, 12), rng.uniform(-300, 300), rng.uniform(-250, 250)
        truth = turn_about(angle, (x + w / 2, y + h / 2), (x + w / 2 + dx, y + h / 2 + dy))
        frame = _belt(rng)
        where = cv2.warpAffine(inside, truth, (W, H), flags=cv2.INTER_NEAREST) > 0
        frame[where] = cv2.warpAffine(reference, truth, (W, H))[where]
        for _ in range(args.repeats):
            started = time.perf_counter()
            found = aligner.align(frame)
            times.append((time.perf_counter() - started) * 1000)
        for _ in range(args.repeats):
            started = time.perf_counter()
            framed.predict(frame)
            framing_times.append((time.perf_counter() - started) * 1000)
        errors.append(float(np.abs(corners @ found.matrix.T - corners @ truth.T).max()))
        qualities.append(found.quality)
    deciles = statistics.quantiles(times, n=10)
    framing_deciles = statistics.quantiles(framing_times, n=10)
    figures = {
        "cpu": cpu_description(), "frame": f"{W}x{H}", "region": list(REGION), "frames": args.frames,
        "repeats": args.repeats, "align_ms_median": statistics.median(times), "align_ms_p10": deciles[0],
        "align_ms_p90": deciles[-1], "build_ms": build_ms, "worst_corner_error_px": max(errors),
        "lowest_quality": min(qualities), "framing_ms_median": statistics.median(framing_times),
        "framing_ms_p10": framing_deciles[0], "framing_ms_p90": framing_deciles[-1],
    }
    print(f"align a {W}x{H} frame: median {figures['align_ms_median']:.1f} ms (p10 {deciles[0]:.1f}, "
          f"p90 {deciles[-1]:.1f}) over {len(times)} runs; worst corner error {max(errors):.2f} px; "
          f"lowest quality {min(qualities):.3f}; aligner built in {build_ms:.0f} ms; {figures['cpu']}")
    print(f"the framing's whole cost besides the model (found, cut, tiled, the map put back, the score): median "
          f"{figures['framing_ms_median']:.1f} ms (p10 {framing_deciles[0]:.1f}, p90 {framing_deciles[-1]:.1f})")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
