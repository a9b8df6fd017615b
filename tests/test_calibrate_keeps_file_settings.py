"""Calibrating a model file by hand (``inspector calibrate MODEL GOOD --report DIR``) sets new
thresholds on the recipe as the file has it: its pixel size and recheck band are kept unless given
anew, as ``inspector teach calibrate`` keeps a version's. They were dropped: a file taught with
``--mm-per-px 0.08 --recheck-rate 0.25`` became, calibrated by hand, a file with no pixel size (no
defect sizes in mm²) and no recheck band (every part in the band a PASS), said nowhere.

Synthetic parts (a woven texture, tests/teach_support.py) keep it fast."""

from __future__ import annotations

import pytest

from calibration.quality import QualityGates
from calibration.teach import TeachSession
from cli.main import main
from inspector.model_file import load_model

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"


def test_a_hand_calibration_keeps_the_files_pixel_size_and_recheck_band(tmp_path, db, monkeypatch, capsys) -> None:
    db.add_user(TECH, "technician", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    TeachSession(db, "fabric", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu",
                 backend="eager").collect_from_folder(write_parts(tmp_path / "good", woven, 40, seed=0))
    assert main(["teach", "train", "--product", "fabric", "--db", db.url, "--workdir", str(tmp_path / "work"),
                 "--device", "cpu", "--backend", "eager", "--user", TECH, "--target-frr", "0.12", "--kind", "instant",
                 "--features", "pdn", "--mm-per-px", "0.08", "--recheck-rate", "0.25"]) == 0
    model = db.model_version(1).path
    held = write_parts(tmp_path / "held", woven, 10, seed=1)
    common = ["calibrate", str(model), str(held), "--device", "cpu", "--backend", "eager", "--target-frr", "0.12"]
    capsys.readouterr()

    assert main([*common, "--report", str(tmp_path / "r1"), "--out", str(tmp_path / "kept.safetensors")]) == 0
    meta = load_model(tmp_path / "kept.safetensors")[1]
    assert meta["mm_per_px"] == 0.08 and meta["calibration"]["target_recheck_rate"] == 0.25
    assert meta["recheck_threshold"] is not None and meta["recheck_threshold"] < meta["threshold"]
    printed = capsys.readouterr().out
    assert "mm²" in printed and "recheck band: scores above" in printed

    # Given anew, they are the new ones.
    assert main([*common, "--report", str(tmp_path / "r2"), "--out", str(tmp_path / "new.safetensors"),
                 "--mm-per-px", "0.1", "--recheck-rate", "0.4"]) == 0
    meta = load_model(tmp_path / "new.safetensors")[1]
    assert meta["mm_per_px"] == 0.1 and meta["calibration"]["target_recheck_rate"] == 0.4


@pytest.mark.parametrize("option", ["--mm-per-px", "--min-defect-area-mm2"])
def test_an_infinite_pixel_size_or_area_is_refused_as_the_option(option, tmp_path, capsys) -> None:
    """--mm-per-px inf passed the option's check ('nan' and '0' did not) and was refused after the
    images were scored, as 'error: the pixel size must be a positive number of mm, got inf', no
    option named."""
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(tmp_path / "m.safetensors"), str(tmp_path), "--report", str(tmp_path / "r"), option, "inf"])
    assert exit_.value.code == 2
    assert f"argument {option}: 'inf' is not a positive number" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
