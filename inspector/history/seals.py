"""Seals on what the audit chain alone does not cover: the users' rows, the verdicts, the trail's length.

The audit chain (:mod:`.audit_chain`) shows an edited audit row, but not an edited ``users`` row
(a role raised by hand), an edited verdict, or a trail cut short at its end. So:

- **Users**: each row is bound to the audit event that last set it (``add_user``,
  ``add_first_technician``, ``set_pin``, or revision 0009's ``user_sealed``): ``audit_id`` names the
  event and ``digest`` is SHA-256 over the row's name, role and PIN hash and the event's hash. A
  row whose role is not the one its event states, or whose digest does not fit, is refused at
  sign-in and reported by ``inspector audit verify``: a role is what the chained trail says.
- **Inspections**: each transaction that records verdicts seals them as one
  :class:`~.tables.InspectionBatch`: per row a short hash of its decisive fields (see
  :data:`SEALED_COLUMNS`), and over the batch a digest chained to the batch before it. An
  edited, deleted or inserted verdict is named by row.
- **Heads**: ``chain_heads`` keeps each chain's length and last hash, moved in the transaction
  that extends the chain, so a trail emptied or shortened from its end no longer "fits". A SQLite
  database also keeps a copy of both heads beside its file (``<db>.heads.json``, written after
  each audited commit): whoever empties the trail *and* resets ``chain_heads`` inside the
  database still leaves that copy pointing at rows that are gone.

Like the chain these hold no secret: they show edits made by hand, not by someone who recomputes
every hash. Keep the heads ``inspector audit verify`` prints somewhere else to pin them down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from inspector.history.audit_chain import GENESIS
from inspector.history.tables import AuditEvent, ChainHead, Inspection, InspectionBatch, User
from inspector.inspection import as_utc

log = logging.getLogger(__name__)

AUDIT: str = "audit"
INSPECTIONS: str = "inspections"
#: What decides a verdict and where its evidence is: a change to any of these is an edited
#: verdict. Not the review label (changed later, audited on its own) nor the latencies.
SEALED_COLUMNS = (
    "id", "station", "uid", "time", "camera_id", "frame_id", "part_id", "score", "decision", "threshold",
    "pixel_threshold", "min_defect_area_px", "rule_recorded", "model_version_id", "product_id", "error",
    "image_path", "heatmap_path", "heatmap_low", "heatmap_high",
)
#: Sealed as well, added later (revision 0010): in a row's hash only where not NULL, so the rows
#: sealed before they existed (NULL there) keep the hash they were sealed with.
SEALED_LATER = ("recheck_threshold", "mm_per_px", "defect_area_px", "match_quality")
#: Hex characters of a row's own hash kept in its batch: enough to name an edited row (the batch
#: digest over them is a full SHA-256), small enough for ~25 bytes a verdict.
_ROW_HASH_CHARS = 16


# -- users ----------------------------------------------------------------------------------------


def user_digest(name: str, role: str, pin_hash: str, event_hash: str | None) -> str:
    return hashlib.sha256(f"{name}\n{role}\n{pin_hash}\n{event_hash}".encode("utf-8")).hexdigest()


def seal_user(s: Session, user: User, event_id: int) -> None:
    """Bind ``user``'s row to the audit event ``event_id`` that just set it (same transaction)."""
    event_ = s.get(AuditEvent, event_id)
    assert event_ is not None
    user.audit_id, user.digest = event_id, user_digest(user.name, user.role, user.pin_hash, event_.hash)


def user_seal_problem(s: Session, user: User) -> str:
    """Why ``user``'s row does not match the audit trail ("" when it does)."""
    if user.audit_id is None or user.digest is None:
        return "its row has no seal: it was added outside the inspector"
    event_ = s.get(AuditEvent, user.audit_id)
    if event_ is None or event_.target != f"user:{user.name}":
        return f"the audit event that set it ({user.audit_id}) is gone"
    stated = (event_.after or {}).get("role") if isinstance(event_.after, dict) else None
    if stated != user.role:
        return f"its role {user.role} is not the {stated} the audit trail gave it"
    if user.digest != user_digest(user.name, user.role, user.pin_hash, event_.hash):
        return "its role or PIN hash was changed outside the inspector"
    return ""


# -- chain heads ----------------------------------------------------------------------------------


def move_head(s: Session, name: str, rows: int, hash_: str, last_id: int | None = None) -> None:
    """Extend chain ``name``'s head by ``rows`` to ``hash_`` (same transaction as the rows). A head
    deleted by hand starts again from nothing, which verify then reports as not fitting."""
    values: dict[str, Any] = {"hash": hash_} if last_id is None else {"hash": hash_, "last_id": last_id}
    moved = s.execute(update(ChainHead).where(ChainHead.name == name).values(rows=ChainHead.rows + rows, **values))
    if moved.rowcount == 0:
        s.execute(insert(ChainHead).values(name=name, rows=rows, **values))


# -- inspections ------------------------------------------------------------------------------------


_FLOATS = frozenset({"score", "threshold", "pixel_threshold", "heatmap_low", "heatmap_high", "recheck_threshold",
                     "mm_per_px", "match_quality"})
_INTS = frozenset({"id", "frame_id", "min_defect_area_px", "model_version_id", "product_id", "defect_area_px"})


def row_token(values: Mapping[str, Any]) -> str:
    """``<id>:<hash>`` of one inspection row, given its :data:`SEALED_COLUMNS` by name: as the
    writer inserted them or as read back. Values are normalised to what the column stores (an
    int score reads back as a float, a time in any zone as UTC), so both give the same token."""
    content = {}
    for name in (*SEALED_COLUMNS, *SEALED_LATER):
        value = values[name] if name in SEALED_COLUMNS else values.get(name)
        if value is None and name in SEALED_LATER:
            continue
        if value is not None:
            if name in _FLOATS:
                value = float(value)
            elif name in _INTS:
                value = int(value)
            elif name == "rule_recorded":
                value = bool(value)
            elif name == "time":
                value = as_utc(value).isoformat()
            else:
                value = str(value)
        content[name] = value
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{content['id']}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:_ROW_HASH_CHARS]}"


def batch_digest(prev_digest: str, seal: str) -> str:
    return hashlib.sha256(f"{prev_digest}\n{seal}".encode("utf-8")).hexdigest()


def _sealed_rows(s: Session, where: Any) -> Iterator[Mapping[str, Any]]:
    columns = [getattr(Inspection, name) for name in (*SEALED_COLUMNS, *SEALED_LATER)]
    rows = s.execute(select(*columns).where(where).order_by(Inspection.id).execution_options(yield_per=2000))
    return (row._mapping for row in rows)


def seal_inspections(s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Seal ``rows`` (their column values with their ids, in id order), just inserted by this
    transaction, as one batch chained to the last. Made from the values inserted, so sealing
    reads no row back. The caller holds the write lock (SQLite's, taken by its insert;
    PostgreSQL's on ``inspection_batches``, see :func:`lock_batches`), so no other batch is
    chained to the same one."""
    prev = s.scalar(select(ChainHead.hash).where(ChainHead.name == INSPECTIONS)) or GENESIS
    seal = ",".join(row_token(row) for row in rows)
    digest = batch_digest(prev, seal)
    first, last = rows[0]["id"], rows[-1]["id"]
    s.execute(insert(InspectionBatch).values(first_id=first, last_id=last, rows=len(rows), prev_digest=prev,
                                             digest=digest, seal=seal))
    move_head(s, INSPECTIONS, len(rows), digest, last)


def seal_new_inspections(s: Session) -> None:
    """Seal the rows above the head's last sealed id (the plant forwarder's insert, which skips
    rows the plant has already and so knows no ids); the caller holds the lock as above."""
    last = s.scalar(select(ChainHead.last_id).where(ChainHead.name == INSPECTIONS)) or 0
    rows = list(_sealed_rows(s, Inspection.id > last))
    if rows:
        seal_inspections(s, rows)


def lock_batches(s: Session) -> None:
    """On PostgreSQL, serialise the writers of sealed inspections (SQLite has one writer anyway):
    taken before the insert, so the ids a batch draws are not interleaved with another's."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE inspection_batches IN SHARE ROW EXCLUSIVE MODE"))


@dataclass(frozen=True)
class InspectionCheck:
    """What :func:`check_inspections` found: ``problem`` names the first inspection or batch that
    does not fit ("" when all do); ``head`` is the last batch's digest."""

    rows: int
    batches: int
    problem: str = ""
    head: str = GENESIS


def check_inspections(s: Session) -> InspectionCheck:
    """Walk the batches and the inspections in id order: each row must be the one its batch
    sealed, each batch must follow the one before it, and the last must be the head."""
    rows = _sealed_rows(s, True)
    batches = s.scalars(select(InspectionBatch).order_by(InspectionBatch.id).execution_options(yield_per=200))
    prev, sealed, count = GENESIS, 0, 0
    row = next(rows, None)
    for batch in batches:
        count += 1
        if batch.prev_digest != prev:
            return InspectionCheck(sealed, count, f"inspection batch {batch.id} does not follow the one before it: "
                                                  "a batch before it was deleted or inserted", prev)
        if batch_digest(prev, batch.seal) != batch.digest:
            return InspectionCheck(sealed, count, f"inspection batch {batch.id} was changed after it was written", prev)
        for token in batch.seal.split(",") if batch.seal else ():
            sealed_id = int(token.split(":")[0])
            if row is not None and row["id"] < sealed_id:
                return InspectionCheck(sealed, count, f"inspection {row['id']} is in no sealed batch: inserted outside "
                                                      "the inspector", prev)
            if row is None or row["id"] > sealed_id:
                return InspectionCheck(sealed, count, f"inspection {sealed_id} was deleted", prev)
            if row_token(row) != token:
                return InspectionCheck(sealed, count, f"inspection {sealed_id} was changed after it was recorded", prev)
            sealed += 1
            row = next(rows, None)
        prev = batch.digest
    if row is not None:
        return InspectionCheck(sealed, count, f"inspection {row['id']} is in no sealed batch: inserted outside the "
                                              "inspector", prev)
    head = s.get(ChainHead, INSPECTIONS)
    if head is None:
        return InspectionCheck(sealed, count, "the verdicts' chain head is missing: deleted outside the inspector", prev)
    if (head.rows, head.hash) != (sealed, prev):
        return InspectionCheck(sealed, count, f"verdicts shortened: {head.rows} sealed inspections expected, "
                                              f"{sealed} found", prev)
    return InspectionCheck(sealed, count, head=prev)


def check_users(s: Session) -> list[str]:
    """``"<name>: <why>"`` for every user whose row does not match the audit trail."""
    users: Iterable[User] = s.scalars(select(User).order_by(User.name))
    return [f"user {u.name!r}: {problem}" for u in users if (problem := user_seal_problem(s, u))]


# -- the heads' copy beside a SQLite file -----------------------------------------------------------


def mirror_path(db_file: Path) -> Path:
    return db_file.with_name(db_file.name + ".heads.json")


def read_mirror(path: Path) -> dict[str, tuple[int, str]]:
    """The heads kept beside the database (empty: none, or unreadable -- a copy only)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {name: (int(rows), str(hash_)) for name, (rows, hash_) in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def write_mirror(s: Session, path: Path) -> None:
    """Copy the database's heads beside it, unless the copy there is already further on (another
    process wrote after this one committed). Best effort: a failure is logged, never raised --
    the database is the record, the copy a second witness."""
    heads = {h.name: (h.rows, h.hash) for h in s.scalars(select(ChainHead))}
    kept = read_mirror(path)
    if any(kept.get(name, (0, ""))[0] > rows for name, (rows, _) in heads.items()):
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({name: list(head) for name, head in heads.items()}, f)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not keep the audit heads beside the database in %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


def check_mirror(s: Session, kept: dict[str, tuple[int, str]]) -> list[str]:
    """What the heads kept beside the database say is missing from it: each must be the hash of a
    row (audit) or batch (inspections) still there -- the chains are checked on their own."""
    problems = []
    rows, hash_ = kept.get(AUDIT, (0, GENESIS))
    if rows and s.scalar(select(AuditEvent.id).where(AuditEvent.hash == hash_).limit(1)) is None:
        found = s.scalar(select(func.count()).select_from(AuditEvent))
        problems.append(f"audit trail shortened: {rows} rows expected (the heads kept beside the database), "
                        f"{found} found")
    rows, hash_ = kept.get(INSPECTIONS, (0, GENESIS))
    if rows and s.scalar(select(InspectionBatch.id).where(InspectionBatch.digest == hash_).limit(1)) is None:
        problems.append(f"verdicts shortened: {rows} sealed inspections expected (the heads kept beside the "
                        "database), their batch is gone")
    return problems
