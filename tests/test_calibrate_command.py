"""``inspector calibrate`` never rewrites a model file the line has registered."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from cli.main import main
from inspector.file_digest import file_sha256
from inspector.history import HistoryDB
from inspector.model_file import load_model
from inspector.recipes import register_model, verify_model_file


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
    assert f"({model} is unchanged)" in capsys.readouterr().out
    assert file_sha256(model) == before  # the line would otherwise refuse the product
    (written,) = sorted(tmp_path.glob("active.calibrated-*.safetensors"))
    assert load_model(written)[1]["threshold"] is not None

    assert calibrate(written, good, tmp_path / "report1") == 0  # a recalibration: one time stamp in the name
    assert len([p for p in tmp_path.glob("active.calibrated-*") if p.name.count("calibrated") == 1]) == 2

    target = tmp_path / "chosen.safetensors"
    assert calibrate(model, good, tmp_path / "report2", "--out", str(target)) == 0
    assert file_sha256(model) == before and load_model(target)[1]["threshold"] is not None
    assert calibrate(model, good, tmp_path / "report3", "--out", str(model)) == 2
    assert "calibrate never overwrites a file" in capsys.readouterr().err and file_sha256(model) == before
    other = tmp_path / "other.safetensors"  # nor any file that exists, registered somewhere or not
    shutil.copyfile(model, other)
    assert calibrate(written, good, tmp_path / "report4", "--out", str(other)) == 2
    assert "exists; calibrate never overwrites a file" in capsys.readouterr().err and file_sha256(other) == before
    assert not (tmp_path / "report4").exists()  # refused before any scoring


def test_a_model_registered_in_another_database_is_never_rewritten(tiny_model, tmp_path, monkeypatch):
    """Issue 29, item 5: a line whose history database is not the default one. ``calibrate``
    without ``--db`` looked only in the default one, rewrote the line's active model in place,
    and the line then refused to start (the file changed since it was registered)."""
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))  # the default: no database there
    model = tmp_path / "line2" / "model.safetensors"
    model.parent.mkdir()
    shutil.copyfile(tiny_model, model)
    db = HistoryDB(f"sqlite:///{tmp_path / 'line2' / 'history.db'}")
    db.upgrade()
    _, version_id = register_model(db, model.resolve(), file_sha256(model), "tile")
    db.set_active_model(db.product_by_name("tile").id, version_id)
    before = model.read_bytes()

    assert calibrate(model, good_folder(tmp_path / "good"), tmp_path / "report") == 0
    assert model.read_bytes() == before
    verify_model_file(Path(db.model_version(version_id).path), db.model_version(version_id).sha256)  # the line starts
    (written,) = model.parent.glob("model.calibrated-*.safetensors")
    assert load_model(written)[1]["threshold"] is not None
    assert not (tmp_path / "data" / "history.db").exists()  # looking did not create one
    db.close()
