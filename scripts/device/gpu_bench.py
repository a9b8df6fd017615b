"""The inference stage of the GPU run (gpu_checks.py): frame -> decision latency step by step,
batched throughput, the engine alone, and the pipeline against the engine.

Latency is wall-clock on the host per frame: a uint8 camera frame in host memory to the score and
the PASS/FAIL decision in host memory. The steps are cumulative, from plain eager fp32 PyTorch (as
PyTorch's defaults leave it) to the whole path in one CUDA graph; each gain is the step before's
p50 over this one's. torch.compile (max-autotune) is compiled in a background process during
distillation (compile_worker.py, one process per model) and timed here, first, one model at a time
while the GPU is otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from frame_path import EagerDecider, FrameDecider, GraphedDecider, prepare, scores_of, time_per_call

from inspector.model_file import load_model

log = logging.getLogger("gpu_checks.bench")


@dataclass(frozen=True)
class Variant:
    name: str
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    cudnn_benchmark: bool = False
    pinned: bool = False
    graph: bool = False
    big_frame: bool = False
    map_to_host: bool = False
    cuda_only: bool = False
    baseline: bool = False  # the next steps' gains are measured from the step before


#: Cumulative steps (their gains chain), then side measurements (their own baseline named).
STEPS = (
    Variant("eager fp32 (PyTorch defaults)", baseline=True),
    Variant("+ cudnn.benchmark", cudnn_benchmark=True, cuda_only=True),
    Variant("+ fp16", torch.float16, cudnn_benchmark=True, cuda_only=True),
    Variant("+ channels-last", torch.float16, True, True, cuda_only=True),
    Variant("+ pinned upload buffer", torch.float16, True, True, True, cuda_only=True),
    Variant("+ the whole path in one CUDA graph", torch.float16, True, True, True, True, cuda_only=True),
)
SIDE = (
    Variant("bf16 instead of fp16, channels-last, eager", torch.bfloat16, True, True),
    Variant("bf16 instead of fp16, channels-last, CUDA graph", torch.bfloat16, True, True, True, True, cuda_only=True),
    Variant("CUDA graph fp16 + the map copied to the host", torch.float16, True, True, True, True, map_to_host=True, cuda_only=True),
    Variant("CUDA graph fp16, 1280x1024 camera frame", torch.float16, True, True, True, True, big_frame=True, cuda_only=True),
)


@dataclass
class CompileWorker:
    """A compile_worker.py process: it writes ``json`` as it goes and times once ``go`` exists."""

    process: subprocess.Popen
    json: Path
    go: Path
    log: Path

    def state(self) -> dict:
        try:
            return json.loads(self.json.read_text())
        except (OSError, ValueError):
            return {"state": "not started"}

    def alive(self) -> bool:
        return self.process.poll() is None

    def end(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


@dataclass
class BenchInputs:
    device: torch.device
    models: dict[str, Path]  # architecture -> random-weight model file
    frames: list[np.ndarray]  # camera-like (H, W) uint8 frames
    work: Path
    runs: int
    warmup: int
    score_frames: int
    variant_budget_s: float
    throughput_batches: tuple[int, ...]
    pipeline_frames: int
    pipeline_runs: int
    engine_backend: str
    workers: dict[str, CompileWorker] = field(default_factory=dict)  # architecture -> its compile process
    compile_wait_s: float = 20.0


def big_frames(frames: list[np.ndarray], n: int = 4) -> list[np.ndarray]:
    return [cv2.resize(f, (1280, 1024), interpolation=cv2.INTER_LINEAR) for f in frames[:n]]


def run_variant(v: Variant, path: Path, inputs: BenchInputs, threshold: float) -> tuple[dict, np.ndarray | None]:
    dev = inputs.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = v.cudnn_benchmark
    model = prepare(load_model(path)[0], dev, v.dtype, v.channels_last)
    decider = FrameDecider(model, threshold, dtype=v.dtype, channels_last=v.channels_last).to(dev)
    frames = big_frames(inputs.frames) if v.big_frame else inputs.frames
    if v.graph:
        call = GraphedDecider(decider, frames[0].shape, dev, map_to_host=v.map_to_host)
    else:
        call = EagerDecider(decider, dev, pinned=v.pinned)
    timing = time_per_call(call, frames, runs=inputs.runs, warmup=inputs.warmup, budget_s=inputs.variant_budget_s)
    scores = None if v.big_frame else scores_of(call, frames[: inputs.score_frames])
    del call, decider, model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return {"variant": v.name, "frame": f"{frames[0].shape[1]}x{frames[0].shape[0]} mono uint8", **timing}, scores


def latency_steps(arch: str, path: Path, inputs: BenchInputs, deadline: float) -> dict:
    rows, base, previous, threshold = [], None, None, 0.0
    for v in STEPS + SIDE:
        if v.cuda_only and inputs.device.type != "cuda":
            rows.append({"variant": v.name, "skipped": "CUDA only"})
            continue
        if time.time() > deadline:
            rows.append({"variant": v.name, "skipped": "out of the stage's time"})
            continue
        try:
            row, scores = run_variant(v, path, inputs, threshold)
        except Exception as e:  # noqa: BLE001 -- one variant's failure costs only its own row
            log.exception("%s %s failed", arch, v.name)
            rows.append({"variant": v.name, "error": f"{type(e).__name__}: {e}"})
            continue
        if v.baseline:
            base, threshold = scores, float(np.median(scores))
        elif scores is not None and base is not None:
            row["max_abs_score_diff_vs_fp32"] = float(np.max(np.abs(scores - base)))
            row["decisions_agree_vs_fp32"] = float(np.mean((scores > threshold) == (base > threshold)))
        if v in STEPS and previous is not None:
            row["gain_vs_step_before"] = round(previous / row["p50_ms"], 3)
        if v in STEPS:
            previous = row["p50_ms"]
        rows.append(row)
        log.info("%s %-52s p50 %.3f ms p99 %.3f ms", arch, v.name, row["p50_ms"], row["p99_ms"])
    first = next((r for r in rows if "p50_ms" in r), None)
    for r in rows:
        if first is not None and "p50_ms" in r:
            r["gain_vs_eager_fp32"] = round(first["p50_ms"] / r["p50_ms"], 3)
    return {"threshold_used": threshold, "fp32_scores": None if base is None else base.tolist(), "steps": rows}


def gflop_per_image(path: Path) -> float:
    """The networks' floating-point operations for one 256x256 image, counted on the meta device
    (no arithmetic done): the yardstick for the throughput figures."""
    from torch.utils.flop_counter import FlopCounterMode

    model = load_model(path)[0].to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 256, 256, device="meta"))
    return counter.get_total_flops() / 1e9


def throughput(path: Path, inputs: BenchInputs, deadline: float) -> list[dict]:
    out = []
    if inputs.device.type != "cuda":
        return [{"skipped": "CUDA only"}]
    torch.backends.cudnn.benchmark = True
    for batch in inputs.throughput_batches:
        if time.time() > deadline:
            out.append({"batch": batch, "skipped": "out of the stage's time"})
            continue
        try:
            model = prepare(load_model(path)[0], inputs.device, torch.float16, True)
            decider = FrameDecider(model, 0.0, dtype=torch.float16, channels_last=True).to(inputs.device)
            stack = np.stack([inputs.frames[i % len(inputs.frames)] for i in range(batch)])
            graphed = GraphedDecider(decider, stack.shape[1:], inputs.device, batch=batch)
            for _ in range(3):
                graphed.run(stack)
            t, n = time.perf_counter(), 0
            while n < 5 or (time.perf_counter() - t < 2.0 and n < 200):
                graphed.run(stack)
                n += 1
            seconds = (time.perf_counter() - t) / n
            out.append({"batch": batch, "path": "pinned uint8 upload + fp16 channels-last CUDA graph, scores to host",
                        "ms_per_batch": round(seconds * 1e3, 3), "images_per_s": round(batch / seconds, 1), "replays": n,
                        "tflop_per_s": round(gflop_per_image(path) * batch / seconds / 1e3, 1)})
            del graphed, decider, model
            torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001
            log.exception("throughput at batch %d failed", batch)
            out.append({"batch": batch, "error": f"{type(e).__name__}: {e}"})
    return out


def engine_half(inputs: BenchInputs) -> bool | None:
    """fp16 on CUDA, as the engine runs a model whose accuracy gate passed: these random-weight
    timing models carry no gate images, and without them the engine stays fp32."""
    return True if inputs.device.type == "cuda" else None


def engine_alone(path: Path, inputs: BenchInputs) -> dict:
    from inspector.engine import Engine
    from inspector.engine_bench import bench

    engine = Engine(path, device=str(inputs.device), backend=inputs.engine_backend, half=engine_half(inputs), warmup=False)  # time_per_call warms up
    row = {"backend": engine.backend, "precision": engine.precision,
           "batch1_predict": time_per_call(engine.predict, inputs.frames, runs=inputs.runs, warmup=inputs.warmup, budget_s=inputs.variant_budget_s),
           "scores": [engine.predict(f).score for f in inputs.frames[: inputs.score_frames]]}
    if inputs.device.type == "cuda":
        row["batch32_predict_batch"] = bench(engine, batch=32, runs=10, repeats=2, warmup=2, image_size=inputs.frames[0].shape[:2])
    return row


def pipeline_against_engine(path: Path, inputs: BenchInputs) -> dict:
    """bench_pipeline.py's overhead measurement: engine.predict alone on a thread, then the whole
    line (folder camera -> queue -> engine -> decision -> history writer with image store), paired
    runs, time per frame in steady state."""
    import bench_pipeline as bp

    from inspector.engine import Engine

    engine = Engine(path, device=str(inputs.device), backend=inputs.engine_backend, half=engine_half(inputs), warmup=False)  # warmed by the threshold's scores
    frames = [inputs.frames[i % len(inputs.frames)] for i in range(inputs.pipeline_frames)]
    folder = inputs.work / "pipeline_frames"
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame)
    threshold = float(np.percentile([engine.predict(f).score for f in frames[:12]], 90))
    args = argparse.Namespace(pass_sample_rate=0.01, queue_size=None)
    alone, piped, model_p50 = [], [], []
    for run in range(inputs.pipeline_runs):
        alone.append(bp.engine_alone_ms(engine, frames))
        per_frame, model_ms = bp.pipeline_ms(engine, folder, threshold, args, inputs.work / f"pipeline_run{run}")
        piped.append(per_frame)
        model_p50.append(model_ms)
    ratios = [p / a - 1 for p, a in zip(piped, alone)]
    return {"frames_per_run": len(frames), "runs": inputs.pipeline_runs, "engine_alone_ms_per_frame": alone,
            "pipeline_ms_per_frame": piped, "model_p50_ms_in_pipeline": model_p50,
            "overhead_median": float(np.median(ratios)), "overhead_per_run": ratios, "target": "<= 0.10 on the GPU"}


def collect_compile(inputs: BenchInputs, deadline: float) -> dict:
    """Waits (at most compile_wait_s) for the background compilations; a process not ready by
    then is ended unmeasured, so that it cannot disturb the timings; the ready ones time their
    paths one after the other, alone on the GPU. Every process is ended on the way out."""
    if not inputs.workers:
        return {"skipped": "no compile worker started"}
    result: dict = {"models": {}}
    try:
        wait_until = min(deadline, time.time() + inputs.compile_wait_s)
        while time.time() < wait_until and any(w.alive() and w.state().get("state") != "ready" for w in inputs.workers.values()):
            time.sleep(0.5)
        ready = {arch: w for arch, w in inputs.workers.items() if w.state().get("state") == "ready"}
        for arch, worker in inputs.workers.items():
            if arch not in ready:
                worker.end()
        for arch, worker in ready.items():
            worker.go.touch()
            while worker.alive() and worker.state().get("state") != "done" and time.time() < deadline:
                time.sleep(0.2)
            worker.end()
        for arch, worker in inputs.workers.items():
            state = worker.state()
            result.update({k: state[k] for k in ("mode", "backend", "dtype", "torch") if k in state})
            entry = state.get("models", {}).get(arch, {})
            if state.get("state") != "done":
                entry["note"] = (f"stopped in state {state.get('state')!r}: not compiled and timed in the time it had "
                                 f"(exit code {worker.process.returncode})")
            result["models"][arch] = entry
        return result
    finally:
        for worker in inputs.workers.values():
            worker.end()


def bench_stage(inputs: BenchInputs, deadline: float) -> dict:
    """Every inference figure, most wanted first; each task starts only while the stage has time."""
    result: dict = {
        "latency": "wall clock per frame on the host: uint8 frame in host memory -> score and decision in host memory",
        "frames": f"{len(inputs.frames)} camera-like {inputs.frames[0].shape[1]}x{inputs.frames[0].shape[0]} mono uint8 frames",
        "flags": {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32, "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32},
        "models": {arch: {"gflop_per_image": round(gflop_per_image(path), 2)} for arch, path in inputs.models.items()},
    }
    result["torch_compile"] = collect_compile(inputs, deadline - 20)  # first, while the GPU is quiet
    archs = list(inputs.models)
    tasks = [(arch, "latency_steps", lambda a: latency_steps(a, inputs.models[a], inputs, deadline - 15)) for arch in archs]
    tasks.append((archs[0], "pipeline_vs_engine", lambda a: pipeline_against_engine(inputs.models[a], inputs)))
    for arch in archs:
        tasks.append((arch, "throughput", lambda a: throughput(inputs.models[a], inputs, deadline - 5)))
        tasks.append((arch, "engine_alone", lambda a: engine_alone(inputs.models[a], inputs)))
    for arch, name, task in tasks:
        if time.time() > deadline - 5:
            result["models"][arch][name] = {"skipped": "out of the stage's time"}
            continue
        try:
            result["models"][arch][name] = task(arch)
        except Exception as e:  # noqa: BLE001 -- one task's failure costs only its own figures
            log.exception("%s %s failed", arch, name)
            result["models"][arch][name] = {"error": f"{type(e).__name__}: {e}"}
    for arch, entry in result["models"].items():  # the engine's own preprocessing (host resize) against the device path's
        base = entry.get("latency_steps", {}).get("fp32_scores")
        engine = entry.get("engine_alone", {})
        if base and engine.get("scores"):
            n = len(engine["scores"])
            engine["max_abs_score_diff_vs_device_path_fp32"] = float(np.max(np.abs(np.array(engine["scores"]) - np.array(base[:n]))))
    for arch, compiled in result["torch_compile"].get("models", {}).items():
        base = result["models"].get(arch, {}).get("latency_steps", {}).get("fp32_scores")
        if compiled.get("scores") and base:
            n = len(compiled["scores"])
            compiled["max_abs_score_diff_vs_fp32"] = float(np.max(np.abs(np.array(compiled["scores"]) - np.array(base[:n]))))
    return result
