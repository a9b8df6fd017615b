"""Calibrating a taught version again (``inspector teach calibrate``, Models.calibrate) sets new
thresholds on the recipe as the technician left it: the pixel size and the recheck band the
version was calibrated with are kept unless given anew. They were dropped: version 1 taught with
``--mm-per-px 0.08 --recheck-rate 0.25`` became, recalibrated, a version 2 with no pixel size (no
defect sizes in mm² on the line, the review or the CSV) and no recheck band (every part in the
band a PASS), said nowhere; and ``teach calibrate`` had no ``--recheck-rate`` to set it again.

Synthetic parts (a woven texture, tests/teach_support.py) keep it fast."""

from __future__ import annotations

import pytest

from calibration.quality import QualityGates
from calibration.teach import TeachSession
from cli.main import main
from inspector.model_file import load_model

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"


@pytest.fixture
def taught(tmp_path, db, monkeypatch):
    """Version 1 of 'fabric', taught from 40 samples (8 calibration images) with a pixel size and a band."""
    db.add_user(TECH, "technician", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    TeachSession(db, "fabric", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu",
                 backend="eager").collect_from_folder(write_parts(tmp_path / "good", woven, 40, seed=0))
    common = ["--product", "fabric", "--db", db.url, "--workdir", str(tmp_path / "work"), "--device", "cpu",
              "--backend", "eager", "--user", TECH, "--target-frr", "0.12"]
    assert main(["teach", "train", *common, "--kind", "instant", "--features", "pdn", "--mm-per-px", "0.08",
                 "--recheck-rate", "0.25"]) == 0
    return db, common


def recalibrated(db, common: list[str], version: int, *options: str) -> tuple[object, dict]:
    """Version 1 calibrated again into candidate ``version``: its calibration and model file's metadata."""
    assert main(["teach", "calibrate", *common, "--version", "1", *options]) == 0
    assert db.model_version(version).note == "recalibration of version 1"
    return db.latest_calibration(version), load_model(db.model_version(version).path)[1]


def test_a_recalibration_keeps_the_pixel_size_and_the_recheck_band(taught, capsys) -> None:
    db, common = taught
    first = db.latest_calibration(1)
    assert first.mm_per_px == 0.08 and first.target_recheck_rate == 0.25 and first.recheck_threshold is not None
    capsys.readouterr()

    calibration, meta = recalibrated(db, common, 2)
    assert calibration.mm_per_px == 0.08 and meta["mm_per_px"] == 0.08
    assert calibration.target_recheck_rate == 0.25
    assert calibration.recheck_threshold is not None and meta["recheck_threshold"] == calibration.recheck_threshold
    printed = capsys.readouterr().out
    assert "mm²" in printed and "recheck band: scores above" in printed

    # Given anew, they are the new ones.
    calibration, meta = recalibrated(db, common, 3, "--mm-per-px", "0.1", "--recheck-rate", "0.4")
    assert calibration.mm_per_px == 0.1 and calibration.target_recheck_rate == 0.4 and meta["mm_per_px"] == 0.1


def test_teach_status_shows_each_versions_recheck_band_and_pixel_size(taught, tmp_path, capsys) -> None:
    """teach status gave a version's threshold and expected false-reject rate only: whether a
    version had a recheck band (and where) or a pixel size could not be told from it."""
    db, common = taught
    calibration = db.latest_calibration(1)
    capsys.readouterr()
    assert main(["teach", "status", "--product", "fabric", "--db", db.url, "--workdir", str(tmp_path / "work"),
                 "--json", str(tmp_path / "status.json")]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if "version    1" in s][0]
    assert f"RECHECK above {calibration.recheck_threshold:.6g}, 0.08 mm/px" in line
    import json

    version = json.loads((tmp_path / "status.json").read_text())["versions"][0]
    assert (version["recheck_threshold"], version["target_recheck_rate"], version["mm_per_px"]) == (
        calibration.recheck_threshold, 0.25, 0.08)
