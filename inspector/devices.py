"""Where the networks run: the device a user asked for, and whether it computes bf16 natively.

Training, distillation and the engine all choose their device here, so ``--device`` means the
same to every command.
"""

from __future__ import annotations

import torch

from inspector.errors import InspectorError


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InspectorError("--device cuda was asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise InspectorError(f"device must be auto, cpu or cuda, not {device!r}")
    return torch.device(device)


def bf16_supported(dev: torch.device) -> bool:
    """Whether bf16 autocast is native here (CUDA with bf16; CPUs with AVX-512 BF16 or AMX)."""
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


#: The CPU features that decide inference speed here: AVX2-only machines are about 3x slower
#: than ones with AVX-512 BF16 or AMX, so every CPU figure names which it had.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_description() -> str:
    """The CPU's model name, logical CPUs and speed-relevant flags, for benchmark figures."""
    import os
    import platform
    from pathlib import Path

    model, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:  # not Linux: the name alone
        pass
    shown = ", ".join(f for f in SPEED_FLAGS if f in flags) or "none of " + "/".join(SPEED_FLAGS)
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, flags {shown}"
