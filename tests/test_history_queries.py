"""Review-screen queries: filters, paging, counts, yield over time, CSV export, index use."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from sqlalchemy import func, select

from inspector.errors import DatabaseError
from inspector.history import HistoryDB, InspectionFilter, InspectionResult
from inspector.history import queries
from inspector.history.tables import Inspection

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=timezone.utc)
N = 240


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HistoryDB, list]]:
    """``N`` inspections a minute apart, two products and model versions, some labelled; every
    tenth frame shares its time with the next one (ties are ordered by id)."""
    tmp = tmp_path_factory.mktemp("queries")
    db = HistoryDB(f"sqlite:///{tmp / 'history.db'}")
    db.upgrade()
    products = [db.add_product("tile"), db.add_product("plate")]
    versions = [db.add_model_version(p, "m", sha256=f"{p:064x}") for p in products]
    image = tmp / "frame.png"
    image.write_bytes(b"png")
    records = []
    for i in range(N):
        minute = i - (i % 10 == 1)  # frames 1, 11, 21... share the previous frame's time
        records.append(
            InspectionResult(
                time=T0 + timedelta(minutes=minute),
                camera_id=f"cam{i % 2}",
                frame_id=i,
                score=(i * 37 % 100) / 100.0,
                decision="FAIL" if i % 7 == 0 else "PASS",
                threshold=0.8,
                product_id=products[i % 3 == 0],
                model_version_id=versions[i % 3 == 0],
                part_id=f"P{i}",
                latency_total_ms=20.0 + i,
                # Every fourth FAIL is an engine error (a fail-safe FAIL, not a reject).
                error=f"DataError: frame {i} is corrupt" if i % 28 == 0 else None,
            )
        )
    stored = db.write_inspections(
        [replace(r, image_path=str(image)) if r.frame_id % 2 else r for r in records]
    )
    for s in stored[::14]:
        db.label_inspection(s.inspection_id, "false_reject", "qa")
    yield db, records
    db.close()


def _expected(db: HistoryDB, records: list[InspectionResult], f: InspectionFilter) -> list[int]:
    """Frame ids matching ``f`` computed in Python, newest first (ties: later frame first)."""
    labels = {r.frame_id: r.label for r in db.query_inspections(limit=N)}
    matching = [
        r
        for r in records
        if (f.start is None or r.time >= f.start)
        and (f.end is None or r.time < f.end)
        and (f.decision is None or r.decision == f.decision)
        and (f.min_score is None or r.score >= f.min_score)
        and (f.max_score is None or r.score <= f.max_score)
        and (f.min_score is None and f.max_score is None or r.error is None)  # an engine error was never scored
        and (f.product_id is None or r.product_id == f.product_id)
        and (f.model_version_id is None or r.model_version_id == f.model_version_id)
        and (f.label is None or labels[r.frame_id] == f.label)
        and (f.camera_id is None or r.camera_id == f.camera_id)
        and (not f.errors_only or r.error is not None)
    ]
    return [r.frame_id for r in sorted(matching, key=lambda r: (r.time, r.frame_id), reverse=True)]


FILTERS = [
    InspectionFilter(),
    InspectionFilter(decision="FAIL"),
    InspectionFilter(start=T0 + timedelta(minutes=30), end=T0 + timedelta(minutes=90)),
    InspectionFilter(min_score=0.25, max_score=0.5),
    InspectionFilter(product_id=2),
    InspectionFilter(model_version_id=1, decision="PASS"),
    InspectionFilter(label="false_reject"),
    InspectionFilter(camera_id="cam1", min_score=0.9),
    InspectionFilter(decision="FAIL", start=T0 + timedelta(hours=1), label="none", product_id=1),
    InspectionFilter(errors_only=True),
    InspectionFilter(errors_only=True, start=T0 + timedelta(hours=1), camera_id="cam0"),
]


@pytest.mark.parametrize("f", FILTERS)
def test_filters_match_and_count(seeded, f: InspectionFilter) -> None:
    db, records = seeded
    expected = _expected(db, records, f)
    assert expected, "a filter that matches nothing would prove little"
    rows = db.query_inspections(f, limit=N)
    assert [r.frame_id for r in rows] == expected
    assert db.count_inspections(f) == len(expected)


def test_rows_carry_everything_the_review_screen_shows(seeded) -> None:
    db, records = seeded
    row = db.query_inspections(InspectionFilter(product_id=2), limit=1)[0]
    record = records[row.frame_id]
    assert row.product_name == "plate" and row.model_version_id == 2
    assert (row.score, row.threshold, row.decision) == (record.score, 0.8, record.decision)
    assert (row.part_id, row.uid) == (record.part_id, record.uid)
    assert row.latency_total_ms == record.latency_total_ms
    assert row.time == record.time and row.time.tzinfo is not None
    assert row.error is None


def test_rows_tell_engine_errors_from_rejects(seeded) -> None:
    db, records = seeded
    errors = db.query_inspections(InspectionFilter(errors_only=True), limit=N)
    assert errors and all(r.decision == "FAIL" for r in errors)
    assert all(r.error == records[r.frame_id].error == f"DataError: frame {r.frame_id} is corrupt" for r in errors)
    fails = db.query_inspections(InspectionFilter(decision="FAIL"), limit=N)
    assert 0 < sum(r.error is None for r in fails) < len(fails)  # real rejects and errors both


def test_offset_and_keyset_paging_agree(seeded) -> None:
    db, _ = seeded
    f = InspectionFilter(decision="PASS")
    everything = [r.id for r in db.query_inspections(f, limit=N)]
    by_offset = [r.id for o in range(0, N, 25) for r in db.query_inspections(f, 25, o)]
    by_keyset, before = [], None
    while page := db.query_inspections(f, 25, before=before):
        by_keyset += [r.id for r in page]
        before = (page[-1].time, page[-1].id)
    assert by_offset == everything
    assert by_keyset == everything
    assert len(set(everything)) == len(everything) == db.count_inspections(f)


def test_page_limits_are_checked(seeded) -> None:
    db, _ = seeded
    with pytest.raises(ValueError):
        db.query_inspections(limit=0)
    with pytest.raises(ValueError):
        db.query_inspections(offset=-1)
    with pytest.raises(ValueError):
        InspectionFilter(decision="OK")
    with pytest.raises(ValueError):
        InspectionFilter(start=datetime(2026, 1, 1))  # naive: its zone would be a guess


def test_missing_image_file_is_reported_not_raised(seeded, tmp_path: Path) -> None:
    db, _ = seeded
    rows = db.query_inspections(limit=4)
    with_image = [r for r in rows if r.image_path is not None]
    without = [r for r in rows if r.image_path is None]
    assert with_image and without
    assert all(r.image_exists for r in with_image)
    assert not any(r.image_exists or r.heatmap_exists for r in without)
    Path(with_image[0].image_path).unlink()
    try:
        again = db.query_inspections(limit=4)
        assert [r.image_path for r in again] == [r.image_path for r in rows]
        assert not any(r.image_exists for r in again)
    finally:
        Path(with_image[0].image_path).write_bytes(b"png")


@pytest.mark.parametrize("in_sql", [True, False])
@pytest.mark.parametrize("minutes", [1, 60, 17])
def test_yield_over_time(seeded, in_sql: bool, minutes: int) -> None:
    db, records = seeded
    f = InspectionFilter(start=T0 + timedelta(minutes=5), camera_id="cam0")
    bucket = timedelta(minutes=minutes)
    expected: dict[datetime, list[int]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for r in records:
        if r.time >= f.start and r.camera_id == "cam0":
            start = epoch + (r.time - epoch) // bucket * bucket
            expected.setdefault(start, [0, 0])[r.decision == "FAIL"] += 1
    with db.session() as s:
        buckets = queries.yield_over_time(s, f, bucket, in_sql=in_sql)
    assert [(b.start, b.passed, b.failed) for b in buckets] == [
        (start, p, n) for start, (p, n) in sorted(expected.items())
    ]
    assert sum(b.total for b in buckets) == db.count_inspections(f)
    assert all(0.0 <= b.yield_fraction <= 1.0 for b in buckets)
    if in_sql:
        assert db.yield_over_time(f, bucket) == buckets


def test_yield_bucket_must_be_whole_seconds(seeded) -> None:
    db, _ = seeded
    with pytest.raises(ValueError, match="bucket"):
        db.yield_over_time(bucket=timedelta(milliseconds=1500))


def test_export_csv_one_row_per_inspection(seeded, tmp_path: Path) -> None:
    db, records = seeded
    f = InspectionFilter(decision="FAIL")
    path = tmp_path / "export.csv"
    path.write_text("old contents")
    n = db.export_csv(path, f)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert n == len(rows) == db.count_inspections(f)
    assert [int(r["frame_id"]) for r in rows] == _expected(db, records, f)
    first = rows[0]
    record = records[int(first["frame_id"])]
    assert datetime.fromisoformat(first["time"]) == record.time
    assert float(first["score"]) == record.score and first["decision"] == "FAIL"
    assert first["product_name"] in ("tile", "plate") and first["uid"] == record.uid
    assert all(r["error"] == (records[int(r["frame_id"])].error or "") for r in rows)
    assert any(r["error"] for r in rows) and not all(r["error"] for r in rows)
    assert list(rows[0])[-1] == "error"  # the export's last column as before
    # The heatmap's value range right after its path: an exported map file reads back as values.
    columns = list(rows[0])
    assert columns[columns.index("heatmap_path") + 1:columns.index("heatmap_path") + 3] == ["heatmap_low", "heatmap_high"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]  # no temporary left


def test_export_to_unwritable_place_leaves_nothing(seeded, tmp_path: Path) -> None:
    db, _ = seeded
    with pytest.raises(OSError):
        db.export_csv(tmp_path / "missing-folder" / "export.csv")
    target = tmp_path / "a-folder"
    target.mkdir()
    with pytest.raises(OSError):
        db.export_csv(target)  # renaming onto a folder fails after the rows were written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"]
    assert list(target.iterdir()) == []


def test_an_export_that_cannot_be_audited_leaves_no_file(seeded, tmp_path: Path) -> None:
    """Another writer holds the database: the rows can be read (WAL), the audit event cannot be
    written. An exported file is a quality record, so without its audit there is none."""
    import sqlite3

    db, _ = seeded
    audited = HistoryDB(db.url, busy_timeout_ms=100)
    path = tmp_path / "out" / "export.csv"
    path.parent.mkdir()
    event = lambda rows: ("quinn", "quality", "export", "inspections", {"rows": rows})  # noqa: E731
    holder = sqlite3.connect(audited.sqlite_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError, match="locked"):
            audited.export_csv(path, audit=event)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert list(path.parent.iterdir()) == []  # neither the CSV nor its temporary
    assert all(e.action != "export" for e in audited.audit_events())
    n = audited.export_csv(path, audit=event)
    assert n == audited.count_inspections() and path.is_file()
    assert audited.audit_events(1)[0].after == {"rows": n}
    audited.close()


@pytest.mark.parametrize(
    ("condition", "index"),
    [
        (Inspection.decision == "FAIL", "ix_inspections_decision_time"),
        (Inspection.score >= 0.9, "ix_inspections_score"),
        (Inspection.model_version_id == 1, "ix_inspections_model_version_time"),
        (Inspection.time >= T0, "ix_inspections_time"),
    ],
)
def test_filters_are_answered_from_an_index(seeded, condition, index: str) -> None:
    """Counting a filter is a search of the index named, not a scan of the table."""
    db, _ = seeded
    stmt = select(func.count()).select_from(Inspection).where(condition)
    with db.engine.connect() as connection:
        sql = str(stmt.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        plan = " ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert index in plan and "SEARCH" in plan, plan


def test_newest_first_page_walks_the_time_index(seeded) -> None:
    db, _ = seeded
    stmt = queries._rows_select(InspectionFilter()).limit(100)
    with db.engine.connect() as connection:
        sql = str(stmt.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        plan = " ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_inspections_time" in plan and "TEMP B-TREE" not in plan, plan


def test_export_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    hostile = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd"]
    db.write_inspections([
        InspectionResult(time=T0 + timedelta(seconds=i), camera_id=text, frame_id=i, score=-0.25, decision="PASS",
                         threshold=-0.5, part_id=text, error=text)
        for i, text in enumerate(hostile)
    ])
    path = tmp_path / "export.csv"
    assert db.export_csv(path) == len(hostile)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["frame_id"]))
    for row, text in zip(rows, hostile):
        assert row["camera_id"] == row["part_id"] == row["error"] == "'" + text
        # A number stays a number (here the threshold: an engine error's score cell is empty, never scored).
        assert float(row["threshold"]) == -0.5
    db.close()
