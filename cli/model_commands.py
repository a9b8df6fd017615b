"""``inspector model``: what is done to a model file itself, outside teaching.

``inspector model upgrade FILE --user TECH`` converts a file without a metadata digest (written by
an older release, or stripped of it) so that it is read again. Such a file is refused everywhere
else (``predict``, ``run --model``, the desktop, teaching), since its threshold could have been
edited unseen; the conversion is a technician's, with their PIN, and audited.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_credential_options, caller, open_history


def register(subparsers: argparse._SubParsersAction) -> None:
    m = subparsers.add_parser("model", help="model files: convert one of an older release (technician, audited)")
    msub = m.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    u = msub.add_parser("upgrade", help="give a model file without a metadata digest (an older release's) its digest, "
                                        "in place; you vouch for its threshold")
    u.add_argument("model", type=Path, help="model file (.safetensors), rewritten atomically")
    u.add_argument("--db", help="history database URL for the audit (default: history.db in the data folder); "
                                "a registration of the file there is updated to the converted file")
    add_credential_options(u, who="the converting technician")
    u.set_defaults(func=cmd_model_upgrade)


def cmd_model_upgrade(args: argparse.Namespace) -> int:
    from station.actions import upgrade_model_file

    db = open_history(args.db)
    try:
        target = f"model:{args.model.resolve()}"
        meta = upgrade_model_file(db, caller(db, args, "upgrade_model", target), args.model)
    finally:
        db.close()
    threshold = meta.get("threshold")
    print(f"{args.model}: converted ({meta.get('kind')} file, "
          f"{'not calibrated' if threshold is None else f'threshold {threshold:.6g}'}); audited as upgrade_model")
    return 0
