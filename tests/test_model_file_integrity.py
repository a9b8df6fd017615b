"""A model file is refused when anything in it cannot be trusted, and is never left half-written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from inspector.errors import ModelFileError
from inspector.method.efficientad import EfficientAD
from inspector.model_file import (
    METADATA_KEY,
    atomic_write,
    load_model,
    load_tensors,
    metadata_digest,
    remove_orphans,
    save_model,
    save_tensors,
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256, "resize_mode": "resize", "threshold": 0.3})
    return path


def rewrite(src: Path, dst: Path, edit_meta=None, edit_tensors=None, keep_digest: bool = True, redigest: bool = False) -> Path:
    """A copy of ``src`` with its metadata or tensors changed behind save_tensors' back (with
    ``redigest``, its metadata digest made to fit the change)."""
    with safe_open(str(src), framework="pt", device="cpu") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    if not keep_digest:
        meta.pop("metadata_sha256", None)
    if redigest:
        meta["metadata_sha256"] = metadata_digest(meta)
    save_file(tensors, str(dst), metadata={METADATA_KEY: json.dumps(meta)})
    return dst


def test_a_model_file_round_trips_with_a_digest_over_its_metadata(model_file: Path) -> None:
    model, meta = load_model(model_file)
    assert meta["threshold"] == 0.3 and meta["metadata_sha256"] == metadata_digest(meta)


def test_edited_metadata_is_refused(model_file: Path, tmp_path: Path) -> None:
    edited = rewrite(model_file, tmp_path / "edited.safetensors", edit_meta=lambda m: m.update(threshold=1e30))
    with pytest.raises(ModelFileError, match="metadata do not match their recorded digest"):
        load_model(edited)


def test_a_file_without_its_metadata_digest_is_refused_naming_the_conversion(model_file: Path, tmp_path: Path) -> None:
    """Issue 29, item 14: without the digest, a threshold of 1e30 was read as written, and every
    part passed. An older release's file looks the same; both wait for `inspector model upgrade`."""
    stripped = rewrite(model_file, tmp_path / "stripped.safetensors", edit_meta=lambda m: m.update(threshold=1e30), keep_digest=False)
    with pytest.raises(ModelFileError, match=r"its metadata carry no digest .*: inspector model upgrade .*stripped.safetensors --user NAME"):
        load_model(stripped)
    with pytest.raises(ModelFileError, match="no digest"):
        load_tensors(stripped)


def test_unusable_metadata_is_refused_with_its_name_even_with_a_matching_digest(model_file: Path, tmp_path: Path) -> None:
    for key, value, words in [("image_size", 0, "image size 0"), ("resize_mode", "zoom", "resize mode"),
                              ("threshold", "high", "threshold"), ("size", "xl", "model size")]:
        bad = rewrite(model_file, tmp_path / f"{key}.safetensors", edit_meta=lambda m: m.update({key: value}), redigest=True)
        with pytest.raises(ModelFileError, match=words):
            load_model(bad)


def test_the_conversion_gives_an_old_file_its_digest_and_checks_the_rest(model_file: Path, tmp_path: Path) -> None:
    from inspector.model_file import upgrade_file

    old = rewrite(model_file, tmp_path / "old.safetensors", keep_digest=False)
    assert upgrade_file(old)["metadata_sha256"] == load_model(old)[1]["metadata_sha256"]
    with pytest.raises(ModelFileError, match="nothing to convert"):
        upgrade_file(old)
    unusable = rewrite(model_file, tmp_path / "unusable.safetensors", edit_meta=lambda m: m.update(image_size=0), keep_digest=False)
    before = unusable.read_bytes()
    with pytest.raises(ModelFileError, match="image size 0"):
        upgrade_file(unusable)
    assert unusable.read_bytes() == before


def test_nan_or_infinite_weights_are_refused_at_load_and_never_written(model_file: Path, tmp_path: Path) -> None:
    def poison(tensors):
        name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = float("nan")

    with safe_open(str(model_file), framework="pt", device="cpu") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    poison(tensors)
    from inspector.model_file import tensor_digest

    meta["tensor_sha256"] = tensor_digest(tensors)
    meta["metadata_sha256"] = metadata_digest(meta)
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model(bad)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        save_tensors(tmp_path / "never.safetensors", {"w": torch.tensor([1.0, float("inf")])}, {"kind": "x"})
    assert not (tmp_path / "never.safetensors").exists()


def test_atomic_write_syncs_and_clears_the_orphans_of_a_killed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    old_orphan = tmp_path / ".model.safetensors.abc123.tmp"
    old_orphan.write_bytes(b"half a model")
    os.utime(old_orphan, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".other.safetensors.def456.tmp"  # maybe another process writing right now
    fresh.write_bytes(b"in progress")
    target = tmp_path / "model.bin"
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
    assert any(s.endswith(".tmp") for s in synced)  # the file, under its temporary name: before the rename
    assert str(tmp_path) in synced  # and its folder, after it
    assert not old_orphan.exists() and fresh.exists()
    assert remove_orphans(tmp_path, min_age_s=0) == [fresh]


def test_the_safetensors_librarys_temporary_files_of_a_killed_write_are_orphans_too(tmp_path: Path) -> None:
    """The library's save_file writes through ``.tmpXXXXXX``; a write killed midway left a whole
    model there, which the clean-up never matched. Its files are matched by name and by their
    safetensors start, so another program's temporary file is left alone."""
    old = time.time() - 7200

    def aged(path: Path) -> Path:
        os.utime(path, (old, old))
        return path

    whole = tmp_path / ".tmpAb3dE9"
    save_file({"w": torch.zeros(1000)}, str(whole), metadata={METADATA_KEY: "{}"})
    half = tmp_path / ".tmpQ1w2E3"
    half.write_bytes(whole.read_bytes()[:200])
    empty = tmp_path / ".tmpZZZZZZ"
    empty.write_bytes(b"")
    orphans = [aged(whole), aged(half), aged(empty)]
    other = tmp_path / ".tmpnot123"  # the library's pattern, another program's contents
    other.write_text("someone else's notes")
    aged(other)
    short = tmp_path / ".tmp12345"  # not the library's pattern
    short.write_bytes(whole.read_bytes())
    aged(short)
    fresh = tmp_path / ".tmpFr35hX"  # maybe a write in progress right now
    fresh.write_bytes(whole.read_bytes())

    save_model(tmp_path / "model.safetensors", EfficientAD("s"), {"image_size": 256})
    assert not any(p.exists() for p in orphans)
    assert other.exists() and short.exists() and fresh.exists()
    assert load_model(tmp_path / "model.safetensors")[1]["image_size"] == 256


def test_a_full_disk_is_one_clear_error_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that runs out of space raised the library's SafetensorError (a 23-line traceback at
    the command line) and could leave its temporary file; now it is a ModelFileError naming the
    cause, and the folder holds what it held before."""
    import errno

    real_write_bytes = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        real_write_bytes(self, data[: len(data) // 2])  # the disk fills up halfway through
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    target = tmp_path / "model.safetensors"
    with pytest.raises(ModelFileError, match=r"model.safetensors: not written: no space left on the disk"):
        save_model(target, EfficientAD("s"), {"image_size": 256})
    assert list(tmp_path.iterdir()) == []


def test_the_librarys_own_full_disk_error_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import SafetensorError

    import inspector.model_file as model_file

    def library_full_disk(path, write, mode=None):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr(model_file, "atomic_write", library_full_disk)
    with pytest.raises(ModelFileError, match="not written: no space left on the disk"):
        save_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(3)}, {"kind": "x"})
