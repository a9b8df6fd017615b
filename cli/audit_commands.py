"""``inspector audit``: checks that the history is as it was written.

``inspector audit verify`` checks the audit trail's hash chain and its head (rows deleted from the
end, or all of them, are reported), each user's row against the audit event that set it (a role
edited by hand is reported), and the verdicts' sealed batches (an edited, deleted or inserted
inspection is named). It exits 0 and prints both heads when all fit; else it exits 1 with one
line naming what does not. Note the heads somewhere else (a shift report): the seals hold no
secret, so only a head noted earlier shows a history rewritten from its start.
"""

from __future__ import annotations

import argparse

from cli.common import open_history, quiet_migrations

EXIT_BROKEN = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    a = subparsers.add_parser("audit", help="the audit trail: check that nobody edited it")
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    v = asub.add_parser("verify", help="check the audit trail's hash chain and head, the users' rows and the sealed "
                                       "verdicts; exit 1 naming the first that does not fit")
    v.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    v.set_defaults(func=cmd_audit_verify)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    quiet_migrations()
    from inspector.history import default_db_url
    from station.actions import require_existing_db

    # A database file that is not there has no trail to check: opening it would make an empty
    # one, whose empty trail is intact ('OK: 0 audit rows'), of a path typed wrong.
    require_existing_db(args.db or default_db_url())
    db = open_history(args.db)
    try:
        chain, users, verdicts = db.verify_history()
    finally:
        db.close()
    problems = ([] if chain.ok else [chain.describe()]) + users + ([verdicts.problem] if verdicts.problem else [])
    if problems:
        print(f"BROKEN: {'; '.join(problems)}")
        return EXIT_BROKEN
    print(f"OK: {chain.describe()}; every user's row matches the trail; {verdicts.rows} inspections in "
          f"{verdicts.batches} sealed batch{'' if verdicts.batches == 1 else 'es'}, head {verdicts.head}")
    return 0
