"""``inspector history backup``: a copy of a running station's SQLite history that verifies.

Found checking a backup as the quality engineer's guide asks ("back it up with the database"):
copying ``history.db`` and ``history.db.heads.json`` while the station ran left out the writes
still in the write-ahead log, and ``inspector audit verify`` on the copy then said "audit trail
shortened: 31 rows expected ... 30 found". The guide did not say how to copy it.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from cli.main import main
from inspector.history import HistoryDB
from inspector.inspection import InspectionResult


def running_station(tmp_path: Path) -> HistoryDB:
    """A history in use: users added (audited), verdicts written (sealed), its connection open."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    for i in range(3):
        db.add_user(f"tech{i}", "technician", "471108", by="test")
    db.write_inspections([InspectionResult(uid=uuid.uuid4().hex, time=datetime.now(timezone.utc), camera_id="cam0",
                                           frame_id=i, score=0.1, decision="PASS", threshold=0.5) for i in range(5)])
    return db


def test_a_backup_of_a_running_history_verifies_and_is_audited(tmp_path: Path, capsys) -> None:
    db = running_station(tmp_path)
    assert (tmp_path / "history.db-wal").exists()  # the latest writes are in the log, not yet in the file
    out = tmp_path / "backups" / "history-monday.db"
    assert main(["history", "backup", "--db", db.url, "--out", str(out)]) == 0
    assert f"backed up into {out} and history-monday.db.heads.json beside it" in capsys.readouterr().out
    assert (out.parent / "history-monday.db.heads.json").is_file()
    assert main(["audit", "verify", "--db", f"sqlite:///{out}"]) == 0, capsys.readouterr()
    copy = HistoryDB(f"sqlite:///{out}")
    assert copy.count_inspections() == 5 and len(copy.audit_events(100)) == len(db.audit_events(100)) - 1
    copy.close()
    (event,) = [e for e in db.audit_events(100) if e.action == "backup"]
    assert event.after == {"out": str(out.resolve())} and event.role == "system"
    assert main(["audit", "verify", "--db", db.url]) == 0  # the original, one entry on
    db.close()


def test_a_backup_is_refused_over_a_file_for_another_database_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    db = running_station(tmp_path)
    existing = tmp_path / "old.db"
    existing.write_bytes(b"last week's backup")
    for argv, why in (
        (["--db", db.url, "--out", str(existing)], f"{existing} exists: a backup goes into a new file"),
        (["--db", f"sqlite:///{tmp_path / 'typo.db'}", "--out", str(tmp_path / "b.db")], "no history database at"),
        (["--db", db.url, "--out", str(tmp_path)], "is a folder"),
    ):
        try:
            status = main(["history", "backup", *argv])
        except SystemExit as stop:  # argparse's own refusal of --out
            status = stop.code
        assert status == 2
        assert why in capsys.readouterr().err
    assert existing.read_bytes() == b"last week's backup" and not (tmp_path / "b.db").exists()
    assert not (tmp_path / "typo.db").exists()
    assert [e for e in db.audit_events(100) if e.action == "backup"] == []
    db.close()


def test_a_plain_copy_of_the_running_file_is_what_the_backup_avoids(tmp_path: Path) -> None:
    db = running_station(tmp_path)
    for name in ("history.db", "history.db.heads.json"):
        shutil.copy(tmp_path / name, tmp_path / f"copy-{name}")
    db.close()
    # the log's writes are not in the copied file: here even the tables are still in the log
    assert main(["audit", "verify", "--db", f"sqlite:///{tmp_path / 'copy-history.db'}"]) != 0
