"""The command reference in docs/ is generated from the parsers; this keeps it current."""

from pathlib import Path

from script_support import load_script

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    return load_script("docs/gen_commands.py")


def test_command_reference_matches_the_parsers():
    gen = _generator()
    assert gen.OUT.read_text() == gen.render(), (
        "docs/reference/commands.md is out of date: run python scripts/docs/gen_commands.py and commit the page")


def test_command_reference_lists_every_command():
    text = (ROOT / "docs" / "reference" / "commands.md").read_text()
    for command in ("train", "eval", "predict", "bench", "export-onnx", "distill", "run", "history export",
                    "calibrate", "teach train", "gui", "users add", "audit verify"):
        assert f"`inspector {command}`" in text


def test_every_user_option_reads_as_english():
    """The --user help was "<who>'s user name", which gave "the technician who collects's user
    name" and "the quality engineer who exports's user name" in --help and the reference."""
    import argparse

    from cli.main import build_parser

    def parsers(p: argparse.ArgumentParser):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    helps = [a.help for p in parsers(build_parser()) for a in p._actions if a.dest in ("user", "by") and a.metavar == "NAME"]
    assert len(helps) >= 10
    for text in helps:
        assert text.startswith("the user name of ") and "'s user name" not in text, text


def test_commands_at_a_glance_says_what_audit_verify_checks():
    """Its row said verify does not find 'a trail cut short' and prints 'the first broken entry':
    since the chain's head and the seals, a trail cut short at its end is reported as shortened
    (tests/test_history_seals.py), the users' rows and the verdicts are checked too, and BROKEN
    lists everything that does not fit, as the quality engineer's guide says."""
    [row] = [line for line in (ROOT / "docs" / "commands.md").read_text().splitlines()
             if line.startswith("| `inspector audit verify")]
    assert "not a trail cut short" not in row and "the first broken entry" not in row
    for said in ("shortened: N rows expected, M found", "the users' rows", "sealed verdicts", "`BROKEN:`"):
        assert said in row, said


def test_the_quality_guide_says_what_labels_change(tmp_path):
    """The guide said 'Labels are what the yield and false-reject figures are built on'; the yield
    (the desktop's, the browser's charts) counts the decisions only: a RECHECK labelled false
    reject stays a part not passed."""
    from datetime import datetime, timedelta, timezone

    from inspector.history import HistoryDB, InspectionFilter, InspectionResult

    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    t0 = datetime(2026, 12, 8, 1, tzinfo=timezone.utc)
    [_, recheck] = db.write_inspections([InspectionResult(t0, "cam", 1, 0.1, "PASS", 0.5),
                                         InspectionResult(t0 + timedelta(seconds=1), "cam", 2, 0.4, "RECHECK", 0.5)])
    db.label_inspection(recheck.inspection_id, "false_reject", "quinn")
    [bucket] = db.yield_over_time(InspectionFilter(), timedelta(hours=1))
    assert bucket.yield_fraction == 0.5  # the label changes no yield
    db.close()
    text = " ".join((ROOT / "docs" / "quality.md").read_text().split())
    assert "Labels are what the yield and false-reject figures are built on" not in text
    assert "the yield counts the station's decisions" in text
