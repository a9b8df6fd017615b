"""The command line obeys the desktop's rights: whoever changes what the line decides (threshold,
model, users) proves with a technician's PIN that they may, from ``$INSPECTOR_PIN``, a 0600 PIN
file or a terminal -- never from the command line -- and every refusal is audited.

These need no model: every refusal here comes before a model would be loaded."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.common import read_pin_file
from cli.main import build_parser, main
from inspector.errors import InspectorError
from inspector.history import HistoryDB

TECH, TECH_PIN = "tina", "471108"
OPERATOR, OPERATOR_PIN = "otto", "620814"


@pytest.fixture(autouse=True)
def no_pin_around(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PIN from the environment or a terminal unless a test gives one."""
    monkeypatch.delenv("INSPECTOR_PIN", raising=False)
    monkeypatch.delenv("INSPECTOR_NEW_PIN", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def one_line_refusal(status: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def audit(url: str) -> list[tuple[str, str, str, dict | None]]:
    """(user, role, action, after) of every audit event, oldest first."""
    db = HistoryDB(url)
    try:
        return [(e.user, e.role, e.action, e.after) for e in reversed(db.audit_events(1000))]
    finally:
        db.close()


@pytest.fixture
def staffed(tmp_path: Path) -> str:
    """A database with a technician and an operator."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    db = HistoryDB(url)
    db.upgrade()
    db.add_user(TECH, "technician", TECH_PIN)
    db.add_user(OPERATOR, "operator", OPERATOR_PIN)
    db.close()
    return url


def pin_file(path: Path, pin: str, mode: int) -> Path:
    path.write_text(pin + "\n")
    path.chmod(mode)
    return path


# -- where a PIN comes from -----------------------------------------------------------------------


def test_no_command_takes_a_pin_on_its_command_line() -> None:
    """A PIN option would show in `ps` to every local account: there is none, anywhere."""
    def options(parser) -> set[str]:
        found = {o for a in parser._actions for o in a.option_strings}
        for action in parser._actions:
            for sub in (getattr(action, "choices", None) or {}).values() if hasattr(action, "add_parser") else ():
                found |= options(sub)
        return found

    every = options(build_parser())
    assert "--pin-file" in every and "--by" in every  # the walk does reach the sub-commands
    assert not {o for o in every if o in ("--pin", "--new-pin", "--password")}


def test_a_pin_file_others_may_read_is_refused(tmp_path: Path) -> None:
    assert read_pin_file(pin_file(tmp_path / "ok", TECH_PIN, 0o600)) == TECH_PIN
    assert read_pin_file(pin_file(tmp_path / "ro", TECH_PIN, 0o400)) == TECH_PIN
    with pytest.raises(InspectorError, match="mode 0644, which lets other accounts read it; make it the owner's alone \\(chmod 600\\)"):
        read_pin_file(pin_file(tmp_path / "open", TECH_PIN, 0o644))
    with pytest.raises(InspectorError, match="mode 0640"):
        read_pin_file(pin_file(tmp_path / "group", TECH_PIN, 0o640))
    with pytest.raises(InspectorError, match="not a regular file"):
        read_pin_file(tmp_path)
    with pytest.raises(InspectorError, match="No such file"):
        read_pin_file(tmp_path / "absent")
    with pytest.raises(InspectorError, match="empty"):
        read_pin_file(pin_file(tmp_path / "empty", "", 0o600))


def test_no_option_is_taken_abbreviated(staffed: str) -> None:
    """The last release's ``--pin 246810`` was expanded to ``--pin-file 246810``: the PIN was
    then read as a file name, and the refusal printed and audited it. Options are taken only as
    spelt in full, on every parser and sub-parser."""
    def parsers(parser):
        yield parser
        for action in parser._actions:
            for sub in (action.choices or {}).values() if hasattr(action, "add_parser") else ():
                yield from parsers(sub)

    every = list(parsers(build_parser()))
    assert len(every) > 20 and all(p.allow_abbrev is False for p in every)
    for argv in (["users", "remove", OPERATOR, "--db", staffed, "--by", TECH, "--pin", "246810"],
                 ["users", "pin", OPERATOR, "--db", staffed, "--by", TECH, "--new-pin", "246810"],
                 ["teach", "activate", "--product", "tile", "--version", "1", "--db", staffed, "--user", TECH,
                  "--pin", "246810"]):
        with pytest.raises(SystemExit) as exit_:
            run_main(argv)
        assert exit_.value.code == 2, argv
    assert all("denied" not in action for _, _, action, _ in audit(staffed))


def test_a_refused_pin_file_is_named_neither_on_screen_nor_in_the_audit(staffed: str, tmp_path: Path) -> None:
    """What was given as a PIN file's name may be the PIN itself; its contents are the PIN."""
    secret = "246810"
    for given in (tmp_path / secret, pin_file(tmp_path / f"pin-{secret}", secret, 0o644), tmp_path):
        status, _, err = run_main(["users", "remove", OPERATOR, "--db", staffed, "--by", TECH,
                                   "--pin-file", str(given)])
        one_line_refusal(status, err, "remove_user refused", "--pin-file")
        assert secret not in err and str(tmp_path) not in err, err
    trail = audit(staffed)
    assert [action for _, _, action, _ in trail].count("remove_user_denied") == 3
    assert secret not in repr(trail) and str(tmp_path) not in repr(trail)


def test_a_pin_file_with_mode_0644_is_refused_by_the_command_and_audited(staffed: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loose = pin_file(tmp_path / "pin", TECH_PIN, 0o644)
    status, _, err = run_main(["users", "add", "ulla", "--role", "quality", "--db", staffed, "--by", TECH,
                               "--pin-file", str(loose)])
    one_line_refusal(status, err, "add_user refused", "mode 0644")
    assert audit(staffed)[-1][:3] == (TECH, "unknown", "add_user_denied")
    loose.chmod(0o600)
    monkeypatch.setenv("INSPECTOR_NEW_PIN", "550915")
    status, out, err = run_main(["users", "add", "ulla", "--role", "quality", "--db", staffed, "--by", TECH,
                                 "--pin-file", str(loose)])
    assert status == 0, err
    assert audit(staffed)[-1][:3] == (TECH, "technician", "add_user")


# -- users ----------------------------------------------------------------------------------------


def test_the_first_technician_is_created_once_then_only_a_technician_adds_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    status, _, err = run_main(["users", "add", OPERATOR, "--role", "operator", "--db", url])
    one_line_refusal(status, err, "no technician yet")  # the first account is a technician's

    monkeypatch.setenv("INSPECTOR_NEW_PIN", TECH_PIN)
    status, out, err = run_main(["users", "add", TECH, "--role", "technician", "--db", url])
    assert status == 0 and "first technician" in out, err
    assert audit(url)[-1][:3] == (TECH, "technician", "add_first_technician")

    # Done once: the next technician needs one that exists.
    status, _, err = run_main(["users", "add", "mallory", "--role", "technician", "--db", url])
    one_line_refusal(status, err, "add_user refused", "--by")
    assert audit(url)[-1][2] == "add_user_denied"

    monkeypatch.setenv("INSPECTOR_NEW_PIN", OPERATOR_PIN)
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    status, out, err = run_main(["users", "add", OPERATOR, "--role", "operator", "--db", url, "--by", TECH])
    assert status == 0, err
    assert audit(url)[-1][:3] == (TECH, "technician", "add_user")

    # An operator cannot make themselves (or anyone) technician.
    monkeypatch.setenv("INSPECTOR_PIN", OPERATOR_PIN)
    status, _, err = run_main(["users", "add", "mallory", "--role", "technician", "--db", url, "--by", OPERATOR])
    one_line_refusal(status, err, "otto is operator; only technician may add_user")
    assert audit(url)[-1][:3] == (OPERATOR, "operator", "add_user_denied")
    status, out, _ = run_main(["users", "list", "--db", url])  # open to all
    assert status == 0 and out.split() == [OPERATOR, "operator", TECH, "technician"]


def test_pin_and_remove_need_a_technicians_pin(staffed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_NEW_PIN", "917263")
    status, _, err = run_main(["users", "pin", TECH, "--db", staffed])
    one_line_refusal(status, err, "set_pin refused", "--by")
    status, _, err = run_main(["users", "pin", TECH, "--db", staffed, "--by", TECH])  # no PIN to be had
    one_line_refusal(status, err, "set_pin refused", "INSPECTOR_PIN")
    monkeypatch.setenv("INSPECTOR_PIN", "000000")
    status, _, err = run_main(["users", "remove", OPERATOR, "--db", staffed, "--by", TECH])
    one_line_refusal(status, err, "remove_user refused: wrong PIN")
    assert [a[2] for a in audit(staffed)[-3:]] == ["set_pin_denied", "set_pin_denied", "remove_user_denied"]
    db = HistoryDB(staffed)
    assert db.verify_pin(TECH, TECH_PIN) == "technician" and len(db.list_users()) == 2  # nothing changed
    db.close()

    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    assert run_main(["users", "pin", OPERATOR, "--db", staffed, "--by", TECH])[0] == 0
    assert run_main(["users", "remove", OPERATOR, "--db", staffed, "--by", TECH])[0] == 0
    assert [a[:3] for a in audit(staffed)[-2:]] == [(TECH, "technician", "set_pin"), (TECH, "technician", "remove_user")]


# -- calibrate --db -------------------------------------------------------------------------------


def test_calibrate_into_the_database_needs_a_technicians_pin(staffed: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before anything is scored: the model file need not even be one."""
    good = tmp_path / "good"
    good.mkdir()
    for i in range(3):
        cv2.imwrite(str(good / f"{i}.png"), np.full((32, 32), 128, np.uint8))
    argv = ["calibrate", str(tmp_path / "model.safetensors"), str(good), "--report", str(tmp_path / "r"),
            "--db", staffed, "--product", "tile"]
    status, _, err = run_main(argv)
    one_line_refusal(status, err, "calibrate refused", "--user")
    status, _, err = run_main([*argv, "--user", TECH])
    one_line_refusal(status, err, "calibrate refused", "no PIN")
    monkeypatch.setenv("INSPECTOR_PIN", OPERATOR_PIN)
    status, _, err = run_main([*argv, "--user", OPERATOR])
    one_line_refusal(status, err, "only technician may calibrate")
    assert [a[2] for a in audit(staffed)[-3:]] == ["calibrate_denied"] * 3
    assert not (tmp_path / "r").exists()


# -- inspector run --------------------------------------------------------------------------------


def test_a_run_that_overrides_the_recipe_needs_a_technicians_pin(staffed: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`--threshold 1e30` would pass every part: refused, and audited, without a technician --
    before the camera is opened or the model is loaded (neither exists here)."""
    argv = ["run", "--camera", "folder:///no/such/folder", "--model", str(tmp_path / "any.safetensors"),
            "--threshold", "1e30", "--db", staffed]
    status, _, err = run_main(argv)
    one_line_refusal(status, err, "run_override refused", "--user")
    status, _, err = run_main([*argv, "--user", TECH])
    one_line_refusal(status, err, "run_override refused", "no PIN")
    monkeypatch.setenv("INSPECTOR_PIN", "000000")
    status, _, err = run_main([*argv, "--user", TECH])
    one_line_refusal(status, err, "run_override refused: wrong PIN")
    monkeypatch.setenv("INSPECTOR_PIN", OPERATOR_PIN)
    status, _, err = run_main([*argv, "--user", OPERATOR])
    one_line_refusal(status, err, "otto is operator; only technician may run_override")
    events = audit(staffed)[-4:]
    assert [e[2] for e in events] == ["run_override_denied"] * 4
    assert events[-1][:2] == (OPERATOR, "operator")

    # A model file alone is an override too; a technician's PIN lets the run go on (to the camera).
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    status, _, err = run_main(["run", "--camera", "folder:///no/such/folder", "--model", "m.safetensors",
                               "--db", staffed, "--user", TECH])
    one_line_refusal(status, err, "does not exist")


def test_a_run_needs_a_product_or_a_model(staffed: str) -> None:
    status, _, err = run_main(["run", "--camera", "folder:///x", "--db", staffed])
    one_line_refusal(status, err, "give --product NAME")
    status, _, err = run_main(["run", "--camera", "folder:///x", "--db", staffed, "--product", "nothing"])
    one_line_refusal(status, err, "no product named 'nothing'")


def test_teach_steps_on_a_database_not_there_make_none(tmp_path: Path) -> None:
    absent = tmp_path / "typo.db"
    common = ["--product", "tile", "--db", f"sqlite:///{absent}", "--workdir", str(tmp_path / "work")]
    for step in (["status"], ["activate", "--version", "1", "--user", "tina"], ["rollback", "--user", "tina"],
                 ["calibrate", "--version", "1"],
                 ["shadow", "--version", "1"]):
        status, _, err = run_main(["teach", step[0], *common, *step[1:]])
        one_line_refusal(status, err, f"no history database at {absent}")
    assert not absent.exists()


def test_a_product_run_on_a_database_not_there_makes_none(tmp_path: Path) -> None:
    # a typing error in --db made an empty history there, then said only "no product named"
    absent = tmp_path / "typo.db"
    status, _, err = run_main(["run", "--camera", "folder:///x", "--db", f"sqlite:///{absent}", "--product", "tile"])
    one_line_refusal(status, err, f"no history database at {absent}")
    assert not absent.exists()


def test_teach_train_and_calibrate_record_only_a_verified_technician(staffed, tmp_path, monkeypatch):
    common = ["--product", "tile", "--db", staffed, "--workdir", str(tmp_path / "work")]
    status, _, err = run_main(["teach", "train", *common])
    one_line_refusal(status, err, "teach_train refused", "--user")
    monkeypatch.setenv("INSPECTOR_PIN", OPERATOR_PIN)
    status, _, err = run_main(["teach", "train", *common, "--user", OPERATOR])
    one_line_refusal(status, err, "only technician may teach_train")
    status, _, err = run_main(["teach", "calibrate", *common, "--version", "1", "--user", OPERATOR])
    one_line_refusal(status, err, "only technician may teach_calibrate")
    from cli.common import shell_user

    denied = [(user, action) for user, _, action, _ in audit(staffed) if action.endswith("_denied")]
    assert denied == [(shell_user(), "teach_train_denied"), (OPERATOR, "teach_train_denied"), (OPERATOR, "teach_calibrate_denied")]


@pytest.mark.parametrize("count", ["0", "-5"])
def test_teach_train_refuses_an_iteration_count_below_one_before_anything(staffed, tmp_path, monkeypatch, capsys, count):
    """``--iterations 0`` trained nothing and registered the untrained model as a calibrated
    candidate; it is refused by the parser, as ``inspector train`` refuses it: no product, no
    folder, no audit event."""
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    work, before = tmp_path / "work", audit(staffed)
    with pytest.raises(SystemExit) as exit_:
        main(["teach", "train", "--product", "tile", "--db", staffed, "--workdir", str(work), "--user", TECH,
              "--iterations", count])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument --iterations: '{count}': must be at least 1" in err
    assert not work.exists() and audit(staffed) == before
    db = HistoryDB(staffed)
    try:
        assert db.product_by_name("tile") is None
    finally:
        db.close()


def test_the_teach_session_refuses_an_iteration_count_below_one_before_its_audit(staffed, tmp_path):
    """The desktop's teach page calls the session itself: the same refusal, before the
    ``train_started`` event and before a staged teach would activate its instant model."""
    from calibration.teach import TeachSession
    from inspector.roles import Caller

    db = HistoryDB(staffed)
    try:
        before = len(db.audit_events(100))
        session = TeachSession(db, "tile", tmp_path / "work", device="cpu")
        for kind in ("efficientad", "staged"):
            with pytest.raises(InspectorError, match="iterations must be a whole number of at least 1, not 0"):
                session.teach(Caller(TECH, TECH_PIN), kind=kind, iterations=0)
        with pytest.raises(InspectorError, match="not -5"):
            session.train(iterations=-5)
        assert len(db.audit_events(100)) == before and db.model_version(1) is None
    finally:
        db.close()
