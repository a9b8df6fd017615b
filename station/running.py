"""The running station: N >= 1 cameras on one engine, their lines, the plant links, product
changes from the plant, the shift counts and the run's audit -- built once, for both faces.

``inspector run`` and the desktop drive the same steps::

    station = Station(config, db, actor=actor, strict_links=True, load_product=load)
    station.open_cameras()        # a missing or busy camera is reported before the model loads
    station.build(recipe)         # the lines, the links subscribed (not started)
    station.start()               # links (OPC UA first), run_start audited, cameras acquiring
    station.wait(5.0, stop)       # ... until the sources end, a signal, or the PLC down policy
    report = station.stop()       # every frame acquired is inspected and recorded; links
                                  # drained; run_stop audited with each camera's why and counts
    station.close()               # links and cameras closed, whatever ended the run

The faces differ only in what they do with it: the command line prints, the desktop shows (its
:class:`ui.line.LineModel` re-emits the station's callbacks as Qt signals).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from drivers import open_camera
from inspector.errors import DatabaseError, InspectorError
from inspector.history.writer import DISK_FULL
from inspector.line import Counts, Lines, PipelineMetrics, build_lines
from inspector.line.drift import DriftStatus
from inspector.line.product_change import ProductSwitcher, decision_details
from inspector.roles import Actor

from station.config import StationConfig
from station.links import HURRIED_DRAIN_S, StationLinks, audit_acknowledge

log = logging.getLogger(__name__)

#: Seconds a stop waits for what was acquired to be inspected and recorded.
STOP_TIMEOUT_S = 60.0


class CameraStartError(InspectorError):
    """A camera could not be opened (missing, busy, a bad URI); ``camera_id`` names it."""

    def __init__(self, camera_id: str, error: InspectorError) -> None:
        super().__init__(str(error))
        self.camera_id = camera_id


@dataclass(frozen=True)
class StopReport:
    """How a run ended: ``clean`` (everything acquired was inspected and recorded in time),
    each camera's ``whys`` and ``metrics`` (by camera id, in camera order), the verdicts
    ``lost`` (not recorded anywhere), and whether the PLC down policy or a disk down to its
    reserve stopped it."""

    clean: bool
    whys: dict[str, str]
    metrics: dict[str, PipelineMetrics]
    lost: int
    plc_down: bool
    source_ended: bool
    disk_full: bool = False

    @property
    def why(self) -> str:
        return "; ".join(sorted(set(self.whys.values())))

    @property
    def acquired(self) -> int:
        return sum(m.acquired for m in self.metrics.values())

    @property
    def recorded(self) -> int:
        return sum(m.recorded for m in self.metrics.values())


def run_counts(m: PipelineMetrics) -> dict[str, int]:
    """A camera's counts as the ``run_stop`` audit records them (``rechecked``: RECHECK parts;
    ``no_part``: frames the part was not found in, no part inspected)."""
    return {"acquired": m.acquired, "recorded": m.recorded, "passed": m.passed, "failed": m.failed,
            "rechecked": m.rechecked, "no_part": m.no_part, "errors": m.errors, "dropped": m.dropped, "not_inspected": m.not_inspected,
            "unrecorded": m.unrecorded + m.writer.failed, "images_dropped": m.writer.images_dropped}


def check_storage(config: StationConfig, db: Any) -> None:
    """Refuses, before a camera opens or a model loads, a station that could record nothing:
    a read-only history (an archive), an image folder that is a file or cannot be written."""
    if getattr(db, "read_only", False):
        raise DatabaseError(f"{db.url} is read-only (an archive): a station cannot record into it; "
                            "choose a writable history database")
    folder = config.image_dir
    if folder.exists() and not folder.is_dir():
        raise InspectorError(f"the image folder {folder} is a file, not a folder")
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InspectorError(f"cannot keep images in {folder}: {existing} is not a writable folder")


class Station:
    """One station: :attr:`config` (a :class:`~station.config.StationConfig`), its history
    ``db``, and who runs it (``actor``, for the run's audit).

    ``strict_links``: a plant link that cannot be made or started ends the start (the command
    line) instead of running without it, alarmed (the desktop). ``load_product(name)`` loads a
    product's active :class:`~inspector.recipes.LoadedRecipe` for product changes asked for by
    the plant (OPC UA's ChangeProduct, a PLC's product number); None, or a run with a
    technician's override (``overridden``), takes none. ``on_message(text)``: what the station
    has to say (links serving, drained, product changes); default: the log.

    Callbacks the desktop sets, each called on the thread where it happens: ``on_alarm(kind,
    message)`` for an alarm before any line exists (a link that could not be made),
    ``on_recipe_changed(recipe)`` after a product change, ``on_drift(camera_id, status)``,
    ``on_stop_asked(reason)`` when the station must stop: the PLC down policy asks for it, or
    the history's disk is down to its reserve (``disk_full``); ``reason`` is a sentence.

    The station lives across runs: :meth:`reconfigure` between two runs; :attr:`counts` (per
    camera, the one counting rule of :class:`~inspector.line.Counts`) go on until
    :meth:`reset_counts`.
    """

    def __init__(self, config: StationConfig, db: Any, *, actor: Actor, strict_links: bool = True,
                 load_product: Callable[[str], Any] | None = None, overridden: Sequence[str] = (),
                 on_message: Callable[[str], None] | None = None) -> None:
        self.config, self.db, self.actor = config, db, actor
        self.strict_links = strict_links
        self.load_product = load_product
        self.overridden = list(overridden)
        self.on_message: Callable[[str], None] = on_message or log.info
        self.on_alarm: Callable[[str, str], None] | None = None
        self.on_recipe_changed: Callable[[Any], None] | None = None
        self.on_drift: Callable[[str, DriftStatus], None] | None = None
        self.on_stop_asked: Callable[[str], None] | None = None
        self.recipe: Any = None
        self.cameras: list[Any] = []  # open between open_cameras() and close()
        self.lines: Lines | None = None
        self.links: StationLinks | None = None
        self._counts_lock = threading.Lock()
        self._counts: dict[str, Counts] = {uri: Counts() for uri in config.cameras}
        self._retired = Counts()  # cameras configured away since the last reset
        self._batching: tuple[Any, int, int] | None = None  # (engine, cameras, max batch) measured
        self._started = False
        self._hurried = threading.Event()
        self._disk_full = threading.Event()

    # -- configuration ----------------------------------------------------------------------------

    def reconfigure(self, config: StationConfig) -> None:
        """The next run's configuration; a camera that stays keeps its counts."""
        if self.lines is not None:
            raise InspectorError("stop the station before changing its configuration")
        self.config = config
        with self._counts_lock:
            for uri, counts in self._counts.items():
                if uri not in config.cameras:  # a camera that leaves: its parts stay in the shift's total
                    self._retired = self._retired.plus(counts)
            self._counts = {uri: self._counts.get(uri) or Counts() for uri in config.cameras}

    @property
    def running(self) -> bool:
        return self.lines is not None and self.lines.running

    # -- a run --------------------------------------------------------------------------------------

    def check_storage(self) -> None:
        """See :func:`check_storage`."""
        check_storage(self.config, self.db)

    def make_links(self) -> StationLinks:
        """The configured plant links, made, not started (done by :meth:`build` if not before):
        ``inspector run`` makes them first, so that a bad URI or register map is reported before
        any camera opens."""
        if self.links is None:
            self.links = StationLinks(self.config, self.db, strict=self.strict_links, on_alarm=self._alarm_early)
            self.links.on_stop_asked = lambda reason: self._stop_asked(
                f"the PLC link is down (down policy 'stop'): {reason}")
        return self.links

    def open_cameras(self) -> None:
        """Opens every camera, in order, with the configuration's camera settings; the first that
        fails closes the ones opened and raises :class:`CameraStartError`."""
        settings = {k: v for k, v in self.config.camera_settings.items() if v is not None}
        if settings.get("roi") is not None:
            settings["roi"] = tuple(int(v) for v in settings["roi"])
        uri = self.config.cameras[0]
        try:
            for uri in self.config.cameras:
                camera = open_camera(uri)
                self.cameras.append(camera)
                camera.open()
                if settings:
                    camera.configure(**settings)
        except InspectorError as exc:
            self._close_cameras()
            raise CameraStartError(uri, exc) from exc

    def build(self, recipe: Any, *, extra_links: Iterable[Any] = ()) -> Lines:
        """The lines on the open cameras (opened now if not before), deciding with ``recipe``,
        every link subscribed; not started. ``extra_links`` hear every camera (``--print-results``)."""
        self.check_storage()
        links = self.make_links()
        if not self.cameras:
            self.open_cameras()
        cfg = self.config
        lines = build_lines(
            self.cameras, recipe, self.db,
            image_dir=cfg.image_dir, quota_bytes=int(cfg.quota_gb * 1e9), pass_sample_rate=cfg.pass_sample_rate,
            mode=cfg.mode, trigger=cfg.trigger, trigger_line=cfg.trigger_line, feeder_rate=cfg.feeder_rate,
            queue_size=cfg.queue_size, max_frames=cfg.max_frames, drift_window=cfg.drift_window,
            stall_after_s=cfg.stall_after_s, max_batch=self._max_batch(recipe), max_wait_ms=cfg.batch_wait_ms,
            disk_reserve_bytes=int(cfg.disk_reserve_mb * 1e6), no_part_alarm_after=cfg.no_part_alarm_after,
            links=[_Counter(self), *extra_links, *links.shared()],
            camera_links=[links.of_camera(i) for i in range(len(self.cameras))],
        )
        if lines.batcher is not None:
            self._batching = (recipe.engine, len(self.cameras), lines.batcher.max_batch)
        for line in lines.lines:  # each camera's drift status is its own
            line.on_drift = partial(self._drift, line.camera.camera_id)
        self.lines, self.recipe = lines, recipe
        self._disk_full.clear()
        return lines

    def start(self, **audit: Any) -> None:
        """Starts the links (the OPC UA server first: a port already taken ends the start before
        a camera acquires), audits ``run_start`` (with ``audit``'s extra details; before it
        ``run_override`` when a technician's ``overridden`` options decide instead of the product's
        active recipe) and starts every camera's line. A line that cannot start stops what started
        and raises."""
        lines, links, recipe = self._built()
        switch = None
        if self.load_product is not None and not self.overridden:
            switcher = ProductSwitcher(self.db, self, self.load_product, user="opcua")
            switch = lambda name, user: switcher.change(name, user=user)  # noqa: E731
        links.start(lines, recipe, change_product=switch, acknowledge=partial(audit_acknowledge, self.db),
                    on_message=self.on_message)
        if self.overridden:  # a technician decides instead of the product's active recipe: said first
            self.db.record_audit(self.actor.user, self.actor.role, "run_override", f"product:{recipe.product}",
                                 self._active_decision(recipe.product),
                                 {**decision_details(recipe), "overridden": self.overridden})
        details = {"cameras": list(self.config.cameras), "product": recipe.product, **decision_details(recipe),
                   "overridden": self.overridden, "mode": self.config.mode, "max_frames": self.config.max_frames, **audit}
        self.db.record_audit(self.actor.user, self.actor.role, "run_start", f"product:{recipe.product}", None, details)
        lines.start()
        self._started = True
        links.set_running(True)

    def wait(self, seconds: float, *stops: threading.Event) -> bool:
        """True once every camera's acquisition ended and its frames were inspected; False after
        ``seconds``, or as soon as one of ``stops`` (a signal) is set, the PLC down policy asks
        for the stop or the disk is down to its reserve -- the stop itself is the caller's, on
        its own thread."""
        lines, links, _ = self._built()
        deadline = time.monotonic() + seconds
        stops = (*stops, links.plc_down, self._disk_full)
        while not any(stop.is_set() for stop in stops):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if lines.wait(min(left, 0.2)):
                return True
        return False

    def hurry(self) -> None:
        """Shorten a stop under way or to come (a second signal): frames still waiting are
        counted as not inspected instead of being scored, and each link drains for
        :data:`~station.links.HURRIED_DRAIN_S` only. The summary and ``run_stop`` are still
        written. Safe from a signal handler: it only sets events."""
        self._hurried.set()
        lines = self.lines
        if lines is not None:
            lines.hurry()

    @property
    def hurried(self) -> bool:
        return self._hurried.is_set()

    @property
    def plc_down(self) -> bool:
        return self.links is not None and self.links.plc_down.is_set()

    @property
    def disk_full(self) -> bool:
        """True once a line stopped acquiring because the history's disk is down to its reserve."""
        return self._disk_full.is_set()

    def stop(self, timeout: float = STOP_TIMEOUT_S, *, why: str | None = None,
             drain_s: float | None = None) -> StopReport:
        """Stops every camera's line (what was acquired is inspected and recorded first), drains
        the links (``drain_s`` each, else their own time) and audits ``run_stop`` with ``why``
        (default: each camera's own reason) and the counts. A database that is down does not
        turn the stop into a crash: the verdicts are journaled, the failure logged."""
        lines, links, _ = self._built()
        if self.hurried:
            lines.hurry()
        try:
            clean = lines.stop(timeout)
        finally:
            links.set_running(False)
        links.drain(self.on_message, HURRIED_DRAIN_S if self.hurried else drain_s)
        metrics = lines.metrics()
        whys = {line.camera.camera_id: why or self._why(line, metrics[line.camera.camera_id]) for line in lines.lines}
        report = StopReport(clean, whys, metrics, sum(m.unrecorded + m.writer.failed for m in metrics.values()),
                            self.plc_down, lines.source_ended, self.disk_full)
        if self._started:
            self._audit_stop(report)
        self.lines, self._started = None, False
        return report

    def close(self) -> None:
        """Whatever ended the run: links and cameras closed (what is left waits in the outbox
        or the local history for the next run). Safe to call twice, and after a failed start."""
        if self.lines is not None:  # built, never stopped: a failed start
            try:
                self.lines.stop(5.0)
            except Exception:
                log.exception("stopping the lines after a failed start")
            self.lines, self._started = None, False
        if self.links is not None:
            self.links.close()
            self.links = None
        self._close_cameras()

    # -- while it runs ------------------------------------------------------------------------------

    def set_recipe(self, recipe: Any) -> None:
        """Decide every camera's next frames with ``recipe`` (the frame in the engine finishes
        with the old one); the OPC UA server shows it, ``on_recipe_changed`` is told."""
        self.recipe = recipe
        if self.lines is not None:
            self.lines.set_recipe(recipe)
        if self.links is not None:
            self.links.set_recipe(recipe)
        if self.on_recipe_changed is not None:
            self.on_recipe_changed(recipe)

    def metrics(self) -> dict[str, PipelineMetrics]:
        """Each camera's :class:`PipelineMetrics` by camera id (empty while stopped)."""
        return {} if self.lines is None else self.lines.metrics()

    def link_states(self) -> dict[str, str]:
        return {} if self.links is None else self.links.states()

    # -- counts -------------------------------------------------------------------------------------

    def counts(self) -> dict[str, Counts]:
        """Each camera's counts since the last :meth:`reset_counts` (copies), by camera id."""
        with self._counts_lock:
            return {uri: dataclasses.replace(c) for uri, c in self._counts.items()}

    def total_counts(self) -> Counts:
        """The station's counts: every camera's, those configured away since included."""
        with self._counts_lock:
            total = self._retired
        for c in self.counts().values():
            total = total.plus(c)
        return total

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts = {uri: Counts() for uri in self._counts}
            self._retired = Counts()

    def _count(self, result: Any) -> None:
        with self._counts_lock:
            counts = self._counts.get(result.camera_id)
            if counts is None:
                counts = self._counts[result.camera_id] = Counts()
            counts.add(result)

    # -- helpers ------------------------------------------------------------------------------------

    def _built(self) -> tuple[Lines, StationLinks, Any]:
        if self.lines is None or self.links is None:
            raise InspectorError("the station is not built: call build(recipe) first")
        return self.lines, self.links, self.recipe

    def _max_batch(self, recipe: Any) -> int | None:
        """The configured batch, else the one measured for this engine and number of cameras at
        an earlier start (None: measured now, seconds on a CPU, before any camera acquires)."""
        if self.config.max_batch is not None:
            return self.config.max_batch
        cameras = len(self.config.cameras)
        if self._batching is not None and self._batching[:2] == (recipe.engine, cameras):
            return self._batching[2]
        return None

    def _why(self, line: Any, m: PipelineMetrics) -> str:
        if self.plc_down:
            return "the PLC link went down (down policy 'stop')"
        if self.disk_full:
            return "the history's disk is down to its reserve (disk full)"
        if not line.source_ended:
            return "acquisition failed"
        if self.config.max_frames is not None and m.acquired >= self.config.max_frames:
            return f"{self.config.max_frames} frames"
        return "the camera's source ended"

    def _audit_stop(self, report: StopReport) -> None:
        cameras = {camera_id: {"why": report.whys[camera_id], **run_counts(m)} for camera_id, m in report.metrics.items()}
        totals = {key: sum(c[key] for c in cameras.values()) for key in run_counts(next(iter(report.metrics.values())))}
        try:
            self.db.record_audit(self.actor.user, self.actor.role, "run_stop", f"product:{self.recipe.product}", None,
                                 {"why": report.why, **totals, "cameras": cameras})
        except DatabaseError as exc:
            log.warning("the run's stop could not be audited: %s", exc)

    def _active_decision(self, product: str) -> dict[str, Any] | None:
        """What the product's active recipe decides with (None: it has none), for ``run_override``."""
        from inspector.recipes import active_recipe

        try:
            return decision_details(active_recipe(self.db, product, verify_file=False))
        except InspectorError:
            return None

    def _close_cameras(self) -> None:
        for camera in self.cameras:
            try:
                if camera.is_open:
                    camera.close()
            except Exception:
                log.exception("closing camera %s failed", camera.camera_id)
        self.cameras = []

    def _alarm_early(self, kind: str, message: str) -> None:
        if self.on_alarm is not None:
            self.on_alarm(kind, message)
        else:
            log.warning("%s: %s", kind, message)

    def _drift(self, camera_id: str, status: DriftStatus) -> None:
        if self.on_drift is not None:
            self.on_drift(camera_id, status)

    def _stop_asked(self, reason: str) -> None:
        if self.on_stop_asked is not None:
            self.on_stop_asked(reason)


class _Counter:
    """The station's counts hear every durable result, and the station every line's alarms (a
    line link, on each writer's thread)."""

    def __init__(self, station: Station) -> None:
        self._station = station

    def on_result(self, result: Any) -> None:
        self._station._count(result)

    def on_alarm(self, alarm: Any) -> None:
        if alarm.kind == DISK_FULL and not self._station._disk_full.is_set():
            self._station._disk_full.set()  # every line stops, not only the one whose writer saw it
            self._station._stop_asked(f"the disk is nearly full: {alarm.message}")
