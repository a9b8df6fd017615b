"""Every GPU figure the project reports, in one call on the lent GPU machine (see run_gpu.sh).

1. engine benchmarks: batch-1 latency with host<->device copies (fp16, CUDA graph), batched
   throughput, fp32 eager for comparison, for EfficientAD-S and -M;
2. teacher distillation with the paper's recipe (60,000 x 16 at 256 px) within a time budget;
3. downstream: student + autoencoder trained on magnetic_tile with the distilled teacher and with
   a random teacher, the same budget each, then image AUROC / AU-PRO of both.

Each step writes its JSON under --out as soon as it is done, so a timeout keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from inspector.engine_bench import bench
from inspector.method.distill import DistillConfig, distill
from inspector.method.efficientad import EfficientAD
from inspector.engine import Engine
from inspector.evaluate import evaluate
from inspector.image_io import good_training_images
from inspector.model_file import save_model
from inspector.method.training import TrainConfig, estimate_step_seconds, train

log = logging.getLogger("gpu_checks")
MIN_ITERATIONS = 500
DEVICE = "cuda"  # --device cpu dry-runs the script here with tiny budgets


def dump(out: Path, name: str, data: dict) -> None:
    (out / name).write_text(json.dumps(data, indent=2, default=float) + "\n")
    log.info("%s: %s", name, json.dumps(data, default=float)[:600])


def step_bench(out: Path) -> None:
    results = []
    for size in ("s", "m"):
        path = out / f"random_{size}.safetensors"
        save_model(path, EfficientAD(size), {"architecture": f"EfficientAD-{size.upper()}", "image_size": 256})
        engine = Engine(path, device=DEVICE)
        quick = DEVICE == "cpu"
        for batch in (1,) if quick else (1, 8, 32):
            results.append(bench(engine, batch=batch, runs=3 if quick else (100 if batch == 1 else 30), repeats=3))
        fp32 = Engine(path, device=DEVICE, backend="eager", half=False)
        results.append(bench(fp32, batch=1, runs=3 if quick else 50, repeats=3))
        path.unlink()
    dump(out, "bench.json", {"results": results})


def step_distill(out: Path, natural: list[Path], budget_s: float, lite_weights: Path, norm_images: int) -> Path:
    teacher = out / "teacher_small.safetensors"
    config = DistillConfig(backbone=f"lite0:{lite_weights}", time_budget_s=budget_s, norm_images=norm_images)
    command = (
        "inspector distill <natural>/imagenet-sample <natural>/bsds500 --out teacher_small.safetensors "
        f"--recipe paper --time-budget-min {budget_s / 60:.1f} --device cuda "
        "(run by scripts/device/run_gpu.sh on images re-encoded by scripts/device/prepare_data.py)"
    )
    card = distill(natural, teacher, config, device=DEVICE, show_progress=False, command=command)
    dump(out, "distill.json", card)
    return teacher


def step_downstream(out: Path, data: Path, penalty: Path, teacher: Path, deadline: float) -> None:
    paths = good_training_images(data)
    probe = EfficientAD("s").to(DEVICE)
    probe.teacher.requires_grad_(False)
    # The estimate times the networks only; the 2026-11-28 H200 run took 2x it per real step
    # (sampling, augmentation, optimiser, evaluation), and 1.3x let the second teacher time out.
    step_s = estimate_step_seconds(probe, torch.device(DEVICE), steps=5) * 2.0
    del probe
    remaining = deadline - time.time() - 60  # evaluation and writing
    iterations = int(max(MIN_ITERATIONS, min(20_000, remaining / 2 / step_s)))
    iterations -= iterations % 100 if iterations > 100 else 0
    log.info("downstream: %d iterations per teacher (%.1f ms per step)", iterations, step_s * 1e3)
    results = {"iterations": iterations, "train_images": len(paths), "data": "magnetic_tile, longer side <= 256 px"}
    for name, spec in (("distilled", teacher), ("random", "random")):
        t = time.time()
        result = train(paths, TrainConfig(iterations=iterations), teacher=spec, penalty_dir=penalty, device=DEVICE, show_progress=False)
        model_path = out / f"model_{name}.safetensors"
        save_model(model_path, result.model, result.metadata)
        metrics = evaluate(Engine(model_path, device=DEVICE), data, show_progress=False)
        metrics["train_seconds"] = round(time.time() - t, 1)
        metrics["final_loss"] = result.metadata["final_loss"]
        results[name] = metrics
        model_path.unlink()
        dump(out, "downstream.json", results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(".devdata"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--total-s", type=float, default=520, help="wall-clock budget for all steps")
    parser.add_argument("--distill-s", type=float, default=240)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--norm-images", type=int, default=10_000)
    parser.add_argument("--min-iterations", type=int, default=500)
    parser.add_argument("--teacher", type=Path, help="skip distillation: compare this teacher (e.g. the shipped one) with a random one")
    parser.add_argument("--skip-bench", action="store_true", help="skip the latency/throughput step")
    args = parser.parse_args()
    global DEVICE, MIN_ITERATIONS
    DEVICE, MIN_ITERATIONS = args.device, args.min_iterations
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    deadline = time.time() + args.total_s
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    if not args.skip_bench:
        t = time.time()
        step_bench(args.out)
        log.info("bench took %.0f s", time.time() - t)
    natural = [args.data / "natural" / "imagenet-sample", args.data / "natural" / "bsds500"]
    teacher = args.teacher or step_distill(args.out, natural, args.distill_s, args.data / "lite0.safetensors", args.norm_images)
    step_downstream(args.out, args.data / "magnetic_tile", args.data / "natural" / "bsds500", teacher, deadline)


if __name__ == "__main__":
    main()
