"""Line settings the GUI keeps (camera, trigger, product, storage), and changing them.

:class:`GuiSettings` is a small JSON file (``gui.json`` in the data folder); no Qt there.
:class:`SettingsModel` applies changes: each is rights-checked, audited, saved, and restarts the
line where it must (a new camera or storage quota); camera exposure and gain belong to the
product's recipe (``inspector.recipes.set_camera_settings``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

from inspector.recipes import get_product, list_products, load_active_recipe, set_camera_settings
from drivers import open_camera
from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.history.tables import ROLES

from ui.line import LineConfig, LineModel
from ui.session import Session
from ui.worker import Task, run_task

log = logging.getLogger(__name__)

SETTINGS_FILE = "gui.json"


@dataclass(frozen=True)
class GuiSettings:
    """What the operator desktop remembers between starts (None: the built-in default)."""

    camera_uri: str | None = None
    trigger: str | None = None
    product: str | None = None
    quota_gb: float = 5.0
    pass_sample_rate: float = 0.05

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
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(asdict(self), indent=2) + "\n"))


class SettingsModel(QObject):
    """Signals: ``settings_changed()``, ``message(text, is_error)``, ``busy_changed(bool)``."""

    settings_changed = pyqtSignal()
    message = pyqtSignal(str, bool)
    busy_changed = pyqtSignal(bool)

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

    def apply_camera(self, uri: str, trigger: str, exposure_us: float | None, gain_db: float | None) -> bool:
        """Switches camera, trigger and the product's exposure and gain; restarts the line."""
        uri = uri.strip()
        open_camera(uri)  # a malformed URI is refused before anything changes
        creds = self.session.authorize("configure_camera", f"product:{self.line.recipe.product_id}")
        config = LineConfig(**{**asdict(self.line.config), "camera_uri": uri, "trigger": trigger})
        before = {"camera_uri": self.line.config.camera_uri, "trigger": self.line.config.trigger}
        settings = {**self.camera_settings(), "exposure_us": exposure_us, "gain_db": gain_db}
        settings = {k: v for k, v in settings.items() if v is not None}
        if settings != self.camera_settings():
            set_camera_settings(self.db, self.line.recipe.product, settings, user=creds.user, pin=creds.pin)
        self.db.record_audit(creds.user, creds.role, "set_camera", "gui", before, {"camera_uri": uri, "trigger": trigger})
        self._save(camera_uri=uri, trigger=trigger)
        ok = self.line.restart(config, settings)
        self.message.emit(f"camera {uri} " + ("running" if ok else "could not be started: see the alarms"), not ok)
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

    def add_user(self, name: str, role: str, pin: str) -> None:
        creds = self.session.authorize("manage_users", "users")
        if role not in ROLES:
            raise InspectorError(f"role must be one of {', '.join(ROLES)}")
        if not name.strip():
            raise InspectorError("a user needs a name")
        self.db.add_user(name.strip(), role, pin, by=creds.user)  # audited by the database
        self.message.emit(f"user {name.strip()!r} ({role}) added", False)
