"""Where the application keeps its data on this machine (the history database, the engine's
remembered backend choices): light enough for any module to import, unlike ``inspector.history``.

The history database holds the users' PIN hashes: a six-digit PIN falls to an offline search in
hours once its hash is read, so what this process creates to hold it is its owner's alone
(:func:`make_private_folder`, :func:`create_private_file`). Whatever writes under the data folder
first -- the engine's backend cache, the image store, the teach folders, the desktop's settings --
makes its folders with :func:`make_folders`, so the data folder is 0700 whichever comes first."""

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


def make_private_folder(path: Path) -> None:
    """Create ``path`` (and missing parents) if it does not exist, the folder itself with mode
    0700: only its owner may list or enter it. An existing folder is left as it is -- an
    administrator may have shared it on purpose."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def make_folders(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, except that the data folder, when this call
    is the one creating it, is made 0700 (:func:`make_private_folder`) like the history database
    makes it: otherwise the first writer decides, and mkdir's default is 0755."""
    path = Path(path).absolute()
    root = data_dir().absolute()
    if (path == root or root in path.parents) and not root.exists():
        make_private_folder(root)
    path.mkdir(parents=True, exist_ok=True)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; whether it was created. Made here
    rather than by the library that fills it, which would create it readable by all (0644 under
    the usual umask); SQLite gives its -wal and -shm files the mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
