"""``inspector gui``: the operator desktop, started through :mod:`launcher`.

Qt is imported only when ``gui`` runs, so ``inspector --help`` works without a display or PyQt6.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.common import DEVICE_OPTION, MAX_BATCH_OPTION, quiet_migrations
from inspector import ENGINE_BACKENDS
from inspector.errors import InspectorError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gui",
        help="the operator desktop (live view, teach, review, settings)",
        description="Open the operator desktop. Without options it runs the built-in demo: a history "
        "database in the data folder, an emulated Basler camera replaying real solar-cell images "
        "(ELPV dataset, CC BY-NC-SA 4.0) and the shipped demo model.",
    )
    p.add_argument("--db", help="history database URL (default: history.db in the data folder)")
    p.add_argument("--camera", action="append",
                   help="camera URI, e.g. basler://SERIAL, basler://emulated?images=/folder, folder:///images?fps=5; "
                   "give it once per camera to run several on one engine")
    p.add_argument("--model", help="model file (.safetensors); default: the product's active model, else the demo model")
    p.add_argument("--product", help="product (recipe) to put on the line")
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto",
                   help="inference backend (auto: the fastest here)")
    p.add_argument("--device", **DEVICE_OPTION)
    p.add_argument("--max-batch", **MAX_BATCH_OPTION)
    p.add_argument("--screenshots", type=Path, metavar="DIR",
                   help="run the line for a few seconds, save one PNG per page into DIR, and exit")
    p.add_argument("--screenshot-seconds", type=float, default=5.0, help="with --screenshots: seconds to run first")
    p.set_defaults(func=cmd_gui)


def cmd_gui(args: argparse.Namespace) -> int:
    quiet_migrations()
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if args.screenshots is not None and not has_display:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # screenshots need no screen
    if not has_display and not os.environ.get("QT_QPA_PLATFORM") and sys.platform.startswith("linux"):
        # Qt would abort the process with a core dump and a page about plugins; an SSH session
        # without X forwarding or a service unit is the usual cause. (Windows and macOS always
        # have their own platform plugin.)
        raise InspectorError("no display found (neither DISPLAY nor WAYLAND_DISPLAY is set): run the desktop on the "
                             "station's screen, run the line headless with 'inspector run', or set "
                             "QT_QPA_PLATFORM=offscreen to start the desktop without a screen")
    try:
        from launcher.desktop import GuiOptions, launch
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("PyQt6", "pyqtgraph"):
            raise
        raise InspectorError("the desktop needs PyQt6 and pyqtgraph: pip install 'inspector[gui]'") from None
    options = GuiOptions(db=args.db, cameras=tuple(args.camera or ()), model=args.model, product=args.product,
                         device=args.device, backend=args.backend, max_batch=args.max_batch)
    return launch(options, screenshots=args.screenshots, screenshot_seconds=args.screenshot_seconds)
