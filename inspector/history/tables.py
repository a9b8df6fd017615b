"""Tables of the history database (SQLAlchemy 2.0 typed models).

Every time is stored in UTC and comes back timezone-aware (:class:`UTCDateTime`). Enumerations are
short strings guarded by CHECK constraints rather than native ENUM types, so the same schema and
migrations run on SQLite and PostgreSQL without dialect branches.

Changing a table means adding an Alembic revision under ``migrations/versions/``; the test suite
fails while the models and the migrated schema differ.
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    case,
    exists,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from inspector.inspection import DECISIONS, as_utc
from inspector.roles import ROLES

LABELS = ("none", "false_reject", "confirmed_defect")
#: A version's status, derived (never stored): active while its product names it, retired once it
#: has been active, else candidate.
MODEL_STATUSES = ("candidate", "active", "retired")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def default_station() -> str:
    """A station's name when none is given: the host name (as the MQTT and OPC UA links use)."""
    return socket.gethostname()[:64]


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC.

    SQLite keeps no zone, so values are converted to UTC on the way in and marked UTC on the way
    out; PostgreSQL stores ``timestamptz`` and its values are converted to UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    # Named constraints keep Alembic batch mode (SQLite) and later migrations deterministic.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Product(Base):
    """A product (recipe): what the line inspects and with which camera settings.

    ``active_model_version_id`` is the one truth for which model the line runs; every change of
    it is a row of :class:`Activation`."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    camera_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # use_alter: products and model_versions refer to each other.
    active_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True)
    )
    created: Mapped[datetime] = mapped_column(default=utc_now)


class ModelVersion(Base):
    """One trained model file registered for a product. Its ``status`` (see
    :data:`MODEL_STATUSES`) is worked out from the product and the activations, not stored."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # hex digest of the model file
    path: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utc_now)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_path: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")


class Activation(Base):
    """One change of a product's active model: what became active, what was active before (the
    version a rollback returns to) and who did it. Rows are only ever added."""

    __tablename__ = "activations"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    time: Mapped[datetime] = mapped_column(default=utc_now)
    user: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))


ModelVersion.status = column_property(
    case(
        (exists().where(Product.active_model_version_id == ModelVersion.id), "active"),
        (exists().where(Activation.model_version_id == ModelVersion.id), "retired"),
        else_="candidate",
    )
)


class Calibration(Base):
    """Thresholds chosen for a model version and the false-reject rate they should give."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    image_threshold: Mapped[float] = mapped_column(Float)
    pixel_threshold: Mapped[float | None] = mapped_column(Float)
    min_defect_area_px: Mapped[int | None] = mapped_column(Integer)
    # The recheck band's lower threshold (NULL: no band) with the share of good parts it was set
    # for and the share it should send to RECHECK (fractions); the recipe's pixel size in mm.
    recheck_threshold: Mapped[float | None] = mapped_column(Float)
    target_recheck_rate: Mapped[float | None] = mapped_column(Float)
    expected_recheck_rate: Mapped[float | None] = mapped_column(Float)
    mm_per_px: Mapped[float | None] = mapped_column(Float)
    target_frr: Mapped[float] = mapped_column(Float)  # fraction, not percent
    expected_frr: Mapped[float] = mapped_column(Float)
    expected_frr_ci_low: Mapped[float | None] = mapped_column(Float)
    expected_frr_ci_high: Mapped[float | None] = mapped_column(Float)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str] = mapped_column(String(100))


class Inspection(Base):
    """One inspected frame and its verdict.

    ``uid`` is chosen by the producer, so a record replayed from the spill journal after a database
    fault is recognised and stored once. ``station`` names the station that recorded it: one plant
    database holds the rows of many stations (:mod:`inspector.links.plant`), and a row is the
    same inspection wherever it is stored when its station and uid are.
    """

    __tablename__ = "inspections"
    __table_args__ = (
        CheckConstraint(_one_of("decision", DECISIONS), name="decision"),
        CheckConstraint(_one_of("label", LABELS), name="label"),
        # Composite indexes lead with the filtered column and end with time, so a filter plus the
        # newest-first ordering (and time-range counts) are answered from one index.
        Index("ix_inspections_decision_time", "decision", "time"),
        Index("ix_inspections_model_version_time", "model_version_id", "time"),
        Index("ix_inspections_product_time", "product_id", "time"),
        Index("ix_inspections_label_time", "label", "time"),
        Index("ix_inspections_station_time", "station", "time"),
        # What a replay (spill journal, plant forwarder) is recognised by: ON CONFLICT needs it.
        UniqueConstraint("station", "uid", name="uq_inspections_station_uid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # A Python-side default only: the schema has none, as the name is the machine's, not the schema's.
    station: Mapped[str] = mapped_column(String(64), default=default_station)
    uid: Mapped[str] = mapped_column(String(32))  # uuid4 hex
    time: Mapped[datetime] = mapped_column(index=True)
    camera_id: Mapped[str] = mapped_column(Text)  # the camera's URI (revision 0011: any length)
    frame_id: Mapped[int] = mapped_column(BigInteger)
    part_id: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float, index=True)
    decision: Mapped[str] = mapped_column(String(8))  # one of DECISIONS (NO_PART has 7 letters)
    threshold: Mapped[float] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    latency_total_ms: Mapped[float | None] = mapped_column(Float)  # acquisition to decision
    latency_model_ms: Mapped[float | None] = mapped_column(Float)  # model forward pass only
    image_path: Mapped[str | None] = mapped_column(Text)
    heatmap_path: Mapped[str | None] = mapped_column(Text)
    # The map values the stored 16-bit grey heatmap's 0 and 65535 stand for. NULL for a heatmap
    # stored before revision 0003, which is a JET colour picture over 0 .. 2 x threshold.
    heatmap_low: Mapped[float | None] = mapped_column(Float)
    heatmap_high: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(20), default="none")
    labelled_by: Mapped[str | None] = mapped_column(String(100))
    labelled_at: Mapped[datetime | None] = mapped_column()
    # Why the engine could not score the frame (it then FAILs fail-safe with score 0.0); NULL for
    # a real verdict, so a reviewer can tell an engine error from a rejected part.
    error: Mapped[str | None] = mapped_column(Text)
    # The rest of the rule the verdict used (``threshold`` is its image threshold), so review
    # outlines the defect as the operator saw it. ``rule_recorded`` is False for rows written
    # before revision 0008 and for records that carried no rule: their pixel rule is unknown,
    # which is not the same as "none" (both columns NULL with ``rule_recorded`` True).
    pixel_threshold: Mapped[float | None] = mapped_column(Float)
    min_defect_area_px: Mapped[int | None] = mapped_column(Integer)
    rule_recorded: Mapped[bool] = mapped_column(default=False)
    # Revision 0010, NULL in older rows: the rest of the rule (the recheck band's lower threshold,
    # the pixel size in mm), the largest defect region measured by the pixel rule (pixels; mm²
    # with ``mm_per_px``), and how well the framing found the part (NULL without alignment).
    recheck_threshold: Mapped[float | None] = mapped_column(Float)
    mm_per_px: Mapped[float | None] = mapped_column(Float)
    defect_area_px: Mapped[int | None] = mapped_column(Integer)
    match_quality: Mapped[float | None] = mapped_column(Float)


class AuditEvent(Base):
    """Who changed what, with the state before and after (JSON, ``None`` where not applicable).

    The rows form a hash chain (:mod:`.audit_chain`): ``prev_hash`` is the hash of the row before
    (by id), ``hash`` this row's own. Both are NULL only in a row written outside the inspector,
    which :meth:`HistoryDB.verify_audit_chain` then names.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    user: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), index=True)  # a part's review trail (revision 0011)
    before: Mapped[Any | None] = mapped_column(JSON)
    after: Mapped[Any | None] = mapped_column(JSON)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class User(Base):
    """A person who may log in; ``pin_hash`` is a salted scrypt hash (see :mod:`.pins`).

    ``failed_pins`` counts wrong PINs since the last right one; from
    :data:`.pins.LOCK_AFTER_FAILURES` on, the account is locked until ``locked_until``.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    pin_hash: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(default=utc_now)
    failed_pins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column()
    # The audit event that last set name, role and PIN, and a digest binding them to it (see
    # :mod:`.seals`); not a foreign key, so a deleted event is reported rather than refused.
    audit_id: Mapped[int | None] = mapped_column(Integer)
    digest: Mapped[str | None] = mapped_column(String(64))


class ChainHead(Base):
    """The length and last hash of a chain (``audit``: audit rows; ``inspections``: sealed
    verdicts, with the last sealed id), moved in the transaction that extends it: a trail cut
    short or emptied no longer fits its head (:mod:`.seals`)."""

    __tablename__ = "chain_heads"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    last_id: Mapped[int | None] = mapped_column(Integer)


class InspectionBatch(Base):
    """The seal of the inspections one transaction recorded (ids ``first_id`` .. ``last_id``):
    ``seal`` lists ``<id>:<short hash>`` of each row's decisive fields, ``digest`` is SHA-256 over
    the previous batch's digest and the seal (:mod:`.seals`)."""

    __tablename__ = "inspection_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_id: Mapped[int] = mapped_column(Integer)
    last_id: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    prev_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    seal: Mapped[str] = mapped_column(Text)


class OutboxMessage(Base):
    """A result message waiting for a plant link (the MES over MQTT): written in the same
    transaction as its inspection, deleted once the broker has acknowledged it.

    ``id`` never repeats (AUTOINCREMENT on SQLite too), so id order is the order the results were
    recorded in even after the table was emptied; ``uid`` is the inspection's, once per message.
    """

    __tablename__ = "outbox"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    created: Mapped[datetime] = mapped_column(default=utc_now)
    payload: Mapped[str] = mapped_column(Text)


class ForwardMark(Base):
    """How far a forwarder got: the highest local ``inspections.id`` that ``target`` (a plant
    database's URL, without password) has committed. Rows above it go next, in id order."""

    __tablename__ = "forward_marks"

    target: Mapped[str] = mapped_column(String(500), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)


#: What a kept image is: the frame as recorded, or the anomaly map (a 16-bit PNG of its values).
IMAGE_KINDS = ("image", "heatmap")


class PlantImage(Base):
    """A station's kept image, copied to the plant database by the forwarder
    (:mod:`inspector.links.plant`): the file's bytes as the station wrote them (a PNG), named by
    the station and the inspection's ``uid``, so a row and its images meet in any database.

    The bytes are in ``data`` (bytea on PostgreSQL, see docs/decisions.md) or, for a plant that
    keeps its images in an object store, at ``location`` (``s3://BUCKET/KEY``) with ``data`` NULL.
    ``received`` is the plant's clock: the retention setting removes images by it. A station's own
    history has the table too (one schema) and leaves it empty.
    """

    __tablename__ = "plant_images"
    __table_args__ = (
        UniqueConstraint("station", "uid", "kind"),
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in IMAGE_KINDS)})", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    station: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    location: Mapped[str | None] = mapped_column(Text)
    received: Mapped[datetime] = mapped_column(default=utc_now, index=True)


class Setting(Base):
    """A setting of this database that every program using it honours (the plant's image
    retention, ``image_retention_days``), with who changed it last."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    changed: Mapped[datetime] = mapped_column(default=utc_now)
    changed_by: Mapped[str] = mapped_column(String(100))


class StationAlarm(Base):
    """An alarm a station raised (``kind`` as the line names it: ``plant_db_down``, ``no_part_run``,
    ``drift``...), kept in the station's history by its plant link and forwarded to the plant's,
    where the review's station page lists them. ``uid`` names the alarm everywhere, so sending it
    again adds nothing; ``id`` is recording order (AUTOINCREMENT: never reused)."""

    __tablename__ = "alarms"
    __table_args__ = (UniqueConstraint("station", "uid"), Index("ix_alarms_station_time", "station", "time"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    station: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(32))
    time: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


class StationStatus(Base):
    """What a station last told the plant about itself, through its plant link: when (``seen``,
    the plant's clock), the inspections and images still waiting on its disk to be forwarded,
    the kept images its quota removed before they could go, and its link's state."""

    __tablename__ = "station_status"

    station: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen: Mapped[datetime] = mapped_column()
    rows_waiting: Mapped[int] = mapped_column(Integer)
    images_waiting: Mapped[int] = mapped_column(Integer)
    images_gone: Mapped[int] = mapped_column(Integer)
