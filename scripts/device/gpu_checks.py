"""Every GPU figure of issue 15 in one call on the lent GPU machine (run_gpu.sh runs it).

Stages, in the order of ``--plan``, each with a time box of its own (seconds, or ``rest``):

``distill_s``, ``distill_m``
    ``teacher_small`` (PDN-S) and ``teacher_medium`` (PDN-M) distilled from EfficientNet-Lite2
    (better features than Lite0 on magnetic tile, docs/decisions.md, "Whose features the instant model uses") with the paper's
    recipe, 60,000 iterations of batch 16, for as long as the box allows; the card says how far
    it got and splits an iteration's time. The checkpoint stays in ``--state``: a second call on
    the still-warm machine continues it.
``bench``
    frame -> decision latency step by step (eager fp32 to one CUDA graph), torch.compile
    max-autotune (compiled in a background process during distillation), batched throughput, the
    engine alone, the pipeline against the engine (gpu_bench.py).
``train``
    EfficientAD-S and -M on magnetic tile and on the ELPV mono cells with the new teachers, the
    paper's recipe for as many of its 70,000 iterations as fit (fitted from a measured step), then
    ``inspector eval``'s figures (magnetic tile) or the demo's calibration figures (ELPV).
``pytest``
    tests/test_engine_cuda.py.

Everything lands in ``--out`` as soon as it exists (results.json after every stage, the teachers
when written), within what the device tool brings back: at most 8 files of 16 MiB (a PDN-M
teacher is split in two parts; ``cat`` them). ``--dry-run`` runs every stage on the CPU with tiny
sizes and a few iterations, against a pack made with ``prepare_data.py --tiny``.

    python scripts/device/gpu_checks.py --out OUT [--pack runs/devdata] [--total-s 560]
        [--plan distill_s=150,distill_m=115,bench=90,train=rest,pytest=20] [--dry-run]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO), str(REPO / "scripts")]

import prepare_data  # noqa: E402
from gpu_bench import BenchInputs, CompileWorker, bench_stage  # noqa: E402

from inspector import WEIGHTS_DIR  # noqa: E402
from inspector.devices import bf16_supported, cpu_description  # noqa: E402
from inspector.method.distill import DistillConfig, distill  # noqa: E402
from inspector.method.efficientad import EfficientAD  # noqa: E402
from inspector.method.modes import PAPER_ITERATIONS  # noqa: E402
from inspector.model_file import save_model  # noqa: E402

log = logging.getLogger("gpu_checks")
MIB = 1 << 20
#: The device tool brings back files of at most 16 MiB; larger ones go in parts of this size.
PART_BYTES = 16 * MIB - 64 * 1024
DEFAULT_PLAN = "distill_s=150,distill_m=115,bench=90,train=rest,pytest=20"
#: A CPU dry run's plan: the bench box holds DRY.compile_wait_s, which a slow or busy CPU needs for
#: the compile worker; the other stages hand back what they do not use.
DRY_PLAN = "distill_s=60,distill_m=60,bench=150,train=rest,pytest=30"
REFS = ("s-mt", "s-elpv", "m-mt", "m-elpv")
#: Shares of the train stage's time, and the seconds each spends outside its training loop before
#: any is measured (loading, teacher statistics, quantiles, saving, scoring the test set; the
#: metrics themselves run in other processes meanwhile).
REF_SHARE = {"s-mt": 0.3, "s-elpv": 0.2, "m-mt": 0.3, "m-elpv": 0.2}
REF_OVERHEAD_S = {"mt": 14.0, "elpv": 8.0}
#: Fraction of a reference's loop time planned for steps (the probe times real steps, but the
#: loop adds checkpoints and the progress bookkeeping).
STEP_MARGIN = 0.9


@dataclass(frozen=True)
class Settings:
    """What differs between the real run and the dry run."""

    device: str = "cuda"
    distill: dict = field(default_factory=dict)  # DistillConfig overrides
    min_iterations: int = 200
    max_iterations: int = PAPER_ITERATIONS
    penalty_from_pack: bool = False  # the penalty's natural images: the shipped ones, or the pack's BSDS500
    probe_steps: int = 20
    target_frr: float = 0.01
    bench_runs: int = 300
    bench_warmup: int = 10
    score_frames: int = 8
    variant_budget_s: float = 1.5
    throughput_batches: tuple[int, ...] = (64, 256)
    pipeline_frames: int = 200
    pipeline_runs: int = 3
    engine_backend: str = "auto"
    compile_backend: str = "inductor"
    compile_mode: str = "max-autotune"
    compile_wait_s: float = 20.0
    metric_workers: int = 6  # processes computing inspector eval's metrics; 0: one thread
    archs: tuple[str, ...] = ("s", "m")  # benchmarked model sizes
    refs: tuple[str, ...] = REFS


DRY = Settings(
    device="cpu",
    distill={"iterations": 3, "batch": 2, "crop": 32, "norm_images": 2, "checkpoint_every": 2, "amp": False},
    min_iterations=2, max_iterations=2, penalty_from_pack=True, probe_steps=1, target_frr=0.25, bench_runs=1, bench_warmup=0,
    score_frames=1, variant_budget_s=0.3, throughput_batches=(),
    pipeline_frames=2, pipeline_runs=1, engine_backend="eager", compile_backend="eager", compile_mode="default",
    compile_wait_s=120.0, metric_workers=0, archs=("s",), refs=("s-mt", "s-elpv"),
)


# --- what comes back --------------------------------------------------------------------------------


class Outbox:
    """``--out``: results.json (rewritten after every stage, merged with an earlier call's in
    ``--state``), extras.tar (cards, the compile worker's and pytest's output), and shipped files
    split into parts below the device tool's file limit."""

    def __init__(self, out: Path, state: Path) -> None:
        self.out, self.state = out, state
        earlier = state / "results.json"
        self.results: dict = json.loads(earlier.read_text()) if earlier.is_file() else {}
        self.results.setdefault("calls", []).append({"started": utc_now()})
        self.extras: dict[str, Path] = {}

    def record(self, key: str, value) -> None:
        self.results[key] = value
        self.write()

    def write(self) -> None:
        self.results["calls"][-1]["written"] = utc_now()
        text = json.dumps(self.results, indent=2, default=str) + "\n"
        for folder in (self.out, self.state):
            tmp = folder / "results.json.tmp"
            tmp.write_text(text)
            tmp.replace(folder / "results.json")

    def ship(self, path: Path) -> dict:
        """Copies a file into --out, in parts of PART_BYTES when larger (``cat`` them in order)."""
        data = path.read_bytes()
        n = -(-len(data) // PART_BYTES)
        names = [path.name] if n == 1 else [f"{path.name}.part{i}" for i in range(n)]
        size = -(-len(data) // n)
        for i, name in enumerate(names):
            (self.out / name).write_bytes(data[i * size : (i + 1) * size])
        entry = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "files": names}
        self.results.setdefault("shipped", {})[path.name] = entry
        self.write()
        return entry

    def attach(self, path: Path, name: str | None = None) -> None:
        """Adds a small file to extras.tar (rewritten at once)."""
        self.extras[name or path.name] = path
        with tarfile.open(self.out / "extras.tar.tmp", "w") as tar:
            for arcname, p in self.extras.items():
                if p.is_file():
                    tar.add(p, arcname=arcname)
        (self.out / "extras.tar.tmp").replace(self.out / "extras.tar")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    settings: Settings
    outbox: Outbox
    data: Path  # unpacked PNG folders
    dev: torch.device
    workers: dict = field(default_factory=dict)  # architecture -> CompileWorker
    pool: Executor | None = None
    step_s: dict = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.args.state

    @property
    def pack(self) -> Path:
        return self.args.pack


def machine(dev: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "cpu": cpu_description()}
    if dev.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(dev), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1))
        try:
            info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit",
                                                 "--format=csv"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError) as e:
            info["nvidia_smi"] = f"not run: {e}"
        for lib in ("triton",):
            try:
                info[lib] = __import__(lib).__version__
            except ImportError:
                info[lib] = None
    return info


def bench_files(run: Run) -> tuple[dict[str, Path], Path, list[np.ndarray]]:
    """Random-weight EfficientAD-S/-M model files calibrated like trained ones (latency does not
    depend on the weights) and camera-like frames: ELPV cells at the camera's 300x300."""
    from inspector.image_io import list_images
    from inspector.method.training import validation_quantiles

    models = {}
    images = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for size in run.settings.archs:
        path = run.state / f"bench_{size}.safetensors"
        if not path.is_file():
            torch.manual_seed(0)
            model = EfficientAD(size).eval().to(run.dev)
            model.set_map_quantiles(validation_quantiles(model, images, run.dev))
            save_model(path, model.cpu(), {"architecture": f"EfficientAD-{size.upper()}", "image_size": 256, "threshold": 0.5,
                                           "note": "random weights, for timing only"})
        models[f"EfficientAD-{size.upper()}"] = path
    cells = list_images(run.data / "elpv" / "calibration_good")[:16]
    frames = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (300, 300), interpolation=cv2.INTER_LINEAR) for p in cells]
    frames_path = run.state / "bench_frames.npy"
    np.save(frames_path, np.stack(frames))
    return models, frames_path, frames


def start_compile_workers(run: Run, models: dict[str, Path], frames_path: Path) -> dict[str, CompileWorker]:
    """One compile_worker.py process per model, compiling while the GPU distils (gpu_bench.py
    collects them)."""
    s = run.settings
    workers = {}
    for arch, model in models.items():
        tag = arch.lower().replace("efficientad-", "")
        out, go, log_path = (run.state / f"compile_{tag}{suffix}" for suffix in (".json", ".go", ".log"))
        out.unlink(missing_ok=True)
        go.unlink(missing_ok=True)
        # On the GPU machine niced, with a few compile threads each: the distillation beside them
        # needs a core to feed the GPU. A CPU dry run distils on the CPU itself, where a niced worker
        # starves behind any other load and misses the wait; it runs at normal priority there.
        niced = ["nice", "-n", "10"] if run.dev.type == "cuda" else []
        command = [*niced, sys.executable, str(HERE / "compile_worker.py"), "--models", str(model), "--frames", str(frames_path),
                   "--go", str(go), "--out", str(out), "--mode", s.compile_mode, "--backend", s.compile_backend,
                   "--device", s.device, "--runs", str(s.bench_runs), "--warmup", str(2 * s.bench_warmup), "--score-frames", str(s.score_frames)]
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(run.state / "inductor_cache"), "PYTHONUNBUFFERED": "1",
               "TORCHINDUCTOR_COMPILE_THREADS": str(max(1, (os.cpu_count() or 2) // 3))}
        with log_path.open("w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        workers[arch] = CompileWorker(process, out, go, log_path)
        log.info("compile worker for %s started (pid %d): %s %s", arch, process.pid, s.compile_backend, s.compile_mode)
    run.workers = workers
    return workers


# --- stages -----------------------------------------------------------------------------------------


def stage_distill(run: Run, size: str, deadline: float) -> dict:
    name = "small" if size == "s" else "medium"
    out = run.state / f"teacher_{name}.safetensors"
    manifest = json.loads((run.pack / "manifest.json").read_text())
    budget = max(5.0, deadline - time.time() - 10)  # writing the teacher and its card
    config = replace(DistillConfig(size=size, backbone=f"lite2:{run.pack / 'lite2.safetensors'}", time_budget_s=budget), **run.settings.distill)
    natural = [run.data / "natural" / "imagenet-sample", run.data / "natural" / "bsds500"]
    command = (f"inspector distill <natural>/imagenet-sample <natural>/bsds500 --out teacher_{name}.safetensors --size {size} "
               f"--backbone lite2 --recipe paper --time-budget-min {budget / 60:.2f} --device {run.dev.type} "
               "(run by scripts/device/gpu_checks.py on the images packed by scripts/device/prepare_data.py)")
    notes = {
        "data_note": (f"the {manifest['natural']['images']} photographs of ../shared/data/natural (ImageNet sample + BSDS500), "
                      f"longest side <= {manifest['natural']['longest_side_px']} px, WebP quality {manifest['natural']['webp_quality']} "
                      "for the device transfer (scripts/device/prepare_data.py)"),
        "backbone_weights_note": "EfficientNet-Lite2's ImageNet weights carried as an fp16 safetensors copy, cast back to fp32 on load",
    }
    card = distill(natural, out, config, device=run.dev.type, show_progress=False, command=command, notes=notes)
    run.outbox.ship(out)
    run.outbox.attach(out.with_suffix(".json"))
    return card


def stage_bench(run: Run, deadline: float, models: dict[str, Path], frames: list[np.ndarray]) -> dict:
    s = run.settings
    inputs = BenchInputs(
        device=run.dev, models=models, frames=frames, work=run.state / "bench_work", runs=s.bench_runs, warmup=s.bench_warmup,
        score_frames=s.score_frames,
        variant_budget_s=s.variant_budget_s, throughput_batches=s.throughput_batches, pipeline_frames=s.pipeline_frames,
        pipeline_runs=s.pipeline_runs, engine_backend=s.engine_backend, workers=run.workers, compile_wait_s=s.compile_wait_s,
    )
    shutil.rmtree(inputs.work, ignore_errors=True)
    inputs.work.mkdir(parents=True)
    try:
        return bench_stage(inputs, deadline)
    finally:
        for worker in run.workers.values():
            run.outbox.attach(worker.log)
        run.workers = {}


def step_seconds(run: Run, size: str) -> tuple[float, str]:
    """Seconds per training iteration of the paper's recipe, timed on real steps
    (training.train_step on random images); the networks-only estimate x2 if that API moved."""
    if size in run.step_s:
        return run.step_s[size]
    from inspector.method import training

    dev, amp = run.dev, bf16_supported(run.dev)
    torch.manual_seed(0)
    model = EfficientAD(size).to(dev)
    model.teacher.requires_grad_(False)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam([*model.student.parameters(), *model.autoencoder.parameters()], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    n = run.settings.probe_steps
    warmup = min(3, n - 1)
    try:
        for i in range(n + warmup):
            if i == warmup:
                torch.cuda.synchronize() if dev.type == "cuda" else None
                t = time.perf_counter()
            training.train_step(model, optimizer, images, images, g, dev, amp)
        torch.cuda.synchronize() if dev.type == "cuda" else None
        result = ((time.perf_counter() - t) / n, f"{n} real steps (training.train_step) on random images")
    except TypeError as e:
        log.warning("train_step's signature moved (%s): the networks-only estimate x2 instead", e)
        result = (training.estimate_step_seconds(model, dev, amp=amp) * 2, "networks-only estimate x2")
    del model, optimizer
    run.step_s[size] = result
    return result


def teacher_for(run: Run, size: str) -> tuple[Path | None, str]:
    name = "small" if size == "s" else "medium"
    for new, where in ((run.state / f"teacher_{name}.safetensors", "here"), (run.pack / "teachers" / f"teacher_{name}.safetensors", "in an earlier run")):
        if new.is_file():
            card = json.loads(new.with_suffix(".json").read_text())
            return new, (f"distilled from {card['backbone'].split(':')[0]} {where}, "
                         f"{card['iterations_done']} of {card['recipe']['iterations']} iterations")
    if size == "s":
        return WEIGHTS_DIR / "teacher_small.safetensors", "the shipped teacher_small (no new one was distilled)"
    return None, "no PDN-M teacher (its distillation did not run)"


def train_ref(run: Run, ref: str, budget: float) -> dict:
    from inspector.image_io import good_training_images, list_images
    from inspector.method.training import TrainConfig, TrainingCancelled, train

    size, data = ref.split("-")
    teacher, teacher_note = teacher_for(run, size)
    if teacher is None:
        return {"skipped": teacher_note}
    paths = good_training_images(run.data / "magnetic_tile") if data == "mt" else list_images(run.data / "elpv" / "train")
    step_s, how = step_seconds(run, size)
    plan_file, checkpoint = run.state / f"ref_{ref}.json", run.state / f"ref_{ref}.ckpt"
    if checkpoint.is_file() and plan_file.is_file():
        iterations = json.loads(plan_file.read_text())["iterations"]  # a second call resumes with the count it chose
    else:
        fits = int(STEP_MARGIN * (budget - REF_OVERHEAD_S[data]) / step_s)
        iterations = max(run.settings.min_iterations, min(run.settings.max_iterations, fits // 100 * 100 if fits >= 100 else fits))
        plan_file.write_text(json.dumps({"iterations": iterations}))
    log.info("%s: %d iterations (%.2f ms per step, %s) in a %.0f s box, teacher: %s", ref, iterations, step_s * 1e3, how, budget, teacher_note)
    cancel = threading.Event()
    stopper = threading.Timer(max(1.0, budget + 30), cancel.set)  # a backstop: the fit should end well before
    stopper.start()
    progress = []

    def keep(report) -> None:
        progress[:] = [report]

    penalty = run.data / "natural" / "bsds500" if run.settings.penalty_from_pack else None  # None: the shipped photographs
    t = time.perf_counter()
    try:
        result = train(paths, TrainConfig(size=size, iterations=iterations), teacher=teacher, penalty_dir=penalty, device=run.dev.type,
                       checkpoint=checkpoint, show_progress=False, cancel=cancel, on_progress=keep)
    except TrainingCancelled as e:
        return {"iterations_planned": iterations, "cancelled": str(e), "note": "checkpoint kept in --state: a second call resumes it"}
    finally:
        stopper.cancel()
    train_s = time.perf_counter() - t
    model_path = run.state / f"model_{ref}.safetensors"
    save_model(model_path, result.model, result.metadata)
    entry = {
        "data": {"mt": "magnetic tile (MVTec layout), packed copy: each axis <= 256 px, WebP q85",
                 "elpv": "ELPV mono cells, demo split (demo.elpv_split), packed at 256x256 WebP q90"}[data],
        "train_images": result.metadata.get("train_images"), "teacher": teacher_note,
        "recipe": result.metadata.get("recipe", "paper"), "autoencoder": result.metadata.get("autoencoder", True),
        "iterations": iterations, "of_paper_iterations": PAPER_ITERATIONS, "fraction": round(iterations / PAPER_ITERATIONS, 4),
        "planned_step_ms": round(step_s * 1e3, 3), "step_ms_in_loop": round(progress[0].seconds_per_iteration * 1e3, 3) if progress else None,
        "train_seconds": round(train_s, 1), "final_loss": result.metadata.get("final_loss"),
    }
    t = time.perf_counter()
    entry["eval"] = evaluate_mt(run, model_path) if data == "mt" else evaluate_elpv(run, model_path)
    entry["score_seconds"] = round(time.perf_counter() - t, 1)
    return entry


def evaluate_mt(run: Run, model_path: Path) -> dict:
    """``inspector eval``: the test set scored here, the metrics (overall and per defect type) in
    worker processes while the next reference trains; collected at the end of the stage."""
    from inspector.engine import Engine
    from inspector.evaluate import metrics_for, score_test_set

    engine = Engine(model_path, device=run.dev.type, backend=run.settings.engine_backend, warmup=False)
    scored = score_test_set(engine, run.data / "magnetic_tile", show_progress=False)
    good = [s for s in scored if s.defect_type == "good"]
    subsets = {"overall": scored, **{t: good + [s for s in scored if s.defect_type == t] for t in sorted({s.defect_type for s in scored} - {"good"})}}
    return {"pending": {name: run.pool.submit(metrics_for, subset) for name, subset in subsets.items()}}


def evaluate_elpv(run: Run, model_path: Path) -> dict:
    """The demo's calibration figures: held-out good and defective mono cells, a threshold for a
    1 % false-reject rate, the AUROC and the escape rates there (as scripts/sweep_instant.py --elpv
    measured them; that script is at commit d559bce)."""
    from calibration.calibrate import calibrate_model
    from inspector.image_io import list_images

    result = calibrate_model(model_path, list_images(run.data / "elpv" / "calibration_good"), list_images(run.data / "elpv" / "calibration_defect"),
                             device=run.dev.type, backend=run.settings.engine_backend, target_frr=run.settings.target_frr, show_progress=False)
    report = result.report()
    keys = ("auroc", "escape_rate", "combined_escape_rate", "expected_frr", "threshold", "n_good", "n_defective", "target_frr")
    return {k: report.get(k) for k in keys}


def collect_metrics(results: dict, deadline: float) -> None:
    for entry in results.values():
        pending = entry.get("eval", {}).pop("pending", None) if isinstance(entry, dict) else None
        if not pending:
            continue
        figures = {}
        for name, future in pending.items():
            try:
                figures[name] = future.result(timeout=max(0.1, deadline - time.time()))
            except Exception as e:  # noqa: BLE001 -- a timeout or a worker's failure costs only these figures
                figures[name] = {"error": f"{type(e).__name__}: {e}"}
        overall = figures.pop("overall", {})
        entry["eval"] = {**overall, "per_type": figures, "test_images": overall.get("images")}


def stage_train(run: Run, deadline: float) -> dict:
    results: dict = {}
    refs = list(run.args.refs)
    try:
        for i, ref in enumerate(refs):
            left = deadline - time.time() - 10  # the last metrics
            budget = left * REF_SHARE[ref] / sum(REF_SHARE[r] for r in refs[i:])
            if budget < 20 and run.settings.device == "cuda":
                results[ref] = {"skipped": f"{budget:.0f} s left for it"}
                continue
            try:
                results[ref] = train_ref(run, ref, budget)
            except Exception as e:  # noqa: BLE001 -- one reference's failure costs only its own figures
                log.exception("%s failed", ref)
                results[ref] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            run.outbox.record("train", {k: strip_pending(v) for k, v in results.items()})
    finally:
        collect_metrics(results, deadline)
    return results


def strip_pending(entry: dict) -> dict:
    if isinstance(entry, dict) and "pending" in entry.get("eval", {}):
        return {**entry, "eval": {"state": "metrics computing"}}
    return entry


def stage_pytest(run: Run, deadline: float) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/test_engine_cuda.py",
               # the demo model's test reads cells from the elpv-dataset package, which the device image lacks
               "-k", "not trained_model"]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(5, deadline - time.time()))
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        output, code = f"timed out: {(e.stdout or b'')[-2000:]!r}", None
    (run.state / "pytest_cuda.txt").write_text(output)
    run.outbox.attach(run.state / "pytest_cuda.txt")
    return {"returncode": code, "tail": output[-1500:]}


# --- main -------------------------------------------------------------------------------------------


def parse_plan(text: str) -> list[tuple[str, float | None]]:
    plan = []
    for item in text.split(","):
        name, _, seconds = item.strip().partition("=")
        if name not in ("distill_s", "distill_m", "bench", "train", "pytest"):
            raise SystemExit(f"error: unknown stage {name!r} in --plan")
        plan.append((name, None if seconds in ("", "rest") else float(seconds)))
    return plan


def stage_deadlines(plan: list[tuple[str, float | None]], i: int, now: float, deadline: float) -> float:
    """Stage i ends after its own seconds, or (``rest``) when the later stages' seconds are all
    that is left; never past the run's deadline minus the later stages' seconds."""
    later = sum(s or 0.0 for _, s in plan[i + 1 :])
    own = plan[i][1]
    end = deadline - later if own is None else now + own
    return min(end, deadline - later)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="where the results go ($OUT on the device machine)")
    p.add_argument("--pack", type=Path, default=REPO / "runs" / "devdata", help="prepare_data.py's folder")
    p.add_argument("--state", type=Path, default=REPO / "runs" / "gpu_state", help="checkpoints, models, unpacked data; kept between calls")
    p.add_argument("--total-s", type=float, default=560.0, help="wall-clock for everything, setup included")
    p.add_argument("--plan", help=f"stages in order with their seconds (or rest); default {DEFAULT_PLAN}, with --dry-run {DRY_PLAN}")
    p.add_argument("--refs", type=lambda t: [r for r in t.split(",") if r], help=f"references to train, of {','.join(REFS)} (default: all; the dry run's: s-mt,s-elpv)")
    p.add_argument("--no-compile", action="store_true", help="no torch.compile worker")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, a few iterations per stage")
    args = p.parse_args(argv)
    t0 = time.time()
    deadline = t0 + args.total_s
    settings = DRY if args.dry_run else Settings()
    args.plan = args.plan or (DRY_PLAN if args.dry_run else DEFAULT_PLAN)
    args.refs = list(settings.refs) if args.refs is None else args.refs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    for folder in (args.out, args.state):
        folder.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(args.out, args.state)
    plan = parse_plan(args.plan)
    for ref in args.refs:
        if ref not in REFS:
            raise SystemExit(f"error: unknown reference {ref!r}")
    dev = torch.device(settings.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU here (--dry-run runs on the CPU)")
    outbox.record("machine", machine(dev))
    outbox.results["calls"][-1].update(plan=args.plan, total_s=args.total_s, dry_run=args.dry_run, refs=args.refs)
    unpacked = prepare_data.unpack(args.pack, args.state / "data")
    outbox.record("pack", {k: unpacked[k] for k in ("natural", "magnetic_tile", "elpv", "bytes", "transfer_bytes", "tiny")})
    run = Run(args, settings, outbox, args.state / "data", dev)
    run.pool = (ProcessPoolExecutor(max_workers=settings.metric_workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=os.nice, initargs=(5,))  # the training beside them comes first
                if settings.metric_workers else ThreadPoolExecutor(max_workers=1))
    models, frames_path, frames = bench_files(run)
    if not args.no_compile and any(name == "bench" for name, _ in plan):
        start_compile_workers(run, models, frames_path)
    outbox.results["calls"][-1]["setup_s"] = round(time.time() - t0, 1)
    log.info("setup took %.0f s; plan %s in %.0f s", time.time() - t0, args.plan, deadline - time.time())
    try:
        for i, (name, _) in enumerate(plan):
            start, cpu = time.time(), time.process_time()
            end = stage_deadlines(plan, i, start, deadline)
            log.info("== %s: %.0f s", name, end - start)
            try:
                if name.startswith("distill"):
                    result = stage_distill(run, name[-1], end)
                elif name == "bench":
                    result = stage_bench(run, end, models, frames)
                elif name == "train":
                    result = stage_train(run, end)
                else:
                    result = stage_pytest(run, end)
            except Exception as e:  # noqa: BLE001 -- a failed stage costs only its own figures
                log.exception("stage %s failed", name)
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
            result = {**result, "stage_seconds": round(time.time() - start, 1), "stage_box_s": round(end - start, 1),
                      "stage_cpu_s": round(time.process_time() - cpu, 1)}
            outbox.record(name, result)
            log.info("== %s done in %.0f s", name, time.time() - start)
    finally:
        for worker in run.workers.values():
            worker.end()
        run.pool.shutdown(wait=False, cancel_futures=True)
        outbox.results["calls"][-1]["seconds"] = round(time.time() - t0, 1)
        outbox.write()
        try:
            print(summary(outbox.results), flush=True)
        except Exception as e:  # noqa: BLE001 -- results.json holds everything; the summary is a convenience
            print(f"== summary failed ({type(e).__name__}: {e}); see results.json", flush=True)
    return 0


def summary(results: dict) -> str:
    """The few lines the device tool's output tail should show."""
    lines = ["== summary"]
    for name in ("distill_s", "distill_m"):
        r = results.get(name, {})
        if "iterations_done" in r:
            t = r.get("timing", {})
            lines.append(f"{name}: {r['iterations_done']} / {r['recipe']['iterations']} iterations, loss {r['distillation_loss_first']:.3f} -> "
                         f"{r['distillation_loss_final']:.3f}, {t.get('wall_ms_per_iteration')} ms/it, split {t.get('split_ms')}")
        elif r:
            lines.append(f"{name}: {str(r.get('error', r))[:300]}")
    bench = results.get("bench", {})
    for arch, m in bench.get("models", {}).items():
        for row in m.get("latency_steps", {}).get("steps", []):
            if "p50_ms" in row:
                lines.append(f"{arch} {row['variant'][:48]:48s} p50 {row['p50_ms']:.3f} p99 {row['p99_ms']:.3f} ms")
        for row in m.get("throughput", []) if isinstance(m.get("throughput"), list) else []:
            if "images_per_s" in row:
                lines.append(f"{arch} throughput batch {row['batch']}: {row['images_per_s']:.0f} images/s")
    for arch, m in bench.get("torch_compile", {}).get("models", {}).items():
        b = m.get("batch1", {})
        lines.append(f"{arch} torch.compile: compile {m.get('compile_s')} s, p50 {b.get('p50_ms')} p99 {b.get('p99_ms')} ms {str(m.get('error', ''))[:300]}")
    pipe = bench.get("models", {}).get("EfficientAD-S", {}).get("pipeline_vs_engine", {})
    if "overhead_median" in pipe:
        lines.append(f"pipeline vs engine alone: {pipe['overhead_median']:+.1%}")
    for ref, r in results.get("train", {}).items():
        if isinstance(r, dict):
            ev = r.get("eval", {})
            lines.append(f"{ref}: {r.get('iterations')} it, {r.get('train_seconds')} s, image AUROC {ev.get('image_auroc', ev.get('auroc'))} "
                         f"{str(r.get('skipped', r.get('error', '')))[:300]}")
    if "pytest" in results:
        lines.append(f"pytest: {results['pytest'].get('tail', '')[-200:].strip()}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
