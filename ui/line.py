"""The line as the GUI sees it: a Qt adapter over the running :class:`station.Station`.

:class:`LineModel` owns one :class:`~station.Station` -- the same class ``inspector run`` runs, so
the desktop and the command line build the lines, make and drain the plant links, follow the
plant's product changes, count and audit the run alike -- and adds what a screen needs: each
camera's latest result and state (a :class:`CameraView`), the station's trend and alarms. It
never slows the pipeline: results reach it through :class:`~ui.bridge.PipelineBridge` as queued
signals, each handled in O(1) (a bounded trend, the latest result), and the views are told about
changes by a display timer at most :data:`DISPLAY_HZ` times a second, always with the newest
result -- so a slow or blocked GUI thread skips pictures, never inspections (the pipeline records
every frame itself). The station's callbacks come from its threads and are re-emitted as signals.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.line import (CAMERA_LOST, CAMERA_RECONNECTED, LINE_RESUMED, LINE_STALLED, Counts, DecisionRule,
                            InspectionResult, Lines, Pipeline, PipelineMetrics)
from inspector.line.drift import DriftStatus
from inspector.recipes import LoadedRecipe
from inspector.roles import Actor
from station import LINK_ALARMS, LINKS as LINK_SPECS, CameraStartError, Station, StationConfig, link_title  # noqa: F401
from station.actions import acknowledge_alarms as audit_acknowledged
from station.links import configured_keys
from station.actions import system_actor
from station.config import PLC_DOWN_POLICIES, TRIGGERS  # noqa: F401  (the settings page's choices)

from ui.bridge import PipelineBridge

log = logging.getLogger(__name__)

DISPLAY_HZ = 10
METRICS_INTERVAL_MS = 1000
TREND_LENGTH = 200
MAX_ALARMS = 200
#: Model versions whose framing the line keeps, to outline the parts they decided.
RECENT_FRAMINGS = 4
#: The plant links by name, in the order they start, with the StationConfig field of each.
LINKS = {spec.name: spec.field for spec in LINK_SPECS}
LINK_TITLES = {spec.name: spec.title for spec in LINK_SPECS}
#: How each link state shows (the operator page, the settings page).
LINK_STATE_COLORS = {"connected": "#2e7d32", "serving": "#2e7d32", "connecting": "#616161", "retrying": "#e65100",
                     "down": "#c62828", "stopped": "#616161"}
#: Seconds a stopping line gives each link to hand over what it holds (the rest waits for the
#: next start: the MQTT outbox, the plant forward mark; the PLC's parts are long gone).
LINK_DRAIN_S = 1.0
#: The desktop's own defaults: the demo's part feeder, a smaller quota, more passes kept for review.
DESKTOP_DEFAULTS: dict[str, Any] = {"feeder_rate": 4.0, "quota_gb": 5.0, "pass_sample_rate": 0.05}


def link_state_html(title: str, state: str) -> str:
    """``title`` and the link's ``state``, coloured: green connected/serving, orange retrying, red down."""
    return f"{title} <b style='color:{LINK_STATE_COLORS.get(state, '#616161')}'>{state}</b>"


def link_text(config: StationConfig, name: str) -> str:
    """The link ``name``'s setting as its field shows it: a PLC per camera separated by spaces."""
    value = getattr(config, LINKS[name])
    return " ".join(value) if isinstance(value, tuple) else (value or "")


def desktop_config(cameras: tuple[str, ...] | list[str], image_dir: str | Path, **options: Any) -> StationConfig:
    """A :class:`~station.StationConfig` with the desktop's defaults (:data:`DESKTOP_DEFAULTS`)."""
    return StationConfig(cameras=tuple(cameras), image_dir=Path(image_dir), **{**DESKTOP_DEFAULTS, **options})


@dataclass(frozen=True)
class AlarmEntry:
    time: datetime
    kind: str
    message: str
    acknowledged: bool = False


@dataclass
class CameraView:
    """What the operator page shows of one camera (its tile, beside other cameras). ``camera_id`` is its
    URI (the drivers name a camera by it, and its results carry it); ``state``: "stopped",
    "connected", "lost", "stalled" or "unavailable"."""

    camera_id: str
    counters: Counts = field(default_factory=Counts)
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
    stopped, a camera's state or the recipe changed (the plant's product changes included), drift
    warning or recovery; ``links_changed()``: a plant link's state changed (:attr:`link_states`).

    :attr:`station` runs it all; :attr:`recipe` is what decides; :attr:`views` each camera's
    :class:`CameraView` by camera id, in the configured order; :attr:`counters` (the station's
    shift counts, one rule: :class:`~inspector.line.Counts`) and :attr:`trend` are the station's.
    ``load_product(name)`` loads a product's active recipe for the plant's product changes (OPC
    UA, a PLC's product number); ``actor`` is who the run's audit names (default ``gui:<login>``).
    """

    result_changed = pyqtSignal(object)
    links_changed = pyqtSignal()
    counters_changed = pyqtSignal()
    trend_changed = pyqtSignal()
    alarms_changed = pyqtSignal()
    metrics_changed = pyqtSignal(object)
    status_changed = pyqtSignal()
    # From the station's threads to the GUI thread:
    _drift_changed = pyqtSignal(str, object)
    _stop_asked_signal = pyqtSignal(str)
    _recipe_changed = pyqtSignal(object)
    _station_alarm = pyqtSignal(str, str)

    def __init__(self, db: HistoryDB, config: StationConfig, recipe: LoadedRecipe, *,
                 load_product: Any = None, actor: Actor | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self._recipe = recipe
        #: Each recent model version's framing, newest last: what outlines a part decided by it.
        self._framings: OrderedDict[int | None, Any] = OrderedDict()
        self._remember_framing(recipe)
        self.station = Station(config, db, actor=actor or system_actor("gui"), strict_links=False,
                               load_product=load_product)
        self.station.on_alarm = self._station_alarm.emit
        self.station.on_drift = self._drift_changed.emit
        self.station.on_stop_asked = self._stop_asked_signal.emit
        self.station.on_recipe_changed = self._recipe_changed.emit
        self._bridge: PipelineBridge | None = None
        self.views: dict[str, CameraView] = {}
        self._set_views(config)
        self.trend: deque[TrendPoint] = deque(maxlen=TREND_LENGTH)
        self.alarms: deque[AlarmEntry] = deque(maxlen=MAX_ALARMS)
        self.latest: InspectionResult | None = None
        self.last_metrics: PipelineMetrics | None = None
        self._drift_changed.connect(self._on_drift_changed)
        self._stop_asked_signal.connect(self._on_stop_asked)
        self._recipe_changed.connect(self._on_recipe_changed)
        self._station_alarm.connect(self._add_alarm)
        #: The state of each configured link by key (see :func:`station.link_title`): its own
        #: ("connecting", "connected", "retrying", "serving", "stopped"), or "down".
        self.link_states: dict[str, str] = {}
        self._dirty = False
        self._display = QTimer(self)
        self._display.setInterval(1000 // DISPLAY_HZ)
        self._display.timeout.connect(self._on_display_tick)
        self._metrics_timer = QTimer(self)
        self._metrics_timer.setInterval(METRICS_INTERVAL_MS)
        self._metrics_timer.timeout.connect(self._on_metrics_tick)

    # -- what runs ---------------------------------------------------------------------------------

    @property
    def config(self) -> StationConfig:
        return self.station.config

    @config.setter
    def config(self, config: StationConfig) -> None:
        self.station.reconfigure(config)

    @property
    def recipe(self) -> LoadedRecipe:
        return self._recipe

    @property
    def line(self) -> Lines | None:
        """The running cameras' lines, None while stopped."""
        return self.station.lines

    @property
    def links(self) -> dict[str, Any]:
        """The running station's plant links by key (none while stopped)."""
        return {} if self.station.links is None else dict(self.station.links.made)

    @property
    def pipeline(self) -> Pipeline | None:
        """The running line's pipeline; beside other cameras, the first camera's."""
        return None if self.line is None else self.line.lines[0].pipeline

    @property
    def running(self) -> bool:
        return self.station.running

    @property
    def counters(self) -> Counts:
        return self.station.total_counts()

    @property
    def camera_state(self) -> str:
        """The camera's state; of several cameras, the worst (see :data:`CAMERA_STATES_WORST_FIRST`)."""
        return min((view.state for view in self.views.values()), key=CAMERA_STATES_WORST_FIRST.index)

    @property
    def drift_status(self) -> DriftStatus | None:
        """The camera's drift status; of several cameras, a warning where one has it."""
        statuses = [view.drift for view in self.views.values() if view.drift is not None]
        return next((s for s in statuses if s.status == "warning"), statuses[0] if statuses else None)

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> bool:
        """Opens the cameras and starts inspecting; False (with an alarm) when a camera fails."""
        if self.running:
            return True
        self._set_views(self.config)  # the configuration may have changed since the last start
        station = self.station
        try:
            station.open_cameras()
            lines = station.build(self._recipe)
            bridge = PipelineBridge(self)
            bridge.result_received.connect(self._on_result_received)
            bridge.alarm_received.connect(self._on_alarm_received)
            for line in lines.lines:
                bridge.attach(line.pipeline)  # before start: no result is missed
            station.start()
        except InspectorError as exc:
            station.close()
            self._start_failed(exc, exc.camera_id if isinstance(exc, CameraStartError) else None)
            self._refresh_links()
            return False
        self._bridge = bridge
        for view in self.views.values():
            view.state = "connected"
        self._display.start()
        self._metrics_timer.start()
        self._refresh_links()
        self.status_changed.emit()
        return True

    def stop(self, timeout: float = 30.0, why: str = "stopped from the desktop") -> bool:
        """Stops inspecting; every frame acquired so far is inspected and recorded first."""
        clean = True
        if self.station.lines is not None:
            report = self.station.stop(timeout, why=None if self.station.plc_down else why, drain_s=LINK_DRAIN_S)
            clean = report.clean
            self._show_metrics(report.metrics)
        self.station.close()
        self._metrics_timer.stop()
        for view in self.views.values():
            view.state = "stopped"
        self._refresh_links()
        # Results queued before the stop are still delivered; one more tick shows the last. The
        # counts are the station's, complete once it stopped: shown now, dirty or not.
        self._on_display_tick()
        self._show_counts()
        self.counters_changed.emit()
        self.status_changed.emit()
        return clean

    def restart(self, config: StationConfig | None = None) -> bool:
        self.stop(why="restarted with new settings")
        if config is not None:
            self.config = config
        return self.start()

    def set_recipe(self, recipe: LoadedRecipe) -> None:
        """Decide the next frames with this recipe (the frame in the engine finishes with the old)."""
        if not recipe.scores_as(self._recipe):  # else each line's drift monitor goes on, its warning too
            for view in self.views.values():
                view.drift = None
        self._recipe = recipe
        self._remember_framing(recipe)
        self.station.set_recipe(recipe)  # tells _recipe_changed too
        self.status_changed.emit()

    def framing_of(self, result: InspectionResult) -> Any:
        """The framing (region, polygon) of the recipe whose model decided ``result``: the line's,
        or a recent one's for a part decided just before a recipe change (None: no framing)."""
        version = getattr(result, "model_version_id", None)
        if version in self._framings:
            return self._framings[version]
        return getattr(self._recipe.engine, "framing", None)

    def _remember_framing(self, recipe: LoadedRecipe) -> None:
        self._framings[recipe.model_version_id] = getattr(recipe.engine, "framing", None)
        self._framings.move_to_end(recipe.model_version_id)
        while len(self._framings) > RECENT_FRAMINGS:
            self._framings.popitem(last=False)

    def set_threshold(self, rule: DecisionRule) -> None:
        self.set_recipe(replace(self._recipe, rule=rule, source="threshold set by hand"))

    # -- state for the views --------------------------------------------------------------------

    def reset_counters(self) -> None:
        self.station.reset_counts()
        self._show_counts()
        self.trend.clear()
        self.counters_changed.emit()
        self.trend_changed.emit()

    def acknowledge_alarms(self, user: str, role: str) -> None:
        """Marks every alarm seen (audited: who acknowledged what)."""
        audit_acknowledged(self.db, Actor(user, role), [f"{a.kind}: {a.message}" for a in self.unacknowledged])
        self.alarms = deque((replace(a, acknowledged=True) for a in self.alarms), maxlen=MAX_ALARMS)
        self.alarms_changed.emit()

    def camera_frames(self) -> dict[str, tuple[int, int]]:
        """Camera id -> (height, width) of the latest frame each camera gave, where one did: what
        a model to activate must be able to cut (:meth:`~calibration.teach.lifecycle.Lifecycle.check_cameras`)."""
        return {camera_id: tuple(view.latest.image.shape[:2]) for camera_id, view in self.views.items()
                if view.latest is not None and view.latest.image is not None}

    @property
    def unacknowledged(self) -> list[AlarmEntry]:
        return [a for a in self.alarms if not a.acknowledged]

    # -- slots ------------------------------------------------------------------------------------

    def _on_result_received(self, result: InspectionResult) -> None:
        view = self.views.get(result.camera_id)
        if view is not None:
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
        self._show_counts()
        self.result_changed.emit(self.latest)
        self.counters_changed.emit()
        self.trend_changed.emit()

    def _on_metrics_tick(self) -> None:
        self._refresh_links()  # a first connection raises no alarm
        if self.line is None:
            return
        self._show_metrics(self.station.metrics())
        self.metrics_changed.emit(self.last_metrics)

    def _show_metrics(self, metrics: dict[str, PipelineMetrics]) -> None:
        for camera_id, m in metrics.items():
            if camera_id in self.views:
                self.views[camera_id].metrics = m
        self.last_metrics = next(iter(metrics.values())) if len(metrics) == 1 else None

    def _show_counts(self) -> None:
        for camera_id, counts in self.station.counts().items():
            if camera_id in self.views:
                self.views[camera_id].counters = counts

    def _on_recipe_changed(self, recipe: LoadedRecipe) -> None:
        """The station decides with ``recipe`` now: by the desktop's own hand, or the plant's
        product change (a PLC's product number, OPC UA's ChangeProduct)."""
        if recipe is not self._recipe:
            self._recipe = recipe
            self._remember_framing(recipe)
            for view in self.views.values():
                view.drift = None
        self.status_changed.emit()

    # -- cameras ----------------------------------------------------------------------------------

    def _set_views(self, config: StationConfig) -> None:
        """A view per configured camera; a camera that stays keeps its latest result."""
        self.views = {uri: self.views.get(uri) or CameraView(uri) for uri in config.cameras}
        self._show_counts()

    def _start_failed(self, exc: InspectorError, camera_id: str | None) -> None:
        """A camera (``camera_id``; None: which one is unknown) could not start: alarmed, shown."""
        self._add_alarm("camera_error", str(exc))
        for view in self.views.values():
            if camera_id is None or view.camera_id == camera_id:
                view.state = "unavailable"
        self.status_changed.emit()

    # -- plant links ------------------------------------------------------------------------------

    def _refresh_links(self) -> None:
        states = self.station.link_states()
        if self.station.links is None:  # stopped: every configured link is
            states = {key: "stopped" for key in configured_keys(self.config)}
        if states != self.link_states:
            self.link_states = states
            self.links_changed.emit()

    def _on_stop_asked(self, reason: str) -> None:
        if self.line is None:
            return
        self._add_alarm("line_stopped", f"the line stopped: {reason}")
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
