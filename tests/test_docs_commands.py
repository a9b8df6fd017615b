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
