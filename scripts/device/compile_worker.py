"""torch.compile of the frame -> decision path, in a process of its own per model (gpu_checks.py).

Compiling with ``mode="max-autotune"`` takes minutes (Triton kernels tried against each other),
so this process compiles while the main one distils, then waits for the go file: the main process
creates it when the GPU is quiet, and this one times the compiled paths and writes its JSON. A
compilation that hangs or outlasts the call is killed with the process, and the rest of the run
keeps its figures.

    python scripts/device/compile_worker.py --models S.safetensors --frames F.npy
        --go GO --out OUT.json [--mode max-autotune] [--backend inductor] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from frame_path import FrameDecider, as_nhwc, prepare, scores_of, time_per_call  # noqa: E402

from inspector.model_file import load_model  # noqa: E402


class CompiledDecider:
    """Pinned host frame -> device -> compiled decider -> score and decision on the host."""

    def __init__(self, fn, device: torch.device, shape) -> None:
        self.fn, self.device = fn, device
        self.host = torch.empty(shape, dtype=torch.uint8)
        if device.type == "cuda":
            self.host = self.host.pin_memory()

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> tuple[float, bool]:
        self.host.numpy()[...] = as_nhwc(frame)
        score, decision, _ = self.fn(self.host.to(self.device, non_blocking=True))
        out = torch.stack([score, decision.float()], dim=1).cpu()
        return float(out[0, 0]), bool(out[0, 1])


def write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=Path, nargs="+", required=True)
    p.add_argument("--frames", type=Path, required=True, help=".npy of (N, H, W) uint8 frames")
    p.add_argument("--go", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", default="max-autotune")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--device", default="cuda")
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--score-frames", type=int, default=8)
    p.add_argument("--dtype", default="float16")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    frames = list(np.load(args.frames))
    result: dict = {"mode": args.mode, "backend": args.backend, "dtype": args.dtype, "torch": torch.__version__, "models": {}}
    compiled = {}
    for path in args.models:
        model, meta = load_model(path)
        name = meta.get("architecture", path.stem)
        entry = result["models"].setdefault(name, {})
        write(args.out, {**result, "state": f"compiling {name}"})
        try:
            decider = FrameDecider(prepare(model, device, dtype, channels_last=True), meta.get("threshold", 0.5),
                                   dtype=dtype, channels_last=True).to(device)
            fn = torch.compile(decider, mode=args.mode if args.backend == "inductor" else None, backend=args.backend, dynamic=False)
            call = CompiledDecider(fn, device, as_nhwc(frames[0]).shape)
            t = time.perf_counter()
            call(frames[0])  # compiles (and autotunes)
            call(frames[1 % len(frames)])
            entry["compile_s"] = round(time.perf_counter() - t, 1)
            compiled[name] = call
        except Exception as e:  # noqa: BLE001 -- one model's failure must not cost the other's figures
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["traceback"] = traceback.format_exc()[-3000:]
    write(args.out, {**result, "state": "ready"})
    while not args.go.exists():
        time.sleep(0.2)
    for name, call in compiled.items():
        entry = result["models"][name]
        try:
            entry["batch1"] = time_per_call(call, frames, runs=args.runs, warmup=args.warmup, budget_s=8)
            entry["scores"] = scores_of(call, frames[: args.score_frames]).tolist()
        except Exception as e:  # noqa: BLE001
            entry["error"] = f"{type(e).__name__}: {e}"
        write(args.out, {**result, "state": "timing"})
    write(args.out, {**result, "state": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
