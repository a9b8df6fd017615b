"""``inspector run`` and ``inspector history export``: runs on real images with a real model,
thresholds from the right place, one-line errors, Ctrl-C and SIGKILL."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli.main import main
from inspector.errors import InspectorError
from inspector.history import HistoryDB, file_sha256
from cli.line_commands import run_recipe
from inspector.line import DecisionRule
from inspector.recipes import register_model
from pipeline_support import REPO, copy_images, good_images, trained_model

THRESHOLD = 0.05
FAST = ["--backend", "eager", "--device", "cpu"]
TECH, TECH_PIN = "tina", "471108"
QUALITY, QUALITY_PIN = "quinn", "582219"
AS_TECH = ["--user", TECH]  # with $INSPECTOR_PIN set: --model and --threshold are a technician's overrides


def staff(db_path: Path) -> None:
    """A technician and a quality engineer in the database at ``db_path`` (made if new)."""
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    db.add_user(TECH, "technician", TECH_PIN)
    db.add_user(QUALITY, "quality", QUALITY_PIN)
    db.close()


@pytest.fixture
def technician(monkeypatch: pytest.MonkeyPatch):
    """``as_technician(db_path) -> ["--user", TECH]``, their PIN in ``$INSPECTOR_PIN``."""
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)

    def as_technician(db_path: Path) -> list[str]:
        staff(db_path)
        return AS_TECH

    return as_technician


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(request.config, tmp_path_factory)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_images(good_images(4, skip=200), tmp_path_factory.mktemp("frames"))


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``inspector ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def db_rows(db_path: Path, columns: str = "uid, id") -> list[tuple]:
    with sqlite3.connect(db_path) as connection:
        return connection.execute(f"SELECT {columns} FROM inspections ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def two_runs(model_path: Path, frames: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two runs into one database: 3 frames at --threshold, then 2 at the model's calibration."""
    tmp = tmp_path_factory.mktemp("runs")
    db_path = tmp / "history.db"
    staff(db_path)
    common = ["run", "--camera", f"folder://{frames}?fps=0", "--model", str(model_path), "--db",
              f"sqlite:///{db_path}", "--image-dir", str(tmp / "images"), "--print-results", *FAST, *AS_TECH]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("INSPECTOR_PIN", TECH_PIN)
        first = run_main([*common, "--max-frames", "3", "--threshold", str(THRESHOLD)])
        db = HistoryDB(f"sqlite:///{db_path}")
        (version_id,) = {row[0] for row in db_rows(db_path, "model_version_id")}
        calibration_id = db.add_calibration(version_id, image_threshold=0.07, target_frr=0.01, expected_frr=0.01,
                                            created_by="test")
        db.close()
        second = run_main([*common, "--max-frames", "2"])
    return dict(db_path=db_path, first=first, second=second, version_id=version_id,
                calibration_id=calibration_id, tmp=tmp)


# -- inspector run --------------------------------------------------------------------------------


def test_run_raises_a_drift_alarm_when_scores_leave_the_calibrated_distribution(
    tmp_path: Path, frames: Path, model_path: Path, caplog: pytest.LogCaptureFixture, technician
) -> None:
    """The calibration's good scores are the reference: here they sit far below what the parts
    score now (as after a lighting change), so the monitor must raise a drift alarm."""
    import logging

    db_path = tmp_path / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    _, version_id = register_model(db, model_path, file_sha256(model_path), None)
    reference = [1e-6 * (i + 1) for i in range(40)]
    db.add_calibration(version_id, image_threshold=1.0, target_frr=0.01, expected_frr=0.01,
                       report={"good_scores": reference}, created_by="test")
    db.close()
    argv = ["run", "--camera", f"folder://{frames}?fps=0&loop=1", "--model", str(model_path), "--db",
            f"sqlite:///{db_path}", "--image-dir", str(tmp_path / "images"), *technician(db_path),
            "--max-frames", "50", *FAST]
    with caplog.at_level(logging.WARNING):
        status, out, err = run_main(argv)
    assert status == 0, err
    assert "drift checked against 40 calibration scores" in out
    alarms = [r.getMessage() for r in caplog.records if "pipeline alarm drift" in r.getMessage()]
    assert len(alarms) == 1 and "higher than at calibration" in alarms[0]  # once per episode

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        status, out, err = run_main([*argv[:-len(FAST) - 2], "--max-frames", "3", "--drift-window", "0", *FAST])
    assert status == 0 and "drift alarm off" in out


def result_lines(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.startswith("result ")]


def test_run_records_every_frame_and_prints_each_durable_verdict(two_runs: dict, model_path: Path) -> None:
    status, out, err = two_runs["first"]
    assert status == 0, err
    printed = result_lines(out)
    assert [p[1] for p in printed] == ["0", "1", "2"]  # frame ids, in order
    stored = db_rows(two_runs["db_path"], "uid, id, decision, score, threshold")[:3]
    assert [(p[5], int(p[4]), p[2]) for p in printed] == [(s[0], s[1], s[2]) for s in stored]
    assert all(s[4] == THRESHOLD and s[2] == ("FAIL" if s[3] > THRESHOLD else "PASS") for s in stored)
    assert "threshold 0.05 from --threshold; no RECHECK band (--threshold replaces the recipe's whole rule)" in out
    assert re.search(r"stopped \(3 frames\): .*frames/s.*; acquired 3, recorded 3$", out.splitlines()[-1])


def test_run_registers_the_model_once_by_its_hash(two_runs: dict, model_path: Path) -> None:
    with sqlite3.connect(two_runs["db_path"]) as connection:
        versions = connection.execute("SELECT id, sha256, path FROM model_versions").fetchall()
        products = connection.execute("SELECT name FROM products").fetchall()
    assert versions == [(two_runs["version_id"], file_sha256(model_path), str(model_path.resolve()))]
    assert products == [("default",)]
    assert {row[0] for row in db_rows(two_runs["db_path"], "model_version_id")} == {two_runs["version_id"]}


def test_run_without_threshold_uses_the_latest_calibration(two_runs: dict) -> None:
    status, out, err = two_runs["second"]
    assert status == 0, err
    assert f"threshold 0.07 from calibration {two_runs['calibration_id']}" in out
    assert [row[0] for row in db_rows(two_runs["db_path"], "threshold")] == [THRESHOLD] * 3 + [0.07] * 2


def audit_events(db_path: Path, *actions: str) -> list:
    """The audit events of those actions, oldest first."""
    db = HistoryDB(f"sqlite:///{db_path}")
    try:
        return [e for e in reversed(db.audit_events(1000)) if e.action in actions]
    finally:
        db.close()


def test_every_run_and_each_technicians_override_is_audited(two_runs: dict, model_path: Path) -> None:
    overrides = audit_events(two_runs["db_path"], "run_override")
    assert [(e.user, e.role) for e in overrides] == [(TECH, "technician")] * 2
    first, second = (e.after for e in overrides)
    assert first["overridden"] == ["--model", "--threshold"] and first["threshold"] == THRESHOLD
    assert second["overridden"] == ["--model"] and second["threshold"] == 0.07
    assert first["model"] == str(model_path.resolve()) and first["model_version"] == two_runs["version_id"]
    assert overrides[0].before is None  # the product has no active recipe to override
    runs = audit_events(two_runs["db_path"], "run_start", "run_stop")
    assert [e.action for e in runs] == ["run_start", "run_stop"] * 2
    start, stop = runs[0].after, runs[1].after
    assert start["cameras"][0].startswith("folder://") and start["product"] == "default"
    assert start["threshold"] == THRESHOLD and start["rule_source"] == "--threshold"
    assert (stop["why"], stop["acquired"], stop["recorded"]) == ("3 frames", 3, 3)
    assert runs[3].after["why"] == "2 frames" and runs[2].after["rule_source"].startswith("calibration ")


def test_a_run_without_overrides_inspects_with_the_products_active_recipe(
    tmp_path: Path, frames: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No PIN needed for what the technician activated; a threshold of one's own needs theirs."""
    monkeypatch.delenv("INSPECTOR_PIN", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal to ask at
    db_path = tmp_path / "history.db"
    staff(db_path)
    db = HistoryDB(f"sqlite:///{db_path}")
    product_id, version_id = register_model(db, model_path, file_sha256(model_path), "tile")
    calibration_id = db.add_calibration(version_id, image_threshold=0.07, target_frr=0.01, expected_frr=0.01,
                                        created_by="test")
    db.set_active_model(product_id, version_id, user=TECH, role="technician")
    db.close()
    argv = ["run", "--camera", f"folder://{frames}?fps=0", "--product", "tile", "--db", f"sqlite:///{db_path}",
            "--image-dir", str(tmp_path / "images"), "--max-frames", "2", *FAST]

    status, out, err = run_main(argv)
    assert status == 0, err
    assert f"model version {version_id}" in out and f"threshold 0.07 from calibration {calibration_id}" in out
    start, stop = audit_events(db_path, "run_start", "run_stop")
    assert start.role == "system" and start.user.startswith("cli:")
    assert (start.after["product"], start.after["model_version"], start.after["threshold"]) == ("tile", version_id, 0.07)
    assert start.after["overridden"] == [] and start.after["rule_source"].startswith(f"calibration {calibration_id}")
    assert (stop.after["why"], stop.after["acquired"], stop.after["recorded"]) == ("2 frames", 2, 2)

    status, _, err = run_main([*argv, "--threshold", "1e30"])  # would pass every part
    _assert_one_line_error(status, err, "run_override refused")
    assert [e.action for e in audit_events(db_path, "run_override_denied", "run_start")] == ["run_start", "run_override_denied"]

    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    status, out, err = run_main([*argv, "--threshold", "0.5", *AS_TECH])
    assert status == 0 and "threshold 0.5 from --threshold" in out, err
    (override,) = audit_events(db_path, "run_override")
    assert (override.user, override.role, override.after["overridden"]) == (TECH, "technician", ["--threshold"])
    assert (override.before["threshold"], override.after["threshold"]) == (0.07, 0.5)
    assert override.before["model_version"] == override.after["model_version"] == version_id
    assert [row[0] for row in db_rows(db_path, "threshold")] == [0.07, 0.07, 0.5, 0.5]


def test_threshold_comes_from_the_option_then_the_recipe(tmp_path: Path, model_path: Path) -> None:
    """``--threshold`` overrides the recipe's rule (tests/test_recipes.py covers where that comes
    from); ``--pixel-threshold`` alone is refused; an uncalibrated model says what to do."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'h.db'}")
    db.upgrade()
    engine = SimpleNamespace(model_path=model_path, model_sha256=file_sha256(model_path),
                             metadata={"calibration": {"good_scores": [0.1, 0.2, 0.3]}})

    def args(threshold=None, pixel_threshold=None, min_defect_area=None, product=None):
        return argparse.Namespace(threshold=threshold, pixel_threshold=pixel_threshold,
                                  min_defect_area=min_defect_area, product=product)

    with pytest.raises(InspectorError, match="calibrate it .* or pass --threshold"):
        run_recipe(args(), db, engine)
    with pytest.raises(InspectorError, match="--pixel-threshold needs --threshold"):
        run_recipe(args(pixel_threshold=0.2), db, engine)
    recipe = run_recipe(args(0.5, 0.25, 9), db, engine)
    assert (recipe.rule.threshold, recipe.rule.pixel_threshold, recipe.rule.min_defect_area_px) == (0.5, 0.25, 9)
    assert recipe.source == "--threshold" and recipe.engine is engine
    assert recipe.reference_scores == (0.1, 0.2, 0.3) and recipe.product == "default"
    calibration_id = db.add_calibration(recipe.model_version_id, image_threshold=0.4, target_frr=0.01,
                                        expected_frr=0.01, created_by="test")
    recipe = run_recipe(args(), db, engine)
    assert recipe.rule.threshold == 0.4 and recipe.source.startswith(f"calibration {calibration_id} of ")
    assert run_recipe(args(0.5), db, engine).rule == DecisionRule(0.5)
    # A model registered under another product is registered again for that product.
    other = run_recipe(args(0.5, product="line 2"), db, engine)
    assert other.product == "line 2" and other.model_version_id != recipe.model_version_id
    db.close()


def _assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("camera", "fragment"),
    [
        ("nonsense", "is not a camera URI"),
        ("ftp://host/x", "unknown scheme"),
        ("folder:///no/such/folder", "does not exist"),
        ("folder:///tmp?fps=fast", "is not a number"),
        ("opencv://57", "cannot open video device 57"),
        ("basler://00000000", "00000000"),
    ],
)
def test_bad_cameras_give_one_line_and_exit_2(camera: str, fragment: str, tmp_path: Path, technician) -> None:
    status, _, err = run_main(["run", "--camera", camera, "--model", str(tmp_path / "m.safetensors"),
                               "--db", f"sqlite:///{tmp_path / 'h.db'}", "--threshold", "0.1",
                               *technician(tmp_path / "h.db")])
    _assert_one_line_error(status, err, fragment)


def test_bad_models_and_options_give_one_line_and_exit_2(tmp_path: Path, frames: Path, model_path: Path,
                                                          technician) -> None:
    camera = ["--camera", f"folder://{frames}", "--db", f"sqlite:///{tmp_path / 'h.db'}", *technician(tmp_path / "h.db")]
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    cases = [
        (["--model", str(tmp_path / "absent.safetensors"), "--threshold", "0.1"], "no such model file"),
        (["--model", str(junk), "--threshold", "0.1"], "not a readable model file"),
        (["--model", str(model_path), "--threshold", "nan"], "finite"),
        (["--model", str(model_path), "--threshold", "0.1", "--max-frames", "0"], "--max-frames"),
        (["--model", str(model_path), "--threshold", "0.1", "--no-part-alarm", "0"], "--no-part-alarm must be >= 1"),
        (["--model", str(model_path), "--threshold", "0.1", "--no-part-alarm", "-3"], "--no-part-alarm must be >= 1"),
        (["--model", str(model_path), *FAST], "calibrate it"),  # no threshold anywhere
    ]
    for extra, fragment in cases:
        status, _, err = run_main(["run", *camera, *extra])
        _assert_one_line_error(status, err, fragment)


def test_the_no_part_alarm_takes_a_count_or_off() -> None:
    """``--no-part-alarm off`` is the desktop's "off" (never alarm): None reaches the station; a
    word that is neither is refused by the parser itself."""
    from cli.main import build_parser

    parse = build_parser().parse_args
    base = ["run", "--camera", "folder:///x", "--product", "p"]
    assert parse(base).no_part_alarm == 5
    assert parse([*base, "--no-part-alarm", "3"]).no_part_alarm == 3
    assert parse([*base, "--no-part-alarm", "OFF"]).no_part_alarm is None
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(io.StringIO()) as err:
        parse([*base, "--no-part-alarm", "sometimes"])
    assert stop.value.code == 2 and "a whole number or off" in err.getvalue()


# -- inspector history export ---------------------------------------------------------------------


def export(db_path: Path, out: Path, *options: str) -> list[dict]:
    """``inspector history export`` by the quality engineer (their PIN in ``$INSPECTOR_PIN``)."""
    os.environ["INSPECTOR_PIN"] = QUALITY_PIN
    try:
        status, stdout, err = run_main(["history", "export", "--db", f"sqlite:///{db_path}", "--out", str(out),
                                        "--user", QUALITY, *options])
    finally:
        del os.environ["INSPECTOR_PIN"]
    assert status == 0, err
    with open(out, newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert stdout.startswith(f"{len(exported)} inspections written to {out}")
    return exported


def test_history_export_filters(two_runs: dict) -> None:
    db_path, out = two_runs["db_path"], two_runs["tmp"] / "export.csv"
    everything = export(db_path, out)
    assert sorted(int(r["id"]) for r in everything) == [row[1] for row in db_rows(db_path)]
    assert {r["product_name"] for r in everything} == {"default"}
    scores = sorted(float(r["score"]) for r in everything)
    middle = scores[len(scores) // 2]
    assert all(float(r["score"]) >= middle for r in export(db_path, out, "--min-score", str(middle)))
    assert len(export(db_path, out, "--max-score", str(middle))) == sum(s <= middle for s in scores)
    fails = export(db_path, out, "--decision", "FAIL")
    assert len(fails) == sum(r["decision"] == "FAIL" for r in everything)
    assert len(export(db_path, out, "--model-version", str(two_runs["version_id"]))) == 5
    assert len(export(db_path, out, "--product", "default")) == 5
    assert export(db_path, out, "--label", "false_reject") == []
    assert len(export(db_path, out, "--label", "none")) == 5
    assert export(db_path, out, "--since", "2999-01-01") == []
    assert len(export(db_path, out, "--until", "2999-01-01T00:00+00:00", "--since", "2000-01-01")) == 5
    assert all(r["error"] == "" for r in everything)  # real verdicts: no engine error
    assert export(db_path, out, "--errors-only") == []
    exports = audit_events(db_path, "export")
    assert len(exports) == 11 and exports[0].after["rows"] == 5 and exports[0].after["out"] == str(out.resolve())
    assert {(e.user, e.role) for e in exports} == {(QUALITY, "quality")}
    assert exports[-1].after["filters"]["errors_only"] is True and exports[-1].after["rows"] == 0
    assert exports[3].after["filters"]["decision"] == "FAIL"


def test_history_export_errors(tmp_path: Path, two_runs: dict) -> None:
    db = f"sqlite:///{two_runs['db_path']}"
    cases = [
        (["--db", f"sqlite:///{tmp_path / 'absent.db'}", "--out", str(tmp_path / "x.csv")], "no history database"),
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--since", "last week"], "not an ISO 8601 time"),
        (["--db", db, "--out", str(tmp_path / "no" / "x.csv")], "does not exist"),
        # an empty CSV, exit 0 and an export audited, without a word of the slip
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--min-score", "0.3", "--max-score", "0.1"],
         "--min-score 0.3 is above --max-score 0.1: no inspection can match; swap them?"),
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--max-score", "nan"], "--max-score must be a finite number"),
        # a name or number the history does not hold: an empty CSV, audited, exit 0, as if nothing matched
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--model-version", str(two_runs["version_id"] + 1)],
         f"--model-version {two_runs['version_id'] + 1}: no such model version in this history"),
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--station", "nosuch"],
         "--station 'nosuch': no inspections of such a station in this history (stations: "),
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--product", "washer"],
         "--product 'washer': no product of that name in this history"),
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--label", "false reject"],
         "--label 'false reject': give one of none, false_reject, confirmed_defect"),
        # the images of an earlier export would lie among this CSV's
        (["--db", db, "--out", str(tmp_path / "x.csv"), "--images", str(tmp_path / "earlier")],
         f"--images {tmp_path / 'earlier'} is not empty: choose an empty folder"),
    ]
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "7_frame.png").write_bytes(b"an earlier export's image")
    for options, fragment in cases:
        status, _, err = run_main(["history", "export", *options])
        _assert_one_line_error(status, err, fragment)
    assert not (tmp_path / "absent.db").exists() and not (tmp_path / "x.csv").exists()


def test_history_export_is_a_quality_engineers_right_as_on_the_desktop(tmp_path: Path, two_runs: dict,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One action, one right, one audit name: no --user, a technician, a wrong PIN are each
    refused and audited as export_denied, and no file is written."""
    db_path = two_runs["db_path"]
    out = tmp_path / "refused.csv"
    argv = ["history", "export", "--db", f"sqlite:///{db_path}", "--out", str(out)]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal to ask at
    monkeypatch.delenv("INSPECTOR_PIN", raising=False)
    _assert_one_line_error(*run_main(argv)[::2], "export refused: give --user")
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    _assert_one_line_error(*run_main([*argv, "--user", TECH])[::2], "only quality may export")
    monkeypatch.setenv("INSPECTOR_PIN", "000000")
    _assert_one_line_error(*run_main([*argv, "--user", QUALITY])[::2], "wrong PIN")
    assert not out.exists()
    denied = audit_events(db_path, "export_denied")
    users = [e.user for e in denied]
    assert users[-2:] == [TECH, QUALITY] and users[-3].startswith("cli:")


# -- signals (a real `inspector run` process) -----------------------------------------------------


def _start_run(tmp_path: Path, frames: Path, model_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    db_path = tmp_path / "history.db"
    staff(db_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "INSPECTOR_DATA_DIR": str(tmp_path / "data"), "INSPECTOR_PIN": TECH_PIN}
    child = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--camera", f"folder://{frames}?fps=0&loop=1", *AS_TECH,
         "--model", str(model_path), "--db", f"sqlite:///{db_path}", "--threshold", str(THRESHOLD),
         "--print-results", "--summary-interval", "1", *FAST, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    return child, db_path


def _read_results(child: subprocess.Popen, until: int, timeout: float = 120.0) -> dict[str, tuple[int, str]]:
    """uid -> (row id, decision) of the printed results, reading until ``until`` were printed."""
    printed: dict[str, tuple[int, str]] = {}
    deadline = time.monotonic() + timeout
    while len(printed) < until and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        _collect(line, printed)
    return printed


def _collect(line: str, printed: dict[str, tuple[int, str]]) -> None:
    # A line cut short by the kill is not a report: only whole lines count.
    parts = line.split()
    if line.endswith("\n") and len(parts) == 6 and parts[0] == "result":
        printed[parts[5]] = (int(parts[4]), parts[2])


def test_sigkill_loses_no_printed_decision(tmp_path: Path, frames: Path, model_path: Path) -> None:
    child, db_path = _start_run(tmp_path, frames, model_path)
    try:
        printed = _read_results(child, until=3)
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:
            _collect(line, printed)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert len(printed) >= 3, "the run printed too little before the deadline"
    stored = {uid: (row_id, decision) for uid, row_id, decision in db_rows(db_path, "uid, id, decision")}
    missing = {uid for uid in printed if stored.get(uid) != printed[uid]}
    assert not missing, f"{len(missing)} printed decisions are not in the database"


def test_ctrl_c_stops_gracefully_and_records_every_acquired_frame(tmp_path: Path, frames: Path, model_path: Path) -> None:
    child, db_path = _start_run(tmp_path, frames, model_path, "--queue-size", "2")
    try:
        printed = _read_results(child, until=2)
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=120)
    finally:
        child.kill()
        child.wait(timeout=30)
    for line in rest.splitlines(keepends=True):
        _collect(line, printed)
    assert child.returncode == 0, err
    final = rest.strip().splitlines()[-1]
    match = re.search(r"^stopped \(interrupted\): .*; acquired (\d+), recorded (\d+)$", final)
    assert match and match.group(1) == match.group(2), final
    stored = {uid: (row_id, decision) for uid, row_id, decision in db_rows(db_path, "uid, id, decision")}
    assert len(stored) == int(match.group(1)) == len(printed)
    assert stored == printed
    assert "Traceback" not in err and "error:" not in err


def test_a_second_sigterm_shortens_the_stop_but_the_summary_and_the_audit_are_still_written(
        tmp_path: Path, frames: Path, model_path: Path) -> None:
    """``docker stop`` twice: the frames still queued are recorded as FAIL, not inspected (a row
    each, counted), and the run ends with its summary, one error line and the run_stop audit, not 143."""
    child, db_path = _start_run(tmp_path, frames, model_path, "--queue-size", "40")
    try:
        _read_results(child, until=1)
        time.sleep(2.0)  # an endless source at full speed: the queue fills while the engine scores
        child.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        child.send_signal(signal.SIGTERM)
        rest, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == 2, err
    lines = rest.strip().splitlines()
    match = re.search(r"^stopped \(interrupted\): .*NOT INSPECTED (\d+).*; acquired (\d+), recorded (\d+)$", lines[-1])
    assert match, lines[-1]
    not_inspected, acquired, recorded = (int(g) for g in match.groups())
    assert acquired == recorded and not_inspected > 0
    assert "acquired frames were not inspected: a second signal shortened the stop" in err and "Traceback" not in err
    (stop,) = audit_events(db_path, "run_stop")
    assert stop.after["why"] == "interrupted" and stop.after["unrecorded"] == 0
    assert stop.after["not_inspected"] == not_inspected
    stored = db_rows(db_path, "decision, error")
    assert len(stored) == acquired
    assert sum(1 for decision, error in stored if error and error.startswith("not inspected")) == not_inspected
    assert all(decision == "FAIL" for decision, error in stored if error and error.startswith("not inspected"))


def test_a_full_disk_drops_images_first_then_stops_the_line_with_every_verdict_recorded(
        tmp_path: Path, frames: Path, model_path: Path) -> None:
    """History and images on one small, real file system that fills up (issue 29, item 1)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk run is not tried")
    try:
        filler = disk / "filler"
        child, db_path = _start_run(disk, frames, model_path, "--pass-sample-rate", "1", "--disk-reserve-mb", "4",
                                    "--image-dir", str(disk / "images"))
        try:
            _read_results(child, until=2)
            # Something else fills the disk: images first give way to the reserve, then the line stops.
            _fill(filler, leave_bytes=3_000_000)
            time.sleep(3.0)
            _fill(filler, leave_bytes=700_000)  # below a quarter of the reserve
            rest, err = child.communicate(timeout=120)
        finally:
            child.kill()
            child.wait(timeout=30)
        assert child.returncode == 2, err
        assert "the line stopped because the history's disk is nearly full (every verdict is recorded)" in err
        assert "Traceback" not in err
        match = re.search(r"images not kept (\d+).*; acquired (\d+), recorded (\d+)$", rest.strip().splitlines()[-1])
        assert match, rest.strip().splitlines()[-1]
        dropped, acquired, recorded = (int(g) for g in match.groups())
        assert dropped > 0 and acquired == recorded == len(db_rows(db_path))
        (stop,) = audit_events(db_path, "run_stop")
        assert "disk" in stop.after["why"] and stop.after["unrecorded"] == 0
        assert not list(disk.glob("*.spill.jsonl")) or all(p.stat().st_size == 0 for p in disk.glob("*.spill.jsonl"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(filler: Path, leave_bytes: int) -> None:
    """Grows ``filler`` until its file system has about ``leave_bytes`` free."""
    import shutil

    free = shutil.disk_usage(filler.parent).free
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
        f.flush()
        os.fsync(f.fileno())


def test_a_run_that_could_record_nothing_is_refused_before_the_camera_opens(
        tmp_path: Path, frames: Path, model_path: Path, technician, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "history.db"
    opened: list[str] = []
    monkeypatch.setattr("station.running.open_camera", lambda uri: opened.append(uri))
    argv = ["run", "--camera", f"folder://{frames}?fps=0", "--model", str(model_path), "--threshold", "0.1",
            "--db", f"sqlite:///{db_path}", *technician(db_path), *FAST]
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    status, _, err = run_main([*argv, "--image-dir", str(a_file)])
    _assert_one_line_error(status, err, f"the image folder {a_file} is a file, not a folder")
    # A read-only archive (as test_history_db makes one): the history cannot take a verdict.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if mode == os.W_OK and str(path) == str(db_path)
                        else real_access(path, mode, *a, **k))
    status, _, err = run_main([*argv, "--image-dir", str(tmp_path / "images")])
    _assert_one_line_error(status, err, "is read-only (an archive): a station cannot record into it")
    assert opened == []


def test_a_database_password_on_the_command_line_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """``ps`` shows every process's arguments to every account: libpq's ~/.pgpass or $PGPASSWORD it is."""
    for argv, option in [
        (["run", "--camera", "folder:///x", "--product", "tile", "--db", f"sqlite:///{tmp_path / 'h.db'}",
          "--plant-db", "postgresql://inspector:s3cret@plant-db/plant"], "--plant-db"),
        (["history", "export", "--db", "postgresql://quality:s3cret@plant-db/plant", "--out", str(tmp_path / "x.csv")],
         "--db"),
    ]:
        status, _, err = run_main(argv)
        _assert_one_line_error(status, err, f"{option} holds a password", "~/.pgpass")
        assert "s3cret" not in err
    assert not (tmp_path / "h.db").exists() and not (tmp_path / "x.csv").exists()
    status, _, err = run_main(["history", "export", "--db", "postgresql://quality@127.0.0.1:1/plant",
                               "--out", str(tmp_path / "x.csv")])
    assert "holds a password" not in err  # without one it goes on (and fails later: nobody is there)
