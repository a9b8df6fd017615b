"""The line as the GUI sees it: one line, its latest result, counters, trend, alarms.

:class:`LineModel` owns the line's life (start, stop, restart with new settings, switching
recipe) and everything the operator page shows; the line itself is built by
:func:`inspector.line.build_line`, as for ``inspector run``. It never slows the pipeline: results reach it
through :class:`~ui.bridge.PipelineBridge` as queued signals, each handled in O(1) (counters, a
bounded trend, the latest result), and the views are told about changes by a display timer at
most :data:`DISPLAY_HZ` times a second, always with the newest result -- so a slow or blocked GUI
thread skips pictures, never inspections (the pipeline records every frame itself).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from drivers import Camera, open_camera
from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.line import CAMERA_LOST, CAMERA_RECONNECTED, LINE_RESUMED, LINE_STALLED, DecisionRule, InspectionResult, Line, Pipeline, PipelineMetrics, build_line
from inspector.line.build import STALL_AFTER_S
from inspector.line.drift import DriftStatus
from inspector.recipes import LoadedRecipe

from ui.bridge import PipelineBridge

log = logging.getLogger(__name__)

DISPLAY_HZ = 10
METRICS_INTERVAL_MS = 1000
TREND_LENGTH = 200
MAX_ALARMS = 200
TRIGGERS = ("free_run", "software", "hardware")


@dataclass(frozen=True)
class LineConfig:
    """How the line runs. ``trigger="software"`` presents parts with a
    :class:`~inspector.line.PartFeeder` (at most ``feeder_rate`` per second, one at a time) -- the
    demo's stand-in for a conveyor. ``stall_after_s``: seconds without a part before a free-run
    or fed line alarms ``line_stalled`` (see :func:`~inspector.line.build_line`)."""

    camera_uri: str
    image_dir: Path
    trigger: str = "free_run"
    feeder_rate: float = 4.0
    mode: str = "triggered"
    quota_gb: float = 5.0
    pass_sample_rate: float = 0.05
    trigger_line: str = "Line1"
    stall_after_s: float = STALL_AFTER_S

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise InspectorError(f"trigger must be one of {', '.join(TRIGGERS)}, not {self.trigger!r}")
        if not self.quota_gb > 0:
            raise InspectorError(f"storage quota must be positive, got {self.quota_gb:g} GB")
        if not 0.0 <= self.pass_sample_rate <= 1.0:
            raise InspectorError(f"share of passed images kept must be within 0..1, got {self.pass_sample_rate:g}")


@dataclass(frozen=True)
class AlarmEntry:
    time: datetime
    kind: str
    message: str
    acknowledged: bool = False


@dataclass
class Counters:
    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0

    @property
    def yield_fraction(self) -> float:
        return self.passed / self.total if self.total else math.nan


@dataclass(frozen=True)
class TrendPoint:
    score: float
    decision: str
    threshold: float


class LineModel(QObject):
    """The running line. Signals (all in the GUI thread):

    ``result_changed(InspectionResult)``: the newest result, at most DISPLAY_HZ per second;
    ``counters_changed()``, ``trend_changed()``: with it; ``alarms_changed()``: an alarm came or
    was acknowledged; ``metrics_changed(PipelineMetrics)``: once a second while running;
    ``status_changed()``: started, stopped, camera or recipe changed, drift warning or recovery.

    :attr:`recipe` is what decides (a :class:`~inspector.recipes.LoadedRecipe`); :attr:`line`
    the running :class:`~inspector.line.Line`, None while stopped.
    """

    result_changed = pyqtSignal(object)
    counters_changed = pyqtSignal()
    trend_changed = pyqtSignal()
    alarms_changed = pyqtSignal()
    metrics_changed = pyqtSignal(object)
    status_changed = pyqtSignal()
    _drift_changed = pyqtSignal(object)  # from the line's writer thread to the GUI thread

    def __init__(self, db: HistoryDB, config: LineConfig, recipe: LoadedRecipe, camera_settings: dict[str, Any] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self.config = config
        self.recipe = recipe
        self.camera_settings = dict(camera_settings or {})
        self.line: Line | None = None
        self.camera: Camera | None = None
        self._bridge: PipelineBridge | None = None
        self.counters = Counters()
        self.trend: deque[TrendPoint] = deque(maxlen=TREND_LENGTH)
        self.alarms: deque[AlarmEntry] = deque(maxlen=MAX_ALARMS)
        self.latest: InspectionResult | None = None
        self.last_metrics: PipelineMetrics | None = None
        self.camera_state = "stopped"
        self.drift_status: DriftStatus | None = None
        self._drift_changed.connect(self._on_drift_changed)
        self._dirty = False
        self._display = QTimer(self)
        self._display.setInterval(1000 // DISPLAY_HZ)
        self._display.timeout.connect(self._on_display_tick)
        self._metrics_timer = QTimer(self)
        self._metrics_timer.setInterval(METRICS_INTERVAL_MS)
        self._metrics_timer.timeout.connect(self._on_metrics_tick)

    # -- life ----------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Pipeline | None:
        return self.line.pipeline if self.line is not None else None

    @property
    def running(self) -> bool:
        return self.line is not None and self.line.running

    def start(self) -> bool:
        """Opens the camera and starts inspecting; False (with an alarm) when the camera fails."""
        if self.running:
            return True
        cfg = self.config
        camera: Camera | None = None
        try:
            camera = open_camera(cfg.camera_uri)
            camera.open()
            if self.camera_settings:
                camera.configure(**_camera_kwargs(self.camera_settings))
        except InspectorError as exc:
            if camera is not None and camera.is_open:
                camera.close()
            self._add_alarm("camera_error", str(exc))
            self.camera_state = "unavailable"
            self.status_changed.emit()
            return False
        line = build_line(
            camera, self.recipe, self.db, image_dir=cfg.image_dir, quota_bytes=int(cfg.quota_gb * 1e9),
            pass_sample_rate=cfg.pass_sample_rate, mode=cfg.mode, trigger=cfg.trigger,
            trigger_line=cfg.trigger_line, feeder_rate=cfg.feeder_rate, on_drift=self._drift_changed.emit,
            stall_after_s=cfg.stall_after_s,
        )
        bridge = PipelineBridge(self)
        bridge.result_received.connect(self._on_result_received)
        bridge.alarm_received.connect(self._on_alarm_received)
        bridge.attach(line.pipeline)  # before start: no result is missed
        try:
            line.start()
        except InspectorError as exc:
            camera.close()
            self._add_alarm("camera_error", str(exc))
            self.camera_state = "unavailable"
            self.status_changed.emit()
            return False
        self.camera, self.line, self._bridge = camera, line, bridge
        self.camera_state = "connected"
        self._display.start()
        self._metrics_timer.start()
        self.status_changed.emit()
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops inspecting; every frame acquired so far is inspected and recorded first."""
        clean = True
        if self.line is not None:
            clean = self.line.stop(timeout)
            self.last_metrics = self.line.metrics()
            if self.camera is not None:
                self.camera.close()
        self.line, self.camera = None, None
        self._metrics_timer.stop()
        self.camera_state = "stopped"
        # Results queued before the stop are still delivered; one more tick shows the last.
        self._on_display_tick()
        self.status_changed.emit()
        return clean

    def restart(self, config: LineConfig | None = None, camera_settings: dict[str, Any] | None = None) -> bool:
        self.stop()
        if config is not None:
            self.config = config
        if camera_settings is not None:
            self.camera_settings = dict(camera_settings)
        return self.start()

    def set_recipe(self, recipe: LoadedRecipe) -> None:
        """Decide the next frames with this recipe (the frame in the engine finishes with the old)."""
        self.recipe = recipe
        self.drift_status = None
        if self.line is not None:
            self.line.set_recipe(recipe)
        self.status_changed.emit()

    def set_threshold(self, rule: DecisionRule) -> None:
        self.set_recipe(replace(self.recipe, rule=rule, source="threshold set by hand"))

    # -- state for the views --------------------------------------------------------------------

    def reset_counters(self) -> None:
        self.counters = Counters()
        self.trend.clear()
        self.counters_changed.emit()
        self.trend_changed.emit()

    def acknowledge_alarms(self, user: str, role: str) -> None:
        """Marks every alarm seen (audited: who acknowledged what)."""
        open_ = [f"{a.kind}: {a.message}" for a in self.alarms if not a.acknowledged]
        if open_:
            self.db.record_audit(user, role, "acknowledge_alarms", "line", {"alarms": open_}, None)
        self.alarms = deque((replace(a, acknowledged=True) for a in self.alarms), maxlen=MAX_ALARMS)
        self.alarms_changed.emit()

    @property
    def unacknowledged(self) -> list[AlarmEntry]:
        return [a for a in self.alarms if not a.acknowledged]

    # -- slots ------------------------------------------------------------------------------------

    def _on_result_received(self, result: InspectionResult) -> None:
        c = self.counters
        c.total += 1
        if result.error is not None:
            c.errors += 1
            c.failed += 1
        elif result.decision == "PASS":
            c.passed += 1
        else:
            c.failed += 1
        self.trend.append(TrendPoint(result.score, result.decision, result.threshold))
        self.latest = result
        self._dirty = True

    def _on_alarm_received(self, alarm: Any) -> None:
        if alarm.kind == CAMERA_LOST:
            self.camera_state = "lost"
            self.status_changed.emit()
        elif alarm.kind == CAMERA_RECONNECTED or (alarm.kind == LINE_RESUMED and self.camera_state == "stalled"):
            self.camera_state = "connected"
            self.status_changed.emit()
        elif alarm.kind == LINE_STALLED:
            self.camera_state = "stalled"  # connected, but no part comes: not what "connected" promises
            self.status_changed.emit()
        self._add_alarm(alarm.kind, alarm.message, alarm.time)

    def _on_display_tick(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.result_changed.emit(self.latest)
        self.counters_changed.emit()
        self.trend_changed.emit()

    def _on_metrics_tick(self) -> None:
        if self.line is None:
            return
        self.last_metrics = self.line.metrics()
        self.metrics_changed.emit(self.last_metrics)

    # -- helpers ----------------------------------------------------------------------------------

    def _add_alarm(self, kind: str, message: str, when: datetime | None = None) -> None:
        self.alarms.appendleft(AlarmEntry(when or datetime.now(timezone.utc), kind, message))
        self.alarms_changed.emit()

    def _on_drift_changed(self, status: DriftStatus) -> None:
        # The drift alarm itself comes as a pipeline alarm, through the bridge.
        self.drift_status = status
        self.status_changed.emit()


def _camera_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in settings.items() if v is not None}
    if out.get("roi") is not None:
        out["roi"] = tuple(int(v) for v in out["roi"])
    return out

