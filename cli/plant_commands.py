"""``inspector plant``: the plant database's own settings and upkeep.

``inspector plant retention --db URL --days N --user NAME`` keeps the stations' images in the
plant database N days after it received them (a quality engineer's or technician's right, with
their PIN as for every audited command; audited as ``set_image_retention`` with before and
after); ``--off`` removes the retention. ``inspector plant prune --db URL`` removes the images
received before it, now (``inspector serve`` does the same every hour); the inspection rows stay.
"""

from __future__ import annotations

import argparse
import math

from cli.common import add_credential_options, caller, open_history, quiet_migrations, shell_user
from inspector.errors import InspectorError

DB_HELP = "the plant's history database URL, e.g. postgresql://USER@HOST/DB (default: history.db in the data folder)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plant", help="the plant database: how long it keeps the stations' images")
    psub = p.add_subparsers(dest="plant_command", required=True, metavar="COMMAND")
    r = psub.add_parser("retention", help="keep the stations' images N days after the plant receives them "
                        "(a quality engineer's or technician's right, audited)")
    r.add_argument("--db", help=DB_HELP)
    days = r.add_mutually_exclusive_group(required=True)
    days.add_argument("--days", metavar="N", help="days an image is kept after it reached the plant (> 0)")
    days.add_argument("--off", action="store_true", help="no retention: keep images until removed otherwise")
    add_credential_options(r, required=False, who="a quality engineer or technician")
    r.set_defaults(func=cmd_plant_retention)
    pr = psub.add_parser("prune", help="remove the images received before the retention now (the rows stay)")
    pr.add_argument("--db", help=DB_HELP)
    pr.set_defaults(func=cmd_plant_prune)


def cmd_plant_retention(args: argparse.Namespace) -> int:
    from station.actions import set_image_retention
    from station.plant_images import RETENTION, shown

    days = None if args.off else _days(args.days)
    db = _open(args.db)
    try:
        # the right and the PIN are the action's to check (a refusal audited as set_image_retention_denied)
        before, after = set_image_retention(db, caller(db, args, "set_image_retention", f"setting:{RETENTION}"), days)
    finally:
        db.close()
    print(f"image retention of {db.url}: {shown(before)} -> {shown(after)}"
          + ("; older images go at the next prune (inspector plant prune, or hourly beside inspector serve)"
             if after is not None else ""))
    return 0


def cmd_plant_prune(args: argparse.Namespace) -> int:
    from station.plant_images import describe, object_reader, prune

    db = _open(args.db)
    try:
        print(describe(prune(db, object_reader(), by=shell_user())))
    finally:
        db.close()
    return 0


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise InspectorError(f"--days takes a number of days, got {text!r}") from None
    if not (math.isfinite(days) and days > 0):
        raise InspectorError(f"--days must be a positive number of days, got {text} (--off removes the retention)")
    return days


def _open(url: str | None):  # noqa: ANN202 -- a HistoryDB, imported late (alembic logs at import)
    """The plant's database, migrated; a SQLite file that does not exist is refused, never made."""
    quiet_migrations()
    from inspector.history import default_db_url
    from station.actions import require_existing_db

    require_existing_db(url or default_db_url())
    return open_history(url)
