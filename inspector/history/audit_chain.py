"""The audit trail as a hash chain: each row carries the hash of the row before it and its own.

A row's hash is SHA-256 over the previous row's hash and the row's canonical content (time, user,
role, action, target, before, after). Editing a row changes its hash; deleting or inserting one
breaks the link of the row after it. The chain holds no secret, so it shows tampering by someone
who edits rows by hand, not by someone who recomputes every hash after them: keep the head hash
that ``inspector audit verify`` prints somewhere else (a shift report) to pin the chain down.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inspector.inspection import as_utc

#: The "previous hash" of the first row.
GENESIS = "0" * 64


def row_hash(
    prev_hash: str, time: datetime, user: str, role: str, action: str, target: str, before: Any, after: Any
) -> str:
    """The hash of one audit row, chained to ``prev_hash``.

    JSON with sorted keys and no spaces is the canonical form, so a value reads back from the
    database's JSON column (a tuple as a list, an int key as a string) to the same bytes.
    """
    content = {
        "time": as_utc(time).isoformat(),
        "user": user,
        "role": role,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """What :meth:`HistoryDB.verify_audit_chain` found.

    ``broken_id`` is the first row that does not fit, with ``reason`` saying how; a trail that
    does not end at its recorded head (rows missing from its end) has a ``reason`` and no
    ``broken_id``. ``head`` is the last row's hash of an intact chain.
    """

    rows: int
    broken_id: int | None = None
    reason: str = ""
    head: str = GENESIS

    @property
    def ok(self) -> bool:
        return self.broken_id is None and not self.reason

    def describe(self) -> str:
        """One line: what was found."""
        if self.ok:
            return f"{self.rows} audit rows, chain intact; head {self.head}"
        if self.broken_id is None:
            return self.reason
        return f"audit row {self.broken_id} {self.reason} ({self.rows - 1} rows before it fit)"


def check_rows(rows: Any) -> ChainCheck:
    """Walk audit rows in id order (objects with the columns as attributes) and report the first
    that breaks the chain."""
    expected_prev, count = GENESIS, 0
    for row in rows:
        count += 1
        if row.prev_hash is None or row.hash is None:
            return ChainCheck(count, row.id, "has no hash: inserted outside the inspector")
        if row.prev_hash != expected_prev:
            return ChainCheck(count, row.id, "does not follow the row before it: a row before it was deleted or inserted")
        own = row_hash(row.prev_hash, row.time, row.user, row.role, row.action, row.target, row.before, row.after)
        if own != row.hash:
            return ChainCheck(count, row.id, "was changed after it was written")
        expected_prev = row.hash
    return ChainCheck(count, head=expected_prev)


def check_head(check: ChainCheck, head: Any) -> ChainCheck:
    """``check`` of an intact chain held against its recorded head (a ``chain_heads`` row, or
    ``None`` when it is missing): rows deleted from the end, or all of them, leave a chain that
    fits but is shorter than its head."""
    if not check.ok:
        return check
    if head is None:
        return ChainCheck(check.rows, reason="the audit trail's head record is missing: deleted outside the inspector")
    if head.rows > check.rows:
        return ChainCheck(check.rows, reason=f"audit trail shortened: {head.rows} rows expected, {check.rows} found")
    if (head.rows, head.hash) != (check.rows, check.head):
        return ChainCheck(check.rows, reason=f"the audit trail does not end at its head ({head.rows} rows, "
                                             f"{head.hash[:12]}...): its last rows were rewritten")
    return check
