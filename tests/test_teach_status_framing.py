"""`inspector teach status` says what of the frame each version inspects (issue 30): it gave the
threshold, band and pixel size only, so a region model could not be told from a whole-frame one
before activating or rolling back to it, although the technician's manual says the framing is
named with the version. A recalibration keeps its version's framing, and says so too.

Synthetic parts (a woven texture, tests/teach_support.py) keep it fast."""

from __future__ import annotations

import json

import cv2
import numpy as np

from calibration.quality import QualityGates
from calibration.teach import TeachSession
from calibration.teach.framing import Drawing, drawn_framing
from cli.main import main
from inspector.roles import Caller

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"


def test_teach_status_names_each_versions_framing(tmp_path, db, capsys, monkeypatch) -> None:
    db.add_user(TECH, "technician", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    session = TeachSession(db, "fabric", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu",
                           backend="eager")
    session.collect_from_folder(write_parts(tmp_path / "good", woven, 24, seed=0))
    reference = cv2.imread(str(session.sample_paths()[0]), cv2.IMREAD_GRAYSCALE)
    painted = np.zeros(reference.shape, bool)
    painted[60:70, 60:70] = True
    framing = drawn_framing(reference, Drawing(region=(16, 16, 128, 128), ignore=painted))
    caller = Caller(TECH, TECH_PIN)
    framed = session.teach(caller, kind="instant", features="pdn", framing=framing, target_frr=0.25)
    again = session.recalibrate(caller, framed.version_id, target_frr=0.25)

    capsys.readouterr()
    assert main(["teach", "status", "--product", "fabric", "--db", db.url, "--workdir", str(tmp_path / "work"),
                 "--json", str(tmp_path / "status.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    for version in (framed.version_id, again.version_id):
        line = next(s for s in lines if f"version {version:>4}" in s)
        assert "inspects region 16,16,128,128, 100 don't-care px" in line, line
    versions = json.loads((tmp_path / "status.json").read_text())["versions"]
    assert [v["framing"] for v in versions] == ["region 16,16,128,128, 100 don't-care px"] * 2
