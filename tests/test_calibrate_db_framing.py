"""``inspector calibrate MODEL GOOD --db URL --product P`` registers a framed model as a candidate
whose version names its framing, as a version taught with ``inspector teach train`` does.

Found running a station on line frames (a model trained with ``inspector train --region ...
--align``, calibrated with ``--db``): ``inspector teach status`` gave the version no ``inspects
region ...``, and its activation audited no framing, so the region model read as a whole-frame
one, before and after it went on the line (and in the plant's copy of the version, whose metrics
are the station's). The version's metrics held the calibration's figures only.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli.main import main

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"


def test_a_framed_model_calibrated_into_the_history_names_its_framing(tmp_path: Path, db, capsys, monkeypatch) -> None:
    db.add_user(TECH, "technician", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    train = write_parts(tmp_path / "train", woven, 12, seed=0)
    good = write_parts(tmp_path / "good", woven, 12, seed=1)
    model = tmp_path / "framed.safetensors"
    assert main(["train", str(train), "--out", str(model), "--kind", "instant", "--features", "pdn",
                 "--image-size", "128", "--region", "16,16,128,128", "--device", "cpu"]) == 0
    calibrated = tmp_path / "framed-cal.safetensors"
    assert main(["calibrate", str(model), str(good), "--target-frr", "0.2", "--no-pixel-rule", "--mm-per-px", "0.05",
                 "--report", str(tmp_path / "report"), "--out", str(calibrated), "--db", db.url, "--product", "fabric",
                 "--user", TECH, "--device", "cpu", "--backend", "eager"]) == 0
    again = tmp_path / "framed-cal2.safetensors"  # a calibration of the registered version: its own framing
    assert main(["calibrate", str(calibrated), str(good), "--target-frr", "0.2", "--no-pixel-rule",
                 "--report", str(tmp_path / "report2"), "--out", str(again), "--db", db.url,
                 "--user", TECH, "--device", "cpu", "--backend", "eager"]) == 0

    capsys.readouterr()
    assert main(["teach", "status", "--product", "fabric", "--db", db.url, "--workdir", str(tmp_path / "work"),
                 "--json", str(tmp_path / "status.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    for version in (1, 2):
        line = next(s for s in lines if f"version {version:>4}" in s)
        assert "inspects region 16,16,128,128" in line, line
    versions = json.loads((tmp_path / "status.json").read_text())["versions"]
    assert [v["framing"] for v in versions] == ["region 16,16,128,128"] * 2

    assert main(["teach", "activate", "--product", "fabric", "--version", "2", "--db", db.url,
                 "--workdir", str(tmp_path / "work"), "--user", TECH]) == 0
    (event,) = [e for e in db.audit_events(100) if e.action == "set_active_model"]
    assert (event.after["active_model_version_id"], event.after.get("framing")) == (2, "region 16,16,128,128")
