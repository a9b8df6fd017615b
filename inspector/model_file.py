"""Model files: one safetensors file holding every tensor plus JSON metadata in its header.

Nothing is ever unpickled. The metadata carries a SHA-256 of all tensor bytes and one of itself,
so a file whose tensors or metadata were altered after it was written is refused, as are files
without the metadata digest (an older release's, or one stripped of it: read only after
:func:`upgrade_file`), truncated files and files written by an incompatible version of the software.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize

from inspector import MODEL_FORMAT_VERSION, __version__
from inspector.data_folder import make_folders
from inspector.errors import InspectorError, ModelFileError

if TYPE_CHECKING:
    from inspector.framing import Framing
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




def atomic_write(path: str | Path, write, mode: int | None = None) -> None:
    """Calls ``write(tmp_path)`` and moves the result into place, so no partial file is ever left.
    ``mode``: the file's permissions (default: what the umask gives a new file).

    The file is fsynced before the rename and its folder after it: a power cut leaves the old
    file or the new one, never an empty "finished" one. A temporary file left by a process killed
    mid-write (``.<name>.*.tmp``) is removed by :func:`remove_orphans` at the next write into the
    folder. ``write`` must write to ``tmp_path`` itself, not through a temporary file of its own.
    """
    path = Path(path)
    make_folders(path.parent)  # the data folder, if this makes it, 0700
    remove_orphans(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp's 0600 would hide the result from other users
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: The temporary name the safetensors library gives a file it writes (Rust's ``tempfile``:
#: ``.tmp`` and six letters or digits). Files written before model files went through
#: :func:`atomic_write`'s own name were written so; a killed write left a whole model under it.
_LIBRARY_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")


def remove_orphans(folder: str | Path, min_age_s: float = 3600.0) -> list[Path]:
    """Deletes temporary files that a write killed midway left in ``folder``: :func:`atomic_write`'s
    (``.<name>.*.tmp``) and the safetensors library's (``.tmpXXXXXX``, only when empty or begun as
    a safetensors file, so another program's temporary file is left alone). Only files older than
    ``min_age_s``, so a write in progress elsewhere is left alone."""
    removed = []
    now = time.time()
    folder = Path(folder)
    candidates = [*folder.glob(".*.tmp"), *(p for p in folder.glob(".tmp*") if _LIBRARY_TMP.fullmatch(p.name) and _begins_as_safetensors(p))]
    for tmp in candidates:
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass  # gone already, or not ours to delete: either way nothing to do
    return removed


def _begins_as_safetensors(path: Path) -> bool:
    """Whether ``path`` is empty or starts as a safetensors file does: an 8-byte little-endian
    header length, then the header's JSON object."""
    try:
        with open(path, "rb") as f:
            start = f.read(9)
    except OSError:
        return False
    if not start:
        return True
    return len(start) == 9 and start[8:9] == b"{" and struct.unpack("<Q", start[:8])[0] < 100_000_000


def check_destination(path: str | Path) -> None:
    """ModelFileError unless a file can be written at ``path``: it must not be a folder, and the
    folder it goes in (made if missing, as :func:`atomic_write` does) must take a new file. Called
    before a long computation, so a typing error in ``--out`` costs seconds, not the training."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder; give the model file's name, e.g. {path / 'model.safetensors'}")
    folder = path.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ModelFileError(f"{path}: cannot be written: {existing} is a file, not a folder")
    if existing != folder:  # nothing is made before the work is done: the nearest folder must let it be
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ModelFileError(f"{path}: cannot be written: no permission to make folders in {existing}")
        return
    try:  # what atomic_write will do: a temporary file next to the target (root ignores modes)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be written: {_write_failure(e)}") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def _fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform without directory handles (Windows): the rename is all it offers
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the file itself is synced
    finally:
        os.close(fd)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Writes tensors and metadata (JSON-serialisable) atomically, with a content digest."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(metadata)
    meta.setdefault("format_version", MODEL_FORMAT_VERSION)
    meta.setdefault("software_version", __version__)
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: not written: tensor {name} holds NaN or infinite values (training diverged?)")
    meta["tensor_sha256"] = tensor_digest(tensors)
    meta.pop("metadata_sha256", None)
    meta["metadata_sha256"] = metadata_digest(meta)
    # Serialised here and written through atomic_write's own temporary name: the library's
    # save_file writes through a ``.tmpXXXXXX`` of its own, which a killed write left behind.
    data = serialize(tensors, metadata={METADATA_KEY: json.dumps(meta)})
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    except (OSError, SafetensorError) as e:  # atomic_write has removed its temporary file
        raise ModelFileError(f"{path}: not written: {_write_failure(e)}") from None


def _write_failure(e: OSError | SafetensorError) -> str:
    """Why a write failed, in words: a full disk (the library reports it as its own error with
    the OS's text in it) or the OS's reason."""
    if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))) or "No space left" in str(e) or "StorageFull" in str(e):
        return "no space left on the disk (free some and write it again)"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def metadata_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the metadata (it holds the tensors' digest too) as canonical JSON, without the
    digest's own key: a threshold or image size edited in the file no longer matches it."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


#: The audited conversion that gives a file without a metadata digest one (``cli.model_commands``);
#: named here because the refusal of such a file is the only place a user learns of it.
UPGRADE_COMMAND = "inspector model upgrade"


def load_tensors(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads and verifies a file written by :func:`save_tensors`; ModelFileError names the problem.

    ``kind`` (e.g. ``"efficientad"``, ``"teacher"``) is checked against the metadata's ``kind``.
    """
    tensors, meta = _read(path)
    if "metadata_sha256" not in meta:
        # An older release's file and one whose digest was stripped (to edit its threshold, say)
        # look alike, and the format version is in the same editable metadata: both are read only
        # after a technician converts them, audited (:func:`upgrade_file`).
        raise ModelFileError(f"{path}: its metadata carry no digest (a file of an older release, or one edited); "
                             f"if you trust it, convert it once: {UPGRADE_COMMAND} {path} --user NAME (a technician, audited)")
    _verify(path, tensors, meta, kind)
    return tensors, meta


def _read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A model file's tensors and metadata as stored, its format version checked, nothing else."""
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
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: its metadata is not a JSON object (file damaged)")
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {version} is not supported by this software "
            f"(inspector {__version__} reads format {MODEL_FORMAT_VERSION}); retrain or convert the model"
        )
    return tensors, meta


def _verify(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], kind: str | None) -> None:
    """Every check of a file's contents but the presence of its metadata digest."""
    if kind is not None and meta.get("kind") != kind:
        raise ModelFileError(f"{path}: expected a {kind} file, this is a {meta.get('kind')!r} file")
    if tensor_digest(tensors) != meta.get("tensor_sha256"):
        raise ModelFileError(f"{path}: tensor contents do not match their recorded digest (file tampered or damaged)")
    if "metadata_sha256" in meta and metadata_digest(meta) != meta["metadata_sha256"]:
        raise ModelFileError(f"{path}: metadata do not match their recorded digest (file edited or damaged)")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: tensor {name} holds NaN or infinite values; the model cannot score")


def upgrade_file(path: str | Path) -> dict[str, Any]:
    """Gives a file without a metadata digest (an older release's) its digest, rewriting it
    atomically, and returns its metadata. Whoever calls this vouches for the metadata (the
    threshold above all): :func:`station.actions.upgrade_model_file` checks the right and audits
    it. Every other check of :func:`load_tensors` must pass, and for a model so must those every
    command reads it with (its framing, its calibration): a file converted is one the line can
    use, not one refused at its next start. A file that has a digest is refused."""
    from inspector.line.rule import rule_from_metadata

    tensors, meta = _read(path)
    if "metadata_sha256" in meta:
        raise ModelFileError(f"{path}: already carries its metadata digest; there is nothing to convert")
    _verify(path, tensors, meta, None)
    if meta.get("kind") in MODEL_KINDS:
        check_model_metadata(path, meta)
        try:
            _split_framing(path, tensors, meta)
            if meta.get("threshold") is not None:
                rule_from_metadata(meta, where=str(path))
        except ModelFileError as e:
            raise ModelFileError(f"{e}; not converted") from None
    save_tensors(path, tensors, {k: v for k, v in meta.items() if k != "tensor_sha256"})
    return load_tensors(path)[1]


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
#: The instant model (:mod:`inspector.method.instant`): the teacher plus a patch memory bank.
INSTANT_KIND = "instant"
#: Every kind of model the engine runs; each has EfficientAD's interface (image in, map out).
MODEL_KINDS = (MODEL_KIND, INSTANT_KIND)
TEACHER_KIND = "teacher"


def save_model(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any], framing: Framing | None = None) -> None:
    """One file per trained model: its networks, the statistics, the metadata and the ``framing``
    it was trained with (:mod:`inspector.framing.recipe`); the model's ``kind`` (EfficientAD unless
    the model says otherwise) tells :func:`load_model` what to build."""
    from inspector.framing.recipe import framing_file_parts

    meta = {"kind": getattr(model, "kind", MODEL_KIND), "size": model.size, **metadata}
    tensors = dict(model.state_dict())
    if framing is not None:
        framing_meta, framing_tensors = framing_file_parts(framing)
        meta.update(framing_meta)
        tensors.update(framing_tensors)
    save_tensors(path, tensors, meta)


def load_model_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A model file's verified tensors and metadata, of any kind the engine runs."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") not in MODEL_KINDS:
        raise ModelFileError(f"{path}: expected a model file ({' or '.join(MODEL_KINDS)}), this is a {meta.get('kind')!r} file")
    return tensors, meta


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Loads a trained model (EfficientAD or instant) on the CPU in eval mode, with its metadata."""
    model, meta, _ = load_framed_model(path)
    return model, meta


def load_framed_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any], Framing | None]:
    """:func:`load_model`, and the framing the model was trained with (None: the whole frame)."""
    tensors, meta = load_model_tensors(path)
    tensors, framing = _split_framing(path, tensors, meta)
    return _built_model(path, tensors, meta), meta, framing


def load_framing(path: str | Path) -> Framing | None:
    """The framing a model file keeps (None: it inspects the whole frame), its model not built."""
    tensors, meta = load_model_tensors(path)
    return _split_framing(path, tensors, meta)[1]


def _split_framing(path: str | Path, tensors: dict[str, torch.Tensor],
                   meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Framing | None]:
    """(the model's own tensors, the file's framing), ModelFileError naming ``path`` for an unusable one."""
    from inspector.framing.recipe import framing_from_file, split_framing_tensors

    tensors, framing_tensors = split_framing_tensors(tensors)
    return tensors, framing_from_file(meta, framing_tensors, where=str(path))


def _built_model(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> torch.nn.Module:
    from inspector.method.efficientad import EfficientAD
    from inspector.method.instant import InstantModel

    check_model_metadata(path, meta)
    size = meta["size"]
    if meta["kind"] == INSTANT_KIND:
        bank = tensors.get("bank")
        if bank is None or bank.dim() != 2:
            raise ModelFileError(f"{path}: an instant model without a usable memory bank")
        features = meta.get("features", "pdn")
        try:
            model: torch.nn.Module = InstantModel(size, bank_size=bank.shape[0], neighbourhood=meta.get("neighbourhood", 3), features=features,
                                                layers=meta.get("layers"))
        except InspectorError as e:  # the backbone's code package is missing
            raise ModelFileError(f"{path}: {e}") from None
        what = f"an instant model on {'a PDN-' + size.upper() + ' teacher' if features == 'pdn' else features + ' features'}"
    else:
        autoencoder = meta.get("autoencoder", True)
        model = EfficientAD(size, autoencoder=autoencoder)
        what = f"an EfficientAD-{size.upper()} model" + ("" if autoencoder else " without autoencoder")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ModelFileError(f"{path}: tensors do not fit {what} ({first})") from None
    return model.eval()


def check_model_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """ModelFileError naming the first metadata value inference cannot use."""
    if meta.get("size") not in ("s", "m"):
        raise ModelFileError(f"{path}: unknown model size {meta.get('size')!r}")
    image_size = meta.get("image_size", 256)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 32 <= image_size <= 4096 or image_size % 4:
        raise ModelFileError(f"{path}: image size {image_size!r} is unusable (a multiple of 4 from 32 to 4096)")
    if meta.get("resize_mode", "resize") not in ("resize", "letterbox"):
        raise ModelFileError(f"{path}: unknown resize mode {meta.get('resize_mode')!r}")
    if meta.get("kind") == INSTANT_KIND:
        k = meta.get("neighbourhood", 3)
        if isinstance(k, bool) or not isinstance(k, int) or k not in (1, 3, 5, 7):
            raise ModelFileError(f"{path}: neighbourhood {k!r} is unusable (1, 3, 5 or 7)")
        if meta.get("features", "pdn") not in ("pdn", "lite0", "lite2"):
            raise ModelFileError(f"{path}: unknown feature source {meta.get('features')!r}")
        layers = meta.get("layers")
        if layers is not None and not (isinstance(layers, list) and 1 <= len(layers) <= 8
                                       and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 64 for i in layers)
                                       and layers == sorted(set(layers))):
            raise ModelFileError(f"{path}: backbone layers {layers!r} are unusable (increasing block numbers)")
    if not isinstance(meta.get("autoencoder", True), bool):
        raise ModelFileError(f"{path}: autoencoder {meta.get('autoencoder')!r} is not true or false")
    for key in ("threshold", "pixel_threshold"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ModelFileError(f"{path}: {key} {value!r} is not a finite number")


def save_teacher(path: str | Path, teacher: torch.nn.Module, size: str, metadata: dict[str, Any]) -> None:
    save_tensors(path, teacher.state_dict(), {"kind": TEACHER_KIND, "size": size, **metadata})


def load_teacher(path: str | Path, size: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A distilled teacher's PDN weights and card; ModelFileError if its size is not ``size``."""
    tensors, meta = load_tensors(path, TEACHER_KIND)
    if size is not None and meta.get("size") != size:
        raise ModelFileError(f"{path}: a PDN-{str(meta.get('size')).upper()} teacher, but PDN-{size.upper()} was asked for")
    return tensors, meta
