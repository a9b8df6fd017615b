"""Inspection history: what was inspected, with which model and threshold, and what people did.

Everything lives in one SQL database -- a SQLite file per line by default, or any SQLAlchemy URL,
e.g. one PostgreSQL server for a whole plant -- plus a folder of images.

Opening and schema
    ``HistoryDB(url, busy_timeout_ms=2000)`` opens the database (``DatabaseError`` if it cannot);
    nothing connects at import time. ``default_db_url()`` is ``history.db`` in the user's data
    folder (``$INSPECTOR_DATA_DIR`` or ``~/.local/share/inspector``). ``db.upgrade()`` (alias
    ``create_schema()``) creates or migrates the schema with the Alembic revisions shipped in
    ``migrations/``. ``db.session()`` is a context manager yielding a SQLAlchemy session in one
    transaction, for queries the methods below do not cover.

Products, models, thresholds
    ``add_product(name, description="", camera_settings=None) -> id``, ``product_by_name(name)``,
    ``add_model_version(product_id, path, *, sha256=None, metrics=None, report_path=None,
    note="") -> id``, ``model_version(id)``, ``set_active_model(product_id, model_version_id, *,
    user, role)`` (the product's ``active_model_version_id`` is the one truth of which model is
    active; each change is also a row of ``activations`` with the version it replaced, which
    ``last_activation(product_id)`` returns and a rollback reads), ``add_calibration(model_version_id, *, image_threshold, target_frr,
    expected_frr, expected_frr_ci=None, pixel_threshold=None, min_defect_area_px=None,
    report=None, created_by, role) -> id``, ``latest_calibration(model_version_id)``.

Recording inspections
    The pipeline builds one frozen :class:`InspectionResult` per frame (defined in
    :mod:`inspector.inspection`, re-exported here) and calls ``HistoryWriter(db, image_store,
    subscribers=[...], on_alarm=...).submit(record)``, which never blocks. The writer's thread
    stores the record -- :class:`ImageStore` keeps rejects' images always and passes' sampled,
    and fills in ``image_path``/``heatmap_path`` and the heatmap's value range; the database
    fills in ``inspection_id`` -- and only then calls each subscriber with that record (or with
    ``journaled=True`` and no id while the database is down: database faults are survived
    through a spill journal and reported as :class:`Alarm`). ``writer.stats`` counts written,
    buffered, journaled and failed records. ``writer.stop(timeout)`` stores everything submitted
    before returning. ``db.write_inspections(records)`` writes directly (idempotent by ``uid``).

Stored images
    Frames are PNGs of the camera's array (RGB or gray; converted to BGR only inside the PNG
    encoder), heatmaps 16-bit grey PNGs of the map's values between the row's ``heatmap_low``
    and ``heatmap_high``. Read them with ``image_store.read_stored_image(path)`` (RGB or gray)
    and ``image_store.read_heatmap(path, low, high)`` (float32 map). Rows from before revision
    0003 have no range: their heatmap is a legacy JET colour picture.

Review screen
    ``query_inspections(InspectionFilter(...), limit, offset, before=None) -> list[InspectionRow]``
    (newest first; ``before=(time, id)`` for keyset paging), ``count_inspections(filters)``,
    ``yield_over_time(filters, bucket: timedelta) -> list[YieldBucket]``,
    ``export_csv(path, filters) -> rows``, ``label_inspection(id, label, user)`` (audited).
    ``InspectionRow.image_exists`` tells whether a stored image is still on disk.
    ``InspectionRow.heatmap_low``/``heatmap_high`` is the stored heatmap's value range.
    ``InspectionRow.error`` is the engine's message where it could not score the frame (the FAIL
    is then fail-safe, not a reject); ``InspectionFilter(errors_only=True)`` selects those.
    Each row keeps the rule it was decided with (image and pixel threshold, smallest defect
    area; revision 0008): ``decided_rule(row)`` returns it, or for a row from before, its model
    version's calibration of the same threshold, and says which (``inspector.overlay.heatmap_view``
    draws the row from it). ``products()``: (name, id) of every product, for the filters.

People and audit
    ``add_user(name, role, pin, *, by)``, ``verify_pin(name, pin) -> role | None`` (raises
    ``AccountLocked`` after five wrong PINs in a row, for a doubling delay, however many attempts
    come at once; ``AccountTampered`` for a row edited by hand; see :mod:`.pins`),
    ``list_users()``, ``record_audit(user, role, action, target, before, after)``,
    ``audit_events(limit, offset)``, ``verify_audit_chain() -> ChainCheck`` (the audit rows form
    a hash chain; see :mod:`.audit_chain`), ``verify_history()`` (the chain and its head, the
    users' rows and the sealed verdicts; see :mod:`.seals`).

Benchmark
    ``benchmark_inserts(url, n) -> inserts per second`` through the writer.
"""

from inspector.history.insert_bench import benchmark_inserts
from inspector.history.db import HistoryDB, data_dir, default_db_url, file_sha256
from inspector.history.image_store import ImageStore
from inspector.history.tables import DECISIONS, LABELS, MODEL_STATUSES, ROLES
from inspector.history.queries import InspectionFilter, InspectionRow, YieldBucket
from inspector.history.writer import HistoryWriter, WriterStats
from inspector.alarms import Alarm
from inspector.inspection import InspectionResult

__all__ = [
    "DECISIONS",
    "LABELS",
    "MODEL_STATUSES",
    "ROLES",
    "Alarm",
    "HistoryDB",
    "HistoryWriter",
    "ImageStore",
    "InspectionFilter",
    "InspectionResult",
    "InspectionRow",
    "WriterStats",
    "YieldBucket",
    "benchmark_inserts",
    "data_dir",
    "default_db_url",
    "file_sha256",
]
