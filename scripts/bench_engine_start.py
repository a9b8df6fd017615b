"""How long the engine takes to start with a model: measuring the CPU backends (a first start on
this machine) against remembering the choice (every later start). Prints figures, asserts nothing.

    python scripts/bench_engine_start.py [--model MODEL] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from inspector import ASSETS_DIR


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16")
    return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512/amx"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ASSETS_DIR / "demo" / "demo_model.safetensors")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from inspector.engine import Engine

    measured, remembered, backend = [], [], ""
    for _ in range(args.repeats):
        folder = tempfile.mkdtemp()
        os.environ["INSPECTOR_DATA_DIR"] = folder  # an empty cache: the first start measures
        try:
            started = time.perf_counter()
            backend = Engine(args.model, device="cpu").backend
            measured.append(time.perf_counter() - started)
            started = time.perf_counter()
            Engine(args.model, device="cpu")
            remembered.append(time.perf_counter() - started)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def figure(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, flags {cpu_flags()}")
    print(f"model {args.model.name}, chosen backend {backend}")
    print(f"engine start, measuring the backends: {figure(measured)}")
    print(f"engine start, choice remembered:      {figure(remembered)}")


if __name__ == "__main__":
    main()
