"""Read-side queries of the review screen: filter, page, count, yield over time, CSV export,
the products to filter by, and the rule an inspection was decided with.

Functions take an open :class:`~sqlalchemy.orm.Session`; :class:`~.db.HistoryDB` wraps them.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from inspector.history.tables import DECISIONS, LABELS, Calibration, Inspection, ModelVersion, Product, as_utc
from inspector.inspection import PART_DECISIONS, DecisionRule, area_mm2, decision_label
from inspector.overlay import HeatmapLevels, heatmap_view

MAX_PAGE = 10_000


@dataclass(frozen=True)
class InspectionFilter:
    """Which inspections to show; every field left ``None`` (``errors_only`` False) matches all.

    ``start`` is inclusive and ``end`` exclusive (timezone-aware). ``min_score``/``max_score`` are
    inclusive bounds on the image score; a NO PART frame and an engine error were never scored
    (their stored 0.0 stands for no score), so either bound leaves them out. ``errors_only``
    keeps the inspections the engine could not score (their FAIL is fail-safe, not a reject of
    the part). ``station`` keeps one station's rows (a plant database holds many).
    """

    start: datetime | None = None
    end: datetime | None = None
    decision: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    product_id: int | None = None
    model_version_id: int | None = None
    label: str | None = None
    camera_id: str | None = None
    errors_only: bool = False
    station: str | None = None

    def __post_init__(self) -> None:
        if self.decision is not None and self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions of the set fields, to pass to ``select(...).where(*conditions)``."""
        t = Inspection
        equal = {
            t.decision: self.decision,
            t.product_id: self.product_id,
            t.model_version_id: self.model_version_id,
            t.label: self.label,
            t.camera_id: self.camera_id,
            t.station: self.station,
        }
        conditions = [column == value for column, value in equal.items() if value is not None]
        if self.start is not None:
            conditions.append(t.time >= self.start)
        if self.end is not None:
            conditions.append(t.time < self.end)
        if self.min_score is not None:
            conditions.append(t.score >= self.min_score)
        if self.max_score is not None:
            conditions.append(t.score <= self.max_score)
        if self.min_score is not None or self.max_score is not None:
            conditions.append(t.decision != "NO_PART")  # never scored: its 0.0 is no score
            conditions.append(t.error.is_(None))  # an engine error, never scored either
        if self.errors_only:
            conditions.append(t.error.is_not(None))
        return conditions


@dataclass(frozen=True)
class InspectionRow:
    """One inspection as the review screen shows it. Paths may name files since deleted.

    ``error`` is the engine's message where it could not score the frame, else ``None``.
    ``heatmap_low``/``heatmap_high`` are the map values the stored 16-bit heatmap's 0 and 65535
    stand for; ``None`` for a legacy heatmap (a JET colour picture, stored before revision 0003).
    Read the map with :func:`inspector.history.image_store.read_heatmap`. ``station`` recorded
    it; its image paths are that station's (see :attr:`image_exists`). ``pixel_threshold``,
    ``min_defect_area_px``, ``recheck_threshold`` and ``mm_per_px`` are the rest of the rule the
    verdict used, where ``rule_recorded`` (see :attr:`rule`). ``defect_area_px``: the largest
    region the pixel rule measured (None: no pixel rule, or recorded before revision 0010), in mm²
    as :attr:`defect_area_mm2` where the rule had a pixel size. ``match_quality``: how well the
    framing found the part (None without alignment). ``decision`` is one of the history's
    ``DECISIONS``; :attr:`decision_label` is its text for people ("NO PART").
    """

    id: int
    uid: str
    time: datetime
    camera_id: str
    frame_id: int
    part_id: str | None
    product_id: int | None
    product_name: str | None
    model_version_id: int | None
    score: float
    threshold: float
    decision: str
    latency_total_ms: float | None
    latency_model_ms: float | None
    label: str
    labelled_by: str | None
    labelled_at: datetime | None
    image_path: str | None
    heatmap_path: str | None
    error: str | None
    heatmap_low: float | None
    heatmap_high: float | None
    station: str = ""  # with a default: rows built by hand before there were stations
    pixel_threshold: float | None = None  # these with defaults too: rows from before the rule
    min_defect_area_px: int | None = None
    rule_recorded: bool = False
    recheck_threshold: float | None = None  # revision 0010; None in older rows
    mm_per_px: float | None = None
    defect_area_px: int | None = None
    match_quality: float | None = None

    @property
    def rule(self) -> DecisionRule | None:
        """The rule the verdict used, or None where the row did not record it (written before
        history revision 0008, or from a record without its rule): not known, which
        :func:`decided_rule` can look for in the model version's calibrations."""
        if not self.rule_recorded:
            return None
        return DecisionRule(self.threshold, self.pixel_threshold, self.min_defect_area_px, self.recheck_threshold,
                            self.mm_per_px)

    @property
    def defect_area_mm2(self) -> float | None:
        """The defect area in mm² (None without a pixel size or a measured area: see ``defect_area_px``)."""
        return area_mm2(self.defect_area_px, self.mm_per_px)

    @property
    def decision_label(self) -> str:
        return decision_label(self.decision)

    @property
    def image_exists(self) -> bool:
        """Whether the image can be opened from here: a row read from the plant database names a
        file on its station's disk, which another computer sees only through a share."""
        return self.image_path is not None and os.path.isfile(self.image_path)

    @property
    def heatmap_exists(self) -> bool:
        return self.heatmap_path is not None and os.path.isfile(self.heatmap_path)


ROW_COLUMNS = [f.name for f in fields(InspectionRow)]
#: Columns of the CSV export: the station first (a plant database's export mixes stations), then
#: those of a row but the rule (the export's format predates it), the heatmap's value range right
#: after its path (``heatmap_low``, ``heatmap_high``: the values the 16-bit map's 0 and 65535 stand
#: for, without which an exported heatmap file cannot be read back as values; empty for a legacy
#: colour heatmap), with what revision 0010 added before the last column: the defect's size in
#: pixels and in mm² (empty where the rule had no pixel size) and the framing's match quality,
#: then the rest of the rule the row was decided with, where it was recorded (revision 0008 on):
#: the recheck band's lower threshold, the pixel rule and the pixel size, each empty where the
#: rule had none -- a RECHECK or a pixel rule's FAIL under the image threshold is explained by
#: them; ending with ``error`` as before. ``decision`` carries the history's value (``PASS``,
#: ``FAIL``, ``RECHECK``, ``NO_PART``).
_NOT_EXPORTED = ("heatmap_low", "heatmap_high", "station", "pixel_threshold", "min_defect_area_px", "rule_recorded",
                 "recheck_threshold", "mm_per_px", "defect_area_px", "match_quality", "error")
_BEFORE_RANGE = [name for name in ROW_COLUMNS if name not in _NOT_EXPORTED]
CSV_COLUMNS = (["station"] + _BEFORE_RANGE[:_BEFORE_RANGE.index("heatmap_path") + 1] + ["heatmap_low", "heatmap_high"]
               + _BEFORE_RANGE[_BEFORE_RANGE.index("heatmap_path") + 1:]
               + ["defect_area_px", "defect_area_mm2", "match_quality",
                  "recheck_threshold", "pixel_threshold", "min_defect_area_px", "mm_per_px", "error"])


@dataclass(frozen=True)
class YieldBucket:
    """Verdict counts of the inspections whose time falls in ``[start, start + bucket)``:
    ``failed`` (FAIL), ``rechecked`` (RECHECK), ``no_part`` (NO PART: no part inspected)."""

    start: datetime
    passed: int
    failed: int
    rechecked: int = 0
    no_part: int = 0

    @property
    def total(self) -> int:
        """The parts inspected: PASS, FAIL and RECHECK (NO PART frames are no part)."""
        return self.passed + self.failed + self.rechecked

    @property
    def yield_fraction(self) -> float:
        """Share of passes among the parts inspected, 0..1 (``nan`` for a bucket without parts)."""
        return self.passed / self.total if self.total else float("nan")


def _rows_select(filters: InspectionFilter, names: list[str] = ROW_COLUMNS) -> Select[Any]:
    computed = {
        "product_name": Product.name.label("product_name"),
        "defect_area_mm2": (Inspection.defect_area_px * Inspection.mm_per_px * Inspection.mm_per_px).label("defect_area_mm2"),
    }
    columns = [computed[name] if name in computed else getattr(Inspection, name) for name in names]
    return (
        select(*columns)
        .outerjoin(Product, Product.id == Inspection.product_id)
        .where(*filters.conditions())
        .order_by(Inspection.time.desc(), Inspection.id.desc())
    )


def query_inspections(
    session: Session,
    filters: InspectionFilter,
    limit: int = 100,
    offset: int = 0,
    before: tuple[datetime, int] | None = None,
) -> list[InspectionRow]:
    """One page of inspections, newest first.

    Page with ``offset`` or, faster deep into a large table, with ``before=(row.time, row.id)``
    of the last row of the previous page (keyset paging).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    stmt = _rows_select(filters)
    if before is not None:
        time, row_id = as_utc(before[0]), before[1]
        # The plain `time <= ?` lets the time index bound the scan; the OR breaks ties by id.
        stmt = stmt.where(
            Inspection.time <= time,
            or_(Inspection.time < time, and_(Inspection.time == time, Inspection.id < row_id)),
        )
    result = session.execute(stmt.limit(limit).offset(offset))
    return [InspectionRow(**row._asdict()) for row in result]


@dataclass(frozen=True)
class DecidedRule:
    """The rule an inspection was decided with, as far as the history knows it.

    ``source`` is ``"recorded"`` (stored with the row), ``"calibration"`` (not stored: the row's
    model version has a calibration with the row's threshold, made before the part, whose rule
    it then most likely was; ``calibration_id`` names it) or ``"unknown"`` (``rule`` None).
    """

    rule: DecisionRule | None
    source: str
    calibration_id: int | None = None


def decided_rule(session: Session, row: InspectionRow) -> DecidedRule:
    """The rule ``row`` was decided with: its own where recorded, else that of the newest
    calibration of its model version made before it with the same image threshold, else unknown.

    A threshold set on the command line (``inspector run --threshold``) is no calibration, so a
    row without a matching one stays unknown rather than borrowing another rule's pixel part.
    """
    if row.rule is not None:
        return DecidedRule(row.rule, "recorded")
    if row.model_version_id is None:
        return DecidedRule(None, "unknown")
    stmt = (
        select(Calibration)
        .where(Calibration.model_version_id == row.model_version_id, Calibration.created <= row.time)
        .order_by(Calibration.created.desc(), Calibration.id.desc())
    )
    for calibration in session.scalars(stmt):
        if math.isclose(calibration.image_threshold, row.threshold, rel_tol=1e-9, abs_tol=0.0):
            # The rule of the row's threshold with the calibration's pixel part (a pixel threshold
            # without its area was never a pixel rule: calibration records them as a pair).
            if calibration.pixel_threshold is None or calibration.min_defect_area_px is None:
                rule = DecisionRule(row.threshold)
            else:
                rule = DecisionRule(row.threshold, calibration.pixel_threshold, calibration.min_defect_area_px)
            return DecidedRule(rule, "calibration", calibration.id)
    return DecidedRule(None, "unknown")


def decided_levels(row: InspectionRow, known: DecidedRule) -> HeatmapLevels:
    """How to draw a stored row's map: with the rule it was decided with, so the contour is the
    one the operator saw (the desktop's review and the browser's alike). A row stored before the
    history kept the rule is drawn with its model version's calibration of the same threshold, or
    without contour; the note says which."""
    if known.source == "recorded":
        return heatmap_view(row)
    if known.source == "calibration":
        return replace(heatmap_view(known.rule), note=(
            f"pixel rule not stored with this part: contour from calibration {known.calibration_id} of "
            f"model version {row.model_version_id}, which has its threshold"))
    return replace(heatmap_view(row), note="pixel rule not stored with this part and no calibration of its "
                                           "model version has its threshold: no defect contour")


def products(session: Session) -> list[tuple[str, int]]:
    """(name, id) of every product, by name."""
    return [(name, pid) for name, pid in session.execute(select(Product.name, Product.id).order_by(Product.name))]


def count_inspections(session: Session, filters: InspectionFilter) -> int:
    stmt = select(func.count()).select_from(Inspection).where(*filters.conditions())
    return session.execute(stmt).scalar_one()


class _EpochSeconds(FunctionElement[int]):
    """Whole seconds since 1970-01-01 UTC of a UTC time column (compiled per dialect below)."""

    type = Integer()
    inherit_cache = True


@compiles(_EpochSeconds, "sqlite")
def _epoch_sqlite(element: _EpochSeconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_EpochSeconds, "postgresql")
def _epoch_postgresql(element: _EpochSeconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


SQL_BUCKET_DIALECTS = ("sqlite", "postgresql")


def yield_over_time(
    session: Session, filters: InspectionFilter, bucket: timedelta, *, in_sql: bool | None = None
) -> list[YieldBucket]:
    """Counts per decision per time bucket, oldest first; buckets without inspections are omitted.

    Buckets are aligned to multiples of ``bucket`` since 1970-01-01 UTC (so daily buckets start
    at UTC midnight). The grouping runs in SQL on SQLite and PostgreSQL and in Python elsewhere
    (``in_sql`` forces either, for testing).
    """
    seconds = int(bucket.total_seconds())
    if seconds < 1 or bucket != timedelta(seconds=seconds):
        raise ValueError(f"bucket must be a whole number of seconds >= 1, got {bucket}")
    if in_sql is None:
        in_sql = session.get_bind().dialect.name in SQL_BUCKET_DIALECTS
    counts = _bucket_counts_sql if in_sql else _bucket_counts_python
    by_index: dict[int, dict[str, int]] = {}
    for index, decision, n in counts(session, filters, seconds):
        per = by_index.setdefault(index, {})
        per[decision] = per.get(decision, 0) + n
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return [
        YieldBucket(epoch + index * bucket, per.get("PASS", 0), per.get("FAIL", 0), per.get("RECHECK", 0),
                    per.get("NO_PART", 0))
        for index, per in sorted(by_index.items())
    ]


def decision_counts(session: Session, filters: InspectionFilter) -> dict[str, int]:
    """Inspections matching ``filters`` per decision: every one of ``DECISIONS``, 0 where none."""
    stmt = select(Inspection.decision, func.count()).where(*filters.conditions()).group_by(Inspection.decision)
    counts = {decision: 0 for decision in DECISIONS}
    for decision, n in session.execute(stmt):
        counts[decision] = counts.get(decision, 0) + n
    return counts


def yield_of(counts: dict[str, int]) -> float:
    """PASS over the parts decided PASS, FAIL or RECHECK (NO PART is no part inspected); nan without parts."""
    parts = sum(counts.get(decision, 0) for decision in PART_DECISIONS)
    return counts.get("PASS", 0) / parts if parts else float("nan")


def _bucket_counts_sql(
    session: Session, filters: InspectionFilter, seconds: int
) -> Iterator[tuple[int, str, int]]:
    index = (_EpochSeconds(Inspection.time) // seconds).label("bucket")
    stmt = (
        select(index, Inspection.decision, func.count())
        .where(*filters.conditions())
        .group_by(index, Inspection.decision)
    )
    for index, decision, n in session.execute(stmt):
        yield index, decision, n


def _bucket_counts_python(
    session: Session, filters: InspectionFilter, seconds: int
) -> Iterator[tuple[int, str, int]]:
    counts: dict[tuple[int, str], int] = {}
    stmt = select(Inspection.time, Inspection.decision).where(*filters.conditions())
    for time, decision in session.execute(stmt.execution_options(yield_per=5000)):
        key = (int(time.timestamp()) // seconds, decision)
        counts[key] = counts.get(key, 0) + 1
    yield from ((index, decision, n) for (index, decision), n in counts.items())


def export_csv(session: Session, path: str | os.PathLike[str], filters: InspectionFilter) -> int:
    """Write the matching inspections to ``path`` as CSV (one row each, newest first). The score
    of a NO PART row and of an engine error is empty: the frame was never scored (the database
    keeps 0.0 for it; the error column says why).

    Rows are streamed, so memory stays flat for any table size; the file appears complete or not
    at all (temporary file, fsync, rename). Times are ISO 8601 UTC. Returns the number of rows.
    """
    tmp, n = csv_to_temporary(session, path, filters)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def csv_to_temporary(session: Session, path: str | os.PathLike[str], filters: InspectionFilter) -> tuple[Path, int]:
    """The CSV of :func:`export_csv`, written and fsynced to a hidden temporary file beside
    ``path``, and its number of rows. Renaming it onto ``path`` is the caller's, once whatever
    else the export needs (its audit event) has succeeded; on any error here it is removed."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            stmt = _rows_select(filters, CSV_COLUMNS).execution_options(yield_per=1000)
            for row in session.execute(stmt):
                cells = [_csv_cell(value) for value in row]
                if row[_DECISION_CELL] == "NO_PART" or row[_ERROR_CELL] is not None:
                    cells[_SCORE_CELL] = ""  # never scored: its stored 0.0 is no score
                writer.writerow(cells)
                n += 1
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return Path(tmp_name), n


_SCORE_CELL, _DECISION_CELL, _ERROR_CELL = (CSV_COLUMNS.index(name) for name in ("score", "decision", "error"))

#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        # A camera id, part id or error message is data: the quote makes a spreadsheet show it
        # as text instead of running it (numbers are written as numbers and need no quote).
        return "'" + value
    return value


# -- the review in a browser (``web``): one row, its neighbours, its trail, the stations -----------


#: One row by id, built once: building the select of a row's 30 columns costs more Python time
#: than PostgreSQL takes to answer it (a part's page and its pictures ask for it under load).
_ROW_BY_ID = _rows_select(InspectionFilter()).order_by(None).where(Inspection.id == bindparam("inspection_id"))


#: In a plant's copy of a model version's metrics (:mod:`inspector.links.plant`): each station's
#: own number of the version (station -> id); the plant numbers its copies itself.
STATION_VERSIONS = "station_versions"


def station_version(session: Session, row: InspectionRow) -> int | None:
    """The number ``row``'s station gives its model version, where the row's database is a plant's
    and numbers it otherwise (None: no version, a station's own history, or a copy made before
    the stations' numbers were kept)."""
    if row.model_version_id is None:
        return None
    metrics = session.scalar(select(ModelVersion.metrics).where(ModelVersion.id == row.model_version_id))
    known = (metrics or {}).get(STATION_VERSIONS) if isinstance(metrics, dict) else None
    number = known.get(row.station) if isinstance(known, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def inspection_row(session: Session, inspection_id: int) -> InspectionRow | None:
    """The inspection with this id as the review shows it, or None where there is none."""
    row = session.execute(_ROW_BY_ID, {"inspection_id": inspection_id}).first()
    return None if row is None else InspectionRow(**row._asdict())


def neighbours(session: Session, filters: InspectionFilter, position: tuple[datetime, int]) -> tuple[int | None, int | None]:
    """The ids of the inspections just newer and just older than ``position=(row.time, row.id)``
    among those ``filters`` keeps (None where there is none), in the list's order (newest first,
    ties by id): a part page's previous and next. One statement, ids only: the same keyset
    conditions as :func:`query_inspections_after` and :func:`query_inspections` with ``before``,
    each answered from the filter's (column, time) index or the time index, one row read."""
    time, row_id = as_utc(position[0]), position[1]
    t = Inspection
    conditions = filters.conditions()
    newer = (select(t.id).where(*conditions, t.time >= time, or_(t.time > time, and_(t.time == time, t.id > row_id)))
             .order_by(t.time.asc(), t.id.asc()).limit(1).scalar_subquery())
    older = (select(t.id).where(*conditions, t.time <= time, or_(t.time < time, and_(t.time == time, t.id < row_id)))
             .order_by(t.time.desc(), t.id.desc()).limit(1).scalar_subquery())
    newer_id, older_id = session.execute(select(newer, older)).one()
    return newer_id, older_id


def query_inspections_after(
    session: Session, filters: InspectionFilter, after: tuple[datetime, int], limit: int = 100
) -> list[InspectionRow]:
    """The ``limit`` inspections just newer than ``after=(row.time, row.id)``, newest first: the
    page before a keyset page (:func:`query_inspections` with ``before`` goes the other way)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}, got {limit}")
    time, row_id = as_utc(after[0]), after[1]
    stmt = (
        _rows_select(filters)
        .where(Inspection.time >= time,
               or_(Inspection.time > time, and_(Inspection.time == time, Inspection.id > row_id)))
        .order_by(None)
        .order_by(Inspection.time.asc(), Inspection.id.asc())
        .limit(limit)
    )
    return [InspectionRow(**row._asdict()) for row in reversed(session.execute(stmt).all())]


@dataclass(frozen=True)
class TrailEntry:
    """One audit event about an inspection (its label set, a note on it), oldest first."""

    time: datetime
    user: str
    role: str
    action: str
    before: Any
    after: Any


def inspection_trail(session: Session, inspection_id: int, limit: int = 100) -> list[TrailEntry]:
    """The audit events whose target is this inspection (``inspection:<id>``), oldest first."""
    from inspector.history.tables import AuditEvent

    stmt = (
        select(AuditEvent.time, AuditEvent.user, AuditEvent.role, AuditEvent.action, AuditEvent.before, AuditEvent.after)
        .where(AuditEvent.target == f"inspection:{inspection_id}")
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return [TrailEntry(*row) for row in reversed(session.execute(stmt).all())]


@dataclass(frozen=True)
class StationSummary:
    """What a database holds of one station: its newest row's time (None: no rows), and the
    rows and non-PASS verdicts since ``since`` (``not_passed``: FAIL and RECHECK; NO PART frames
    are neither, counted in ``no_part``)."""

    station: str
    last_time: datetime | None
    since: datetime
    rows: int
    not_passed: int
    no_part: int = 0


def station_summary(session: Session, station: str, since: datetime) -> StationSummary:
    """One station's newest row and its counts since ``since`` (answered from the station/time index)."""
    since = as_utc(since)
    last = session.scalar(select(func.max(Inspection.time)).where(Inspection.station == station))
    counts = dict(session.execute(
        select(Inspection.decision, func.count())
        .where(Inspection.station == station, Inspection.time >= since)
        .group_by(Inspection.decision)).all())
    return StationSummary(station, last, since, sum(counts.values()),
                          sum(n for decision, n in counts.items() if decision not in ("PASS", "NO_PART")),
                          counts.get("NO_PART", 0))


def forwarding_backlog(session: Session) -> list[tuple[str, int, int]]:
    """(target, last forwarded id, rows waiting) of each plant database this station forwards to;
    empty for a database that forwards nowhere (the plant's own). The images' mark of a plant
    link (target ``"... images"``) counts the rows with kept images still to go."""
    from inspector.history.tables import ForwardMark

    marks = session.execute(select(ForwardMark.target, ForwardMark.last_id).order_by(ForwardMark.target)).all()
    kept = Inspection.image_path.is_not(None) | Inspection.heatmap_path.is_not(None)
    return [(target, last_id, session.scalar(select(func.count()).select_from(Inspection).where(
                Inspection.id > last_id, *([kept] if target.endswith(" images") else []))) or 0)
            for target, last_id in marks]
