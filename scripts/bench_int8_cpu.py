"""The CPU backends side by side, in one run: eager fp32 (and bf16 where the CPU has it),
onnxruntime fp32 and int8, OpenVINO fp32 and int8, each with its accuracy gate, batch 1.

    python scripts/bench_int8_cpu.py MODEL... --json docs/evidence/int8_cpu.json

The gate and int8 calibration use the demo's ELPV split (``demo.elpv_split``: int8 calibrates on
training cells, the gate compares on the 200 held-out good and 60 defective cells), so the models
should be ELPV models: the shipped demo model (instant) and the EfficientAD-S demo model shipped
until version 0.1 (``git show 4497a7e^:inspector/assets/demo/demo_model.safetensors``). For other
models ``--images DIR`` takes their images as ``inspector bench --images`` does (an MVTec-layout
folder: int8 calibrates on ``train/good``, the gate compares on the test set and its masks).

Backends are timed in interleaved rounds (each round times every backend once), so a load that
comes and goes on a shared machine spreads over all of them; seconds are upper bounds there. A
backend that fails its gate is timed all the same and marked so: the engine would not run it.
(The script reaches into the engine to switch backends and gate each against eager fp32.)
Prints figures, asserts nothing: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BACKENDS = ("eager", "eager-bf16", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")


def measure(model: Path, images, backends: list[str], runs: int, rounds: int) -> dict:
    """One engine per model; each backend is activated in turn (the engine keeps every built graph
    loaded), gated against eager fp32 on the same images, and timed in interleaved rounds."""
    from inspector.engine import PRECISION, Engine
    from inspector.engine_bench import bench

    engine = Engine(model, device="cpu", backend="eager", gate_images=images, warmup=False)
    usable = []
    for name in backends:
        try:
            if PRECISION[name] == "fp32":
                engine._activate(name)
            elif engine._gate(name, "eager").reason.startswith("failed to build or run"):
                raise RuntimeError(engine.gates[name].reason)
            usable.append(name)
        except Exception as e:  # noqa: BLE001 -- a backend missing here is reported, not fatal
            logging.warning("%s: %s not measured: %s", model.name, name, e)
    per_round: dict[str, list[dict]] = {name: [] for name in usable}
    for _ in range(rounds):
        for name in usable:
            engine._activate(name)
            per_round[name].append(bench(engine, batch=1, runs=runs, repeats=1, warmup=2))
    rows = []
    for name in usable:
        r = per_round[name]
        p50 = float(np.median([x["latency_ms_p50"] for x in r]))
        gate = engine.gates.get(name)
        rows.append({
            "backend": name,
            "precision": PRECISION[name],
            "latency_ms_p50": round(p50, 1),
            "latency_ms_p99": round(float(max(x["latency_ms_p99"] for x in r)), 1),
            "latency_ms_round_medians": [round(x["latency_ms_p50"], 1) for x in r],
            "throughput_img_s": round(1e3 / p50, 2),
            "gate": gate.as_dict() if gate else None,
            "engine_would_run_it": gate is None or gate.passed,
        })
    eager = next((row["latency_ms_p50"] for row in rows if row["backend"] == "eager"), None)
    for row in rows:
        row["speedup_vs_eager_fp32"] = round(eager / row["latency_ms_p50"], 2) if eager else None
    return {"model": model.name, "architecture": engine.metadata.get("architecture"), "kind": engine.kind,
            "model_sha256": engine.model_sha256, "threshold": engine.threshold, "results": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/bench_int8_cpu.py", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all)")
    p.add_argument("--runs", type=int, default=10, help="timed calls per backend per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--label", default="", help="a note for the JSON (e.g. the ISA emulated)")
    p.add_argument("--images", type=Path, help="the models' images for int8 calibration and the gate (default: the demo's ELPV split)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    import torch

    import demo
    from inspector.devices import ISA_CAP_VARIABLES, bf16_supported, cpu_description
    from inspector.precision_gate import images_from_folder

    images = images_from_folder(args.images) if args.images else demo.elpv_split().gate_images()
    backends = [b for b in args.backends.split(",") if b != "eager-bf16" or bf16_supported(torch.device("cpu"))]
    t0 = time.time()
    result = {
        "what": "batch-1 CPU latency of each backend, interleaved rounds, with the accuracy gate (scripts/bench_int8_cpu.py)",
        "machine": cpu_description(),
        "threads": torch.get_num_threads(),
        "label": args.label,
        "env": {k: os.environ[k] for k in (*ISA_CAP_VARIABLES, "OMP_NUM_THREADS") if k in os.environ},
        "note": "a shared machine: other jobs ran while measuring, so milliseconds are upper bounds; ratios are from the same rounds",
        "gate_images": images.source,
        "models": [measure(m, images, backends, args.runs, args.rounds) for m in args.models],
    }
    result["seconds"] = round(time.time() - t0)
    for m in result["models"]:
        print(f"{m['architecture']} ({m['model']}):")
        for r in m["results"]:
            gate = r["gate"]
            verdict = "" if gate is None else ("  gate passed" if gate["passed"] else f"  gate: {gate['reason']}")
            print(f"  {r['backend']:<17} {r['precision']:<5} p50 {r['latency_ms_p50']:7.1f} ms  p99 {r['latency_ms_p99']:7.1f} ms  "
                  f"x{r['speedup_vs_eager_fp32']} vs eager fp32{verdict}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
