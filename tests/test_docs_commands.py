"""The command reference in docs/ is generated from the parsers; this keeps it current."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_commands", ROOT / "scripts" / "docs" / "gen_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_reference_matches_the_parsers():
    gen = _generator()
    assert gen.OUT.read_text() == gen.render(), (
        "docs/reference/commands.md is out of date: run python scripts/docs/gen_commands.py and commit the page")


def test_command_reference_lists_every_command():
    text = (ROOT / "docs" / "reference" / "commands.md").read_text()
    for command in ("train", "eval", "predict", "bench", "export-onnx", "distill", "run", "history export",
                    "calibrate", "teach train", "gui", "users add", "audit verify"):
        assert f"`inspector {command}`" in text
