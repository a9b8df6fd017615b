"""This engine against anomalib's EfficientAd-S on the CPU, batch 1, in one process, interleaved.

    python scripts/bench_vs_anomalib.py MODEL [--rounds 5] [--runs 10] [--exclude BACKENDS] [--json FILE]

Needs anomalib (``pip install anomalib==2.7.0``; not a dependency of this project) and the same
torch for both. MODEL is an EfficientAD-S model file with a calibrated threshold, an ELPV one
(the gate's images are the demo's ELPV split, as in ``scripts/bench_int8_cpu.py``), e.g. the
EfficientAD-S demo model shipped until version 0.1
(``git show 4497a7e^:inspector/assets/demo/demo_model.safetensors``), or an instant model such as
the shipped demo model (then two different models are compared). Timed, each round in turn:

- anomalib: ``EfficientAdModel(model_size=S)`` in eval mode under ``torch.no_grad``, eager fp32, on
  an already normalised (1, 3, 256, 256) tensor: its networks, map arithmetic and upsampling, and
  nothing else (no decoding, resizing or normalising): the least it can cost;
- this engine in eager fp32, ``predict`` on a 256 x 256 uint8 frame (conversion, networks, maps,
  upsampling to the frame): the like-for-like reference;
- this engine as its start-up measurement configures it (``backend="auto"``: fastest of eager,
  bf16, onnxruntime, OpenVINO, int8, each reduced precision behind the accuracy gate).

Both models have the same layers (PDN-S teacher, 768-channel student, autoencoder); weights do not
change their cost, so anomalib's are left at initialisation. Prints figures, asserts nothing.

``--ceiling`` also says how close each contestant runs to what this CPU computes in fp32: the
multiply-adds its convolutions and linear layers do per frame (counted with forward hooks; an
instant model's bank search is not counted), and two more contestants timed in the same rounds, a
2,048² fp32 matrix product (``torch.mm``: MKL, capped by ``MKL_ENABLE_INSTRUCTIONS``) and the PDN's
largest convolution alone (oneDNN, capped by ``ONEDNN_MAX_CPU_ISA``). The faster of the two is the
ceiling; each row gets its GFLOP/s and its share of it, and the result says what the issue's 3x
anomalib would ask of the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(call, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def multiply_adds(module, call) -> int:
    """Multiply-adds of the convolutions and linear layers of ``module`` that ``call()`` runs."""
    from torch import nn

    total = 0

    def count(layer, inputs, output) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            total += output.numel() * k
        else:
            total += output.numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        call()
    finally:
        for h in hooks:
            h.remove()
    return total


def ceiling_contestants() -> dict[str, tuple]:
    """Name -> (call, multiply-adds): fp32 work at the best rate PyTorch reaches on this CPU."""
    import torch
    from torch.nn import functional as F

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    # The PDN-S teacher's second convolution, its largest: 128 -> 256 channels, 4x4, on 126x126.
    x, w = torch.randn(1, 128, 126, 126), torch.randn(256, 128, 4, 4)
    conv_out = (126 - 4 + 1) ** 2 * 256

    def mm() -> None:
        torch.mm(a, b)

    def conv() -> None:
        with torch.no_grad():
            F.conv2d(x, w)

    return {f"ceiling: fp32 matrix product {n}x{n} (torch.mm)": (mm, n**3),
            "ceiling: fp32 convolution 128->256, 4x4 on 126x126 (the PDN's largest)": (conv, conv_out * 128 * 16)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/bench_vs_anomalib.py", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=10, help="timed calls per contestant per round")
    p.add_argument("--json", type=Path)
    p.add_argument("--exclude", default="", help="comma-separated backends the engine may not choose, e.g. "
                   "onnxruntime,onnxruntime-int8 where ONEDNN_MAX_CPU_ISA emulates an older CPU (onnxruntime ignores it)")
    p.add_argument("--ceiling", action="store_true",
                   help="also count each model's multiply-adds and time this CPU's fp32 ceiling (see the docstring)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    try:
        import anomalib
        from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel, EfficientAdModelSize
    except ImportError as e:
        print(f"anomalib is not importable here ({e}); pip install anomalib==2.7.0 with a torch it accepts")
        return 2
    import torch

    import demo
    from inspector.devices import cpu_description, isa_caps
    from inspector.engine import Engine

    excluded = {b for b in args.exclude.split(",") if b}
    if excluded:  # reaching into the engine, as scripts/bench_int8_cpu.py does
        offered = Engine._cpu_candidates
        Engine._cpu_candidates = lambda self: [c for c in offered(self) if c not in excluded]
    images = demo.elpv_split().gate_images()
    eager = Engine(args.model, device="cpu", backend="eager", gate_images=images)
    auto = Engine(args.model, device="cpu", backend="auto", gate_images=images)
    threads = torch.get_num_threads()  # the engine's choice; anomalib runs with the same

    theirs = EfficientAdModel(teacher_out_channels=384, model_size=EfficientAdModelSize.S).eval()
    with torch.no_grad():  # set, so that its normalising branches run as in a trained model
        theirs.mean_std["mean"].fill_(0.1)
        theirs.mean_std["std"].fill_(1.0)
        for name, value in (("qa_st", 0.1), ("qb_st", 1.0), ("qa_ae", 0.1), ("qb_ae", 1.0)):
            theirs.quantiles[name].fill_(value)
    tensor = torch.randn(1, 3, 256, 256)
    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)

    def anomalib_call() -> None:
        with torch.no_grad():
            theirs(tensor)

    contestants = {
        f"anomalib {anomalib.__version__} EfficientAd-S, eager fp32": anomalib_call,
        "this engine, eager fp32": lambda: eager.predict(frame),
        f"this engine, {auto.backend_reason}": lambda: auto.predict(frame),
    }
    work: dict[str, int] = {}
    if args.ceiling:
        ours = multiply_adds(eager.model, lambda: eager.predict(frame))
        work = {name: ours for name in contestants}
        work[next(iter(contestants))] = multiply_adds(theirs, anomalib_call)
        for name, (call, macs) in ceiling_contestants().items():
            contestants[name], work[name] = call, macs
    for call in contestants.values():  # warm-up
        timed(call, 3)
    rounds: dict[str, list[list[float]]] = {name: [] for name in contestants}
    t0 = time.time()
    for _ in range(args.rounds):
        for name, call in contestants.items():
            rounds[name].append(timed(call, args.runs))
    rows = []
    for name, per_round in rounds.items():
        flat = [x for r in per_round for x in r]
        rows.append({"contestant": name, "latency_ms_p50": round(float(np.median(flat)), 1),
                     "latency_ms_p99": round(float(np.percentile(flat, 99)), 1),
                     "round_medians_ms": [round(float(np.median(r)), 1) for r in per_round]})
    reference = rows[0]["latency_ms_p50"]
    for row in rows:
        row["speedup_vs_anomalib"] = round(reference / row["latency_ms_p50"], 2)
    ceiling = None
    if work:
        for row in rows:
            row["multiply_adds"] = work[row["contestant"]]
            row["gflops"] = round(2 * row["multiply_adds"] / row["latency_ms_p50"] / 1e6, 1)
        fp32 = max(row["gflops"] for row in rows if row["contestant"].startswith("ceiling"))
        for row in rows:
            row["share_of_fp32_ceiling"] = round(row["gflops"] / fp32, 3)
        needed = 2 * work[rows[1]["contestant"]] / (reference / 3) / 1e6
        ceiling = {"fp32_gflops": fp32, "target": "this engine 3x faster than anomalib on the same model",
                   "target_latency_ms": round(reference / 3, 1), "target_gflops": round(needed, 1),
                   "target_times_fp32_ceiling": round(needed / fp32, 2)}
    result = {
        "what": "batch-1 CPU latency: anomalib's EfficientAd-S against this engine, one process, interleaved rounds (scripts/bench_vs_anomalib.py)",
        "machine": cpu_description(), "threads": threads, "torch": torch.__version__, "model": args.model.name,
        "engine_backend": auto.backend, "engine_reason": auto.backend_reason, "excluded_backends": sorted(excluded),
        "env": isa_caps(),
        "gates": {k: v.as_dict() for k, v in auto.gates.items()}, "rounds": args.rounds, "runs_per_round": args.runs,
        "seconds": round(time.time() - t0), "results": rows,
    }
    if ceiling:
        result["ceiling"] = ceiling
    for row in rows:
        share = f"  {row['gflops']:6.1f} GFLOP/s, {row['share_of_fp32_ceiling']:.0%} of the fp32 ceiling" if work else ""
        print(f"{row['contestant']:<90} p50 {row['latency_ms_p50']:7.1f} ms  p99 {row['latency_ms_p99']:7.1f} ms  x{row['speedup_vs_anomalib']}{share}")
    if ceiling:
        print(f"3x anomalib: {ceiling['target_latency_ms']} ms a frame, {ceiling['target_gflops']} GFLOP/s: "
              f"{ceiling['target_times_fp32_ceiling']}x this CPU's fp32 ceiling of {ceiling['fp32_gflops']} GFLOP/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
