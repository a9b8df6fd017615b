"""Model files: one safetensors file holding every tensor plus JSON metadata in its header.

Nothing is ever unpickled. The metadata carries a SHA-256 of all tensor bytes, so a file whose
tensors were altered after it was written is refused, as are truncated files and files written by
an incompatible version of the software.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from inspector import MODEL_FORMAT_VERSION, __version__
from inspector.errors import ModelFileError

if TYPE_CHECKING:
    from inspector.method.efficientad import EfficientAD

METADATA_KEY = "inspector"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of all tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()




def atomic_write(path: str | Path, write) -> None:
    """Calls ``write(tmp_path)`` and moves the result into place, so no partial file is ever left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the result from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Writes tensors and metadata (JSON-serialisable) atomically, with a content digest."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(metadata)
    meta.setdefault("format_version", MODEL_FORMAT_VERSION)
    meta.setdefault("software_version", __version__)
    meta["tensor_sha256"] = tensor_digest(tensors)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)}))


def load_tensors(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads and verifies a file written by :func:`save_tensors`; ModelFileError names the problem.

    ``kind`` (e.g. ``"efficientad"``, ``"teacher"``) is checked against the metadata's ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: not a readable model file (truncated or corrupt: {e})") from None
    if METADATA_KEY not in header:
        raise ModelFileError(f"{path}: not an inspector model file (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: its metadata is not valid JSON (file damaged)") from None
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {version} is not supported by this software "
            f"(inspector {__version__} reads format {MODEL_FORMAT_VERSION}); retrain or convert the model"
        )
    if kind is not None and meta.get("kind") != kind:
        raise ModelFileError(f"{path}: expected a {kind} file, this is a {meta.get('kind')!r} file")
    if tensor_digest(tensors) != meta.get("tensor_sha256"):
        raise ModelFileError(f"{path}: tensor contents do not match their recorded digest (file tampered or damaged)")
    return tensors, meta


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


# --- Optimiser state in checkpoints -------------------------------------------------------------


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state (Adam's moments and step) as ``opt.<i>.<key>`` tensors."""
    return {
        f"opt.{idx}.{key}": torch.as_tensor(value)
        for idx, state in optimizer.state_dict()["state"].items()
        for key, value in state.items()
    }


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Puts back the state :func:`optimizer_tensors` saved; hyper-parameters stay as constructed."""
    state = optimizer.state_dict()
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state["state"].setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict(state)


# --- EfficientAD models and teachers -------------------------------------------------------------

MODEL_KIND = "efficientad"
TEACHER_KIND = "teacher"


def save_model(path: str | Path, model: EfficientAD, metadata: dict[str, Any]) -> None:
    """One file per trained model: all three networks, the statistics, and the metadata."""
    meta = {"kind": MODEL_KIND, "size": model.size, **metadata}
    save_tensors(path, model.state_dict(), meta)


def load_model(path: str | Path) -> tuple[EfficientAD, dict[str, Any]]:
    """Loads a trained model on the CPU in eval mode, with its metadata."""
    from inspector.method.efficientad import EfficientAD

    tensors, meta = load_tensors(path, MODEL_KIND)
    size = meta.get("size")
    if size not in ("s", "m"):
        raise ModelFileError(f"{path}: unknown model size {size!r}")
    model = EfficientAD(size)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ModelFileError(f"{path}: tensors do not fit an EfficientAD-{size.upper()} model ({first})") from None
    return model.eval(), meta


def save_teacher(path: str | Path, teacher: torch.nn.Module, size: str, metadata: dict[str, Any]) -> None:
    save_tensors(path, teacher.state_dict(), {"kind": TEACHER_KIND, "size": size, **metadata})


def load_teacher(path: str | Path, size: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A distilled teacher's PDN weights and card; ModelFileError if its size is not ``size``."""
    tensors, meta = load_tensors(path, TEACHER_KIND)
    if size is not None and meta.get("size") != size:
        raise ModelFileError(f"{path}: a PDN-{str(meta.get('size')).upper()} teacher, but PDN-{size.upper()} was asked for")
    return tensors, meta
