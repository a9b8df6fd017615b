"""A teach is audited as started (``train_started``) only once its request has passed every check
that can be made before training: the samples, the target false-reject rate and the recheck
band against the calibration images, the samples' frame size against the framing and the memory
its tiles take (:meth:`calibration.teach.models.Models.train`). A refused request leaves nothing
in the audit, no model file and no version -- through the workflow and through `inspector teach
train` alike; the staged teach writes ``train_started`` once, before its instant model is active.

Synthetic parts (a woven texture, tests/teach_support.py) keep it fast; the refusals train nothing.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.quality import QualityGates
from calibration.teach import TeachSession
from calibration.teach.sample_fit import check_samples_fit, frame_shape
from cli.main import main
from inspector.errors import DataError, InspectorError
from inspector.framing.recipe import make_framing
from inspector.roles import Caller

from teach_support import woven, write_parts

TECH, TECH_PIN = "tina", "471108"


@pytest.fixture
def session(tmp_path, db):
    """A technician and 16 good 160x160 samples: 4 calibration images, 12 to train on."""
    db.add_user(TECH, "technician", TECH_PIN)
    s = TeachSession(db, "fabric", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu", backend="eager")
    s.collect_from_folder(write_parts(tmp_path / "good", woven, 16, seed=0))
    return s


def actions(session: TeachSession) -> list[str]:
    return [e.action for e in session.db.audit_events(limit=1000)]


def assert_nothing_written(session: TeachSession, before: list[str]) -> None:
    assert actions(session) == before and "train_started" not in actions(session)
    assert session.versions() == [] and not list(session.models_dir.rglob("*.safetensors"))


def many_tiles(session: TeachSession):
    """A framing that cuts each sample into 64 training pieces (about 113 MB of memory each)."""
    reference = cv2.imread(str(session.sample_paths()[0]), cv2.IMREAD_GRAYSCALE)
    return make_framing(reference, region=(16, 16, 128, 128), tiles=8)


def another_size(session: TeachSession):
    """A framing drawn on a frame of another size than the samples', without alignment."""
    return make_framing(np.full((300, 400), 128, np.uint8), region=(40, 30, 200, 150))


@pytest.mark.parametrize("kind", ["instant", "staged"])
@pytest.mark.parametrize("request_, says", [
    (dict(target_frr=0.01), "4 good calibration images cannot resolve a false-reject rate of 1 %"),
    (dict(target_frr=0.25, recheck_rate=0.03),
     "4 calibration images cannot resolve a recheck rate of 3 %: it needs at least 33 (calibration uses 20 % of the 16 "
     "samples); collect about 165 samples"),
])
def test_too_few_calibration_images_are_refused_before_the_audit(session, kind, request_, says):
    before = actions(session)
    with pytest.raises(DataError) as info:
        session.teach(Caller(TECH, TECH_PIN), kind=kind, **request_)
    assert says in str(info.value), str(info.value)
    assert_nothing_written(session, before)


def test_samples_of_another_size_than_the_framings_reference_are_refused_before_the_audit(session):
    before = actions(session)
    with pytest.raises(InspectorError, match=r"part_00.png: the frame is 160x160, the recipe's reference 400x300: its "
                                             r"region would fall elsewhere; draw the region on one of the samples"):
        session.teach(Caller(TECH, TECH_PIN), kind="instant", target_frr=0.25, framing=another_size(session))
    assert_nothing_written(session, before)


def test_training_pieces_that_would_not_fit_the_memory_are_refused_before_the_audit(session, monkeypatch):
    import inspector.framing.recipe as recipe

    monkeypatch.setattr(recipe, "available_memory_bytes", lambda: 100_000_000)  # a small machine
    before = actions(session)
    with pytest.raises(InspectorError, match="12 training images of 64 tiles each would take about 1.4 GB"):
        session.teach(Caller(TECH, TECH_PIN), kind="staged", target_frr=0.25, framing=many_tiles(session))
    assert_nothing_written(session, before)


def test_check_samples_fit_reads_the_size_from_the_header_and_counts_the_training_share(session, monkeypatch):
    import inspector.framing.recipe as recipe

    paths = session.sample_paths()
    assert frame_shape(paths[0]) == (160, 160)
    monkeypatch.setattr(recipe, "available_memory_bytes", lambda: 1_200_000_000)
    check_samples_fit(None, paths)  # no framing: nothing to check
    with pytest.raises(InspectorError, match="^12 training images"):  # 16 samples: 12 train, 4 calibrate
        check_samples_fit(many_tiles(session), paths)
    check_samples_fit(many_tiles(session), paths, n_train=10)  # 1.1 GB: fits


def test_a_staged_teach_is_audited_as_started_once_before_its_instant_model_is_active(session):
    session.teach(Caller(TECH, TECH_PIN), kind="staged", iterations=2, target_frr=0.25)
    oldest_first = list(reversed(actions(session)))
    assert oldest_first.count("train_started") == 1, oldest_first
    assert oldest_first.index("train_started") < oldest_first.index("set_active_model"), oldest_first


@pytest.mark.parametrize("options, says", [
    (["--recheck-rate", "0.03"], "4 calibration images cannot resolve a recheck rate of 3 %"),
    (["--reference", "{camera}", "--region", "40,30,200,150"], "the frame is 160x160, the recipe's reference 400x300"),
])
def test_inspector_teach_train_refuses_without_an_audit_record(session, tmp_path, capsys, monkeypatch, options, says):
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    camera = tmp_path / "camera.png"
    cv2.imwrite(str(camera), np.full((300, 400), 128, np.uint8))  # a frame of another size than the samples
    before = actions(session)
    code = main(["teach", "train", "--product", "fabric", "--db", session.db.url, "--workdir", str(tmp_path / "work"),
                 "--kind", "instant", "--target-frr", "0.25", "--device", "cpu", "--backend", "eager", "--user", TECH,
                 *(o.format(camera=camera) for o in options)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert_nothing_written(session, before)
