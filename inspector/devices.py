"""Where the networks run: the device a user asked for, and whether it computes bf16 natively.

Training, distillation and the engine all choose their device here, so ``--device`` means the
same to every command.
"""

from __future__ import annotations

import functools

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
#: The environment variables that cap the instruction sets the kernels use, below what the CPU
#: has: oneDNN's (PyTorch's convolutions, and OpenVINO's, whose oneDNN reads it too), ATen's and
#: MKL's (PyTorch's fp32 matrix products: an instant model's bank search).
#: With ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2`` an
#: AVX-512 machine runs the kernels an AVX2-only line PC would (onnxruntime has no such switch).
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
#: oneDNN caps that leave out every VNNI instruction (its ISA names, upper case).
_CAPS_WITHOUT_VNNI = {"SSE41", "AVX", "AVX2", "AVX512_CORE"}


@functools.cache
def cpuinfo() -> dict[str, str]:
    """The first value of each field of Linux's /proc/cpuinfo ({} elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_flags() -> list[str]:
    """The CPU's feature flags ([] where not known)."""
    return cpuinfo().get("flags", "").split()


def isa_caps() -> dict[str, str]:
    """The instruction-set caps set in the environment (see :data:`ISA_CAP_VARIABLES`)."""
    import os

    return {k: os.environ[k] for k in ISA_CAP_VARIABLES if os.environ.get(k)}


def int8_dot_saturates() -> bool:
    """Whether int8 kernels here lack VNNI, so that AVX2's uint8 x int8 dot product (VPMADDUBSW)
    saturates its 16-bit sums: the CPU has no VNNI, or oneDNN is capped below it. Unknown CPUs
    count as lacking it (the 7-bit weights that avoid it cost little accuracy)."""
    flags = cpu_flags()
    if not flags:
        return True
    caps = isa_caps()
    cap = (caps.get("ONEDNN_MAX_CPU_ISA") or caps.get("DNNL_MAX_CPU_ISA") or "").upper()
    return cap in _CAPS_WITHOUT_VNNI or not ({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def cpu_description() -> str:
    """The CPU's model name, logical CPUs and speed-relevant flags (and any instruction-set cap
    in force), for benchmark figures."""
    import os
    import platform

    model = cpuinfo().get("model name") or platform.processor() or platform.machine()
    flags = cpu_flags()
    shown = ", ".join(f for f in SPEED_FLAGS if f in flags) or "none of " + "/".join(SPEED_FLAGS)
    caps = isa_caps()
    capped = f"; capped by {', '.join(f'{k}={v}' for k, v in caps.items())}" if caps else ""
    return f"{model}, {os.cpu_count()} logical CPUs, flags {shown}{capped}"
