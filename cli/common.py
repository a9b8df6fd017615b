"""What every command shares: the ``--device`` option and opening the history database."""

from __future__ import annotations

import logging
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
