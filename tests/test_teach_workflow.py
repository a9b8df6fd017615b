"""The teach workflow end to end on real magnetic-tile images with a tiny training budget:
collect, train, calibrate, activate, recalibrate, roll back, shadow mode, recipes, roles, audit,
and the `inspector calibrate` / `inspector teach` commands.

One model is trained for the whole module (2 iterations, random teacher) to keep the run short;
the thresholds it gets are meaningless as quality figures but exercise every step for real.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from calibration.calibrate import METADATA_KEYS
from calibration.quality import QualityGates
from inspector.roles import AccessDenied, Caller
from inspector.recipes import active_recipe, set_camera_settings, versions
from inspector.line.rule import rule_from_metadata
from calibration.teach import TeachFolders, TeachSession
from cli.main import main
from inspector.errors import DataError, ModelFileError
from inspector.history import HistoryDB, file_sha256
from inspector.model_file import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TILE = DATA / "magnetic_tile"
pytestmark = [
    pytest.mark.skipif(not TILE.is_dir(), reason=f"real data not found at {DATA} (see shared/data/README.md)"),
    pytest.mark.slow,
]

TECH, TECH_PIN = "tina", "471108"
OPERATOR, OPERATOR_PIN = "otto", "620814"


def copy_images(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(src / n, dst / n)
    return dst


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A database with a technician and an operator, a taught product and its first version."""
    root = tmp_path_factory.mktemp("teach")
    good_names = sorted(p.name for p in (TILE / "train" / "good").iterdir())[:16]
    good = copy_images(TILE / "train" / "good", root / "good", good_names)
    defects = root / "defects"
    for kind in ("blowhole", "break"):
        names = sorted(p.name for p in (TILE / "test" / kind).iterdir())[:2]
        copy_images(TILE / "test" / kind, defects / kind, names)
    bsds = DATA / "natural" / "bsds500"
    penalty = copy_images(bsds, root / "penalty", sorted(p.name for p in bsds.iterdir())[:4])
    db = HistoryDB(f"sqlite:///{root / 'history.db'}")
    db.upgrade()
    db.add_user(TECH, "technician", TECH_PIN)
    db.add_user(OPERATOR, "operator", OPERATOR_PIN)
    session = TeachSession(db, "tile", root / "work", gates=QualityGates(same_size=False), device="cpu", backend="eager")
    collected = session.collect_from_folder(good)
    progress = []
    taught = session.train(
        iterations=2, teacher="random", penalty_dir=penalty, target_frr=0.25, pixel_fpr=0.01,
        mm_per_px=0.05, defects=defects, user=OPERATOR, on_progress=progress.append,
    )
    yield dict(root=root, db=db, session=session, collected=collected, taught=taught, progress=progress,
               good=good, defects=defects, penalty=penalty)
    db.close()


def test_train_creates_a_calibrated_candidate(world):
    db, session, taught = world["db"], world["session"], world["taught"]
    assert len(world["collected"].accepted) == 16
    assert [p.iteration for p in world["progress"]] == [1, 2]
    # 80 / 20 split, disjoint: 12 train, 4 calibrate.
    assert len(taught.train_images) == 12 and len(taught.calibration_images) == 4
    assert not set(taught.train_images) & set(taught.calibration_images)
    assert all(p.parent == session.samples_dir for p in taught.calibration_images)
    status = session.status()
    assert status["samples"] == 16 and status["versions"][0]["id"] == taught.version_id

    version = db.model_version(taught.version_id)
    assert version.status == "candidate" and version.sha256 == file_sha256(taught.model_path)
    assert version.report_path == str(taught.report_path)
    assert version.metrics["iterations"] == 2 and version.metrics["auroc"] == pytest.approx(taught.calibration.defects.auroc)

    calibration = db.latest_calibration(taught.version_id)
    _, meta = load_model(taught.model_path)
    assert meta["threshold"] == pytest.approx(calibration.image_threshold)
    assert meta["pixel_threshold"] == pytest.approx(calibration.pixel_threshold)
    assert meta["min_defect_area_px"] == calibration.min_defect_area_px
    assert meta["calibration"]["target_frr"] == 0.25 and calibration.target_frr == 0.25
    assert calibration.created_by == OPERATOR
    # The known defects it was calibrated with are named, for the accuracy gate of reduced precision.
    assert sorted(Path(p).name for p in meta["defect_images"]) == sorted(p.name for p in world["defects"].rglob("*.*"))
    assert all(Path(p).is_absolute() for p in meta["defect_images"])
    # 4 calibration scores, target 25 %: the highest of them, expected FRR 1/5 with Beta(1, 4).
    scores = np.array(calibration.report["good_scores"])
    assert calibration.image_threshold == pytest.approx(scores.max())
    assert calibration.expected_frr == pytest.approx(0.2)

    report = json.loads(taught.report_path.read_text())
    for key in ("threshold", "expected_frr", "frr_ci_low", "frr_ci_high", "n_good", "escape_rate", "f1_threshold",
                "pixel_threshold", "min_defect_area_px", "min_defect_area_mm2", "pixel_rule_escape_rate"):
        assert report[key] is not None, key
    assert report["n_good"] == 4 and report["n_defective"] == 4
    assert report["min_defect_area_mm2"] == pytest.approx(report["min_defect_area_px"] * 0.0025)
    for png in ("scores.png", "roc.png"):
        assert (taught.report_path.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(taught.report_path.parent.glob(".*.tmp"))


def test_the_teach_prepares_the_engine_and_the_lines_first_start_reuses_it(world, tmp_path, monkeypatch):
    """With the automatic backend, the teach measures and gates the CPU backends on the finished
    file (its own calibration images), so the line's first start measures and builds nothing."""
    import torch

    from inspector.devices import bf16_supported
    from inspector.engine import Engine

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    # The cheap candidates (the int8 builds are the int8 tests'); bf16 is gated where the CPU has it.
    monkeypatch.setattr(Engine, "_cpu_candidates", lambda self: ["eager", "eager-bf16"] if bf16_supported(self.device) else ["eager"])
    session = TeachSession(world["db"], "tile-auto", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu", backend="auto")
    session.collect_from_folder(world["good"])
    measurements = []
    measure = Engine._measure_cpu_backends
    monkeypatch.setattr(Engine, "_measure_cpu_backends", lambda self, *a, **k: measurements.append(self.model_path) or measure(self, *a, **k))
    taught = session.train(iterations=2, teacher="random", penalty_dir=world["penalty"], target_frr=0.25, user=TECH)
    assert measurements == [taught.model_path]  # once, on the calibrated file: calibration scores in fp32 eager
    engine = taught.engine
    assert engine["prepared"] and engine["backend"] in ("eager", "eager-bf16") and engine["seconds"] >= 0
    assert engine["reason"].startswith(engine["backend"])
    if bf16_supported(torch.device("cpu")):
        assert "bf16" in engine["reason"]  # gated (passed or failed), not skipped as ineligible
    stored = [v for v in session.versions() if v.id == taught.version_id][0]
    assert stored.metrics["engine"] == engine

    def measured(*args, **kwargs):
        raise AssertionError("the line measured the backends again")

    monkeypatch.setattr(Engine, "_measure_cpu_backends", measured)
    line_engine = Engine(taught.model_path, device="cpu", backend="auto", warmup=False)
    assert (line_engine.backend, line_engine.backend_reason) == (engine["backend"], engine["reason"])


def test_an_operator_cannot_activate_and_refusals_are_audited(world):
    db, session, taught = world["db"], world["session"], world["taught"]
    active_before = db.product_by_name("tile").active_model_version_id
    with pytest.raises(AccessDenied, match="otto is operator; only technician may activate"):
        session.activate(Caller(OPERATOR, OPERATOR_PIN), taught.version_id)
    with pytest.raises(AccessDenied, match="wrong PIN"):
        session.activate(Caller(TECH, "000000"), taught.version_id)
    with pytest.raises(AccessDenied):
        set_camera_settings(db, "tile", {"exposure_us": 900.0}, user=OPERATOR, pin=OPERATOR_PIN)
    assert db.product_by_name("tile").active_model_version_id == active_before
    denied = [(e.user, e.role, e.action) for e in db.audit_events(50) if e.action.endswith("_denied")]
    assert (OPERATOR, "operator", "activate_denied") in denied
    assert (TECH, "unknown", "activate_denied") in denied
    assert (OPERATOR, "operator", "set_camera_settings_denied") in denied


@pytest.fixture(scope="module")
def lifecycle(world):
    """Version 1 activated with camera settings, recalibrated into version 2, version 2 activated,
    then rolled back: what each step left, observed as it happened. Any test that needs the two
    versions asks for this fixture, so it runs on its own as well as after the others."""
    db, session, taught = world["db"], world["session"], world["taught"]
    v1 = taught.version_id
    seen = {"v1": v1, "v1_sha": file_sha256(taught.model_path)}
    session.activate(Caller(TECH, TECH_PIN), v1)
    set_camera_settings(db, "tile", {"exposure_us": 1500.0, "roi": [0, 0, 200, 200]}, user=TECH, pin=TECH_PIN)
    seen["recipe_v1"] = active_recipe(db, "tile")
    seen["recalibration"] = re = session.calibrate(v1, target_frr=0.3, pixel_fpr=None, user=TECH)
    seen["v2"] = v2 = re.version_id
    seen["v1_sha_after_recalibration"] = file_sha256(taught.model_path)
    session.activate(Caller(TECH, TECH_PIN), v2)
    seen["active_after_switch"] = active_recipe(db, "tile").model_version_id
    seen["v1_status_after_switch"] = db.model_version(v1).status
    seen["rolled_back_to"] = session.rollback(Caller(TECH, TECH_PIN))
    world["v2"] = v2
    return seen


def test_activate_recalibrate_switch_and_roll_back(world, lifecycle):
    db, session, taught = world["db"], world["session"], world["taught"]
    v1, v2 = lifecycle["v1"], lifecycle["v2"]
    recipe = lifecycle["recipe_v1"]
    assert recipe.model_version_id == v1 and recipe.model_path == taught.model_path
    assert recipe.camera_settings == {"exposure_us": 1500.0, "roi": [0, 0, 200, 200]}
    assert recipe.rule == rule_from_metadata(load_model(taught.model_path)[1])
    assert len(recipe.reference_scores) == 4

    # Recalibration writes a new file and a new candidate; version 1's file is untouched.
    re = lifecycle["recalibration"]
    assert v2 != v1 and re.model_path != taught.model_path and lifecycle["v1_sha_after_recalibration"] == lifecycle["v1_sha"]
    assert db.latest_calibration(v2).pixel_threshold is None
    assert load_model(re.model_path)[1]["pixel_threshold"] is None
    assert db.model_version(v2).note == f"recalibration of version {v1}"

    assert lifecycle["active_after_switch"] == v2 and lifecycle["v1_status_after_switch"] == "retired"
    assert lifecycle["rolled_back_to"] == v1
    with pytest.raises(AccessDenied):
        session.rollback(Caller(OPERATOR, OPERATOR_PIN))

    events = [e for e in db.audit_events(200) if e.target == f"product:{session.product_id}"]
    activations = [(e.action, e.user, e.role, e.before["active_model_version_id"], e.after["active_model_version_id"])
                   for e in events if e.action in ("set_active_model", "rollback")]
    # Oldest first: the lifecycle's three activations come before any a later test makes; the
    # rollback is one event of its own name.
    assert activations[::-1][:3] == [("set_active_model", TECH, "technician", None, v1),
                                     ("set_active_model", TECH, "technician", v1, v2), ("rollback", TECH, "technician", v2, v1)]
    assert all(e.time is not None for e in events)


def test_shadow_mode_reports_agreement_and_differences(world, lifecycle):
    session, taught = world["session"], world["taught"]
    v2 = lifecycle["v2"]
    # Active: version 1 (image threshold + pixel rule). Candidate: version 2, the same network
    # recalibrated without a pixel rule. Scores must agree exactly, and the decisions differ
    # exactly on the defective parts that only version 1's pixel rule catches -- known from its
    # calibration, which scored the same images in the same batches.
    cal = taught.calibration
    v1_rule, v2_threshold = cal.rule, world["db"].latest_calibration(v2).image_threshold
    images = [Path(p) for p in cal.defect_paths]
    expected = {
        str(p) for p, score, area in zip(images, cal.defect_scores, cal.defect_regions_px)
        if (score > v1_rule.threshold or area >= v1_rule.min_defect_area_px) != (score > v2_threshold)
    }
    report = session.shadow(v2, images)
    assert report.n == 4 and report.median_score_shift == pytest.approx(0.0, abs=1e-6)
    assert {d.name for d in report.differences} == expected
    assert report.agreement == pytest.approx(1 - len(expected) / 4)
    assert all(d.active_score == pytest.approx(d.candidate_score, abs=1e-6) for d in report.differences)
    assert report.as_dict()["n"] == 4 and "agreement" in report.summary()
    with pytest.raises(DataError, match="no stored inspection images"):
        session.shadow(v2)


def test_a_changed_model_file_is_refused(world, lifecycle, tmp_path):
    db = world["db"]
    product = db.product_by_name("tile")
    path = Path(db.model_version(product.active_model_version_id).path)
    backup = tmp_path / "backup"
    shutil.copyfile(path, backup)
    try:
        with open(path, "ab") as f:
            f.write(b"\0")
        with pytest.raises(ModelFileError, match="changed since it was registered"):
            active_recipe(db, "tile")
    finally:
        shutil.copyfile(backup, path)
    assert active_recipe(db, "tile").model_path == path


def test_inspector_calibrate_command_writes_report_model_and_db(world, lifecycle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)  # --db: a technician's calibration, PIN from the environment
    model = tmp_path / "model.safetensors"
    shutil.copyfile(world["taught"].model_path, model)
    good = copy_images(world["good"], tmp_path / "held_out", [p.name for p in world["taught"].calibration_images])
    url = f"sqlite:///{world['root'] / 'history.db'}"
    report_dir = tmp_path / "report"
    given = file_sha256(model)
    rc = main(["calibrate", str(model), str(good), "--defects", str(world["defects"]), "--target-frr", "25%",
               "--pixel-fpr", "0.01", "--mm-per-px", "0.1", "--report", str(report_dir), "--db", url,
               "--product", "tile-cli", "--user", TECH, "--device", "cpu", "--backend", "eager"])
    out = capsys.readouterr().out
    assert rc == 0 and "expected false-reject rate 20 %" in out and "F1-optimal threshold" in out
    report = json.loads((report_dir / "report.json").read_text())
    assert {"threshold", "expected_frr", "frr_ci_low", "frr_ci_high", "n_good", "escape_rate", "f1_threshold",
            "pixel_threshold", "min_defect_area_px"} <= set(report)
    assert (report_dir / "roc.png").is_file() and (report_dir / "scores.png").is_file()
    db = world["db"]
    (version,) = versions(db, "tile-cli")
    _, meta = load_model(version.path)  # a new file: the one given is never rewritten
    assert meta["threshold"] == pytest.approx(report["threshold"]) and set(METADATA_KEYS) <= set(meta)
    assert version.path != model.resolve() and file_sha256(model) == given
    assert version.sha256 == file_sha256(version.path) and version.calibration.image_threshold == pytest.approx(report["threshold"])

    # Again on the now registered candidate: a new candidate of its product, audited; the first unchanged.
    rc = main(["calibrate", str(version.path), str(good), "--target-frr", "0.3", "--no-pixel-rule", "--report",
               str(tmp_path / "report2"), "--db", url, "--user", TECH, "--device", "cpu", "--backend", "eager"])
    assert rc == 0
    second, first = versions(db, "tile-cli")  # newest first
    assert first.sha256 == file_sha256(first.path) == version.sha256 and db.latest_calibration(second.id).target_frr == 0.3
    assert any((e.action, e.user, e.role, e.target) == ("calibrate", TECH, "technician", f"model_version:{second.id}")
               for e in db.audit_events(20))

    # An active model's file is never rewritten either: the line keeps deciding with it.
    active = db.model_version(db.product_by_name("tile").active_model_version_id).path
    before = file_sha256(active)
    rc = main(["calibrate", active, str(good), "--target-frr", "0.3", "--report", str(tmp_path / "r3"), "--db", url,
               "--user", TECH, "--device", "cpu", "--backend", "eager"])
    assert rc == 0 and file_sha256(active) == before
    active_recipe(db, "tile")  # the registered file still checks out

    # A corrupt good image: a clear one-line error, the model file untouched.
    (good / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    before = file_sha256(model)
    rc = main(["calibrate", str(model), str(good), "--target-frr", "0.3", "--report", str(tmp_path / "r4"), "--device", "cpu", "--backend", "eager"])
    err = capsys.readouterr().err
    assert rc == 2 and "broken.jpg: not a readable image" in err and file_sha256(model) == before


def test_teach_commands_status_activate_and_refusal(world, lifecycle, tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{world['root'] / 'history.db'}"
    common = ["--product", "tile", "--db", url, "--workdir", str(world["root"] / "work"), "--backend", "eager"]
    assert main(["teach", "status", *common, "--json", str(tmp_path / "status.json")]) == 0
    out = capsys.readouterr().out
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["samples"] == 16 and status["active_version"] == world["taught"].version_id
    assert f"* version {world['taught'].version_id:>4}  active" in out

    rc = main(["teach", "status", "--product", "no-such-product", "--db", url, "--workdir", str(tmp_path)])
    assert rc == 2 and "no product named 'no-such-product'" in capsys.readouterr().err

    target = lifecycle["v2"]
    monkeypatch.delenv("INSPECTOR_PIN", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: the PIN comes from the environment or a file
    rc = main(["teach", "activate", *common, "--version", str(target), "--user", TECH])
    assert rc == 2 and "no PIN for 'tina'" in capsys.readouterr().err
    monkeypatch.setenv("INSPECTOR_PIN", OPERATOR_PIN)
    rc = main(["teach", "activate", *common, "--version", str(target), "--user", OPERATOR])
    assert rc == 2 and "only technician may activate" in capsys.readouterr().err
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    assert main(["teach", "activate", *common, "--version", str(target), "--user", TECH]) == 0
    assert world["db"].product_by_name("tile").active_model_version_id == target
    assert f"version {target} is now the active model of 'tile'" in capsys.readouterr().out
    # again: it said "is now the active model" as if the line had changed
    assert main(["teach", "activate", *common, "--version", str(target), "--user", TECH]) == 0
    assert f"version {target} was already the active model of 'tile'; nothing changed" in capsys.readouterr().out
    monkeypatch.delenv("INSPECTOR_PIN")
    pin_file = tmp_path / "pin"
    pin_file.write_text(TECH_PIN + "\n")
    pin_file.chmod(0o600)
    assert main(["teach", "rollback", *common, "--user", TECH, "--pin-file", str(pin_file)]) == 0
    assert world["db"].product_by_name("tile").active_model_version_id == world["taught"].version_id
    denied = [e.action for e in world["db"].audit_events(20) if e.action == "activate_denied"]
    assert len(denied) >= 2  # the missing PIN and the operator's, both audited


# -- product names and their folders ------------------------------------------------------------


def test_a_product_name_cannot_reach_another_products_folder(tmp_path, capsys):
    """`teach collect --product '../tile'` wrote into tile's samples: the name is refused before
    any folder or product is made."""
    from inspector.errors import DatabaseError

    url = f"sqlite:///{tmp_path / 'h.db'}"
    db = HistoryDB(url)
    db.upgrade()
    workdir = tmp_path / "teach"
    for name in ("../tile", "tile/../tile", "..\\tile", "tile\u202e"):
        with pytest.raises(DatabaseError, match="product name"):
            TeachSession(db, name, workdir)
    assert db.products() == []
    db.close()
    good = tmp_path / "good"
    good.mkdir()
    rc = main(["teach", "collect", "--product", "../tile", "--folder", str(good), "--workdir", str(workdir),
               "--db", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "product name may not contain '/'" in err[0], err
    assert not workdir.exists()


def test_two_product_names_never_share_a_teach_folder(tmp_path, monkeypatch):
    from calibration.teach.folders import folder_name

    assert TeachFolders.of("tile", tmp_path).dir == tmp_path / "tile"  # a plain name keeps its folder
    names = ["tile", "my tile", "my_tile", "my-tile", "my+tile", "tile.", "Fliese 30×30", "Fliese 30x30", "日本", "中国"]
    folders = [folder_name(n) for n in names]
    assert len(set(folders)) == len(names), folders
    assert all("/" not in f and "\\" not in f and not f.startswith(".") for f in folders)
    # Where file names ignore case, Tile and tile (and a device name) must not meet either.
    monkeypatch.setattr("sys.platform", "win32")
    names += ["Tile", "TILE", "con", "Con.x"]
    folders = [folder_name(n).lower() for n in names]
    assert len(set(folders)) == len(names), folders
    assert "con" not in folders and folder_name("tile") == "tile"


def test_a_failed_save_of_a_teach_keeps_its_training_and_the_next_teach_resumes_it(world, tmp_path, monkeypatch):
    """A full disk at the end of a teach: the checkpoint stays (it is removed only once the model
    file is durable), and the same teach again writes the model from it."""
    import inspector.model_file as model_file
    from inspector.errors import ModelFileError

    session = TeachSession(world["db"], "tile-ckpt", tmp_path / "work", gates=QualityGates(same_size=False),
                           device="cpu", backend="eager")
    session.collect_from_folder(world["good"])
    checkpoint = session.folders.models / "training.ckpt"
    save = model_file.save_model

    def full_disk(*args, **kwargs):
        raise ModelFileError("not written: no space left on the disk")

    monkeypatch.setattr(model_file, "save_model", full_disk)
    with pytest.raises(ModelFileError, match="no space left"):
        session.train(iterations=2, teacher="random", penalty_dir=world["penalty"], target_frr=0.25, user=TECH)
    assert checkpoint.is_file()
    monkeypatch.setattr(model_file, "save_model", save)
    taught = session.train(iterations=2, teacher="random", penalty_dir=world["penalty"], target_frr=0.25, user=TECH)
    assert taught.model_path.is_file() and not checkpoint.exists()


def test_a_teach_killed_while_it_calibrates_keeps_its_training_and_the_next_teach_resumes_it(world, tmp_path, monkeypatch, caplog):
    """The checkpoint was removed as soon as the model file was saved: a teach killed while it
    calibrated and prepared the engine (minutes, after hours of training) left a model file no
    version names and no checkpoint, and the next teach trained again from nothing. It now goes
    once the version is registered; the next teach resumes at the last iteration."""
    import logging

    import calibration.teach.models as models

    session = TeachSession(world["db"], "tile-killed", tmp_path / "work", gates=QualityGates(same_size=False),
                           device="cpu", backend="eager")
    session.collect_from_folder(world["good"])
    checkpoint = session.folders.models / "training.ckpt"
    calibrate = models.calibrate_engine

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as the process ends: nothing after it runs

    monkeypatch.setattr(models, "calibrate_engine", killed)
    with pytest.raises(KeyboardInterrupt):
        session.train(iterations=2, teacher="random", penalty_dir=world["penalty"], target_frr=0.25, user=TECH)
    assert checkpoint.is_file()
    monkeypatch.setattr(models, "calibrate_engine", calibrate)
    with caplog.at_level(logging.INFO, logger="inspector.method.training"):
        taught = session.train(iterations=2, teacher="random", penalty_dir=world["penalty"], target_frr=0.25, user=TECH)
    assert any("resuming from iteration 2 of 2" in r.getMessage() for r in caplog.records)
    assert taught.model_path.is_file() and not checkpoint.exists()
