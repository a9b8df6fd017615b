"""Line settings the GUI keeps (camera, trigger, product, storage), and changing them.

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

from inspector.recipes import get_product, list_products, load_active_recipe, set_camera_settings
from drivers import open_camera
from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.history.tables import ROLES

from ui.line import LINK_TITLES, LINKS, PLC_DOWN_POLICIES, LineConfig, LineModel
from ui.session import Session
from ui.worker import Task, run_task

log = logging.getLogger(__name__)

SETTINGS_FILE = "gui.json"
#: Seconds a "Test connection" waits for an answer.
LINK_TEST_TIMEOUT_S = 3.0
_LINK_OF = {attr: name for name, attr in LINKS.items()}


@dataclass(frozen=True)
class GuiSettings:
    """What the operator desktop remembers between starts (None: the built-in default).

    ``camera_uri`` is the camera, or the first of several; ``more_camera_uris`` the others, in
    order (files saved before there were several have none)."""

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

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Readable by its owner only: a link's URI may hold a password (the plant database's, an
        # MQTT broker's). Better still, keep it out of the URI (README, "Plant links").
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(asdict(self), indent=2) + "\n"), mode=0o600)


def link_settings(settings: GuiSettings) -> dict[str, Any]:
    """The plant links of ``settings`` as :class:`~ui.line.LineConfig` takes them."""
    plc_down = settings.plc_down if settings.plc_down in PLC_DOWN_POLICIES else "ng"  # a hand-edited file
    return {"plc_uri": settings.plc_uri, "plc_down": plc_down, "mqtt_uri": settings.mqtt_uri,
            "opcua_uri": settings.opcua_uri, "plant_db_url": settings.plant_db_url}


def check_link(name: str, uri: str) -> None:
    """Refuse a malformed URI for the link ``name`` (see :data:`ui.line.LINKS`) with
    InspectorError; nothing is connected (reading a PLC's register map is all it does)."""
    if name == "plc":
        from inspector.links.modbus import parse_modbus_uri

        parse_modbus_uri(uri)
    elif name == "mqtt":
        from inspector.links.mqtt import parse_mqtt_uri

        parse_mqtt_uri(uri)
    elif name == "opcua":
        from inspector.links.opcua import parse_opcua_uri

        parse_opcua_uri(uri)
    elif name == "plant_db":
        from inspector.links.plant import parse_plant_url

        parse_plant_url(uri)
    else:
        raise InspectorError(f"no link named {name!r}")


def shown_uri(name: str, uri: str | None) -> str | None:
    """``uri`` as the audit and messages show it: a database password hidden."""
    if uri is None or name != "plant_db":
        return uri
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # checked before; never show what could not be parsed
        return "(a database URL)"


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
        creds = self.session.authorize("configure_camera", f"product:{self.line.recipe.product_id}")
        changes = {"camera_uri": uris[0], "more_camera_uris": tuple(uris[1:]), "trigger": trigger}
        config = LineConfig(**{**asdict(self.line.config), **changes})  # refuses a camera twice, a PLC beside others
        old = self.line.config
        before = {"camera_uri": old.camera_uri, "more_camera_uris": list(old.more_camera_uris), "trigger": old.trigger}
        settings = {**self.camera_settings(), "exposure_us": exposure_us, "gain_db": gain_db}
        settings = {k: v for k, v in settings.items() if v is not None}
        if settings != self.camera_settings():
            set_camera_settings(self.db, self.line.recipe.product, settings, user=creds.user, pin=creds.pin)
        self.db.record_audit(creds.user, creds.role, "set_camera", "gui", before,
                             {**changes, "more_camera_uris": list(uris[1:])})
        self._save(**changes)
        ok = self.line.restart(config, settings)
        cameras = f"camera {uris[0]}" if len(uris) == 1 else f"{len(uris)} cameras ({', '.join(uris)})"
        self.message.emit(f"{cameras} " + ("running" if ok else "could not be started: see the alarms"), not ok)
        return ok

    def set_storage(self, quota_gb: float, pass_sample_rate: float) -> None:
        creds = self.session.authorize("set_storage", "gui")
        config = LineConfig(**{**asdict(self.line.config), "quota_gb": quota_gb, "pass_sample_rate": pass_sample_rate})
        before = {"quota_gb": self.line.config.quota_gb, "pass_sample_rate": self.line.config.pass_sample_rate}
        self.db.record_audit(creds.user, creds.role, "set_storage", "gui", before, {"quota_gb": quota_gb, "pass_sample_rate": pass_sample_rate})
        self._save(quota_gb=quota_gb, pass_sample_rate=pass_sample_rate)
        self.line.restart(config)
        self.message.emit(f"images: quota {quota_gb:g} GB, {100 * pass_sample_rate:g} % of passes kept", False)

    def choose_product(self, name: str) -> Task:
        """Puts the product's active recipe and camera settings on the line (loaded off the GUI thread)."""
        creds = self.session.authorize("choose_product", f"product:{get_product(self.db, name).id}")
        before = self.line.recipe.product

        def finished(recipe) -> None:
            self._tasks.remove(task)
            self.db.record_audit(creds.user, creds.role, "choose_product", "gui", {"product": before}, {"product": name})
            self._save(product=name)
            self.line.stop()
            self.line.set_recipe(recipe)
            self.line.camera_settings = self.camera_settings()
            self.line.start()
            self.busy_changed.emit(False)
            self.message.emit(f"product {name!r} on the line (model version {recipe.model_version_id})", False)

        def failed(text: str) -> None:
            self._tasks.remove(task)
            self.busy_changed.emit(False)
            self.message.emit(text, True)

        self.busy_changed.emit(True)
        task = run_task("product change", lambda t: load_active_recipe(self.db, name, device=self.device, backend=self.backend), self,
                        finished=finished, failed=failed)
        self._tasks.append(task)
        return task

    def set_links(self, plc_uri: str | None, plc_down: str, mqtt_uri: str | None, opcua_uri: str | None,
                  plant_db_url: str | None) -> bool:
        """Sets the plant links (empty: none) and restarts the line with them. Each URI is checked
        before anything changes; a technician's (the right to configure the camera), audited as
        ``set_links`` (a database password hidden)."""
        uris = {name: (uri or "").strip() or None for name, uri in
                (("plc", plc_uri), ("mqtt", mqtt_uri), ("opcua", opcua_uri), ("plant_db", plant_db_url))}
        if plc_down not in PLC_DOWN_POLICIES:
            raise InspectorError(f"PLC down policy must be one of {', '.join(PLC_DOWN_POLICIES)}, not {plc_down!r}")
        for name, uri in uris.items():
            if uri is not None:
                check_link(name, uri)
        creds = self.session.authorize("configure_camera", "links")
        changes = {LINKS[name]: uri for name, uri in uris.items()} | {"plc_down": plc_down}
        old = self.line.config
        before = {k: shown_uri(_LINK_OF[k], getattr(old, k)) if k in _LINK_OF else getattr(old, k) for k in changes}
        after = {k: shown_uri(_LINK_OF[k], v) if k in _LINK_OF else v for k, v in changes.items()}
        config = LineConfig(**{**asdict(old), **changes})
        self.db.record_audit(creds.user, creds.role, "set_links", "gui", before, after)
        self._save(**changes)
        ok = self.line.restart(config)
        configured = [LINK_TITLES[name] for name, uri in uris.items() if uri is not None]
        self.message.emit(("plant links: " + ", ".join(configured) if configured else "no plant links")
                          + ("; line restarted" if ok else "; the line could not be started: see the alarms"), not ok)
        return ok

    def test_link(self, name: str, uri: str, timeout: float = LINK_TEST_TIMEOUT_S) -> Task | None:
        """Tries the link ``uri`` names, off the GUI thread (:func:`inspector.links.probe.probe`);
        the outcome comes as ``link_tested(name, text, ok)``. Anyone may test: it changes nothing.
        None when the answer is known at once (empty, malformed, the station's own OPC UA server
        serving): ``link_tested`` has come already."""
        from inspector.links.probe import probe

        uri = uri.strip()
        if not uri:
            self.link_tested.emit(name, "nothing to test: no address given", False)
            return None
        try:
            check_link(name, uri)
        except InspectorError as exc:
            self.link_tested.emit(name, str(exc), False)
            return None
        serving = self.line.links.get("opcua")
        if name == "opcua" and serving is not None and serving.serving and uri == self.line.config.opcua_uri:
            self.link_tested.emit(name, f"serving at {serving.endpoint}", True)
            return None

        def finished(text: str) -> None:
            self._tasks.remove(task)
            self.link_tested.emit(name, text, True)

        def failed(text: str) -> None:
            self._tasks.remove(task)
            self.link_tested.emit(name, text, False)

        task = run_task(f"test {name}", lambda t: probe(uri, timeout), self, finished=finished, failed=failed)
        self._tasks.append(task)
        return task

    def add_user(self, name: str, role: str, pin: str) -> None:
        creds = self.session.authorize("manage_users", "users")
        if role not in ROLES:
            raise InspectorError(f"role must be one of {', '.join(ROLES)}")
        if not name.strip():
            raise InspectorError("a user needs a name")
        self.db.add_user(name.strip(), role, pin, by=creds.user)  # audited by the database
        self.message.emit(f"user {name.strip()!r} ({role}) added", False)
