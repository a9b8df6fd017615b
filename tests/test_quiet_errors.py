"""A command that fails says so in one line: no library's set-up chatter before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [
    ["teach", "status", "--product", "no-such-product"],
    ["calibrate", "no-such-model.safetensors", ".", "--report", "r", "--db", "DB"],
    ["history", "export", "--db", "DB", "--out", "out.csv", "--since", "yesterday"],
])
def test_an_error_is_one_line_without_library_logging(argv, tmp_path):
    db = f"sqlite:///{tmp_path / 'history.db'}"
    argv = [db if a == "DB" else a for a in argv]
    env = {**os.environ, "INSPECTOR_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    env.pop("INSPECTOR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "cli", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "alembic" not in proc.stderr.lower() and "plugin" not in proc.stderr.lower()
