"""The history database: engine set-up, schema upgrades, and the write and read API."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, insert, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from inspector import __version__
from inspector.data_folder import create_private_file, data_dir, make_private_folder
from inspector.file_digest import file_sha256
from inspector.errors import DatabaseError
from inspector.history import queries
from inspector.history.tables import LABELS, ROLES, Activation, AuditEvent, Calibration, ChainHead, Inspection, ModelVersion, OutboxMessage, Product, User
from inspector.history.tables import default_station, utc_now
from inspector.history.audit_chain import GENESIS, ChainCheck, check_head, check_rows, row_hash
from inspector.history.seals import (
    AUDIT, InspectionCheck, check_inspections, check_mirror, check_users, lock_batches, mirror_path, move_head,
    read_mirror, seal_inspections, seal_user, user_seal_problem, write_mirror,
)
from inspector.history.pins import (
    check_pin, dummy_pin_hash, hash_pin, lock_delay, look_alike, validate_name, validate_pin,
)
from inspector.history.queries import InspectionFilter, InspectionRow, YieldBucket
from inspector.history.records import row_values
from inspector.inspection import InspectionResult
from inspector.roles import AccountLocked, AccountTampered

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
DEFAULT_BUSY_TIMEOUT_MS = 2000
#: Key of the PostgreSQL advisory lock that serialises schema upgrades: stations starting at once
#: against one plant database would otherwise both create the same tables.
_MIGRATION_LOCK_KEY = 0x1E5_C7_0B


def default_db_url() -> str:
    """SQLite URL of ``history.db`` in :func:`data_dir` (the folder is created on open)."""
    return f"sqlite:///{(data_dir() / 'history.db').as_posix()}"


def alembic_config() -> Config:
    """Alembic configuration for the migrations shipped in this package (no ini file needed)."""
    config = Config()
    # configparser interpolation would choke on a '%' in the install path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


class HistoryDB:
    """Connection to one history database, given as any SQLAlchemy URL.

    SQLite files are opened in WAL mode with ``synchronous=FULL`` (a committed row survives a
    crash or power cut) and a busy timeout of ``busy_timeout_ms``; foreign keys are enforced.
    Raises :class:`DatabaseError` when the database cannot be opened. Call :meth:`upgrade` once at
    start-up to create or migrate the schema. ``clock`` tells the time PIN locks are measured
    against (a test moves it instead of waiting). ``station`` names the station whose inspections
    this process records (every row carries it; default: the host name).
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        clock: Callable[[], datetime] = utc_now,
        read_only: bool | None = None,
        station: str | None = None,
    ) -> None:
        self.clock = clock
        if station:  # every row and plant message carries it: the rule users and products follow
            validate_name(station, "station")
        self.station = station or default_station()
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise DatabaseError(f"not a database URL: {url!r}") from exc
        if parsed.drivername == "postgresql":  # SQLAlchemy's default is psycopg2; ours is psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed.render_as_string(hide_password=True)
        self.sqlite_path = _sqlite_file(parsed)
        sqlite = parsed.get_backend_name() == "sqlite"
        if read_only is None:
            read_only = self.sqlite_path is not None and not parsed.query.get("uri") and _unwritable(self.sqlite_path)
        self.read_only = bool(read_only)
        if self.read_only:
            if self.sqlite_path is None or parsed.query.get("uri"):
                raise DatabaseError(f"read-only opening is for a SQLite file, not {self.url}")
            if not self.sqlite_path.is_file():
                raise DatabaseError(f"no history database at {self.sqlite_path}")
            # An archive (read-only folder or medium): immutable, so SQLite writes no -wal/-shm
            # beside it, which it could not create there and without which a WAL file is unreadable.
            parsed = make_url(f"sqlite:///file:{self.sqlite_path.resolve()}?mode=ro&immutable=1&uri=true")
            log.info("history database %s opened read-only", self.url)
        kwargs: dict[str, Any] = {}
        if sqlite and self.sqlite_path is None:  # in-memory: one connection for all threads
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        try:
            if self.sqlite_path is not None and not parsed.query.get("uri"):
                # The file holds the PIN hashes: the folder made for it and a new file are the
                # owner's alone (an existing file keeps the mode its administrator gave it).
                make_private_folder(self.sqlite_path.parent)
                create_private_file(self.sqlite_path)
            self.engine: Engine = create_engine(parsed, **kwargs)
            if sqlite and not self.read_only:
                event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_ms))
            with self.engine.connect():
                pass
        except (SQLAlchemyError, ImportError, OSError) as exc:
            reason = error_reason(exc)
            raise DatabaseError(f"cannot open history database {self.url}: {reason}{self._recovery(reason)}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Set by a plant link (``inspector.links.mqtt``): the message of a newly stored inspection
        #: (given the open session, to look up names; it must not raise), written to the outbox
        #: table in the inspection's own transaction, so no crash between the two can lose a
        #: message and a spill-journal replay queues it like a direct write.
        self.outbox_message: Callable[[InspectionResult, Session], str] | None = None

    def close(self) -> None:
        self.engine.dispose()

    def backup(self, dest: str | os.PathLike[str]) -> None:
        """A consistent copy of this SQLite history in ``dest`` (a new file), with the chains'
        heads beside it (``<dest>.heads.json``), so that ``inspector audit verify`` passes on it
        as on the original. SQLite's online backup: it may run beside a running line, and it
        takes the writes still in the write-ahead log, which a plain copy of the file misses (a
        copy then reads as a shortened trail). The images are files; copy their folder apart.
        DatabaseError for another kind of database, an existing ``dest``, or a failed copy (no
        ``dest`` is left then)."""
        import sqlite3

        if self.sqlite_path is None:
            raise DatabaseError(f"{self.url} is not a SQLite file: back up a PostgreSQL history with pg_dump")
        dest = Path(dest)
        if dest.exists():
            raise DatabaseError(f"{dest} exists: a backup goes into a new file")
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True)
            try:
                target = sqlite3.connect(tmp)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
            os.replace(tmp, dest)
        except (sqlite3.Error, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise DatabaseError(f"could not back up {self.sqlite_path} into {dest}: {exc}") from exc
        copy = HistoryDB(f"sqlite:///{dest}")
        try:
            with copy.session() as s:
                write_mirror(s, mirror_path(dest))
        finally:
            copy.close()

    def stations(self) -> list[str]:
        """The stations with inspections here, by name (one, unless this is a plant database)."""
        with self.session() as s:
            return list(s.scalars(select(Inspection.station).distinct().order_by(Inspection.station)))

    def reconnect(self) -> None:
        """Drop pooled connections so the next use opens fresh ones (after a fault was fixed,
        e.g. a file made writable again). An in-memory database would be lost, so it is kept."""
        if self.sqlite_path is not None or self.engine.dialect.name != "sqlite":
            self.engine.dispose()

    def __repr__(self) -> str:
        return f"HistoryDB({self.url!r})"

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (creates all tables in an empty database). A
        read-only database is not migrated: one at the current schema is used as it is, any
        other is refused with the versions involved."""
        if self.read_only:
            self._check_read_only_schema()
            return
        self._migrate(command.upgrade, revision)

    def _check_read_only_schema(self) -> None:
        config = alembic_config()
        with self.engine.connect() as connection:
            self._refuse_a_newer_schema(config, connection)
            current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(config).get_current_head()
        if current != head:
            raise DatabaseError(
                f"history database {self.url} is read-only at schema revision {current}, this software needs "
                f"{head}: `inspector history export` reads it as it is; to use it on the line, copy it somewhere writable"
            )

    create_schema = upgrade

    def downgrade(self, revision: str) -> None:
        """Migrate the schema back to ``revision`` (``"base"`` drops every table)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, step: Any, revision: str) -> None:
        config = alembic_config()
        try:
            with self.engine.connect() as connection:
                sqlite = connection.dialect.name == "sqlite"
                if sqlite:
                    # A batch migration copies a table others refer to (0007: model_versions), which
                    # enforced foreign keys refuse; the pragma only takes outside a transaction.
                    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
                    connection.commit()
                try:
                    with connection.begin():
                        if connection.dialect.name == "postgresql":  # released at commit
                            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                        self._refuse_a_newer_schema(config, connection)
                        config.attributes["connection"] = connection
                        step(config, revision)
                        if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").first()):
                            raise DatabaseError(f"cannot migrate history database {self.url}: a row of {broken[0]} "
                                                f"refers to a missing row of {broken[2]}")
                finally:
                    if sqlite:
                        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
                        connection.commit()
        except SQLAlchemyError as exc:
            reason = error_reason(exc)
            raise DatabaseError(f"cannot migrate history database {self.url}: {reason}{self._recovery(reason)}") from exc

    def _refuse_a_newer_schema(self, config: Config, connection: Any) -> None:
        """A database a newer inspector migrated (the software was rolled back since) would make
        alembic fail with a long traceback: say which versions are involved, in one line."""
        current = MigrationContext.configure(connection).get_current_revision()
        scripts = ScriptDirectory.from_config(config)
        if current is None or current in {s.revision for s in scripts.walk_revisions()}:
            return
        raise DatabaseError(
            f"history database {self.url} has schema revision {current}, newer than this software knows "
            f"(inspector {__version__} reads up to {scripts.get_current_head()}): it was written by a newer "
            "inspector; install that version again, or export the history with `inspector history export`, "
            "which reads it without migrating"
        )

    # -- sessions -----------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error.

        Objects stay readable after the block (attributes are not expired on commit). A database
        that cannot be used right now (locked, read-only, full, unreachable) raises
        :class:`DatabaseError`; other SQLAlchemy errors (e.g. ``IntegrityError``) pass through.
        """
        try:
            with self._sessions.begin() as session:
                yield session
            if session.info.pop("audited", False):
                self._mirror_heads()
        except OperationalError as exc:
            reason = error_reason(exc)
            raise DatabaseError(f"history database {self.url} failed: {reason}{self._recovery(reason)}") from exc
        except SQLAlchemyDatabaseError as exc:
            reason = error_reason(exc)
            if not _damaged(reason):
                raise  # IntegrityError and the like: the caller's to handle
            raise DatabaseError(f"history database {self.url} failed: {reason}{self._recovery(reason)}") from exc

    def _mirror_heads(self) -> None:
        """After an audited commit, copy the chains' heads beside a SQLite file (see :mod:`.seals`)."""
        if self.sqlite_path is None or self.read_only:
            return
        try:
            with self.session() as s:
                write_mirror(s, mirror_path(self.sqlite_path))
        except DatabaseError as exc:  # what was audited is committed: the copy waits for the next event
            log.warning("could not read the audit heads to keep them beside the database: %s", exc)

    def _recovery(self, reason: str) -> str:
        """For a damaged SQLite file: what to do, and that nothing was written into it; for one
        another program holds locked (the bare 'database is locked' said neither who nor what to
        do): which and what to do."""
        if "database is locked" in reason and self.sqlite_path is not None:
            return (f" -- another program holds {self.sqlite_path} locked (an open sqlite3 shell or DB browser with "
                    "changes not written, a backup copying it): close it and run the command again")
        if not _damaged(reason):
            return ""
        where = self.sqlite_path if self.sqlite_path is not None else self.url
        return (f" -- the file {where} is damaged (a disk fault or a copy cut short); nothing was written to it. "
                f"Recover what is readable into a new file with `sqlite3 {where} .recover | sqlite3 recovered.db` "
                "and point --db at that, or restore the last backup")

    # -- products, models, calibrations --------------------------------------------------------

    def add_product(
        self, name: str, description: str = "", camera_settings: dict[str, Any] | None = None
    ) -> int:
        validate_name(name, "product")  # the name also names the product's teach folder
        product = Product(name=name, description=description, camera_settings=camera_settings or {})
        try:
            with self.session() as s:
                s.add(product)
                s.flush()
        except IntegrityError as exc:
            raise DatabaseError(f"a product named {name!r} already exists") from exc
        return product.id

    def product_by_name(self, name: str) -> Product | None:
        with self.session() as s:
            return s.scalars(select(Product).where(Product.name == name)).one_or_none()

    def add_model_version(
        self,
        product_id: int,
        path: str | os.PathLike[str],
        *,
        sha256: str | None = None,
        metrics: dict[str, Any] | None = None,
        report_path: str | None = None,
        note: str = "",
    ) -> int:
        """Register a model file as a ``candidate`` of the product; the hash is read from the file
        unless given. Raises :class:`ModelFileError` for a missing file."""
        if sha256 is None:
            sha256 = file_sha256(path)
        with self.session() as s:
            self._require(s, Product, product_id)
            version = ModelVersion(
                product_id=product_id,
                sha256=sha256,
                path=str(path),
                metrics=metrics or {},
                report_path=report_path,
                note=note,
            )
            s.add(version)
            s.flush()
            return version.id

    def model_version(self, model_version_id: int) -> ModelVersion | None:
        with self.session() as s:
            return s.get(ModelVersion, model_version_id)

    def set_active_model(
        self,
        product_id: int,
        model_version_id: int,
        *,
        user: str = "system",
        role: str = "system",
        action: str = "set_active_model",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Make the version the product's active model, record the change as an
        :class:`Activation` (what was active before: the version a rollback returns to) and audit
        it once, as ``action`` (``details`` join the event's ``after``). The version active
        already is no change: audited, but no activation recorded, so a rollback still returns
        to the version before it."""
        with self.session() as s:
            product = self._require(s, Product, product_id)
            version = self._require(s, ModelVersion, model_version_id)
            if version.product_id != product_id:
                raise DatabaseError(
                    f"model version {model_version_id} belongs to product {version.product_id}, "
                    f"not {product_id}"
                )
            before = product.active_model_version_id
            product.active_model_version_id = model_version_id
            if before != model_version_id:
                s.add(Activation(product_id=product_id, model_version_id=model_version_id,
                                 previous_version_id=before, user=user, role=role))
            self._audit(
                s,
                user,
                role,
                action,
                f"product:{product_id}",
                {"active_model_version_id": before},
                {"active_model_version_id": model_version_id, **(details or {})},
            )

    def last_activation(self, product_id: int) -> Activation | None:
        """The product's latest change of active model (None if it never had one). A row of a
        version activated while already active (an older release wrote them, and the upgrade
        made them from its audit trail) changed nothing and is passed over."""
        with self.session() as s:
            change = or_(Activation.previous_version_id.is_(None), Activation.previous_version_id != Activation.model_version_id)
            stmt = (select(Activation).where(Activation.product_id == product_id, change)
                    .order_by(Activation.id.desc()).limit(1))
            return s.scalars(stmt).one_or_none()

    def model_versions_of_file(self, path: str | os.PathLike[str], sha256: str | None = None) -> list[ModelVersion]:
        """Versions registered with this file's path (or, given, its SHA-256), oldest first."""
        where = ModelVersion.path == str(path)
        if sha256 is not None:
            where = where | (ModelVersion.sha256 == sha256)
        with self.session() as s:
            return list(s.scalars(select(ModelVersion).where(where).order_by(ModelVersion.id)))

    def update_model_file(
        self, model_version_id: int, *, sha256: str, report_path: str | None, metrics: dict[str, Any]
    ) -> str:
        """A candidate's file rewritten in place (``inspector calibrate --db``): its new hash,
        report and metrics (merged); returns the hash it had. Not audited here: the calibration
        stored with it is the event."""
        with self.session() as s:
            version = self._require(s, ModelVersion, model_version_id)
            before = version.sha256
            version.sha256, version.report_path = sha256, report_path
            version.metrics = {**(version.metrics or {}), **metrics}
            return before

    def add_calibration(
        self,
        model_version_id: int,
        *,
        image_threshold: float,
        target_frr: float,
        expected_frr: float,
        expected_frr_ci: tuple[float, float] | None = None,
        pixel_threshold: float | None = None,
        min_defect_area_px: int | None = None,
        recheck_threshold: float | None = None,
        target_recheck_rate: float | None = None,
        expected_recheck_rate: float | None = None,
        mm_per_px: float | None = None,
        report: dict[str, Any] | None = None,
        created_by: str,
        role: str = "system",
        action: str = "calibrate",
        before: Any = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Store thresholds for a model version (FRRs are fractions); audited once, as ``action``
        (``before`` and ``details``, joining the thresholds in ``after``, say what else changed).
        ``recheck_threshold`` is the recheck band's lower threshold (None: no band), with the share
        of good parts it was set for and the share it should send to RECHECK; ``mm_per_px`` the
        recipe's pixel size (None: areas in pixels). These join ``after`` where set."""
        low, high = expected_frr_ci if expected_frr_ci is not None else (None, None)
        with self.session() as s:
            self._require(s, ModelVersion, model_version_id)
            calibration = Calibration(
                model_version_id=model_version_id,
                image_threshold=image_threshold,
                pixel_threshold=pixel_threshold,
                min_defect_area_px=min_defect_area_px,
                recheck_threshold=recheck_threshold,
                target_recheck_rate=target_recheck_rate,
                expected_recheck_rate=expected_recheck_rate,
                mm_per_px=mm_per_px,
                target_frr=target_frr,
                expected_frr=expected_frr,
                expected_frr_ci_low=low,
                expected_frr_ci_high=high,
                report=report or {},
                created_by=created_by,
            )
            s.add(calibration)
            s.flush()
            after = {
                "image_threshold": image_threshold,
                "pixel_threshold": pixel_threshold,
                "min_defect_area_px": min_defect_area_px,
                "target_frr": target_frr,
            }
            if recheck_threshold is not None:
                after.update(recheck_threshold=recheck_threshold, target_recheck_rate=target_recheck_rate,
                             expected_recheck_rate=expected_recheck_rate)
            if mm_per_px is not None:
                after["mm_per_px"] = mm_per_px
            self._audit(
                s, created_by, role, action, f"model_version:{model_version_id}", before, {**after, **(details or {})}
            )
            return calibration.id

    def latest_calibration(self, model_version_id: int) -> Calibration | None:
        with self.session() as s:
            stmt = (
                select(Calibration)
                .where(Calibration.model_version_id == model_version_id)
                .order_by(Calibration.created.desc(), Calibration.id.desc())
                .limit(1)
            )
            return s.scalars(stmt).one_or_none()

    # -- inspections ----------------------------------------------------------------------------

    def stored_uids(self, uids: Sequence[str]) -> set[str]:
        """Those of ``uids`` this station has recorded already (a journal replayed after a crash
        may hold verdicts that reached the database before it)."""
        with self.session() as s:
            mine = Inspection.station == self.station
            return set(s.scalars(select(Inspection.uid).where(mine, Inspection.uid.in_(list(uids)))))

    def write_inspections(self, records: Sequence[InspectionResult]) -> list[InspectionResult]:
        """Insert in one transaction those of ``records`` not stored yet (matched by :attr:`station`
        and ``uid``).

        Returns ``records`` with their row ids (``inspection_id``), so writing the same records
        again (a replay after a fault) is harmless. With :attr:`outbox_message` set, each new row's
        message goes to the outbox in the same transaction. SQLAlchemy errors propagate: the
        caller decides whether to retry.
        """
        with self.session() as s:
            lock_batches(s)
            uids = {r.uid for r in records}
            mine = Inspection.station == self.station
            known = select(Inspection.uid, Inspection.id).where(mine, Inspection.uid.in_(uids))
            ids = dict(s.execute(known).all())
            new = {r.uid: {**row_values(r), "station": self.station} for r in records if r.uid not in ids}
            if new:
                # Ids are read back by uid rather than with RETURNING, which needs SQLite 3.35.
                s.execute(insert(Inspection), list(new.values()))
                message = self.outbox_message
                if message is not None:
                    queued = {r.uid: r for r in records if r.uid in new}  # in order, once each
                    now = utc_now()
                    rows = [{"uid": uid, "created": now, "payload": message(r, s)} for uid, r in queued.items()]
                    s.execute(insert(OutboxMessage), rows)
                inserted = dict(s.execute(select(Inspection.uid, Inspection.id).where(mine, Inspection.uid.in_(new))).all())
                ids.update(inserted)
                # One transaction, one sealed batch, made from the values just inserted.
                seal_inspections(s, sorted(({**new[uid], "id": id_} for uid, id_ in inserted.items()),
                                           key=lambda row: row["id"]))
        return [replace(r, inspection_id=ids[r.uid]) for r in records]

    def query_inspections(
        self,
        filters: InspectionFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        before: tuple[Any, int] | None = None,
    ) -> list[InspectionRow]:
        """See :func:`.queries.query_inspections` (newest first; ``before`` for keyset paging)."""
        with self.session() as s:
            filters = filters or InspectionFilter()
            return queries.query_inspections(s, filters, limit, offset, before)

    def count_inspections(self, filters: InspectionFilter | None = None) -> int:
        with self.session() as s:
            return queries.count_inspections(s, filters or InspectionFilter())

    def decision_counts(self, filters: InspectionFilter | None = None) -> dict[str, int]:
        """See :func:`.queries.decision_counts`: matching inspections per decision (all of ``DECISIONS``)."""
        with self.session() as s:
            return queries.decision_counts(s, filters or InspectionFilter())

    def decided_rule(self, row: InspectionRow) -> queries.DecidedRule:
        """See :func:`.queries.decided_rule`: the rule a row was decided with, and where from."""
        with self.session() as s:
            return queries.decided_rule(s, row)

    def products(self) -> list[tuple[str, int]]:
        """(name, id) of every product, by name."""
        with self.session() as s:
            return queries.products(s)

    def yield_over_time(
        self, filters: InspectionFilter | None = None, bucket: timedelta = timedelta(hours=1)
    ) -> list[YieldBucket]:
        """See :func:`.queries.yield_over_time`."""
        with self.session() as s:
            return queries.yield_over_time(s, filters or InspectionFilter(), bucket)

    def export_csv(
        self,
        path: str | os.PathLike[str],
        filters: InspectionFilter | None = None,
        *,
        audit: Callable[[int], tuple[str, str, str, str, Any]] | None = None,
    ) -> int:
        """See :func:`.queries.export_csv`; returns the number of rows written.

        With ``audit``, ``audit(rows)`` gives the export's audit event (user, role, action,
        target, after), written in the transaction that read the rows; the CSV appears at
        ``path`` only once that transaction has committed. An exported file is a quality record:
        an export that cannot be audited (the database locked or full) leaves no file behind,
        neither a complete one nor the temporary it was written to."""
        filters = filters or InspectionFilter()
        tmp: Path | None = None
        try:
            with self.session() as s:
                tmp, rows = queries.csv_to_temporary(s, path, filters)
                if audit is not None:
                    user, role, action, target, after = audit(rows)
                    self._audit(s, user, role, action, target, None, after)
            os.replace(tmp, path)
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        return rows

    def label_inspection(self, inspection_id: int, label: str, user: str) -> None:
        """Set the review label (one of ``LABELS``) with who and when; audited under the user's
        role (``"unknown"`` for a name not in the users table)."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        with self.session() as s:
            inspection = self._require(s, Inspection, inspection_id)
            before = {"label": inspection.label, "labelled_by": inspection.labelled_by}
            inspection.label = label
            inspection.labelled_by = user
            inspection.labelled_at = utc_now()
            role = s.scalar(select(User.role).where(User.name == user)) or "unknown"
            after = {"label": label, "labelled_by": user}
            self._audit(s, user, role, "label", f"inspection:{inspection_id}", before, after)

    # -- audit and users -------------------------------------------------------------------------

    def record_audit(
        self, user: str, role: str, action: str, target: str, before: Any = None, after: Any = None
    ) -> int:
        """Append an audit event; ``before``/``after`` are any JSON-serialisable values."""
        with self.session() as s:
            return self._audit(s, user, role, action, target, before, after)

    def audit_events(self, limit: int = 100, offset: int = 0) -> list[AuditEvent]:
        """Audit events, newest first."""
        with self.session() as s:
            stmt = select(AuditEvent).order_by(AuditEvent.time.desc(), AuditEvent.id.desc())
            return list(s.scalars(stmt.limit(limit).offset(offset)))

    def verify_audit_chain(self) -> ChainCheck:
        """Check the audit trail's hash chain from its first row, and that it ends at its head;
        the result names the first row that was edited, or that follows a deleted or inserted
        one, or says that rows are missing from the end (see :mod:`.audit_chain`)."""
        with self.session() as s:
            rows = s.execute(select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000))
            return check_head(check_rows(row for (row,) in rows), s.get(ChainHead, AUDIT))

    def verify_history(self) -> tuple[ChainCheck, list[str], InspectionCheck]:
        """Everything ``inspector audit verify`` proves, in one read transaction: the audit chain
        (:meth:`verify_audit_chain`); the problems found by the heads kept beside the database and
        each user's row against the event that set it; the sealed verdicts
        (:func:`.seals.check_inspections`)."""
        with self.session() as s:
            rows = s.execute(select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000))
            chain = check_head(check_rows(row for (row,) in rows), s.get(ChainHead, AUDIT))
            kept = {} if self.sqlite_path is None else read_mirror(mirror_path(self.sqlite_path))
            return chain, check_mirror(s, kept) + check_users(s), check_inspections(s)

    def add_user(self, name: str, role: str, pin: str, *, by: str = "system") -> int:
        """Create a user with a salted hash of ``pin``; audited. DatabaseError for a name or PIN
        the policy refuses (:func:`.pins.validate_name`, :func:`.pins.validate_pin`)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        validate_name(name)
        validate_pin(pin)
        user = User(name=name, role=role, pin_hash=hash_pin(pin))
        try:
            with self.session() as s:
                _refuse_look_alike(s, name)
                s.add(user)
                s.flush()
                by_role = s.scalar(select(User.role).where(User.name == by)) or "system"
                seal_user(s, user, self._audit(s, by, by_role, "add_user", f"user:{name}", None, {"role": role}))
        except IntegrityError as exc:
            raise DatabaseError(f"a user named {name!r} already exists") from exc
        return user.id

    def has_technician(self) -> bool:
        """Whether any technician account exists (none: a new database, see :meth:`add_first_technician`).
        One the audit trail added counts even if its row now says otherwise: demoting every
        technician by hand must not reopen the first technician's door."""
        with self.session() as s:
            technicians = s.scalar(select(func.count()).select_from(User).where(User.role == "technician"))
            return technicians > 0 or _trail_added_a_technician(s)

    def add_first_technician(self, name: str, pin: str, *, via: str = "gui") -> int:
        """Create the first technician of a new database, by themselves (audited as
        ``add_first_technician``): whoever installs the line must be able to sign in without a
        terminal. Refused once any technician exists -- after that, accounts are a technician's
        to create (``inspector users add``). Checked after the insert, in the same transaction, so
        two first starts at once cannot both succeed."""
        validate_pin(pin)
        validate_name(name)
        user = User(name=name, role="technician", pin_hash=hash_pin(pin))
        try:
            with self.session() as s:
                _refuse_look_alike(s, name)
                s.add(user)
                s.flush()
                technicians = s.scalar(select(func.count()).select_from(User).where(User.role == "technician"))
                if technicians > 1 or _trail_added_a_technician(s):
                    raise DatabaseError("a technician exists already; ask them to add your account")
                seal_user(s, user, self._audit(s, name, "technician", "add_first_technician", f"user:{name}", None,
                                               {"role": "technician", "via": via}))
        except IntegrityError as exc:
            raise DatabaseError(f"a user named {name!r} already exists") from exc
        return user.id

    def set_pin(self, name: str, pin: str, *, by: str = "system") -> None:
        """Replace ``name``'s PIN (a forgotten or shared one); audited, the PIN itself never is.
        A new PIN also lifts a lock: whoever set it has vouched for the person."""
        validate_pin(pin)
        with self.session() as s:
            user = s.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None:
                raise DatabaseError(f"no user named {name!r}")
            if problem := user_seal_problem(s, user):  # a new PIN would vouch for a role set by hand
                raise DatabaseError(f"{name!r} cannot get a new PIN: {problem}; remove the account and add it again")
            user.pin_hash = hash_pin(pin)
            user.failed_pins, user.locked_until = 0, None
            by_role = s.scalar(select(User.role).where(User.name == by)) or "system"
            # The role goes into the event: the row is bound to it and must state it.
            seal_user(s, user, self._audit(s, by, by_role, "set_pin", f"user:{name}", None, {"role": user.role}))

    def remove_user(self, name: str, *, by: str = "system") -> None:
        """Remove an account (someone left); audited. Their past decisions and audit entries keep
        their name. The last technician cannot be removed: nobody could activate a model."""
        with self.session() as s:
            user = s.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None:
                raise DatabaseError(f"no user named {name!r}")
            if user.role == "technician":
                technicians = s.scalar(select(func.count()).select_from(User).where(User.role == "technician"))
                if technicians <= 1:
                    raise DatabaseError(f"{name!r} is the last technician; add another before removing them")
            by_role = s.scalar(select(User.role).where(User.name == by)) or "system"
            s.delete(user)
            self._audit(s, by, by_role, "remove_user", f"user:{name}", {"role": user.role}, None)

    def verify_pin(self, name: str, pin: str) -> str | None:
        """The user's role if ``pin`` is theirs, else ``None`` (also for an unknown name).

        :data:`.pins.LOCK_AFTER_FAILURES` wrong PINs in a row lock the account for a delay that
        doubles with each further wrong one (:func:`.pins.lock_delay`), audited as ``pin_locked``;
        while locked, :class:`AccountLocked` is raised without looking at the PIN, and the first
        right PIN after the lock ends starts the count again. An unknown name costs the same
        hash work as a wrong PIN, so the time taken does not tell which names exist. A row whose
        role or PIN hash does not match the audit event that set it (edited by hand) is refused
        with :class:`AccountTampered`, even with the right PIN.

        Each attempt is counted as wrong *before* its PIN is compared, in one transaction with
        the lock check (see :meth:`_take_attempt`), so attempts made at once -- threads or
        processes -- are checked at most :data:`.pins.LOCK_AFTER_FAILURES` times before the lock.
        """
        if self.read_only:  # an archive takes no writes: its PINs are checked, its attempts not counted
            return self._verify_pin_read_only(name, pin)
        attempt = self._take_attempt(name)
        if attempt is None:
            check_pin(pin, dummy_pin_hash())
            return None
        user, delay = attempt
        if not check_pin(pin, user.pin_hash):
            if delay is not None:
                after = {"failed_pins": user.failed_pins, "locked_for_s": delay.total_seconds(),
                         "locked_until": user.locked_until.isoformat()}
                self.record_audit(user.name, user.role, "pin_locked", f"user:{user.name}", None, after)
            return None
        with self.session() as s:  # the right PIN: the attempt counted as wrong is taken back
            s.execute(update(User).where(User.id == user.id).values(failed_pins=0, locked_until=None))
            problem = user_seal_problem(s, user)
        if problem:
            raise AccountTampered(name, problem)
        return user.role

    def _verify_pin_read_only(self, name: str, pin: str) -> str | None:
        with self.session() as s:
            user = s.scalars(select(User).where(User.name == name)).one_or_none()
            problem = "" if user is None else user_seal_problem(s, user)
        if user is None:
            check_pin(pin, dummy_pin_hash())
            return None
        if user.locked_until is not None and self.clock() < user.locked_until:
            raise AccountLocked(name, user.locked_until)
        if not check_pin(pin, user.pin_hash):
            return None
        if problem:
            raise AccountTampered(name, problem)
        return user.role

    def _take_attempt(self, name: str) -> tuple[User, timedelta | None] | None:
        """Count one attempt at ``name``'s PIN as wrong and lock the account if that makes enough;
        the user row as it is now and the lock just set (None: none), or None for an unknown name.
        AccountLocked while a lock runs (that attempt is not counted).

        The increment is the transaction's first statement: it takes SQLite's write lock (a row
        lock on PostgreSQL) before anything is read, so no other thread or process can read the
        count between it and the commit, and the lock check sees every earlier attempt."""
        with self.session() as s:
            s.execute(update(User).where(User.name == name).values(failed_pins=User.failed_pins + 1))
            user = s.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None:
                return None
            if user.locked_until is not None and self.clock() < user.locked_until:
                raise AccountLocked(name, user.locked_until)  # rolls the increment back
            delay = lock_delay(user.failed_pins)
            if delay is not None:
                user.locked_until = self.clock() + delay
            return user, delay

    def list_users(self) -> list[tuple[str, str]]:
        """``(name, role)`` of every user, by name."""
        with self.session() as s:
            rows = s.execute(select(User.name, User.role).order_by(User.name))
            return [(name, role) for name, role in rows]

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _audit(
        s: Session, user: str, role: str, action: str, target: str, before: Any, after: Any
    ) -> int:
        """Append an audit row to the hash chain, in the caller's transaction.

        The row is inserted before the previous hash is read: the insert takes the database's
        write lock (SQLite has one writer; PostgreSQL is told to lock the table), so no other
        writer can append between the read and the commit, and two writers cannot both chain
        to the same row.
        """
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE MODE"))
        event_ = AuditEvent(
            time=utc_now(), user=user, role=role, action=action, target=target, before=before, after=after
        )
        s.add(event_)
        s.flush()
        previous = select(AuditEvent.hash).where(AuditEvent.id < event_.id).order_by(AuditEvent.id.desc()).limit(1)
        event_.prev_hash = s.scalar(previous) or GENESIS
        event_.hash = row_hash(event_.prev_hash, event_.time, user, role, action, target, before, after)
        move_head(s, AUDIT, 1, event_.hash)
        s.info["audited"] = True  # the heads' copy beside the file follows once this commits
        s.flush()
        return event_.id

    @staticmethod
    def _require(s: Session, model: type[Any], row_id: int) -> Any:
        row = s.get(model, row_id)
        if row is None:
            raise DatabaseError(f"no {model.__tablename__} row with id {row_id}")
        return row




def _refuse_look_alike(s: Session, name: str) -> None:
    """DatabaseError if an account's name looks like ``name`` (``OP1`` beside ``op1``): the audit
    trail and the sign-in list would show two people as one."""
    twin = look_alike(name, list(s.scalars(select(User.name))))
    if twin is not None:
        raise DatabaseError(f"a user named {twin!r} already exists and {name!r} looks the same; choose another name")


def _trail_added_a_technician(s: Session) -> bool:
    """Whether the audit trail has ever added a technician (or sealed one at revision 0009)."""
    actions = ("add_first_technician", "add_user", "user_sealed")
    events = s.scalars(select(AuditEvent.after).where(AuditEvent.action.in_(actions), AuditEvent.target.like("user:%")))
    return any(isinstance(after, dict) and after.get("role") == "technician" for after in events)


def _unwritable(path: Path) -> bool:
    """An existing SQLite file that this process cannot write, or whose folder it cannot write
    (SQLite needs the folder for its journal): a read-only archive."""
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _sqlite_file(url: Any) -> Path | None:
    """The file of a SQLite URL (``file:`` URIs included), ``None`` for in-memory or other DBs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if url.query.get("uri"):
        database = database.removeprefix("file:").split("?")[0]
        if url.query.get("mode") == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return Path(database)


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
            except Exception as exc:  # a read-only file cannot switch modes but is still readable
                log.warning("could not switch SQLite to WAL mode: %s", exc)
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    return on_connect


def _damaged(reason: str) -> bool:
    """SQLite's words for a file whose pages are not what they should be."""
    return "malformed" in reason or "file is not a database" in reason


def error_reason(exc: BaseException) -> str:
    """The driver's own message (e.g. 'database is locked'), found through wrapping exceptions."""
    while getattr(exc, "orig", None) is None and exc.__cause__ is not None:
        exc = exc.__cause__
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
