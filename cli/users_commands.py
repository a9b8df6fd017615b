"""``inspector users``: the accounts that sign in to the desktop (PINs as salted scrypt hashes).

Adding, re-PINning and removing accounts is a technician's right, as on the desktop: each
needs ``--by NAME`` and that technician's PIN (``$INSPECTOR_PIN``, ``--pin-file``, or typed at a
terminal). The one exception is the first technician of a database that has none, which
whoever installs the line creates once (audited as ``add_first_technician``). Changes are
audited; the last technician cannot be removed. ``users list`` needs no PIN.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.common import NEW_PIN_ENV, add_credential_options, open_history, read_new_pin, shell_user, verified_user
from inspector.roles import ROLES, TECHNICIAN, AccessDenied, roles_with

DB_HELP = "history database URL (default: history.db in the data folder)"


def register(subparsers: argparse._SubParsersAction) -> None:
    u = subparsers.add_parser("users", help="people who sign in to the desktop (technician, quality, operator)")
    usub = u.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    a = usub.add_parser("add", help="add a user (a technician's right; the first technician of a new database adds themselves)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    _new_pin_option(a)
    _by_options(a)
    a.set_defaults(func=cmd_users_add)
    ls = usub.add_parser("list", help="list users and their roles")
    ls.add_argument("--db", help=DB_HELP)
    ls.set_defaults(func=cmd_users_list)
    pin = usub.add_parser("pin", help="set a user's PIN (a technician's right)")
    pin.add_argument("name")
    _new_pin_option(pin)
    _by_options(pin)
    pin.set_defaults(func=cmd_users_pin)
    rm = usub.add_parser("remove", help="remove a user (a technician's right; their past records keep their name)")
    rm.add_argument("name")
    _by_options(rm)
    rm.set_defaults(func=cmd_users_remove)


def _by_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help=DB_HELP)
    add_credential_options(p, "--by")


def _new_pin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--new-pin-file", type=Path, default=None, metavar="FILE",
                   help=f"file holding the user's new PIN (mode 0600); else ${NEW_PIN_ENV}, asked twice at a "
                   "terminal, or one line on stdin")


def _change_users(args: argparse.Namespace, action: str, change: Callable[[Any, str], Any], done: str) -> int:
    """Run ``change(db, by)`` on the users of ``--db`` once ``--by`` is verified as a technician
    (before a new PIN is asked for: nobody types one for a change they may not make)."""
    db = open_history(args.db)
    try:
        by, _ = verified_user(db, args.by, args.pin_file, action, f"user:{args.name}", roles_with("manage_users"),
                              user_option="--by")
        change(db, by)
    finally:
        db.close()
    print(done)
    return 0


def cmd_users_pin(args: argparse.Namespace) -> int:
    return _change_users(args, "set_pin", lambda db, by: db.set_pin(args.name, read_new_pin(args.name, args.new_pin_file), by=by),
                         f"PIN of {args.name!r} changed")


def cmd_users_remove(args: argparse.Namespace) -> int:
    return _change_users(args, "remove_user", lambda db, by: db.remove_user(args.name, by=by), f"user {args.name!r} removed")


def cmd_users_add(args: argparse.Namespace) -> int:
    if args.by is None and _has_no_technician(args.db):
        return _add_first_technician(args)
    return _change_users(args, "add_user",
                         lambda db, by: db.add_user(args.name, args.role, read_new_pin(args.name, args.new_pin_file), by=by),
                         f"user {args.name!r} added as {args.role}")


def _has_no_technician(url: str | None) -> bool:
    db = open_history(url)
    try:
        return all(role != TECHNICIAN for _, role in db.list_users())
    finally:
        db.close()


def _add_first_technician(args: argparse.Namespace) -> int:
    """The bootstrap: a database with no technician gets its first one without ``--by`` (once:
    :meth:`HistoryDB.add_first_technician` refuses when a technician exists, even one added
    since we looked). Any other first account is refused: only a technician adds accounts."""
    db = open_history(args.db)
    try:
        if args.role != TECHNICIAN:
            db.record_audit(shell_user(), "unknown", "add_user_denied", f"user:{args.name}", None,
                            {"reason": "no technician yet", "role": args.role})
            raise AccessDenied(f"add_user refused: {db.url} has no technician yet; add the first one with "
                               f"`inspector users add NAME --role technician`, then add {args.name!r} --by them")
        db.add_first_technician(args.name, read_new_pin(args.name, args.new_pin_file), via="cli")
    finally:
        db.close()
    print(f"user {args.name!r} added as the first technician")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    db = open_history(args.db)
    try:
        for name, role in db.list_users():
            print(f"{name}\t{role}")
    finally:
        db.close()
    return 0
