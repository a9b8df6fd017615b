"""Append-only, fsynced JSON-lines file that holds records while the database cannot take them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

from inspector.history.records import from_json, to_json
from inspector.inspection import InspectionResult


class SpillJournal:
    """One JSON object per line; a line is on disk (fsynced) when :meth:`append` returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, records: list[InspectionResult]) -> None:
        """Append ``records`` (without their pixels, with their image paths); on ``OSError`` the
        file is cut back so no partial line is left."""
        data = "".join(json.dumps(to_json(r), separators=(",", ":")) + "\n" for r in records)
        created = not self.path.exists()
        with open(self.path, "a+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    data = "\n" + data  # a crash cut the last line short: do not glue onto it
            try:
                f.write(data.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                _truncate(f, size)
                raise
        if created:
            _fsync_dir(self.path.parent)  # so the new file's name survives a power cut too

    def read(self) -> tuple[list[InspectionResult], int]:
        """All records in the journal, and the number of lines that could not be parsed."""
        if not self.path.exists():
            return [], 0
        items: list[InspectionResult] = []
        bad = 0
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    items.append(from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    bad += 1  # e.g. the last line of a write cut short by a crash
        return items, bad

    def clear(self) -> None:
        """Remove the journal once its records are in the database."""
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)


def _truncate(f: BinaryIO, size: int) -> None:
    try:
        f.truncate(size)
    except OSError:
        pass  # the reader skips a partial line anyway


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open folders; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
