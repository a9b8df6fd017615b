"""The line as the GUI sees it: one pipeline, its latest result, counters, trend, alarms.

:class:`LineModel` owns the pipeline's life (start, stop, restart with new settings, switching
model) and everything the operator page shows. It never slows the pipeline: results reach it
through :class:`~ui.bridge.PipelineBridge` as queued signals, each handled in O(1) (counters, a
bounded trend, the latest result), and the views are told about changes by a display timer at
most :data:`DISPLAY_HZ` times a second, always with the newest result -- so a slow or blocked GUI
thread skips pictures, never inspections (the pipeline records every frame itself).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from calibration.drift import DRIFT_ALARM, DriftMonitor, DriftStatus
from drivers import Camera, TriggerMode, open_camera
from inspector.errors import CameraError, InspectorError
from inspector.history import HistoryDB, HistoryWriter, ImageStore
from inspector.pipeline import CAMERA_LOST, CAMERA_RECONNECTED, DecisionRule, InspectionResult, Pipeline, PipelineMetrics

from ui.bridge import PipelineBridge

log = logging.getLogger(__name__)

DISPLAY_HZ = 10
METRICS_INTERVAL_MS = 1000
TREND_LENGTH = 200
MAX_ALARMS = 200
TRIGGERS = ("free_run", "software", "hardware")
WRITER_MAX_BUFFERED = 64


@dataclass(frozen=True)
class LineConfig:
    """How the line runs. ``trigger="software"`` presents parts with :class:`PartFeeder` (at most
    ``feeder_rate`` per second, one at a time) -- the demo's stand-in for a conveyor."""

    camera_uri: str
    image_dir: Path
    trigger: str = "free_run"
    feeder_rate: float = 4.0
    mode: str = "triggered"
    quota_gb: float = 5.0
    pass_sample_rate: float = 0.05
    trigger_line: str = "Line1"

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise InspectorError(f"trigger must be one of {', '.join(TRIGGERS)}, not {self.trigger!r}")
        if not self.quota_gb > 0:
            raise InspectorError(f"storage quota must be positive, got {self.quota_gb:g} GB")
        if not 0.0 <= self.pass_sample_rate <= 1.0:
            raise InspectorError(f"share of passed images kept must be within 0..1, got {self.pass_sample_rate:g}")


@dataclass(frozen=True)
class ActiveModel:
    """What decides: a loaded engine, its rule, and where they came from."""

    engine: Any  # inspector.engine.Engine (or anything with predict())
    rule: DecisionRule
    model_version_id: int | None
    product_id: int | None
    product: str
    model_path: Path
    reference_scores: tuple[float, ...] = ()  # good calibration scores, for the drift monitor
    source: str = ""


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


class PartFeeder:
    """Triggers a software-triggered camera, one part at a time, at most ``rate`` per second.

    A part is presented once the previous one was acquired and no frame waits for the engine,
    as a station would take the next part when it is free. A thread, not a Qt timer: the parts
    keep coming however busy the GUI is.
    """

    def __init__(self, camera: Camera, pipeline: Pipeline, rate: float) -> None:
        self.camera, self.pipeline = camera, pipeline
        self.interval = 1.0 / max(rate, 0.01)
        self.triggered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ui-part-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            m = self.pipeline.metrics()
            if m.acquired < self.triggered or m.queue_depth > 0:
                continue
            try:
                self.camera.trigger()
                self.triggered += 1
            except CameraError as exc:  # the pipeline alarms a lost camera; keep trying
                log.debug("part feeder: %s", exc)


class LineModel(QObject):
    """The running line. Signals (all in the GUI thread):

    ``result_changed(InspectionResult)``: the newest result, at most DISPLAY_HZ per second;
    ``counters_changed()``, ``trend_changed()``: with it; ``alarms_changed()``: an alarm came or
    was acknowledged; ``metrics_changed(PipelineMetrics)``: once a second while running;
    ``status_changed()``: started, stopped, camera or model changed.
    """

    result_changed = pyqtSignal(object)
    counters_changed = pyqtSignal()
    trend_changed = pyqtSignal()
    alarms_changed = pyqtSignal()
    metrics_changed = pyqtSignal(object)
    status_changed = pyqtSignal()

    def __init__(self, db: HistoryDB, config: LineConfig, model: ActiveModel, camera_settings: dict[str, Any] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self.config = config
        self.model = model
        self.camera_settings = dict(camera_settings or {})
        self.pipeline: Pipeline | None = None
        self.camera: Camera | None = None
        self.feeder: PartFeeder | None = None
        self._bridge: PipelineBridge | None = None
        self._store: ImageStore | None = None
        self.counters = Counters()
        self.trend: deque[TrendPoint] = deque(maxlen=TREND_LENGTH)
        self.alarms: deque[AlarmEntry] = deque(maxlen=MAX_ALARMS)
        self.latest: InspectionResult | None = None
        self.last_metrics: PipelineMetrics | None = None
        self.camera_state = "stopped"
        self.drift_status: DriftStatus | None = None
        self._drift = self._drift_monitor(model)
        self._dirty = False
        self._display = QTimer(self)
        self._display.setInterval(1000 // DISPLAY_HZ)
        self._display.timeout.connect(self._on_display_tick)
        self._metrics_timer = QTimer(self)
        self._metrics_timer.setInterval(METRICS_INTERVAL_MS)
        self._metrics_timer.timeout.connect(self._on_metrics_tick)

    # -- life ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.pipeline is not None and self.pipeline.running

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
        store = ImageStore(
            cfg.image_dir, quota_bytes=int(cfg.quota_gb * 1e9), pass_sample_rate=cfg.pass_sample_rate,
            heatmap_range=heatmap_range(self.model.rule.threshold),
        )
        writer = HistoryWriter(self.db, store, max_buffered=WRITER_MAX_BUFFERED)
        trigger = {"free_run": TriggerMode.FREE_RUN, "software": TriggerMode.SOFTWARE, "hardware": TriggerMode.HARDWARE}[cfg.trigger]
        pipeline = Pipeline(
            camera, self.model.engine, self.model.rule, writer, mode=cfg.mode,
            model_version_id=self.model.model_version_id, product_id=self.model.product_id,
            trigger=trigger, trigger_line=cfg.trigger_line,
        )
        bridge = PipelineBridge(self)
        bridge.result_received.connect(self._on_result_received)
        bridge.alarm_received.connect(self._on_alarm_received)
        bridge.attach(pipeline)  # before start: no result is missed
        try:
            pipeline.start()
        except InspectorError as exc:
            camera.close()
            self._add_alarm("camera_error", str(exc))
            self.camera_state = "unavailable"
            self.status_changed.emit()
            return False
        self.camera, self.pipeline, self._bridge, self._store = camera, pipeline, bridge, store
        if cfg.trigger == "software":
            self.feeder = PartFeeder(camera, pipeline, cfg.feeder_rate)
            self.feeder.start()
        self.camera_state = "connected"
        self._display.start()
        self._metrics_timer.start()
        self.status_changed.emit()
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops inspecting; every frame acquired so far is inspected and recorded first."""
        if self.feeder is not None:
            self.feeder.stop()
            self.feeder = None
        clean = True
        if self.pipeline is not None:
            clean = self.pipeline.stop(timeout)
            self.last_metrics = self.pipeline.metrics()
            if self.camera is not None:
                self.camera.close()
        self.pipeline, self.camera = None, None
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

    def set_model(self, model: ActiveModel) -> None:
        """Decide the next frames with this model (the frame in the engine finishes with the old)."""
        product_changed = model.product_id != self.model.product_id
        self.model = model
        self._drift = self._drift_monitor(model)
        self.drift_status = None
        if self._store is not None:
            # Stored heatmaps stay readable as map values (see review_model.decode_heatmap). A
            # frame decided by the old rule may be stored with the new range: one picture, not data.
            self._store.heatmap_range = heatmap_range(model.rule.threshold)
        if self.pipeline is not None:
            if product_changed:
                self.pipeline.product_id = model.product_id
            self.pipeline.set_model(model.engine, model.rule, model.model_version_id)
        self.status_changed.emit()

    def set_threshold(self, rule: DecisionRule) -> None:
        self.set_model(replace(self.model, rule=rule, source="threshold set by hand"))

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
        if result.error is None and self._drift is not None:
            self._drift.add(result.score)

    def _on_alarm_received(self, alarm: Any) -> None:
        if alarm.kind == CAMERA_LOST:
            self.camera_state = "lost"
            self.status_changed.emit()
        elif alarm.kind == CAMERA_RECONNECTED:
            self.camera_state = "connected"
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
        if self.pipeline is None:
            return
        self.last_metrics = self.pipeline.metrics()
        self.metrics_changed.emit(self.last_metrics)

    # -- helpers ----------------------------------------------------------------------------------

    def _add_alarm(self, kind: str, message: str, when: datetime | None = None) -> None:
        self.alarms.appendleft(AlarmEntry(when or datetime.now(timezone.utc), kind, message))
        self.alarms_changed.emit()

    def _drift_monitor(self, model: ActiveModel) -> DriftMonitor | None:
        if len(model.reference_scores) < 2:
            return None
        return DriftMonitor(model.reference_scores, on_warning=self._on_drift_warning, on_recovered=self._on_drift_recovered)

    def _on_drift_warning(self, status: DriftStatus) -> None:
        self.drift_status = status
        self._add_alarm(DRIFT_ALARM, status.message)

    def _on_drift_recovered(self, status: DriftStatus) -> None:
        self.drift_status = status
        self.status_changed.emit()


def heatmap_range(threshold: float) -> tuple[float, float] | None:
    """Map values drawn at the two ends of a stored heatmap's colours: 0 .. 2 x threshold, as
    ``inspector run`` stores them, so the threshold is mid-scale."""
    return (0.0, 2.0 * threshold) if threshold > 0 else None


def _camera_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in settings.items() if v is not None}
    if out.get("roi") is not None:
        out["roi"] = tuple(int(v) for v in out["roi"])
    return out

