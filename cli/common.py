"""What every command shares: the ``--device`` option and opening the history database."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path
from typing import Any

#: ``add_argument("--device", **DEVICE_OPTION)``
DEVICE_OPTION: dict[str, Any] = dict(choices=("auto", "cpu", "cuda"), default="auto",
                                     help="where to run (default: CUDA when present)")


def quiet_migrations() -> None:
    """Alembic logs its set-up and each migration at INFO: no news on an operator's console.
    Call before inspector.history (and with it alembic) is imported: the set-up logs at import."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("alembic").setLevel(logging.WARNING)


def open_history(url: str | None) -> Any:
    """The history database at ``url`` (default: history.db in the data folder), migrated to the
    current schema."""
    quiet_migrations()
    from inspector.history import HistoryDB, default_db_url

    db = HistoryDB(url or default_db_url())
    db.upgrade()
    return db


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (iterations, runs, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def output_folder(text: str) -> Path:
    """An argparse type: a folder to write into (made if missing); an existing file is refused."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for the output files")
    return path


def unique_stems(paths: list[Path]) -> list[str]:
    """One output name per input, never two alike: the file's stem, prefixed with as many of its
    folders as it takes to tell inputs of the same name apart (``a/part.jpg``, ``b/part.jpg`` ->
    ``a_part``, ``b_part``), and numbered if even that is not enough."""
    names = [p.stem for p in paths]
    for depth in range(1, 1 + max((len(p.parts) for p in paths), default=0)):
        repeated = {n for n, k in Counter(names).items() if k > 1}
        if not repeated:
            return names
        names = [
            "_".join([*p.parent.parts[-depth:], p.stem]).replace("/", "_") if name in repeated else name
            for p, name in zip(paths, names)
        ]
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
