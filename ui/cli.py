"""``inspector gui`` (the operator desktop) and ``inspector users`` (accounts for signing in).

The main command (``inspector/cli.py``) calls :func:`register` with its sub-parsers. Qt is
imported only when ``gui`` runs, so ``inspector --help`` works without a display or PyQt6.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from pathlib import Path

from inspector import ENGINE_BACKENDS
from inspector.errors import InspectorError


def register(subparsers: argparse._SubParsersAction) -> None:
    device = dict(choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: CUDA when present)")
    p = subparsers.add_parser(
        "gui",
        help="the operator desktop (live view, teach, review, settings)",
        description="Open the operator desktop. Without options it runs the built-in demo: a history "
        "database in the data folder, an emulated Basler camera replaying real solar-cell images "
        "(ELPV dataset, CC BY-NC-SA 4.0) and the shipped demo model.",
    )
    p.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    p.add_argument("--camera", help="camera URI, e.g. basler://SERIAL, basler://emulated?images=/folder, folder:///images?fps=5")
    p.add_argument("--model", help="model file (.safetensors); default: the product's active model, else the demo model")
    p.add_argument("--product", help="product (recipe) to put on the line")
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto",
                   help="inference backend (auto: the fastest here)")
    p.add_argument("--device", **device)
    p.add_argument("--screenshots", type=Path, metavar="DIR",
                   help="run the line for a few seconds, save one PNG per page into DIR, and exit")
    p.add_argument("--screenshot-seconds", type=float, default=5.0, help="with --screenshots: seconds to run first")
    p.set_defaults(func=cmd_gui)

    u = subparsers.add_parser("users", help="people who sign in to the desktop (technician, quality, operator)")
    usub = u.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    a = usub.add_parser("add", help="add a user; the PIN is asked for (or read from stdin)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=("operator", "technician", "quality"))
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


def _open_db(url: str | None):
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from inspector.history import HistoryDB, default_db_url

    db = HistoryDB(url or default_db_url())
    db.upgrade()
    return db


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
    db = _open_db(args.db)
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
    db = _open_db(args.db)
    try:
        for name, role in db.list_users():
            print(f"{name}\t{role}")
    finally:
        db.close()
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.screenshots is not None and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # screenshots need no screen
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError:
        raise InspectorError("the desktop needs PyQt6 and pyqtgraph: pip install 'inspector[gui]'") from None

    from ui.app import DesktopApp, GuiOptions, take_screenshots

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    options = GuiOptions(db=args.db, camera=args.camera, model=args.model, product=args.product,
                         device=args.device, backend=args.backend)
    print("loading the model and opening the camera ...", flush=True)
    app = DesktopApp(options)
    try:
        if args.screenshots is not None:
            info = take_screenshots(app, args.screenshots, seconds=args.screenshot_seconds)
            print(f"screenshots of {', '.join(info['pages'])} written to {args.screenshots} "
                  f"({info['recorded']} parts inspected and recorded)")
            return 0
        app.window.show()
        app.start()
        # Ctrl-C in the terminal closes the window (Qt's loop alone would not let Python see it).
        signal.signal(signal.SIGINT, lambda *_: qapp.quit())
        tick = QTimer()
        tick.timeout.connect(lambda: None)
        tick.start(250)
        return qapp.exec()
    finally:
        app.close()
