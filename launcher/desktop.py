"""Putting the operator desktop together: database, recipe, camera, line, models, pages, window.

:class:`DesktopApp` builds everything from :class:`GuiOptions` (the ``inspector gui`` options) and
the saved :class:`~ui.settings_model.GuiSettings`; the defaults are the embedded demo: SQLite in
the user's data folder, the ELPV solar-cell sample replayed by an emulated Basler camera, and the
shipped demo model. :func:`take_screenshots` runs it for a few seconds and saves each page.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QPoint, QTimer
from PyQt6.QtWidgets import QApplication
from pyqtgraph.util.garbage_collector import GarbageCollector

from inspector.errors import DataError
from inspector.history import HistoryDB, data_dir, default_db_url
from inspector.recipes import LoadedRecipe, load_active_recipe, load_model_file_recipe

import demo
from ui.line import LineModel, desktop_config
from ui.main_window import MainWindow
from ui.operator_page import OperatorPage
from ui.review_model import ReviewModel
from ui.review_page import ReviewPage
from ui.session import Session
from ui.settings_model import SETTINGS_FILE, GuiSettings, SettingsModel, link_settings, no_part_alarm_setting
from ui.settings_page import SettingsPage
from ui.teach_model import TeachModel
from ui.teach_page import TeachPage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuiOptions:
    """``inspector gui`` options; None (no cameras) means the saved setting, else the demo default."""

    db: str | None = None
    cameras: tuple[str, ...] = ()  # several: one line each on one engine
    model: str | None = None
    product: str | None = None
    device: str = "auto"
    backend: str = "auto"
    max_batch: int | None = None  # several cameras: frames per forward pass at most (None: measured)


def resolve_recipe(db: HistoryDB, options: GuiOptions, settings: GuiSettings) -> LoadedRecipe:
    """What the line starts with, loaded: ``--model`` (registered like ``inspector run`` does, its
    rule from :func:`inspector.recipes.model_file_recipe`), else the active recipe of
    ``--product`` or of the saved product, else the demo's."""
    if options.model:
        return load_model_file_recipe(db, options.model, options.product, device=options.device, backend=options.backend)
    product = options.product or settings.product
    if product is not None:
        try:
            return load_active_recipe(db, product, device=options.device, backend=options.backend)
        except DataError:
            if options.product:
                raise
            log.warning("saved product %r has no active model here", product)
    taught = _last_activated_product(db)
    if taught is not None:  # a station's history: its own product, never the demo's model among its parts
        log.warning("no product chosen: starting with %r, the product activated last in %s (choose another on the "
                    "Settings page, or give --product)", taught, db.url)
        return load_active_recipe(db, taught, device=options.device, backend=options.backend)
    demo.register_demo_model(db)
    return load_active_recipe(db, demo.DEMO_PRODUCT, device=options.device, backend=options.backend)


def _last_activated_product(db: HistoryDB) -> str | None:
    """Of the history's products with an active model, other than the demo's, the one whose model
    was activated last (None: there is none, a new station's history)."""
    taught = []
    for name, product_id in db.products():
        if name == demo.DEMO_PRODUCT or db.product_by_name(name).active_model_version_id is None:
            continue
        last = db.last_activation(product_id)
        taught.append((last.time if last is not None else None, product_id, name))
    if not taught:
        return None
    return max(taught, key=lambda t: (t[0] is not None, t[0] or 0, t[1]))[2]


def resolve_cameras(options: GuiOptions, settings: GuiSettings, folder: Path) -> tuple[tuple[str, ...], str]:
    """(camera URIs, trigger): ``--camera`` s, else the saved cameras, else the demo camera,
    which replays the ELPV sample, copied on first start."""
    uris = options.cameras or settings.camera_uris
    if not uris:
        uris = (demo.demo_camera_uri(demo.ensure_replay_folder(folder)),)
    # An emulated camera in free run sends ~100 frames/s: present parts one at a time instead.
    default = "software" if any(uri.startswith("basler://emulated") for uri in uris) else "free_run"
    trigger = default if options.cameras else (settings.trigger or default)
    return tuple(uris), trigger


class DesktopApp:
    """Everything the desktop holds. Call :meth:`start` to run the line, :meth:`close` at the end."""

    def __init__(self, options: GuiOptions = GuiOptions()) -> None:
        self.options = options
        self.data_dir = data_dir()
        self.db = HistoryDB(options.db or default_db_url())
        self.db.upgrade()
        self.settings_path = self.data_dir / SETTINGS_FILE
        self.settings = GuiSettings.load(self.settings_path)
        uris, trigger = resolve_cameras(options, self.settings, self.data_dir)
        image_dir = (self.db.sqlite_path.parent if self.db.sqlite_path is not None else self.data_dir) / "images"
        # Before the model loads (seconds): a camera given twice, PLCs that do not pair with the
        # cameras, are refused at once.
        config = desktop_config(uris, image_dir, trigger=trigger, quota_gb=self.settings.quota_gb,
                                pass_sample_rate=self.settings.pass_sample_rate, max_batch=options.max_batch,
                                no_part_alarm_after=no_part_alarm_setting(self.settings), **link_settings(self.settings))
        recipe = resolve_recipe(self.db, options, self.settings)
        product = self.db.product_by_name(recipe.product)
        config = config.with_changes(product=recipe.product,
                                     camera_settings=dict(product.camera_settings or {}) if product else {})
        self.session = Session(self.db)
        # The plant's product changes (a PLC's product number, OPC UA) load as the desktop does.
        load = lambda name: load_active_recipe(self.db, name, device=options.device, backend=options.backend)  # noqa: E731
        self.line = LineModel(self.db, config, recipe, load_product=load)
        self.teach = TeachModel(self.db, self.line, self.session, device=options.device, backend=options.backend)
        self.review = ReviewModel(self.db, self.session)
        self.settings_model = SettingsModel(self.db, self.line, self.session, self.settings, self.settings_path,
                                            device=options.device, backend=options.backend)
        self.pages = {
            "operator": OperatorPage(self.line, self.session),
            "teach": TeachPage(self.teach, self.line, self.session),
            "review": ReviewPage(self.review, self.session, product_provider=lambda: self.line.recipe.product),
            "settings": SettingsPage(self.settings_model, self.session),
        }
        self.window = MainWindow(self.session, self.pages)
        self.window.resize(1400, 900)

    def start(self) -> bool:
        return self.line.start()

    def close(self) -> None:
        self.line.stop()
        self.db.close()


SCREENSHOT_PAGES = (("operator", "operator"), ("teach", "technician"), ("review", "quality"), ("settings", "technician"))


def wait_for(qapp: QApplication, condition, timeout_s: float) -> bool:
    """Runs the event loop until ``condition()`` or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        qapp.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def take_screenshots(app: DesktopApp, out: Path, seconds: float = 5.0, fail_wait_s: float = 20.0,
                     first_result_timeout_s: float = 120.0) -> dict[str, Any]:
    """Runs the line until a part is shown and ``seconds`` more -- and up to ``fail_wait_s`` longer
    until a rejected part is on screen, which shows more of the page -- then saves one PNG per
    page (``operator.png``, ``teach.png``, ``review.png``, ``settings.png``) and
    ``screenshots.json`` describing them (the operator banner's rectangle and the inspection it
    shows)."""
    qapp = QApplication.instance()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    app.window.show()
    if not app.start():
        raise DataError("the line did not start: " + "; ".join(a.message for a in app.line.alarms))
    operator: OperatorPage = app.pages["operator"]
    if not wait_for(qapp, lambda: operator.shown is not None, first_result_timeout_s):
        raise DataError(f"no part was inspected within {first_result_timeout_s:g} s")
    wait_for(qapp, lambda: False, seconds)
    wait_for(qapp, lambda: operator.shown.decision == "FAIL", fail_wait_s)
    info: dict[str, Any] = {"pages": {}}
    try:
        for page, role in SCREENSHOT_PAGES:
            app.session.preview(role)
            app.window.show_page(page)
            if page == "review":
                review: ReviewPage = app.pages["review"]
                wait_for(qapp, lambda: False, 0.2)
                if review.select_first("FAIL") is None and review.select_first() is None:
                    review.table.selectRow(0)
            wait_for(qapp, lambda: False, 0.5)
            app.window.grab().save(str(out / f"{page}.png"))
            entry: dict[str, Any] = {"file": f"{page}.png", "role": role}
            if page == "operator":
                shown = operator.shown
                banner = operator.banner_of(shown)
                top_left = banner.mapTo(app.window, QPoint(0, 0))
                entry.update(
                    banner_rect=[top_left.x(), top_left.y(), banner.width(), banner.height()],
                    decision=shown.decision, inspection_id=shown.inspection_id, score=shown.score,
                    threshold=shown.threshold,
                )
            info["pages"][page] = entry
    finally:
        app.session.sign_out()
    app.line.stop()
    info["recorded"] = sum(view.metrics.recorded for view in app.line.views.values() if view.metrics is not None)
    (out / "screenshots.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def launch(options: GuiOptions, screenshots: Path | None = None, screenshot_seconds: float = 5.0) -> int:
    """Runs the desktop until its window closes (or Ctrl-C); with ``screenshots``, runs the line
    for a few seconds, saves one PNG per page there and returns. The exit status."""
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    with garbage_collected_in_the_gui_thread():
        return _launch(qapp, options, screenshots, screenshot_seconds)


@contextmanager
def garbage_collected_in_the_gui_thread(interval_s: float = 1.0) -> Iterator[GarbageCollector]:
    """Python's cycle collector, run only by a timer of the GUI thread while the block runs.

    Left automatic it runs in whichever thread happens to allocate -- the camera's, the
    pipeline's -- and a Qt object it frees there dies under the GUI thread's painter: a segfault
    in a plot's paint, long after the object was dropped."""
    was_enabled = gc.isenabled()
    collector = GarbageCollector(interval=interval_s)
    try:
        yield collector
    finally:
        collector.timer.stop()
        gc.collect()
        if was_enabled:
            gc.enable()


def _launch(qapp: QApplication, options: GuiOptions, screenshots: Path | None, screenshot_seconds: float) -> int:
    print("loading the model and opening the camera ...", flush=True)
    app = DesktopApp(options)
    try:
        if screenshots is not None:
            info = take_screenshots(app, screenshots, seconds=screenshot_seconds)
            print(f"screenshots of {', '.join(info['pages'])} written to {screenshots} "
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
