"""The CPU backend the engine measured fastest, remembered per machine and model.

Measuring eager fp32, bf16 and onnxruntime costs about a second at every start, and the answer
depends only on the model file, the software and the CPU. So the engine measures once and keeps
the choice in ``engine-backends.json`` in the data folder, under a digest of everything the
answer depends on: the model's SHA-256, the candidate backends, the thread count, the versions of
torch and onnxruntime, and the CPU's model name and flags. A changed model, upgrade or machine
gets a new key and a new measurement. The file is a convenience: a damaged, unreadable or
unwritable one is ignored (measured again), never fatal. ``INSPECTOR_REMEASURE_BACKEND=1``
measures again and replaces the remembered choice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from inspector.data_folder import data_dir

log = logging.getLogger(__name__)

CACHE_FILE = "engine-backends.json"
REMEASURE_ENV = "INSPECTOR_REMEASURE_BACKEND"
#: Choices kept; the oldest go first (each model file a line has run is one entry per machine).
MAX_ENTRIES = 64
_FORMAT = 1


def cache_path() -> Path:
    return data_dir() / CACHE_FILE


def remeasure_requested() -> bool:
    return os.environ.get(REMEASURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def cpu_identity() -> str:
    """The CPU's model name and feature flags (from /proc/cpuinfo on Linux), else what the
    platform module says: two machines with the same string run the backends alike."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return " | ".join(fields.get(k, "") for k in ("model name", "flags", "Features", "CPU part"))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def choice_key(model_sha256: str, candidates: Sequence[str], threads: int) -> str:
    """The digest a remembered choice is filed under (see the module docstring)."""
    import torch

    parts = [_FORMAT, model_sha256, sorted(candidates), threads, torch.__version__, _version("onnxruntime"), cpu_identity()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    """The file's entries; {} when there is none or it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.debug("ignoring %s: %s", path, e)
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("choices"), dict):
        log.debug("ignoring %s: not a backend cache this version writes", path)
        return {}
    return data["choices"]


def remembered_backend(key: str) -> str | None:
    """The backend remembered under ``key``, or None (none, damaged, or a re-measure asked for)."""
    if remeasure_requested():
        return None
    entry = _read(cache_path()).get(key)
    backend = entry.get("backend") if isinstance(entry, dict) else None
    return backend if isinstance(backend, str) else None


def remember_backend(key: str, backend: str, timings_s: Mapping[str, float], model_sha256: str = "") -> None:
    """Files ``backend`` under ``key``; a failure to write is logged and otherwise ignored."""
    from inspector.model_file import atomic_write

    path = cache_path()
    choices = _read(path)
    choices.pop(key, None)  # re-filed last: the newest entries are the ones kept
    choices[key] = {
        "backend": backend,
        "timings_ms": {k: round(v * 1e3, 2) for k, v in timings_s.items()},
        "model_sha256": model_sha256,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    choices = dict(list(choices.items())[-MAX_ENTRIES:])
    text = json.dumps({"format": _FORMAT, "choices": choices}, indent=1) + "\n"
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as e:
        log.debug("backend choice not remembered (%s): %s", path, e)
