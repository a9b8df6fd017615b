"""The audited actions people take on a station, one function each.

Each checks the caller's right once (:func:`inspector.roles.authorize`: the PIN verified, the
role granted the right, a refusal audited as ``<action>_denied``), does the thing, and writes one
audit event with one name -- whichever face asked. The faces decide only how to ask (a PIN file,
the signed-in session) and how to show the outcome.

The teach workflow's actions (samples, train, calibrate, activate, roll back) are the teach
layer's own (:mod:`calibration.teach`), checked and audited the same way.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inspector.errors import DatabaseError, InspectorError
from inspector.history import HistoryDB, InspectionFilter, InspectionRow
from inspector.roles import RIGHTS, AccessDenied, Actor, Caller, authorize

from station.config import LINKS, StationConfig, shown_uri

log = logging.getLogger(__name__)

#: Rows read at a time while copying an export's images.
_EXPORT_PAGE = 1000


def system_actor(face: str) -> Actor:
    """Who acts for what needs no sign-in, for the audit: ``cli:<login name>`` (``gui:...``), role
    ``system``."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        login = f"uid{os.getuid()}"
    return Actor(f"{face}:{login}", "system")


# -- export -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """What an export wrote: ``rows`` in the CSV at ``csv_path``, ``images`` files copied, and
    whether the audit trail took the entry (a read-only archive cannot)."""

    csv_path: Path
    rows: int
    images: int
    audited: bool


def export_inspections(db: HistoryDB, caller: Caller, csv_path: str | Path, filters: InspectionFilter, *,
                       images_dir: str | Path | None = None,
                       read_image: Callable[[InspectionRow, str], bytes | None] | None = None) -> Export:
    """Writes the inspections ``filters`` select to ``csv_path`` (newest first) and, with
    ``images_dir``, their stored frames and heatmaps there: the files the rows name, or what
    ``read_image(row, "image" | "heatmap")`` gives (None: none; the browser review's files inside
    its image store, else the plant's copies). A quality engineer's right
    (``export``), audited as ``export`` with where, how many and the filters: exported verdicts
    and images are quality records. A read-only archive may be exported; its trail cannot take
    the entry, and :attr:`Export.audited` says so."""
    csv_path = Path(csv_path)
    if not csv_path.parent.is_dir():
        raise InspectorError(f"cannot write {csv_path}: folder {csv_path.parent} does not exist")
    actor = authorize(db, caller, "export", "inspections")
    copied = 0 if images_dir is None else _copy_images(db, filters, Path(images_dir), read_image)

    def audit(rows: int) -> tuple[str, str, str, str, Any]:
        return actor.user, actor.role, "export", "inspections", {
            "out": str(csv_path.resolve()), "rows": rows, "images": copied, "filters": filters_json(filters)}

    # The CSV and its audit event in one transaction: a file that left the station is on record.
    try:
        rows = db.export_csv(csv_path, filters, audit=None if db.read_only else audit)
    except OSError as exc:
        raise InspectorError(f"cannot write {csv_path}: {exc.strerror or exc}") from None
    return Export(csv_path, rows, copied, audited=not db.read_only)


def require_existing_db(url: str) -> None:
    """Refuse a SQLite file that does not exist (opening it would create an empty one)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # HistoryDB says what is wrong with it
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not parsed.query.get("uri"):
        if not Path(database).is_file():
            raise DatabaseError(f"no history database at {database}")


def _copy_images(db: HistoryDB, filters: InspectionFilter, folder: Path,
                 read_image: Callable[[InspectionRow, str], bytes | None] | None = None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    copied = offset = 0
    while True:
        rows = db.query_inspections(filters, _EXPORT_PAGE, offset)
        for row in rows:
            for kind, path in (("image", row.image_path), ("heatmap", row.heatmap_path)):
                if read_image is not None:
                    data = None if path is None else read_image(row, kind)
                    if data is not None:
                        (folder / f"{row.id}_{Path(path).name}").write_bytes(data)
                        copied += 1
                elif path and Path(path).is_file():
                    shutil.copy2(path, folder / f"{row.id}_{Path(path).name}")
                    copied += 1
        if len(rows) < _EXPORT_PAGE:
            return copied
        offset += _EXPORT_PAGE


def filters_json(f: InspectionFilter) -> dict[str, Any]:
    """The filters that are set, as the audit records them (times in ISO 8601)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in f.__dict__.items()
            if v is not None and v is not False}


# -- alarms -----------------------------------------------------------------------------------------


def acknowledge_alarms(db: HistoryDB, actor: Actor, alarms: list[str]) -> None:
    """``actor`` saw ``alarms`` (``"kind: message"``): audited as ``acknowledge_alarms``. Every
    role holds the right and watching the line needs no PIN, so the actor is taken as signed in
    (the desktop's operator, an OPC UA client as ``opcua``)."""
    if actor.role != "system" and "acknowledge_alarms" not in RIGHTS.get(actor.role, ()):
        raise AccessDenied(f"acknowledge alarms refused: {actor.user} is {actor.role}")
    if alarms:
        db.record_audit(actor.user, actor.role, "acknowledge_alarms", "line", {"alarms": list(alarms)}, None)


# -- the station's settings -------------------------------------------------------------------------


def _camera_state(config: StationConfig) -> dict[str, Any]:
    return {"cameras": list(config.cameras), "trigger": config.trigger}


def set_cameras(db: HistoryDB, caller: Caller, config: StationConfig, cameras: list[str], trigger: str,
                camera_settings: dict[str, Any], *, product: str) -> tuple[StationConfig, Actor]:
    """The configuration with these cameras (in order) and trigger, checked before anything
    changes (a camera twice, PLCs that no longer pair with the cameras); a technician's right
    (``configure_camera``), audited as ``set_camera``. Returns the new configuration and who
    changed it (the product's exposure and gain are theirs to store with
    :func:`inspector.recipes.set_camera_settings`)."""
    new = config.with_changes(cameras=tuple(cameras), trigger=trigger, camera_settings=dict(camera_settings))
    actor = authorize(db, caller, "configure_camera", f"product:{product}")
    db.record_audit(actor.user, actor.role, "set_camera", "gui", _camera_state(config), _camera_state(new))
    return new, actor


def set_storage(db: HistoryDB, caller: Caller, config: StationConfig, quota_gb: float,
                pass_sample_rate: float) -> StationConfig:
    """The configuration with this image quota and share of passes kept; a technician's right
    (``set_storage``), audited as ``set_storage``."""
    new = config.with_changes(quota_gb=quota_gb, pass_sample_rate=pass_sample_rate)
    actor = authorize(db, caller, "set_storage", "gui")
    db.record_audit(actor.user, actor.role, "set_storage", "gui",
                    {"quota_gb": config.quota_gb, "pass_sample_rate": config.pass_sample_rate},
                    {"quota_gb": quota_gb, "pass_sample_rate": pass_sample_rate})
    return new


def set_links(db: HistoryDB, caller: Caller, config: StationConfig, uris: dict[str, str | tuple[str, ...] | None],
              plc_down: str) -> StationConfig:
    """The configuration with these plant links (by :class:`~station.config.StationConfig`
    field; None or empty: none) and PLC down policy, each URI checked before anything changes;
    a technician's right (``configure_camera``), audited as ``set_links`` (a database password
    hidden)."""
    changes: dict[str, Any] = {"plc_down": plc_down}
    for spec in LINKS:
        value = uris.get(spec.field)
        if spec.per_camera:
            value = tuple(value or ())
            for uri in value:
                spec.check(uri)
        else:
            value = value or None
            if value is not None:
                spec.check(value)
        changes[spec.field] = value
    new = config.with_changes(**changes)
    actor = authorize(db, caller, "configure_camera", "links")
    db.record_audit(actor.user, actor.role, "set_links", "gui", _links_shown(config), _links_shown(new))
    return new


def set_no_part_alarm(db: HistoryDB, caller: Caller, config: StationConfig, count: int | None) -> StationConfig:
    """The configuration whose lines raise ``no_part_run`` after ``count`` NO PART frames in a row
    (None: never), checked before anything changes (a whole number >= 1); a technician's right
    (``configure_camera``, as the station's other line settings), audited as ``set_no_part_alarm``."""
    new = config.with_changes(no_part_alarm_after=count)
    actor = authorize(db, caller, "configure_camera", "no_part_alarm")
    db.record_audit(actor.user, actor.role, "set_no_part_alarm", "gui",
                    {"no_part_alarm_after": config.no_part_alarm_after}, {"no_part_alarm_after": count})
    return new


def _links_shown(config: StationConfig) -> dict[str, Any]:
    shown: dict[str, Any] = {"plc_down": config.plc_down}
    for spec in LINKS:
        value = getattr(config, spec.field)
        shown[spec.field] = list(value) if spec.per_camera else shown_uri(spec.name, value)
    return shown


def set_image_retention(db: HistoryDB, caller: Caller, days: float | None) -> tuple[float | None, float | None]:
    """Keep the stations' images in the plant database ``days`` days after it receives them (None:
    no retention, kept until removed otherwise); a quality engineer's or technician's right
    (``set_image_retention``), audited as ``set_image_retention`` with before and after in the
    same transaction. ``days`` not positive: InspectorError, nothing checked or written. Returns
    (before, after); the images go at the next prune (``inspector plant prune``, or hourly
    beside ``inspector serve``)."""
    from inspector.links.plant_images import RETENTION, change_retention

    if days is not None and not (days > 0 and days != float("inf")):
        raise InspectorError(f"the image retention must be a positive number of days, got {days:g}")
    actor = authorize(db, caller, "set_image_retention", f"setting:{RETENTION}")
    return change_retention(db, days, actor.user, actor.role)


def choose_product(db: HistoryDB, caller: Caller, before: str, name: str, load: Callable[[str], Any]) -> Any:
    """A technician puts product ``name`` on the line (``choose_product``): the right checked,
    ``load(name)`` loads its active recipe (seconds; InspectorError for a product without one,
    which leaves the line's product as it is and audits nothing), then audited as
    ``choose_product``. Returns what ``load`` returned."""
    product = db.product_by_name(name)
    actor = authorize(db, caller, "choose_product", f"product:{product.id if product is not None else name}")
    loaded = load(name)
    db.record_audit(actor.user, actor.role, "choose_product", "gui", {"product": before}, {"product": name})
    return loaded


# -- model files ------------------------------------------------------------------------------------


def upgrade_model_file(db: HistoryDB, caller: Caller, path: str | Path) -> dict[str, Any]:
    """A model file without a metadata digest (an older release's, or one stripped of it) made
    readable: rewritten atomically with its digest (:func:`inspector.model_file.upgrade_file`).
    The technician vouches for what the file says, its threshold above all: their right
    (``upgrade_model``), audited as ``upgrade_model`` with the file's SHA-256 before and after and
    the thresholds it carries. A registration of the file in ``db`` follows it (its recorded
    SHA-256 updated), or the line would refuse the converted file as changed. Returns the metadata."""
    from inspector.file_digest import file_sha256
    from inspector.model_file import upgrade_file

    path = Path(path).resolve()
    target = f"model:{path}"
    actor = authorize(db, caller, "upgrade_model", target)
    before = file_sha256(path)
    meta = upgrade_file(path)
    after = file_sha256(path)
    # Only this very file as registered: not a copy elsewhere (unchanged), not one changed since.
    versions = [v for v in db.model_versions_of_file(path) if v.sha256 == before]
    for v in versions:
        db.update_model_file(v.id, sha256=after, report_path=v.report_path, metrics={})
    db.record_audit(actor.user, actor.role, "upgrade_model", target, {"sha256": before},
                    {"sha256": after, "kind": meta.get("kind"), "threshold": meta.get("threshold"),
                     "pixel_threshold": meta.get("pixel_threshold"), "versions": [v.id for v in versions]})
    return meta


# -- who is at the station --------------------------------------------------------------------------


def sign_in(db: HistoryDB, name: str, pin: str, *, before: str, where: str = "gui") -> Actor:
    """``name`` signs in with ``pin``: their :class:`~inspector.roles.Actor`, audited as
    ``sign_in`` (``before``: who was signed in). A wrong name or PIN, or an account locked after
    too many wrong PINs (the message says until when), is refused as AccessDenied and audited as
    ``sign_in_denied``."""
    try:
        role = db.verify_pin(name, pin)
    except AccessDenied as exc:  # locked, or a row edited by hand (AccountLocked, AccountTampered)
        db.record_audit(name, "unknown", "sign_in_denied", where, None, {"reason": str(exc)})
        raise AccessDenied(f"sign-in refused: {exc}") from exc
    if role is None:
        db.record_audit(name, "unknown", "sign_in_denied", where, None, {"reason": "wrong PIN or unknown user"})
        raise AccessDenied(f"sign-in refused: wrong PIN or unknown user {name!r}")
    db.record_audit(name, role, "sign_in", where, {"user": before}, {"user": name, "role": role})
    return Actor(name, role)


def sign_out(db: HistoryDB, actor: Actor, *, after: str, where: str = "gui") -> None:
    """``actor`` signs out (``after``: who is signed in then), audited as ``sign_out``."""
    db.record_audit(actor.user, actor.role, "sign_out", where, {"user": actor.user}, {"user": after})


def add_user(db: HistoryDB, caller: Caller, name: str, role: str, pin: str) -> int:
    """A technician adds a user (``manage_users``); the database audits the new account
    (``add_user``, by whom) and refuses a name or PIN its policy does not take."""
    from inspector.roles import ROLES

    if role not in ROLES:
        raise InspectorError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise InspectorError("a user needs a name")
    actor = authorize(db, caller, "manage_users", "users")
    return db.add_user(name.strip(), role, pin, by=actor.user)


# -- the quality engineer's review ------------------------------------------------------------------


def label_inspections(db: HistoryDB, caller: Caller, inspection_ids: list[int], label: str) -> Actor:
    """Sets the review label (false reject, confirmed defect, or none) of these inspections: a
    quality engineer's right (``label``), checked once; each row's change is audited as ``label``
    by the database, with who and when."""
    actor = authorize(db, caller, "label", "inspections")
    for inspection_id in inspection_ids:
        db.label_inspection(inspection_id, label, actor.user)
    return actor


#: The longest note a reviewer may leave on an inspection.
MAX_NOTE_CHARS = 2000


def review_inspection(db: HistoryDB, caller: Caller, inspection_id: int, label: str, note: str = "") -> Actor:
    """One inspection reviewed: its label set (as :func:`label_inspections`: a quality engineer's
    right, ``label``, checked once; audited by the database as ``label``) and, where ``note`` has
    text, the note kept in the audit trail as ``label_note`` on ``inspection:<id>`` with the label
    it came with. A note longer than :data:`MAX_NOTE_CHARS` is refused before anything is written."""
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise InspectorError(f"a note may have at most {MAX_NOTE_CHARS} characters, this one has {len(note)}")
    actor = authorize(db, caller, "label", f"inspection:{inspection_id}")
    db.label_inspection(inspection_id, label, actor.user)
    if note:
        db.record_audit(actor.user, actor.role, "label_note", f"inspection:{inspection_id}", None,
                        {"note": note, "label": label})
    return actor


def copy_false_rejects_to_teach(db: HistoryDB, caller: Caller, product: str, filters: InspectionFilter,
                                teach_workdir: Path | None = None) -> tuple[int, int, int]:
    """The stored frames of ``product``'s inspections labelled false reject (within ``filters``)
    become teach samples of ``product``, through the quality gates: a quality engineer's right
    (``copy_to_teach``), audited as ``copy_false_rejects_to_teach`` with the inspections and how
    many the gates took. Returns (accepted, refused, NO PART frames left out).

    Only ``product``'s own inspections: another product's parts are no samples of it. A filter
    set to another product is refused, saying so. A NO PART frame labelled false reject is left
    out (counted): the part was not found in it, so it is no sample of the part."""
    from dataclasses import replace

    from calibration.teach import TeachSession
    from inspector.errors import DataError
    from inspector.history.image_store import read_stored_image

    actor = authorize(db, caller, "copy_to_teach", f"product:{product}")
    known = db.product_by_name(product)
    if known is None:
        raise DataError(f"no product named {product!r} in this history: it has no false rejects to copy")
    if filters.product_id is not None and filters.product_id != known.id:
        shown = next((name for name, pid in db.products() if pid == filters.product_id), filters.product_id)
        raise DataError(f"the filter shows the inspections of product {shown!r}: its false rejects are no "
                        f"teach samples of {product!r}")
    rows = db.query_inspections(replace(filters, label="false_reject", product_id=known.id), 10_000)
    no_part = [row.id for row in rows if row.decision == "NO_PART"]
    rows = [row for row in rows if row.decision != "NO_PART"]
    if not rows:
        raise DataError(f"no inspections of {product!r} labelled false reject in the current filter"
                        + (f" but {len(no_part)} NO PART frame(s), in which the part was not found: no samples of it"
                           if no_part else ""))
    teach = TeachSession(db, product, teach_workdir)
    accepted = refused = 0
    for row in rows:
        if not row.image_exists:
            continue
        verdict = teach.add_sample(read_stored_image(row.image_path), f"false-reject-{row.id}.png")  # grey or RGB
        accepted += verdict.accepted
        refused += not verdict.accepted
    db.record_audit(actor.user, actor.role, "copy_false_rejects_to_teach", f"product:{product}", None,
                    {"accepted": accepted, "refused": refused, "inspections": [r.id for r in rows],
                     **({"no_part_left_out": no_part} if no_part else {})})
    return accepted, refused, len(no_part)
