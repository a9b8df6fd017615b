"""What the manual's screenshot scripts share: a desktop of its own on pylon's emulated camera.

``operator_screenshots.py`` and ``teach_screenshots.py`` each run the real desktop offscreen, fed
by pylon's camera emulator replaying frames from a folder, with a history database, settings
folder and product of their own under the run's folder, and take the same first arguments and
refuse alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = "magnetic tile on a belt"


def refuser(script: str) -> Callable[..., NoReturn]:
    """The script's ``refuse(message, code=2)``: the message on stderr under the script's name, then
    exit ``code`` (2: something the run needs is missing; 1: the run itself fell short)."""

    def refuse(message: str, code: int = 2) -> NoReturn:
        print(f"{script}: {message}", file=sys.stderr)
        raise SystemExit(code)

    return refuse


def add_run_arguments(parser: argparse.ArgumentParser, *, model_help: str, out_help: str) -> None:
    """The positional arguments both scripts take first: the model, the line frames, the run's folder."""
    parser.add_argument("model", type=Path, help=model_help)
    parser.add_argument("frames", type=Path, help="frames built by scripts/build_line_frames.py")
    parser.add_argument("out", type=Path, help=out_help)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend and --device, passed to the desktop as ``inspector gui`` passes them (added apart
    from :func:`add_run_arguments` so that each script's help keeps its options in its own order)."""
    parser.add_argument("--backend", default="auto", help="engine backend, as inspector gui --backend")
    parser.add_argument("--device", default="auto", help="engine device, as inspector gui --device")


def require_gui(refuse: Callable[[str], None]) -> None:
    """Sets the environment the emulator and an offscreen Qt need, and refuses (through the
    script's own ``refuse``) where a package they need is missing, before anything loads."""
    os.environ.setdefault("PYLON_CAMEMU", "1")  # pylon lists its emulated cameras only with it
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for module, extra in (("pypylon", "basler"), ("PyQt6", "gui"), ("pyqtgraph", "gui")):
        if importlib.util.find_spec(module) is None:
            refuse(f"needs {module}: pip install -e '.[{extra}]'")
    sys.path.insert(0, str(ROOT))


def prepare_station(out: Path, size: tuple[int, int]) -> tuple[str, str, Path]:
    """A new history database, settings folder and :data:`PRODUCT` under ``out`` (made if need
    be): ``(db_url, camera_uri, replay)``, the emulator replaying whatever ``replay`` holds."""
    from inspector.history import HistoryDB
    from inspector.recipes import ensure_product

    replay, data = out / "replay", out / "data"
    replay.mkdir(parents=True)
    data.mkdir()
    os.environ["INSPECTOR_DATA_DIR"] = str(data)  # the desktop's settings and teach folder: its own
    db_url = f"sqlite:///{(out / 'history.db').as_posix()}"
    db = HistoryDB(db_url)
    db.upgrade()
    # The emulator sends at most Width×Height (1024×1040 by default): the product's camera
    # settings make it the frames' size, as a technician sets a real camera's ROI.
    width, height = size
    ensure_product(db, PRODUCT, camera_settings={"roi": [0, 0, width, height], "pixel_format": "Mono8"})
    db.close()
    return db_url, f"basler://emulated?images={replay}", replay


@contextmanager
def open_desktop(model: Path, db_url: str, camera: str, *, device: str, backend: str) -> Iterator[tuple[Any, Any]]:
    """``(qapp, app)``: the desktop put together as ``inspector gui --camera CAMERA --model MODEL``
    does (:class:`launcher.desktop.DesktopApp`) on :func:`prepare_station`'s database, closed on the
    way out; Python's garbage is collected on the GUI thread meanwhile, as in the desktop itself."""
    from PyQt6.QtWidgets import QApplication

    from launcher.desktop import DesktopApp, GuiOptions, garbage_collected_in_the_gui_thread

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    with garbage_collected_in_the_gui_thread():
        print(f"loading {model} ...", flush=True)
        app = DesktopApp(GuiOptions(db=db_url, cameras=(camera,), model=str(model), product=PRODUCT,
                                    device=device, backend=backend))
        try:
            yield qapp, app
        finally:
            app.close()
