"""``inspector audit``: checks that the audit trail is as it was written (its hash chain).

``inspector audit verify`` exits 0 and prints the head hash when every row fits; it exits 1 and
names the first row that was edited, or that follows a deleted or inserted one. Note the head
hash somewhere else (a shift report): rows removed from the end leave a shorter chain that
still fits, and only a head noted earlier shows it.
"""

from __future__ import annotations

import argparse

from cli.common import open_history

EXIT_BROKEN = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    a = subparsers.add_parser("audit", help="the audit trail: check that nobody edited it")
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    v = asub.add_parser("verify", help="check the audit trail's hash chain; exit 1 naming the first broken row")
    v.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    v.set_defaults(func=cmd_audit_verify)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    db = open_history(args.db)
    try:
        check = db.verify_audit_chain()
    finally:
        db.close()
    if check.ok:
        print(f"OK: {check.rows} audit rows, chain intact; head {check.head}")
        return 0
    print(f"BROKEN: audit row {check.broken_id} {check.reason} ({check.rows - 1} rows before it fit)")
    return EXIT_BROKEN
