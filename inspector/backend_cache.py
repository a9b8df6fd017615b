"""The CPU backend the engine measured fastest, remembered per machine and model, and the
backends' built models (ONNX, int8, OpenVINO) cached per model file.

Measuring the backends, building the int8 ones and running the accuracy gate cost seconds to a
minute at a start, and the answer depends only on the model file, the gate's images, the software
and the CPU. So the engine measures once and keeps the choice, with each backend's gate result, in
``engine-backends.json`` in the data folder, under a digest of everything the answer depends on:
the model's SHA-256, the candidate backends, the thread count, the versions of torch,
onnxruntime, OpenVINO and NNCF, the gate's images and tolerances, and the CPU's model name and
flags. A changed model, upgrade or machine gets a new key and a new measurement. The file is a
convenience: a damaged, unreadable or unwritable one is ignored (measured again), never fatal.
``INSPECTOR_REMEASURE_BACKEND=1`` measures again and replaces the remembered choice.

Built models live in ``engine-artefacts/<model SHA-256>/<backend>-<build key>/`` in the data
folder (not beside the model file, whose folder may be read-only, as the shipped demo model's
is): a changed model file has another SHA-256, so it never meets an old build, and the folders
of all but the ``MAX_ARTEFACT_MODELS`` most recently used model files are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from inspector.data_folder import data_dir, make_folders
from inspector.devices import cpuinfo, isa_caps

log = logging.getLogger(__name__)

CACHE_FILE = "engine-backends.json"
ARTEFACTS_DIR = "engine-artefacts"
#: Model files whose built backends are kept (a few tens of MB each).
MAX_ARTEFACT_MODELS = 8
_DONE = "built.json"
REMEASURE_ENV = "INSPECTOR_REMEASURE_BACKEND"
#: Choices kept; the oldest go first (each model file a line has run is one entry per machine).
MAX_ENTRIES = 64
_FORMAT = 2  # 2: entries carry the accuracy gate's results


def cache_path() -> Path:
    return data_dir() / CACHE_FILE


def remeasure_requested() -> bool:
    return os.environ.get(REMEASURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cpu_identity() -> str:
    """The CPU's model name and feature flags (from /proc/cpuinfo on Linux), else what the
    platform module says, and any instruction-set cap in force: two machines with the same string
    run the backends alike."""
    fields = cpuinfo()
    cpu = (" | ".join(fields.get(k, "") for k in ("model name", "flags", "Features", "CPU part")) if fields
           else f"{platform.machine()} {platform.processor()}")
    return f"{cpu} | {json.dumps(isa_caps(), sort_keys=True)}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def software_versions() -> list[str | None]:
    import torch

    return [torch.__version__, *(_version(p) for p in ("onnxruntime", "openvino", "nncf"))]


def choice_key(model_sha256: str, candidates: Sequence[str], threads: int, extra: Sequence[Any] = ()) -> str:
    """The digest a remembered choice is filed under (see the module docstring); ``extra``: what
    else the choice depends on (the gate's images and tolerances)."""
    parts = [_FORMAT, model_sha256, sorted(candidates), threads, software_versions(), cpu_identity(), list(extra)]
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


def remembered_choice(key: str) -> dict[str, Any] | None:
    """The entry remembered under ``key`` (``backend``, ``timings_ms``, ``gates``, ``reason``), or
    None (none, damaged, or a re-measure asked for)."""
    if remeasure_requested():
        return None
    entry = _read(cache_path()).get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("backend"), str):
        return None
    return entry


def remembered_backend(key: str) -> str | None:
    entry = remembered_choice(key)
    return entry["backend"] if entry else None


def remember_backend(key: str, backend: str, timings_s: Mapping[str, float], model_sha256: str = "",
                     gates: Mapping[str, Mapping[str, Any]] | None = None, reason: str = "") -> None:
    """Files ``backend`` under ``key`` with the gate results it was chosen by; a failure to write
    is logged and otherwise ignored."""
    from inspector.model_file import atomic_write

    path = cache_path()
    choices = _read(path)
    choices.pop(key, None)  # re-filed last: the newest entries are the ones kept
    choices[key] = {
        "backend": backend,
        "timings_ms": {k: round(v * 1e3, 2) for k, v in timings_s.items()},
        "model_sha256": model_sha256,
        "gates": {k: dict(v) for k, v in (gates or {}).items()},
        "reason": reason,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    choices = dict(list(choices.items())[-MAX_ENTRIES:])
    text = json.dumps({"format": _FORMAT, "choices": choices}, indent=1) + "\n"
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as e:
        log.debug("backend choice not remembered (%s): %s", path, e)


def artefacts_root() -> Path:
    return data_dir() / ARTEFACTS_DIR


def built_artefact(model_sha256: str, backend: str, build_key: str, build: Callable[[Path], None]) -> Path:
    """The folder holding ``backend``'s build of the model file ``model_sha256``, made by
    ``build(folder)`` unless a finished one with the same ``build_key`` is there already.

    A build is written into a temporary folder and renamed into place when finished, so a crash
    leaves no half-built model that a later start would trust. OSError if the data folder is
    unwritable (the caller then does without the backend).
    """
    model_dir = artefacts_root() / model_sha256
    folder = model_dir / f"{backend}-{build_key[:16]}"
    if (folder / _DONE).is_file():
        os.utime(model_dir)  # recently used: kept by _prune
        return folder
    make_folders(model_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{backend}-", dir=model_dir))
    try:
        t0 = time.perf_counter()
        build(tmp)
        info = {"model_sha256": model_sha256, "backend": backend, "build_key": build_key, "seconds": round(time.perf_counter() - t0, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / _DONE).write_text(json.dumps(info) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished one from a killed process
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in model_dir.glob(f"{backend}-*"):  # builds by older software or from other images
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    _prune(artefacts_root())
    return folder


def _prune(root: Path) -> None:
    """Removes the build folders of all but the MAX_ARTEFACT_MODELS most recently used models."""
    try:
        folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in folders[MAX_ARTEFACT_MODELS:]:
        shutil.rmtree(old, ignore_errors=True)
