"""A version whose framing cannot cut the line's frames is refused at activation and rollback.

Found running the desktop: a version taught on 160x160 samples with a region (no ``--align``),
activated while the camera gave 1280x1024 frames, was accepted; the line then FAILed every part
with an ``engine_error`` alarm until the technician replaced it. The line knows its camera's
frames, so the activation is checked against them before anything changes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from calibration.teach import TeachSession
from cli.main import main
from inspector.errors import InspectorError
from inspector.inspection import InspectionResult
from inspector.roles import Caller

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"
LINE_FRAME = (1024, 1280)  # (height, width) of the camera's frames; the samples are 160x160


@pytest.fixture
def two_versions(tmp_path: Path, db, monkeypatch) -> SimpleNamespace:
    """Product "fabric": version 1 inspects region 16,16,128,128 of 160x160 frames, version 2 the
    whole frame; both calibrated into ``db``, neither active."""
    db.add_user(TECH, "technician", TECH_PIN)
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    train = write_parts(tmp_path / "train", woven, 12, seed=0)
    good = write_parts(tmp_path / "good", woven, 12, seed=1)
    for name, framing in (("framed", ["--region", "16,16,128,128"]), ("whole", [])):
        model = tmp_path / f"{name}.safetensors"
        assert main(["train", str(train), "--out", str(model), "--kind", "instant", "--features", "pdn",
                     "--image-size", "128", *framing, "--device", "cpu"]) == 0
        assert main(["calibrate", str(model), str(good), "--target-frr", "0.2", "--no-pixel-rule",
                     "--report", str(tmp_path / f"report-{name}"), "--out", str(tmp_path / f"{name}-cal.safetensors"),
                     "--db", db.url, "--product", "fabric", "--user", TECH, "--device", "cpu", "--backend", "eager"]) == 0
    return SimpleNamespace(db=db, framed=1, whole=2, workdir=tmp_path / "work")


def activations(db) -> list[str]:
    return [e.action for e in db.audit_events(100) if e.action in ("set_active_model", "rollback")]


def test_activation_and_rollback_refuse_a_version_that_cannot_cut_the_cameras_frames(two_versions) -> None:
    db = two_versions.db
    teach = TeachSession(db, "fabric", two_versions.workdir)
    tech = Caller(TECH, TECH_PIN)
    expected = (r"version 1 cannot inspect this line's frames \(camera cam0: the frame is 1280x1024, the recipe's "
                r"reference 160x160: its region would fall elsewhere\); .* teach it again on this camera's frames")
    with pytest.raises(InspectorError, match=expected):
        teach.activate(tech, two_versions.framed, camera_frames={"cam0": LINE_FRAME})
    assert db.product_by_name("fabric").active_model_version_id is None and activations(db) == []

    teach.activate(tech, two_versions.framed, camera_frames={"cam0": (160, 160)})  # the samples' camera: it fits
    teach.activate(tech, two_versions.whole, camera_frames={"cam0": LINE_FRAME})  # a whole-frame model cuts any frame
    assert activations(db) == ["set_active_model"] * 2
    # A rollback returns to version 1, which cannot cut what the camera now gives.
    with pytest.raises(InspectorError, match=expected):
        teach.rollback(tech, camera_frames={"cam0": LINE_FRAME})
    assert db.product_by_name("fabric").active_model_version_id == two_versions.whole
    assert activations(db) == ["set_active_model"] * 2
    # Where the line has seen no frame, nothing is known to check against: as before.
    assert teach.rollback(tech) == two_versions.framed


def test_the_teach_page_refuses_to_activate_a_version_that_cannot_cut_the_live_frames(qtbot, tmp_path, two_versions) -> None:
    pytest.importorskip("PyQt6")
    from ui.session import Session
    from ui.teach_model import TeachModel

    from ui_support import make_line

    db = two_versions.db
    db.set_active_model(db.product_by_name("fabric").id, two_versions.whole, user="test", role="system")
    engine = SimpleNamespace(model_path=tmp_path / "whole-cal.safetensors")
    line = make_line(db, engine, tmp_path / "frames", 1.0, tmp_path / "images", db.product_by_name("fabric").id,
                     two_versions.whole)
    line.set_recipe(replace(line.recipe, product="fabric"))
    (camera,) = line.views
    assert line.camera_frames() == {}  # no frame yet
    line._on_result_received(InspectionResult(datetime.now(timezone.utc), camera, 1, 0.4, "PASS", 1.0,
                                              image=np.zeros(LINE_FRAME, np.uint8)))
    assert line.camera_frames() == {camera: LINE_FRAME}

    session = Session(db)
    session.sign_in(TECH, TECH_PIN)
    teach = TeachModel(db, line, session, workdir=two_versions.workdir, device="cpu", backend="eager")
    before = activations(db)
    messages: list[tuple[str, bool]] = []
    teach.message.connect(lambda text, error: messages.append((text, error)))
    task = teach.activate(two_versions.framed)
    qtbot.waitUntil(lambda: bool(messages), timeout=60_000)
    assert task is not None
    (text, error), = messages
    assert error and "version 1 cannot inspect this line's frames (camera " in text, text
    assert "the frame is 1280x1024, the recipe's reference 160x160" in text, text
    assert db.product_by_name("fabric").active_model_version_id == two_versions.whole
    assert line.recipe.model_version_id == two_versions.whole
    assert activations(db) == before


def test_a_staged_teach_that_would_activate_a_region_the_cameras_frames_cannot_hold_is_refused_first(tmp_path, db) -> None:
    from inspector.framing.recipe import make_framing

    db.add_user(TECH, "technician", TECH_PIN)
    teach = TeachSession(db, "fabric", tmp_path / "work")
    teach.collect_from_folder(write_parts(tmp_path / "parts", woven, 16, seed=0))
    framing = make_framing(woven(np.random.default_rng(3)), region=(16, 16, 128, 128))  # drawn on a 160x160 sample
    with pytest.raises(InspectorError, match=r"the drawn region cannot inspect this line's frames \(camera cam0: the "
                                             r"frame is 1280x1024, the recipe's reference 160x160"):
        teach.teach(Caller(TECH, TECH_PIN), kind="staged", framing=framing, camera_frames={"cam0": LINE_FRAME})
    assert [e.action for e in db.audit_events(100) if e.action in ("train_started", "set_active_model")] == []
    assert not list((tmp_path / "work").rglob("*.safetensors"))
