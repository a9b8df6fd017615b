"""Latency and throughput of the inference engine (a benchmark, never a test).

Batch-1 latency is measured the way a line sees it: a uint8 camera image in host memory to a
score and a full-size map back in host memory, so host<->device copies are included. The result
says which backend ran, in what precision, why (the engine's choice and its accuracy gate), and on
what machine (the GPU's name, or the CPU's model and its speed-relevant flags).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from inspector.devices import cpu_description
from inspector.engine import Engine


def machine_note(engine: Engine) -> str:
    if engine.device.type == "cuda":
        return torch.cuda.get_device_name(engine.device)
    return f"{cpu_description()}; {torch.get_num_threads()} threads"


def gate_of(engine: Engine) -> dict | None:
    """The accuracy gate result of the precision that runs (None for fp32: nothing to check)."""
    if engine.precision == "fp32":
        return None
    result = engine.gates.get("cuda-fp16" if engine.half else engine.backend)
    return result.as_dict() if result else {"passed": None, "reason": "not checked (forced)"}


def timing_frame(engine: Engine, size: int = 256) -> np.ndarray:
    """The frame a framed engine is timed on: its framing's reference, where it keeps one (the
    part found and its region inspected as on the line); else the first of the model's own good
    images, a frame of the line's size, which a tiled model cuts into as many tiles as the line's
    frames need; else the framing's sample frame (random pixels, at least ``size`` square)."""
    from inspector.image_io import read_image

    framing = engine.framing
    good = engine.gate_images.good if engine.gate_images is not None else ()
    if framing.reference is None and good:
        return read_image(good[0])
    return framing.sample_frame(size)


def bench(engine: Engine, batch: int = 1, runs: int = 50, repeats: int = 3, warmup: int = 5, image_size: tuple[int, int] = (256, 256)) -> dict:
    """Times ``predict_batch`` on random camera-like images (a framed model on the frame
    :func:`timing_frame` gives); ``repeats`` runs of ``runs`` calls each. ``frame`` in the
    result is the frames' size, W x H."""
    rng = np.random.default_rng(0)
    if engine.framing is not None:
        images = [timing_frame(engine, max(image_size))] * batch
    else:
        images = [rng.integers(0, 256, (*image_size, 3), dtype=np.uint8) for _ in range(batch)]
    for _ in range(warmup):
        engine.predict_batch(images)
    per_repeat, all_ms = [], []
    for _ in range(repeats):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            engine.predict_batch(images)
            times.append((time.perf_counter() - t) * 1e3)
        per_repeat.append(float(np.median(times)))
        all_ms.extend(times)
    all_ms = np.array(all_ms)
    return {
        "device": str(engine.device),
        "machine": machine_note(engine),
        "backend": engine.backend,
        "precision": engine.precision,
        "backend_reason": engine.backend_reason,
        "gate": gate_of(engine),
        "gates": {name: result.as_dict() for name, result in engine.gates.items()},
        "architecture": engine.metadata.get("architecture"),
        "batch": batch,
        "frame": f"{images[0].shape[1]}x{images[0].shape[0]}",
        "runs": int(all_ms.size),
        "latency_ms_p50": float(np.percentile(all_ms, 50)),
        "latency_ms_p99": float(np.percentile(all_ms, 99)),
        "latency_ms_repeat_medians": per_repeat,
        "throughput_img_s": float(batch * 1e3 / np.median(all_ms)),
    }
