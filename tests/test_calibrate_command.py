"""``inspector calibrate`` never rewrites a model file the line has registered."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.main import main
from inspector.file_digest import file_sha256
from inspector.history import HistoryDB
from inspector.model_file import load_model
from inspector.recipes import register_model


def good_folder(folder: Path, n: int = 12) -> Path:
    """Plain, slightly different grey parts: calibration needs only images the model can score."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = np.clip(128 + rng.normal(0, 6, (64, 64)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"good_{i:02d}.png"), image)
    return folder


def calibrate(model: Path, good: Path, report: Path, *extra: str) -> int:
    return main(["calibrate", str(model), str(good), "--target-frr", "0.2", "--no-pixel-rule",
                 "--report", str(report), "--device", "cpu", "--backend", "eager", *extra])


def test_a_registered_model_file_is_left_alone_and_a_new_file_is_written(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    model = tmp_path / "active.safetensors"
    shutil.copyfile(tiny_model, model)
    db = HistoryDB(f"sqlite:///{tmp_path / 'data' / 'history.db'}")
    db.upgrade()
    register_model(db, model.resolve(), file_sha256(model), "tile")
    db.close()
    before = file_sha256(model)
    good = good_folder(tmp_path / "good")

    assert calibrate(model, good, tmp_path / "report") == 0
    out = capsys.readouterr().out
    assert "is registered in" in out and "not rewritten" in out
    assert file_sha256(model) == before  # the line would otherwise refuse the product
    (written,) = sorted(tmp_path.glob("active.calibrated-*.safetensors"))
    assert load_model(written)[1]["threshold"] is not None

    target = tmp_path / "chosen.safetensors"
    assert calibrate(model, good, tmp_path / "report2", "--out", str(target)) == 0
    assert file_sha256(model) == before and load_model(target)[1]["threshold"] is not None
    assert calibrate(model, good, tmp_path / "report3", "--out", str(model)) == 2
    assert "--out names the model file itself" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"  # another registered file may not be the target either
    shutil.copyfile(model, other)
    assert calibrate(written, good, tmp_path / "report4", "--out", str(other)) == 2
    assert "is a model file registered in" in capsys.readouterr().err and file_sha256(other) == before


def test_an_unregistered_model_file_is_calibrated_in_place(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))  # no history database at all
    model = tmp_path / "model.safetensors"
    shutil.copyfile(tiny_model, model)
    assert calibrate(model, good_folder(tmp_path / "good"), tmp_path / "report") == 0
    assert load_model(model)[1]["threshold"] is not None
    assert not (tmp_path / "data" / "history.db").exists()  # looking did not create one
