"""Where the application keeps its data on this machine (the history database, the engine's
remembered backend choices): light enough for any module to import, unlike ``inspector.history``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def data_dir() -> Path:
    """The folder for the application's data: ``$INSPECTOR_DATA_DIR``, else the per-user one."""
    if env := os.environ.get("INSPECTOR_DATA_DIR"):
        return Path(env).expanduser()
    if sys.platform == "win32" and (local := os.environ.get("LOCALAPPDATA")):
        return Path(local) / "inspector"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "inspector"
