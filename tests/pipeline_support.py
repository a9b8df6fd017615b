"""Shared helpers of the pipeline tests (tests/test_pipeline*.py, tests/test_run_cli*.py).

The model is real: trained for a few iterations on real magnetic-tile images with a random
teacher. Its scores mean little, which these tests do not need; it exercises the real engine,
model file and timings. Training takes tens of seconds on a shared 2-core CPU, so the file is
kept in pytest's cache between runs, keyed by the training code and the images it was made from.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
GOOD = DATA / "magnetic_tile" / "train" / "good"
DEFECTIVE = DATA / "magnetic_tile" / "test"
NATURAL = DATA / "natural" / "bsds500"

TRAIN_IMAGES = 12
PENALTY_IMAGES = 4
# Code whose change makes a cached model stale.
_MODEL_SOURCES = ("__init__.py", "method/training.py", "model_file.py", "method/efficientad.py", "method/networks.py",
                  "image_io.py")

_model_file: Path | None = None


def require_data() -> None:
    if not (GOOD.is_dir() and NATURAL.is_dir()):
        pytest.skip(f"real image data not found at {DATA} (the shared data folder is absent)")


def good_images(n: int, skip: int = 0) -> list[Path]:
    """The first ``n`` good tile images after ``skip``, in name order."""
    require_data()
    return sorted(GOOD.glob("*.jpg"))[skip : skip + n]


def defective_images(kind: str, n: int) -> list[Path]:
    require_data()
    return sorted((DEFECTIVE / kind).glob("*.jpg"))[:n]


def copy_images(paths: list[Path], folder: Path, prefix: str = "") -> Path:
    """Copies into ``folder`` as ``<prefix><index>_<name>`` so that name order is list order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        shutil.copy(path, folder / f"{prefix}{i:03d}_{path.name}")
    return folder


def trained_model(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a real model file (see the module docstring); one per test process."""
    global _model_file
    if _model_file is not None and _model_file.is_file():
        return _model_file
    train_paths = good_images(TRAIN_IMAGES)
    penalty_paths = sorted(NATURAL.glob("*.jpg"))[:PENALTY_IMAGES]
    key = hashlib.sha256()
    for name in _MODEL_SOURCES:
        source = REPO / "inspector" / name
        key.update(source.read_bytes() if source.is_file() else b"")
    for path in train_paths + penalty_paths:
        key.update(path.name.encode() + path.read_bytes())
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider: train afresh
    folder = Path(cache.mkdir("pipeline-model")) if cache is not None else tmp_path_factory.mktemp("model")
    cached = folder / f"{key.hexdigest()[:16]}.safetensors"
    if not cached.is_file():
        from inspector.model_file import save_model
        from inspector.method.training import TrainConfig, train

        penalty_dir = copy_images(penalty_paths, tmp_path_factory.mktemp("penalty"))
        result = train(train_paths, TrainConfig(iterations=2), teacher="random", penalty_dir=penalty_dir,
                       device="cpu", show_progress=False)
        save_model(cached, result.model, result.metadata)  # atomic: never a half-written cache
    _model_file = cached
    return cached


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
