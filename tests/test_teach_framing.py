"""The teach's framing (issue 30): what the technician draws -- a region (rectangle or polygon),
don't-care areas (painted or polygons), align, tiles, the smallest defect -- made into the
recipe's framing, trained with, kept in the model file, audited with the train event; and
`inspector teach train --region/--ignore/...` the same, a bad drawing refused in one line with
nothing written.

Synthetic parts (a woven texture, as tests/test_teach_staged.py) keep it independent of ../shared.
"""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from calibration.quality import QualityGates
from calibration.teach import TeachSession
from calibration.teach.framing import Drawing, drawn_framing, polygon_region
from cli.main import main
from inspector.errors import DataError, InspectorError
from inspector.roles import Caller

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"


@pytest.fixture
def session(tmp_path, db):
    db.add_user(TECH, "technician", TECH_PIN)
    s = TeachSession(db, "fabric", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu", backend="eager")
    s.collect_from_folder(write_parts(tmp_path / "good", woven, 24, seed=0))
    return s


def test_a_polygon_region_is_its_bounding_rectangle_with_the_outside_dont_care():
    reference = woven(np.random.default_rng(1))
    triangle = [(20.0, 30.0), (140.0, 30.0), (80.0, 130.0)]
    assert polygon_region(triangle) == (20, 30, 120, 100)
    framing = drawn_framing(reference, Drawing(polygon=triangle, ignore_polygons=[[(70, 40), (90, 40), (90, 60), (70, 60)]]))
    assert framing.region == (20, 30, 120, 100)
    ignore = framing.ignore
    assert ignore.shape == reference.shape
    assert not ignore[80, 80] and ignore[50, 80]  # inside the triangle; in the don't-care square
    assert ignore[125, 25] and ignore[0, 0]  # outside the polygon: a corner of its rectangle, the rest
    # A painted mask adds to it; a plain rectangle region with nothing else keeps no mask.
    painted = np.zeros(reference.shape, bool)
    painted[100:104, 75:79] = True
    assert drawn_framing(reference, Drawing(polygon=triangle, ignore=painted)).ignore[101, 76]
    plain = drawn_framing(reference, Drawing(region=(10, 10, 100, 100)))
    assert plain.region == (10, 10, 100, 100) and plain.ignore is None
    # Nothing drawn on a reference that needs one tile changes nothing: the whole frame, as before.
    assert drawn_framing(reference, Drawing()) is None


@pytest.mark.parametrize("drawing, says", [
    (Drawing(region=(100, 100, 120, 40)), "does not lie inside the 160x160 image"),
    (Drawing(region=(10, 10, 8, 80)), "under 16 pixels"),
    (Drawing(ignore=np.ones((10, 10), bool)), "the don't-care mask is 10x10, the reference 160x160"),
    (Drawing(region=(10, 10, 50, 50), ignore_polygons=[[(0, 0), (100, 0), (100, 100), (0, 100)]]), "covers the whole region"),
    (Drawing(align=True), "alignment needs a region"),
    (Drawing(region=(10, 10, 50, 50), defect_px=-3), "positive number of pixels"),
    (Drawing(polygon=[(1, 1), (5, 5)]), "at least three corners"),
])
def test_a_drawing_that_cannot_work_is_one_line(drawing, says):
    with pytest.raises(InspectorError, match=says) as info:
        drawn_framing(woven(np.random.default_rng(2)), drawing)
    assert "\n" not in str(info.value)


def test_the_teach_trains_with_the_framing_keeps_it_in_the_model_and_audits_it(session, tmp_path):
    from inspector.engine import Engine
    from inspector.framing.recipe import describe

    reference = cv2.imread(str(session.sample_paths()[0]), cv2.IMREAD_GRAYSCALE)
    painted = np.zeros(reference.shape, bool)
    painted[60:70, 60:70] = True
    framing = drawn_framing(reference, Drawing(region=(16, 16, 128, 128), ignore=painted))
    caller = Caller(TECH, TECH_PIN)
    # A recheck band the calibration images cannot resolve is refused before any training.
    with pytest.raises(DataError, match="cannot resolve a recheck rate of 3"):
        session.teach(caller, kind="instant", framing=framing, target_frr=0.25, recheck_rate=0.03)
    assert session.versions() == []
    result = session.teach(caller, kind="instant", framing=framing, target_frr=0.25, mm_per_px=0.05, recheck_rate=0.2)
    version = next(v for v in session.versions() if v.id == result.version_id)
    assert version.metrics["framing"] == describe(framing) == "region 16,16,128,128, 100 don't-care px"
    assert version.metrics["mm_per_px"] == 0.05
    engine = Engine(result.model_path, device="cpu", backend="eager")
    assert engine.framing.region == (16, 16, 128, 128) and int(engine.framing.ignore.sum()) == 100
    started = next(e for e in session.db.audit_events(limit=50) if e.action == "train_started")
    assert started.after["framing"] == describe(framing)

    # The recheck band asked for, and the pixel size, are the version's rule.
    cal = session.db.latest_calibration(result.version_id)
    assert cal.mm_per_px == 0.05 and cal.recheck_threshold is not None and cal.recheck_threshold < cal.image_threshold
    assert result.calibration.recheck.target_rate == 0.2
    # A threshold set by hand keeps the band where it still lies under it; the band can be set
    # again or switched off (audited as set_recheck, a technician's right).
    session.set_threshold(caller, result.version_id, cal.image_threshold * 1.01)
    kept = session.db.latest_calibration(result.version_id)
    assert kept.recheck_threshold == cal.recheck_threshold and kept.mm_per_px == 0.05
    assert session.set_recheck_band(caller, result.version_id, None) is None
    assert session.db.latest_calibration(result.version_id).recheck_threshold is None
    assert [e.action for e in session.db.audit_events(limit=3)][0] == "set_recheck"


def test_inspector_teach_train_takes_the_framing_options(session, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    mask = np.zeros((160, 160), np.uint8)
    mask[40:50, 40:50] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    base = ["teach", "train", "--product", "fabric", "--db", session.db.url, "--workdir", str(tmp_path / "work"),
            "--kind", "instant", "--target-frr", "0.25", "--device", "cpu", "--backend", "eager", "--user", TECH]

    # A region outside the reference (the first sample): one line, exit 2, nothing written.
    models = tmp_path / "work"
    before = sorted(p.name for p in models.rglob("*.safetensors"))
    assert main(base + ["--region", "100,100,120,40"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not lie inside the 160x160 image" in err and "part_00.png" in err, err
    assert session.versions() == [] and sorted(p.name for p in models.rglob("*.safetensors")) == before
    assert "train_started" not in [e.action for e in session.db.audit_events(limit=50)]

    assert main(base + ["--region", "8,8,144,144", "--ignore", str(tmp_path / "mask.png"), "--recheck-rate", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "inspects region 8,8,144,144, 100 don't-care px" in out, out
    assert "recheck band: scores above" in out, out
    (version,) = session.versions()
    assert version.metrics["framing"] == "region 8,8,144,144, 100 don't-care px"
    assert session.db.latest_calibration(version.id).recheck_threshold is not None
