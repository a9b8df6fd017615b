"""Line settings the GUI keeps (camera, trigger, product, storage, links, the NO PART alarm), and changing them.

:class:`GuiSettings` is a small JSON file (``gui.json`` in the data folder); no Qt there.
:class:`SettingsModel` applies changes: each is rights-checked, audited, saved, and restarts the
line where it must (a new camera or storage quota); camera exposure and gain belong to the
product's recipe (``inspector.recipes.set_camera_settings``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

from inspector.recipes import list_products, load_active_recipe, set_camera_settings
from drivers import open_camera
from inspector.data_folder import make_folders
from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.line import NO_PART_ALARM_AFTER
from station import actions
from station.config import PLC_DOWN_POLICIES, check_link

from ui.line import LINK_TITLES, LineModel
from ui.session import Session
from ui.worker import Task, run_task

log = logging.getLogger(__name__)

SETTINGS_FILE = "gui.json"
#: Seconds a "Test connection" waits for an answer.
LINK_TEST_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class GuiSettings:
    """What the operator desktop remembers between starts (None: the built-in default).

    ``camera_uri`` is the camera, or the first of several; ``more_camera_uris`` the others, in
    order (files saved before there were several have none). ``no_part_alarm_after``: NO PART
    frames in a row that raise ``no_part_run`` (None, saved as null: never)."""

    camera_uri: str | None = None
    trigger: str | None = None
    product: str | None = None
    quota_gb: float = 5.0
    pass_sample_rate: float = 0.05
    plc_uri: str | None = None
    plc_down: str = "ng"
    mqtt_uri: str | None = None
    opcua_uri: str | None = None
    plant_db_url: str | None = None
    more_camera_uris: tuple[str, ...] = ()
    no_part_alarm_after: int | None = NO_PART_ALARM_AFTER  # None: never

    def __post_init__(self) -> None:
        object.__setattr__(self, "more_camera_uris", tuple(self.more_camera_uris))  # a list in the file

    @property
    def camera_uris(self) -> tuple[str, ...]:
        """Every saved camera, in order; none without a saved camera."""
        return () if self.camera_uri is None else (self.camera_uri, *self.more_camera_uris)

    @classmethod
    def load(cls, path: Path) -> GuiSettings:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings %s: %s", path, exc)
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        from inspector.model_file import atomic_write

        make_folders(Path(path).parent)
        # Readable by its owner only: a link's URI may hold a password (the plant database's, an
        # MQTT broker's). Better still, keep it out of the URI (docs/plant-links.md, "Passwords").
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(asdict(self), indent=2) + "\n"), mode=0o600)


def link_settings(settings: GuiSettings) -> dict[str, Any]:
    """The plant links of ``settings`` as :class:`~station.StationConfig` takes them: the PLC field
    holds one URI per camera, separated by spaces."""
    plc_down = settings.plc_down if settings.plc_down in PLC_DOWN_POLICIES else "ng"  # a hand-edited file
    return {"plc": tuple((settings.plc_uri or "").split()), "plc_down": plc_down, "publish": settings.mqtt_uri,
            "opcua": settings.opcua_uri, "plant_db": settings.plant_db_url}


def no_part_alarm_setting(settings: GuiSettings) -> int | None:
    """The saved NO PART alarm count, or the default for one the station would refuse (a
    hand-edited file must not keep the desktop from starting)."""
    count = settings.no_part_alarm_after
    if count is None or (type(count) is int and count >= 1):
        return count
    log.warning("ignoring the saved NO PART alarm count %r: not a whole number >= 1", count)
    return NO_PART_ALARM_AFTER


class SettingsModel(QObject):
    """Signals: ``settings_changed()``, ``message(text, is_error)``, ``busy_changed(bool)``,
    ``link_tested(name, text, ok)``: a "Test connection" of a plant link ended."""

    settings_changed = pyqtSignal()
    message = pyqtSignal(str, bool)
    busy_changed = pyqtSignal(bool)
    link_tested = pyqtSignal(str, str, bool)

    def __init__(self, db: HistoryDB, line: LineModel, session: Session, settings: GuiSettings, path: Path,
                 device: str = "auto", backend: str = "auto", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db, self.line, self.session = db, line, session
        self.settings, self.path = settings, Path(path)
        self.device, self.backend = device, backend
        self._tasks: list[Task] = []

    def products(self) -> list[str]:
        return list_products(self.db)

    def camera_settings(self) -> dict[str, Any]:
        product = self.db.product_by_name(self.line.recipe.product)
        return dict(product.camera_settings or {}) if product is not None else {}

    def _save(self, **changes: Any) -> None:
        self.settings = replace(self.settings, **changes)
        self.settings.save(self.path)
        self.settings_changed.emit()

    def apply_camera(self, uri: str, trigger: str, exposure_us: float | None, gain_db: float | None,
                     more_uris: Sequence[str] = ()) -> bool:
        """Switches camera (and ``more_uris``: the other cameras on one engine, in order; empty
        ones ignored), trigger and the product's exposure and gain (every camera's); restarts the line."""
        uris = [uri.strip(), *(u.strip() for u in more_uris if u.strip())]
        for one in uris:
            open_camera(one)  # a malformed URI is refused before anything changes
        settings = {**self.camera_settings(), "exposure_us": exposure_us, "gain_db": gain_db}
        settings = {k: v for k, v in settings.items() if v is not None}
        # Checked (a camera twice, PLCs that no longer pair with the cameras), authorized, audited.
        config, actor = actions.set_cameras(self.db, self.session.caller(), self.line.config, uris, trigger, settings,
                                            product=str(self.line.recipe.product_id))
        if settings != self.camera_settings():
            set_camera_settings(self.db, self.line.recipe.product, settings, user=actor.user,
                                pin=self.session.caller().pin)
        self._save(camera_uri=uris[0], more_camera_uris=tuple(uris[1:]), trigger=trigger)
        ok = self.line.restart(config)
        cameras = f"camera {uris[0]}" if len(uris) == 1 else f"{len(uris)} cameras ({', '.join(uris)})"
        self.message.emit(f"{cameras} " + ("running" if ok else "could not be started: see the alarms"), not ok)
        return ok

    def set_storage(self, quota_gb: float, pass_sample_rate: float) -> None:
        config = actions.set_storage(self.db, self.session.caller(), self.line.config, quota_gb, pass_sample_rate)
        self._save(quota_gb=quota_gb, pass_sample_rate=pass_sample_rate)
        self.line.restart(config)
        self.message.emit(f"images: quota {quota_gb:g} GB, {100 * pass_sample_rate:g} % of passes kept", False)

    def set_no_part_alarm(self, count: int | None) -> bool:
        """Raise ``no_part_run`` after ``count`` NO PART frames in a row (None: never) and restart
        the line with it, as the other line settings do. A count that is not a whole number >= 1
        is refused (InspectorError) before anything is written; a technician's (the right to
        configure the camera), audited as ``set_no_part_alarm``."""
        config = actions.set_no_part_alarm(self.db, self.session.caller(), self.line.config, count)
        self._save(no_part_alarm_after=count)
        ok = self.line.restart(config)
        setting = "off" if count is None else f"after {count} NO PART frames in a row"
        self.message.emit(f"NO PART alarm {setting}" + ("; line restarted" if ok else "; the line could not be started: "
                                                        "see the alarms"), not ok)
        return ok

    def choose_product(self, name: str) -> Task:
        """Puts the product's active recipe and camera settings on the line: the right checked,
        the recipe loaded and the choice audited off the GUI thread (a refusal or a product
        without an active model ends as a message; the line keeps its product)."""
        before, caller = self.line.recipe.product, self.session.caller()

        def load(product: str) -> Any:
            return load_active_recipe(self.db, product, device=self.device, backend=self.backend)

        def finished(recipe) -> None:
            self._tasks.remove(task)
            self._save(product=name)
            self.line.stop(why="product changed")
            self.line.set_recipe(recipe)
            self.line.config = self.line.config.with_changes(product=name, camera_settings=self.camera_settings())
            ok = self.line.start()
            self.busy_changed.emit(False)
            self.message.emit(f"product {name!r} on the line (model version {recipe.model_version_id})"
                              + ("" if ok else "; the line could not be started: see the alarms"), not ok)

        def failed(text: str) -> None:
            self._tasks.remove(task)
            self.busy_changed.emit(False)
            self.message.emit(text, True)

        self.busy_changed.emit(True)
        task = run_task("product change", lambda t: actions.choose_product(self.db, caller, before, name, load), self,
                        finished=finished, failed=failed)
        self._tasks.append(task)
        return task

    def set_links(self, plc_uri: str | None, plc_down: str, mqtt_uri: str | None, opcua_uri: str | None,
                  plant_db_url: str | None) -> bool:
        """Sets the plant links (empty: none; the PLC: one URI per camera, in camera order,
        separated by spaces) and restarts the line with them. Each URI is checked before
        anything changes; a technician's (the right to configure the camera), audited as
        ``set_links`` (a database password hidden)."""
        def clean(uri: str | None) -> str | None:
            return (uri or "").strip() or None

        plcs = tuple((plc_uri or "").split())
        config = actions.set_links(self.db, self.session.caller(), self.line.config,
                                   {"plc": plcs, "publish": clean(mqtt_uri), "opcua": clean(opcua_uri),
                                    "plant_db": clean(plant_db_url)}, plc_down)
        self._save(plc_uri=" ".join(plcs) or None, plc_down=plc_down, mqtt_uri=config.publish, opcua_uri=config.opcua,
                   plant_db_url=config.plant_db)
        ok = self.line.restart(config)
        configured = [LINK_TITLES[name] for name in config.links()]
        self.message.emit(("plant links: " + ", ".join(configured) if configured else "no plant links")
                          + ("; line restarted" if ok else "; the line could not be started: see the alarms"), not ok)
        return ok

    def test_link(self, name: str, uri: str, timeout: float = LINK_TEST_TIMEOUT_S) -> Task | None:
        """Tries the link ``uri`` names, off the GUI thread (:func:`inspector.links.probe.probe`);
        the outcome comes as ``link_tested(name, text, ok)``. Anyone may test: it changes nothing.
        None when the answer is known at once (empty, malformed, the station's own OPC UA server
        serving): ``link_tested`` has come already."""
        from station.links import probe

        uri = uri.strip()
        if not uri:
            self.link_tested.emit(name, "nothing to test: no address given", False)
            return None
        try:
            for one in uri.split() if name == "plc" else [uri]:
                check_link(name, one)
        except InspectorError as exc:
            self.link_tested.emit(name, str(exc), False)
            return None
        serving = self.line.links.get("opcua")
        if name == "opcua" and serving is not None and serving.serving and uri == self.line.config.opcua:
            self.link_tested.emit(name, f"serving at {serving.endpoint}", True)
            return None

        def finished(text: str) -> None:
            self._tasks.remove(task)
            self.link_tested.emit(name, text, True)

        def failed(text: str) -> None:
            self._tasks.remove(task)
            self.link_tested.emit(name, text, False)

        task = run_task(f"test {name}", lambda t: probe(name, uri, timeout), self, finished=finished, failed=failed)
        self._tasks.append(task)
        return task

    def add_user(self, name: str, role: str, pin: str) -> None:
        actions.add_user(self.db, self.session.caller(), name, role, pin)
        self.message.emit(f"user {name.strip()!r} ({role}) added", False)
