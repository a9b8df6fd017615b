"""``inspector users``: the accounts that sign in to the desktop (PINs as salted scrypt hashes).

Changes are audited; the last technician cannot be removed.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from cli.common import open_history
from inspector.errors import InspectorError
from inspector.roles import ROLES


def register(subparsers: argparse._SubParsersAction) -> None:
    u = subparsers.add_parser("users", help="people who sign in to the desktop (technician, quality, operator)")
    usub = u.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    a = usub.add_parser("add", help="add a user; the PIN is asked for (or read from stdin)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--pin", help="the PIN (default: asked for, or one line on stdin)")
    a.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    a.set_defaults(func=cmd_users_add)
    ls = usub.add_parser("list", help="list users and their roles")
    ls.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    ls.set_defaults(func=cmd_users_list)
    pin = usub.add_parser("pin", help="set a user's PIN (asked for, or one line on stdin)")
    pin.add_argument("name")
    pin.add_argument("--pin", help="the new PIN (default: asked for, or one line on stdin)")
    pin.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    pin.set_defaults(func=cmd_users_pin)
    rm = usub.add_parser("remove", help="remove a user (their past records keep their name)")
    rm.add_argument("name")
    rm.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    rm.set_defaults(func=cmd_users_remove)




def _read_pin(args: argparse.Namespace) -> str:
    if args.pin is not None:
        return args.pin
    if sys.stdin.isatty():
        pin = getpass.getpass(f"PIN for {args.name}: ")
        if getpass.getpass("again: ") != pin:
            raise InspectorError("the two PINs differ; nothing was changed")
        return pin
    return sys.stdin.readline().strip()


def _change_users(args: argparse.Namespace, change, done: str) -> int:
    """Run ``change(db, by)`` on the users of ``--db`` (``by`` names the shell account, for the audit)."""
    db = open_history(args.db)
    try:
        change(db, f"cli:{getpass.getuser()}")
    finally:
        db.close()
    print(done)
    return 0


def cmd_users_pin(args: argparse.Namespace) -> int:
    pin = _read_pin(args)
    return _change_users(args, lambda db, by: db.set_pin(args.name, pin, by=by), f"PIN of {args.name!r} changed")


def cmd_users_remove(args: argparse.Namespace) -> int:
    return _change_users(args, lambda db, by: db.remove_user(args.name, by=by), f"user {args.name!r} removed")


def cmd_users_add(args: argparse.Namespace) -> int:
    pin = _read_pin(args)
    return _change_users(args, lambda db, by: db.add_user(args.name, args.role, pin, by=by), f"user {args.name!r} added as {args.role}")


def cmd_users_list(args: argparse.Namespace) -> int:
    db = open_history(args.db)
    try:
        for name, role in db.list_users():
            print(f"{name}\t{role}")
    finally:
        db.close()
    return 0
