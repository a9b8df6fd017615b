"""The line as the GUI sees it: its cameras, their latest results and counters, the station's
totals, trend and alarms.

:class:`LineModel` owns the line's life (start, stop, restart with new settings, switching
recipe) and everything the operator page shows; the line itself is built as for ``inspector run``:
one camera by :func:`inspector.line.build_line`, several on one engine by
:func:`inspector.line.build_lines` (each camera's results, counters and state in a
:class:`CameraView`; the station's totals beside them). It never slows the pipeline: results reach it
through :class:`~ui.bridge.PipelineBridge` as queued signals, each handled in O(1) (counters, a
bounded trend, the latest result), and the views are told about changes by a display timer at
most :data:`DISPLAY_HZ` times a second, always with the newest result -- so a slow or blocked GUI
thread skips pictures, never inspections (the pipeline records every frame itself).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from drivers import Camera, open_camera
from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.line import (CAMERA_LOST, CAMERA_RECONNECTED, LINE_RESUMED, LINE_STALLED, DecisionRule, InspectionResult,
                            Line, Lines, Pipeline, PipelineMetrics, build_line, build_lines)
from inspector.line.build import STALL_AFTER_S, check_camera_ids, check_max_batch
from inspector.line.drift import DriftStatus
from inspector.recipes import LoadedRecipe

from ui.bridge import PipelineBridge

log = logging.getLogger(__name__)

DISPLAY_HZ = 10
METRICS_INTERVAL_MS = 1000
TREND_LENGTH = 200
MAX_ALARMS = 200
TRIGGERS = ("free_run", "software", "hardware")
PLC_DOWN_POLICIES = ("ng", "stop")
#: The plant links by name, in the order they are shown, with the LineConfig field of each.
LINKS = {"plc": "plc_uri", "mqtt": "mqtt_uri", "opcua": "opcua_uri", "plant_db": "plant_db_url"}
LINK_TITLES = {"plc": "PLC", "mqtt": "MES (MQTT)", "opcua": "OPC UA", "plant_db": "plant database"}
#: The alarms that say a link's state changed: its state is read again when one arrives.
LINK_ALARMS = frozenset({"plc_down", "plc_recovered", "mqtt_down", "mqtt_recovered", "plant_db_down",
                         "plant_db_recovered"})
#: How each link state shows (the operator page, the settings page).
LINK_STATE_COLORS = {"connected": "#2e7d32", "serving": "#2e7d32", "connecting": "#616161", "retrying": "#e65100",
                     "down": "#c62828", "stopped": "#616161"}


def link_state_html(title: str, state: str) -> str:
    """``title`` and the link's ``state``, coloured: green connected/serving, orange retrying, red down."""
    return f"{title} <b style='color:{LINK_STATE_COLORS.get(state, '#616161')}'>{state}</b>"


#: Seconds a stopping line gives each link to hand over what it holds (the rest waits for the
#: next start: the MQTT outbox, the plant forward mark; the PLC's parts are long gone).
LINK_DRAIN_S = 1.0


@dataclass(frozen=True)
class LineConfig:
    """How the line runs. ``trigger="software"`` presents parts with a
    :class:`~inspector.line.PartFeeder` (at most ``feeder_rate`` per second, one at a time) -- the
    demo's stand-in for a conveyor. ``stall_after_s``: seconds without a part before a free-run
    or fed line alarms ``line_stalled`` (see :func:`~inspector.line.build_line`).

    The plant links, each None (the default: the demo's) or its URI, as ``inspector run`` takes
    them: ``plc_uri`` (``--plc``, with ``plc_down`` as ``--plc-down``), ``mqtt_uri``
    (``--publish``), ``opcua_uri`` (``--opcua``), ``plant_db_url`` (``--plant-db``).

    Several cameras on one engine: ``camera_uri`` is the first, ``more_camera_uris`` the others,
    in order (:attr:`camera_uris`: all); each uses the same trigger. ``max_batch``: frames per
    forward pass at most (``--max-batch``; None: measured at the first start). The MES, the OPC
    UA server and the plant database speak for the station, as in ``inspector run``; a PLC answers
    one camera's triggers through its register block, and the desktop has one PLC field, so a
    PLC with several cameras is refused (``inspector run`` pairs one ``--plc`` per camera)."""

    camera_uri: str
    image_dir: Path
    trigger: str = "free_run"
    feeder_rate: float = 4.0
    mode: str = "triggered"
    quota_gb: float = 5.0
    pass_sample_rate: float = 0.05
    trigger_line: str = "Line1"
    stall_after_s: float = STALL_AFTER_S
    plc_uri: str | None = None
    plc_down: str = "ng"
    mqtt_uri: str | None = None
    opcua_uri: str | None = None
    plant_db_url: str | None = None
    more_camera_uris: tuple[str, ...] = ()
    max_batch: int | None = None

    @property
    def camera_uris(self) -> tuple[str, ...]:
        return (self.camera_uri, *self.more_camera_uris)

    def __post_init__(self) -> None:
        object.__setattr__(self, "more_camera_uris", tuple(self.more_camera_uris))  # a list from saved settings
        check_camera_ids(self.camera_uris)
        check_max_batch(self.max_batch)
        if self.plc_uri and self.more_camera_uris:
            raise InspectorError(
                f"a PLC link answers one camera's triggers through its register block, and the desktop takes one "
                f"PLC: with {len(self.camera_uris)} cameras, clear the PLC link, or run the station with "
                "`inspector run` and --plc once per --camera")
        if self.plc_down not in PLC_DOWN_POLICIES:
            raise InspectorError(f"PLC down policy must be one of {', '.join(PLC_DOWN_POLICIES)}, not {self.plc_down!r}")
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

    def add(self, result: InspectionResult) -> None:
        self.total += 1
        if result.error is not None:  # fail-safe: an error is a FAIL
            self.errors += 1
            self.failed += 1
        elif result.decision == "PASS":
            self.passed += 1
        else:
            self.failed += 1


@dataclass
class CameraView:
    """What the operator page shows of one camera (its tile, beside other cameras). ``camera_id`` is its
    URI (the drivers name a camera by it, and its results carry it); ``state``: "stopped",
    "connected", "lost", "stalled" or "unavailable"."""

    camera_id: str
    counters: Counters = field(default_factory=Counters)
    latest: InspectionResult | None = None
    state: str = "stopped"
    drift: DriftStatus | None = None
    metrics: PipelineMetrics | None = None


#: Camera states, the worst first: what :attr:`LineModel.camera_state` says of several cameras.
CAMERA_STATES_WORST_FIRST = ("unavailable", "lost", "stalled", "connected", "stopped")


@dataclass(frozen=True)
class TrendPoint:
    score: float
    decision: str
    threshold: float


class LineModel(QObject):
    """The running line. Signals (all in the GUI thread):

    ``result_changed(InspectionResult)``: the station's newest result (of any camera), at most
    DISPLAY_HZ per second -- each camera's newest is then in :attr:`views`;
    ``counters_changed()``, ``trend_changed()``: with it; ``alarms_changed()``: an alarm came or
    was acknowledged; ``metrics_changed(PipelineMetrics)``: once a second while running (the one
    camera's; None beside others: each camera's is in its view); ``status_changed()``: started,
    stopped, a camera's state or the recipe changed, drift warning or recovery;
    ``links_changed()``: a plant link's state changed (:attr:`link_states`).

    :attr:`recipe` is what decides (a :class:`~inspector.recipes.LoadedRecipe`); :attr:`line`
    the running :class:`~inspector.line.Line` (one camera) or :class:`~inspector.line.Lines`
    (several), None while stopped; :attr:`views` each camera's :class:`CameraView` by camera id,
    in the configured order; :attr:`counters` and :attr:`trend` are the station's.
    """

    result_changed = pyqtSignal(object)
    links_changed = pyqtSignal()
    counters_changed = pyqtSignal()
    trend_changed = pyqtSignal()
    alarms_changed = pyqtSignal()
    metrics_changed = pyqtSignal(object)
    status_changed = pyqtSignal()
    _drift_changed = pyqtSignal(str, object)  # from a line's writer thread to the GUI thread
    _plc_stop_asked = pyqtSignal(str)  # from the PLC link's thread (down policy "stop")

    def __init__(self, db: HistoryDB, config: LineConfig, recipe: LoadedRecipe, camera_settings: dict[str, Any] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self.config = config
        self.recipe = recipe
        self.camera_settings = dict(camera_settings or {})
        self.line: Line | Lines | None = None
        self.cameras: list[Camera] = []  # open while the line runs
        self._bridge: PipelineBridge | None = None
        self.views: dict[str, CameraView] = {}
        self._set_views(config)
        self.counters = Counters()
        self.trend: deque[TrendPoint] = deque(maxlen=TREND_LENGTH)
        self.alarms: deque[AlarmEntry] = deque(maxlen=MAX_ALARMS)
        self.latest: InspectionResult | None = None
        self.last_metrics: PipelineMetrics | None = None
        self._batching: tuple[Any, int, int] | None = None  # (engine, cameras, max batch) measured
        self._drift_changed.connect(self._on_drift_changed)
        self._plc_stop_asked.connect(self._on_plc_stop_asked)
        #: The running line's plant links by name (see :data:`LINKS`), and the state of each
        #: configured one: its ``state`` ("connecting", "connected", "retrying", "serving",
        #: "stopped"), or "down" when it could not be made or started (the alarm says why).
        self.links: dict[str, Any] = {}
        self.link_states: dict[str, str] = {}
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
        """The running line's pipeline; beside other cameras, the first camera's."""
        if self.line is None:
            return None
        return self.line.lines[0].pipeline if isinstance(self.line, Lines) else self.line.pipeline

    @property
    def running(self) -> bool:
        return self.line is not None and self.line.running

    @property
    def camera_state(self) -> str:
        """The camera's state; of several cameras, the worst (see :data:`CAMERA_STATES_WORST_FIRST`)."""
        return min((view.state for view in self.views.values()), key=CAMERA_STATES_WORST_FIRST.index)

    @property
    def drift_status(self) -> DriftStatus | None:
        """The camera's drift status; of several cameras, a warning where one has it."""
        statuses = [view.drift for view in self.views.values() if view.drift is not None]
        return next((s for s in statuses if s.status == "warning"), statuses[0] if statuses else None)

    def start(self) -> bool:
        """Opens the cameras and starts inspecting; False (with an alarm) when a camera fails."""
        if self.running:
            return True
        cfg = self.config
        self._set_views(cfg)  # the configuration may have changed since the last start
        cameras: list[Camera] = []
        uri = cfg.camera_uri
        try:
            for uri in cfg.camera_uris:
                cameras.append(open_camera(uri))
                cameras[-1].open()
                if self.camera_settings:
                    cameras[-1].configure(**_camera_kwargs(self.camera_settings))
        except InspectorError as exc:
            self._close(cameras)
            self._start_failed(exc, uri)
            return False
        links = self._make_links()
        options = dict(
            image_dir=cfg.image_dir, quota_bytes=int(cfg.quota_gb * 1e9), pass_sample_rate=cfg.pass_sample_rate,
            mode=cfg.mode, trigger=cfg.trigger, trigger_line=cfg.trigger_line, feeder_rate=cfg.feeder_rate,
            stall_after_s=cfg.stall_after_s, links=list(links.values()),
        )
        if len(cameras) == 1:
            line: Line | Lines = build_line(cameras[0], self.recipe, self.db,
                                            on_drift=partial(self._drift_changed.emit, cameras[0].camera_id), **options)
            pipelines = [line.pipeline]
        else:
            line = build_lines(cameras, self.recipe, self.db, max_batch=self._max_batch(len(cameras)), **options)
            self._batching = (self.recipe.engine, len(cameras), line.batcher.max_batch)
            for one in line.lines:  # each camera's drift status is its own
                one.on_drift = partial(self._drift_changed.emit, one.camera.camera_id)
            pipelines = [one.pipeline for one in line.lines]
        bridge = PipelineBridge(self)
        bridge.result_received.connect(self._on_result_received)
        bridge.alarm_received.connect(self._on_alarm_received)
        for pipeline in pipelines:
            bridge.attach(pipeline)  # before start: no result is missed
        self._start_links(line, links)
        try:
            line.start()
        except InspectorError as exc:
            self._stop_links()
            self._close(cameras)
            self._start_failed(exc, None)
            return False
        self.cameras, self.line, self._bridge = cameras, line, bridge
        for view in self.views.values():
            view.state = "connected"
        self._display.start()
        self._metrics_timer.start()
        self.status_changed.emit()
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops inspecting; every frame acquired so far is inspected and recorded first."""
        clean = True
        if self.line is not None:
            clean = self.line.stop(timeout)
            self._read_metrics()
            self._close(self.cameras)
        self.line, self.cameras = None, []
        self._stop_links()
        self._metrics_timer.stop()
        for view in self.views.values():
            view.state = "stopped"
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
        for view in self.views.values():
            view.drift = None
        if self.line is not None:
            self.line.set_recipe(recipe)
        self.status_changed.emit()

    def set_threshold(self, rule: DecisionRule) -> None:
        self.set_recipe(replace(self.recipe, rule=rule, source="threshold set by hand"))

    # -- state for the views --------------------------------------------------------------------

    def reset_counters(self) -> None:
        self.counters = Counters()
        for view in self.views.values():
            view.counters = Counters()
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
        self.counters.add(result)
        view = self.views.get(result.camera_id)
        if view is not None:
            view.counters.add(result)
            view.latest = result
        self.trend.append(TrendPoint(result.score, result.decision, result.threshold))
        self.latest = result
        self._dirty = True

    def _on_alarm_received(self, alarm: Any, camera_id: str) -> None:
        if alarm.kind in LINK_ALARMS:
            self._refresh_links()
        view = self.views.get(camera_id)
        if view is not None:
            if alarm.kind == CAMERA_LOST:
                view.state = "lost"
                self.status_changed.emit()
            elif alarm.kind == CAMERA_RECONNECTED or (alarm.kind == LINE_RESUMED and view.state == "stalled"):
                view.state = "connected"
                self.status_changed.emit()
            elif alarm.kind == LINE_STALLED:
                view.state = "stalled"  # connected, but no part comes: not what "connected" promises
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
        self._refresh_links()  # a first connection raises no alarm
        if self.line is None:
            return
        self._read_metrics()
        self.metrics_changed.emit(self.last_metrics)

    def _read_metrics(self) -> None:
        metrics = self.line.metrics() if isinstance(self.line, Lines) else {self.line.camera.camera_id: self.line.metrics()}
        for camera_id, m in metrics.items():
            self.views[camera_id].metrics = m
        self.last_metrics = None if isinstance(self.line, Lines) else next(iter(metrics.values()))

    # -- cameras ----------------------------------------------------------------------------------

    def _set_views(self, config: LineConfig) -> None:
        """A view per configured camera; a camera that stays keeps its counters."""
        self.views = {uri: self.views.get(uri) or CameraView(uri) for uri in config.camera_uris}

    def _max_batch(self, cameras: int) -> int | None:
        """The configured batch, else the one measured for this engine and number of cameras at an
        earlier start (None: measure now, seconds on a CPU, before any camera acquires)."""
        if self.config.max_batch is not None:
            return self.config.max_batch
        if self._batching is not None and self._batching[:2] == (self.recipe.engine, cameras):
            return self._batching[2]
        return None

    def _start_failed(self, exc: InspectorError, camera_id: str | None) -> None:
        """A camera (``camera_id``; None: which one is unknown) could not start: alarmed, shown."""
        self._add_alarm("camera_error", str(exc))
        for view in self.views.values():
            if camera_id is None or view.camera_id == camera_id:
                view.state = "unavailable"
        self.status_changed.emit()

    @staticmethod
    def _close(cameras: list[Camera]) -> None:
        for camera in cameras:
            if camera.is_open:
                camera.close()

    # -- plant links ------------------------------------------------------------------------------

    def _make_links(self) -> dict[str, Any]:
        """The configured links, made (not started), as ``inspector run`` makes them; one that
        cannot be made (a bad URI, a second outbox) is alarmed as ``link_error`` and left out."""
        cfg = self.config
        links: dict[str, Any] = {}
        states: dict[str, str] = {}
        for name, attr in LINKS.items():
            uri = getattr(cfg, attr)
            if not uri:
                continue
            try:
                if name == "plc":
                    from inspector.links.modbus import ModbusLink

                    links[name] = ModbusLink(uri, down_policy=cfg.plc_down)
                elif name == "mqtt":
                    from inspector.links.mqtt import MqttLink

                    links[name] = MqttLink(self.db, uri)
                elif name == "opcua":
                    from inspector.links.opcua import OpcUaLink

                    links[name] = OpcUaLink(uri)
                else:
                    from inspector.links.plant import PlantLink

                    links[name] = PlantLink(self.db, uri)
                states[name] = "stopped"
            except InspectorError as exc:
                self._add_alarm("link_error", f"{LINK_TITLES[name]} link not started: {exc}")
                states[name] = "down"
        self.links, self.link_states = links, states
        self.links_changed.emit()
        return links

    def _start_links(self, line: Line | Lines, links: dict[str, Any]) -> None:
        """Start the links after ``build_line``/``build_lines`` (which subscribed them), their
        alarms to the line's alarm path -- and so to the operator page; beside other cameras, once
        for the station. The OPC UA server first, as in ``inspector run``."""
        recipe = self.recipe
        for name in ("opcua", "mqtt", "plant_db", "plc"):
            link = links.get(name)
            if link is None:
                continue
            if name == "opcua":
                link.set_recipe(recipe.product, recipe.model_version_id, recipe.rule.threshold)
            else:
                link.on_alarm = line.raise_alarm
            if name == "plc":
                link.on_stop = self._plc_stop_asked.emit
            try:
                link.start()
            except InspectorError as exc:
                self._add_alarm("link_error", f"{LINK_TITLES[name]} link not started: {exc}")
                self.link_states[name] = "down"
                del links[name]
                if name == "opcua":
                    link.stop()
                continue
            if name == "opcua":
                link.set_running(True)
        self._refresh_links()

    def _stop_links(self) -> None:
        for name, link in list(self.links.items()):
            try:
                if name == "opcua":
                    link.set_running(False)
                    link.stop()
                else:
                    link.stop(LINK_DRAIN_S)  # what is left waits for the next start (MQTT, plant)
            except Exception:  # a link's bug must not keep the line from stopping
                log.exception("stopping the %s link failed", name)
        if "mqtt" in self.links:
            self.db.outbox_message = None  # the next start's MQTT link writes the outbox again
        self.links = {}
        self.link_states = {name: "stopped" for name in self.link_states}
        self.links_changed.emit()

    def _refresh_links(self) -> None:
        states = {name: (_link_state(self.links[name]) if name in self.links else state)
                  for name, state in self.link_states.items()}
        if self.line is not None:  # a link whose thread ended while the line runs is down
            states = {name: "down" if state == "stopped" else state for name, state in states.items()}
        if states != self.link_states:
            self.link_states = states
            self.links_changed.emit()

    def _on_plc_stop_asked(self, reason: str) -> None:
        if self.line is None:
            return
        self._add_alarm("line_stopped", f"the line stopped: the PLC link is down (down policy 'stop'): {reason}")
        self.stop()

    # -- helpers ----------------------------------------------------------------------------------

    def _add_alarm(self, kind: str, message: str, when: datetime | None = None) -> None:
        self.alarms.appendleft(AlarmEntry(when or datetime.now(timezone.utc), kind, message))
        self.alarms_changed.emit()

    def _on_drift_changed(self, camera_id: str, status: DriftStatus) -> None:
        # The drift alarm itself comes as a pipeline alarm, through the bridge.
        view = self.views.get(camera_id)
        if view is not None:
            view.drift = status
        self.status_changed.emit()


def _link_state(link: Any) -> str:
    """A link's ``state`` property (PLC, MQTT, plant database); the OPC UA server's ``serving``."""
    if hasattr(link, "serving"):
        return "serving" if link.serving else "stopped"
    return link.state


def _camera_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in settings.items() if v is not None}
    if out.get("roi") is not None:
        out["roi"] = tuple(int(v) for v in out["roi"])
    return out

