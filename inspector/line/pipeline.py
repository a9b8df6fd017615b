"""The inline inspection pipeline: camera -> engine -> decision -> history -> result subscribers.

Three threads, one path::

    acquisition thread   camera.grab() -> FrameQueue (bounded)
    engine worker        engine.predict -> rule.decide -> InspectionResult -> writer.submit
    history writer       (its own thread) store durably -> result subscribers

One frozen :class:`~inspector.inspection.InspectionResult` per frame, with the camera's own image
(gray or RGB) and the anomaly map; the history fills in where it stored them, and the record it
hands back once durable is passed to the result subscribers unchanged.

Nothing here touches Qt; a GUI adapter re-emits results and alarms as signals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final, Protocol

import numpy as np

from inspector.alarms import Alarm, AlarmThrottle
from inspector.frames import Frame, FrameSource, TriggerMode
from inspector.errors import InspectorError
from inspector.history import HistoryWriter
from inspector.history.writer import DISK_FULL
from inspector.inspection import InspectionResult

from inspector.line.rule import DecisionRule
from inspector.line.frame_queue import Closed, FrameQueue
from inspector.line.line_metrics import Counts, PipelineMetrics, RollingPercentiles, RollingRate

log = logging.getLogger(__name__)

MODES: Final = ("triggered", "live")
#: Frames waiting for the engine at most, per mode: live view wants the newest frame, not a backlog.
DEFAULT_QUEUE_SIZE: Final = {"triggered": 8, "live": 1}
#: The deepest queue a stop can still drain: 64 frames at 250 ms each (a slow CPU) take 16 s of
#: the station's 60-s stop limit. A deeper queue only holds parts longer before their verdict.
MAX_QUEUE_SIZE: Final = 64
#: The error of a frame acquired but never scored (its row says so, and it FAILs).
NOT_INSPECTED_ERROR: Final = "not inspected"

# Alarm kinds raised by the pipeline; the history writer's own kinds (db_unavailable,
# db_recovered, records_lost, ...) are passed on unchanged.
CAMERA_LOST: Final = "camera_lost"
CAMERA_RECONNECTED: Final = "camera_reconnected"
CAMERA_ERROR: Final = "camera_error"
QUEUE_FULL: Final = "queue_full"
ENGINE_ERROR: Final = "engine_error"
SHADOW_ERROR: Final = "shadow_error"
WRITER_BACKLOG: Final = "writer_backlog"
FRAMES_UNRECORDED: Final = "frames_unrecorded"
FRAMES_NOT_INSPECTED: Final = "frames_not_inspected"
SUBSCRIBER_FAILED: Final = "subscriber_failed"
LINE_STALLED: Final = "line_stalled"
LINE_RESUMED: Final = "line_resumed"
NO_PART_RUN: Final = "no_part_run"

#: NO PART frames in a row that raise ``no_part_run`` (the part feed, the fixture or the recipe's
#: reference is off): ``Pipeline(no_part_alarm_after=...)`` changes it per line.
NO_PART_ALARM_AFTER: Final = 5

#: ``Pipeline.set_model``'s default product: the one it has.
_SAME: Final = object()

#: Repeats of one alarm kind within this many seconds are logged, not raised again.
ALARM_THROTTLE_S = 10.0


class Scorer(Protocol):
    """What the pipeline needs of an engine (:class:`inspector.engine.Engine` is one)."""

    def predict(self, image: np.ndarray) -> object:
        """-> an object with ``score: float`` and ``anomaly_map: (H, W) float ndarray``; with a
        framing also ``no_part: bool``, ``match_quality: float | None`` and ``outline`` ((4, 2)
        frame-pixel corners or None), as :class:`inspector.engine.Prediction` has them (an object
        without them is a part found, unaligned, without a region)."""


def check_queue_size(queue_size: int | None) -> None:
    """Refuses a queue the engine could not drain within a stop (None: the mode's default)."""
    if queue_size is not None and not 1 <= queue_size <= MAX_QUEUE_SIZE:
        raise InspectorError(f"queue size must be within 1..{MAX_QUEUE_SIZE} frames, got {queue_size}: a deeper "
                             "queue could not be inspected within the stop's time limit")


ResultSubscriber = Callable[[InspectionResult], None]
AlarmSubscriber = Callable[[Alarm], None]


@dataclass(frozen=True)
class _Decider:
    """What decides a frame (engine, rule, the model version they belong to and its product);
    swapped as a whole so a frame never mixes two of them: a frame in the engine during a product
    change is recorded under the product whose model scored it."""

    engine: Scorer
    rule: DecisionRule
    model_version_id: int | None
    product_id: int | None = None


class Pipeline:
    """Inspects every frame of one camera with one engine and records each verdict durably.

    ``mode="triggered"``: every frame is inspected, in order; when the queue is full the
    acquisition thread waits (backpressure, alarmed as ``queue_full``) and the camera's own
    buffers absorb the wait. ``mode="live"``: when the queue is full the oldest waiting frame is
    dropped for the new one and counted; the camera is started latest-only as well.
    ``queue_size`` defaults to 8 frames when triggered and 1 when live (a longer live queue only
    makes the frames inspected older).

    ``trigger`` is the camera's trigger mode (for ``SOFTWARE``, call ``camera.trigger()``;
    ``HARDWARE`` listens on ``trigger_line``).
    ``max_frames`` ends acquisition after that many frames, like a finite source (a folder or
    video file without looping) ends it; :meth:`wait` returns once those are inspected.
    ``shadow`` is an optional candidate engine that scores every frame after the decision
    without influencing it (its score lands in ``InspectionResult.shadow_score``; None where it
    found no part in the frame).
    ``stall_after_s``: a running line that neither acquires nor inspects a frame for this many
    seconds raises ``line_stalled`` once (and ``line_resumed`` when frames come again); for a
    line that expects frames all the time (free run, a part feeder). ``None`` (the default):
    never, as for a hardware-triggered line that may simply have no parts. A disconnected camera
    is alarmed as ``camera_lost`` instead, and a finite source that ran out is no stall.

    NO PART: a frame whose prediction says ``no_part`` (the framing did not find the part) is
    decided ``NO_PART`` with score 0.0 and no map, past the rule: neither a pass nor a defect, and
    counted apart (``metrics().no_part``). ``no_part_alarm_after`` of them in a row raise
    ``no_part_run`` once per run of them (``None``: never).

    Every acquired frame gets a row: a frame the pipeline will not score (a stop that ran out of
    time, a second signal: :meth:`hurry`) is recorded as not inspected, a FAIL whose error says
    so. When the writer says the disk is down to its reserve (``disk_full``), acquisition stops
    (:attr:`storage_full`) and what was acquired is still inspected and recorded.

    The pipeline owns the writer's lifecycle: :meth:`start` starts it and :meth:`stop` stops it.
    Give it a writer of its own: every record the writer stores is counted and announced as one
    of this pipeline's results.
    It opens the camera if it is not open yet (and then closes it at stop) and starts it.

    Threads: result subscribers are called on the history writer's thread, after the result is
    durable, in frame order; alarm subscribers on whichever thread raised the alarm. Both must
    be quick and must not call back into the pipeline's :meth:`stop`.
    """

    def __init__(
        self,
        camera: FrameSource,
        engine: Scorer,
        rule: DecisionRule,
        writer: HistoryWriter,
        mode: str = "triggered",
        queue_size: int | None = None,
        model_version_id: int | None = None,
        product_id: int | None = None,
        *,
        shadow: Scorer | None = None,
        trigger: TriggerMode = TriggerMode.FREE_RUN,
        trigger_line: str = "Line1",
        max_frames: int | None = None,
        grab_timeout_s: float = 0.2,
        stall_after_s: float | None = None,
        names_camera: bool = False,
        no_part_alarm_after: int | None = NO_PART_ALARM_AFTER,
    ) -> None:
        if mode not in MODES:
            raise InspectorError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not isinstance(rule, DecisionRule):
            raise TypeError(f"rule must be a DecisionRule, got {type(rule).__name__}")
        if max_frames is not None and max_frames < 1:
            raise InspectorError(f"max frames must be >= 1, got {max_frames}")
        check_queue_size(queue_size)
        if stall_after_s is not None and not stall_after_s > 0:
            raise InspectorError(f"stall time must be positive seconds or None, got {stall_after_s}")
        if no_part_alarm_after is not None and (isinstance(no_part_alarm_after, bool) or not isinstance(no_part_alarm_after, int)
                                                or no_part_alarm_after < 1):
            raise InspectorError(f"NO PART frames in a row before an alarm must be a whole number >= 1 or None, "
                                 f"got {no_part_alarm_after!r}")
        self.no_part_alarm_after = no_part_alarm_after
        self._no_part_run = 0  # NO PART frames in a row so far (engine worker only)
        self.camera = camera
        # Beside other cameras (inspector run --camera A --camera B) its own alarms say which camera.
        self.names_camera = names_camera
        self.writer = writer
        self.mode = mode
        self.trigger_mode = TriggerMode(trigger)
        self.trigger_line = trigger_line
        self.max_frames = max_frames
        self.grab_timeout_s = grab_timeout_s
        self.stall_after_s = stall_after_s
        self._decider = _Decider(engine, rule, model_version_id, product_id)
        self._shadow = shadow
        if queue_size is None:
            queue_size = DEFAULT_QUEUE_SIZE[mode]
        self._queue: FrameQueue[Frame] = FrameQueue(queue_size)
        self._result_subscribers: tuple[ResultSubscriber, ...] = ()
        self._decision_subscribers: tuple[ResultSubscriber, ...] = ()
        self._alarm_subscribers: tuple[AlarmSubscriber, ...] = ()
        self.alarms: deque[Alarm] = deque(maxlen=200)  # most recent, oldest first

        self._lock = threading.Lock()
        self._acquired = self._inspected = self._dropped = self._unrecorded = self._not_inspected = 0
        self._recorded = 0
        self._counts = Counts()
        self._queue_full_waits = self._disconnects = 0
        self._rate = RollingRate()
        self._acquisition_rate = RollingRate()
        self._latency = RollingPercentiles()
        self._model_latency = RollingPercentiles()
        self._throttle = AlarmThrottle(log, "pipeline")

        self._stop_requested = threading.Event()
        self._abort = threading.Event()  # a stop timed out: stop waiting for room anywhere
        self._source_ended = threading.Event()
        self._storage_full = threading.Event()
        self._worker_done = threading.Event()
        self._acquisition: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._stall_lock = threading.Lock()
        self._last_progress = time.monotonic()  # a frame acquired or inspected
        self._stalled = False
        self._opened_camera = False
        self._stopped = False
        self._stopped_cleanly = True

    # -- public ----------------------------------------------------------------------------------

    def subscribe(self, subscriber: ResultSubscriber) -> None:
        """Call ``subscriber(result)`` for every durable result (see the class docstring)."""
        self._result_subscribers = (*self._result_subscribers, subscriber)

    def on_decision(self, subscriber: ResultSubscriber) -> None:
        """Call ``subscriber(result)`` for every verdict as soon as it is decided, on the
        inspection thread, before the record is stored: for a PLC that must divert the part now.
        The record is not durable yet (no id, no image paths), and the subscriber must only queue:
        acquisition waits for it. One that raises is logged and alarmed; the line goes on."""
        self._decision_subscribers = (*self._decision_subscribers, subscriber)

    def on_alarm(self, subscriber: AlarmSubscriber) -> None:
        """Call ``subscriber(alarm)`` for every alarm of the pipeline and its history writer."""
        self._alarm_subscribers = (*self._alarm_subscribers, subscriber)

    def set_model(self, engine: Scorer, rule: DecisionRule, model_version_id: int | None = None,
                  product_id: int | None | object = _SAME) -> None:
        """Decide the next frames with this engine and rule (the frame being scored finishes with
        the old ones). Used to switch threshold or model, e.g. on activation or rollback; a
        product change gives its ``product_id`` too (else the product stays), swapped with them."""
        if not isinstance(rule, DecisionRule):
            raise TypeError(f"rule must be a DecisionRule, got {type(rule).__name__}")
        product = self._decider.product_id if product_id is _SAME else product_id
        self._decider = _Decider(engine, rule, model_version_id, product)  # type: ignore[arg-type]

    @property
    def product_id(self) -> int | None:
        """The product the next frames are recorded under (changed with :meth:`set_model`)."""
        return self._decider.product_id

    def set_shadow(self, engine: Scorer | None) -> None:
        """Score the next frames also with this candidate engine (``None``: stop doing so)."""
        self._shadow = engine

    @property
    def rule(self) -> DecisionRule:
        return self._decider.rule

    @property
    def model_version_id(self) -> int | None:
        return self._decider.model_version_id

    @property
    def running(self) -> bool:
        return self._acquisition is not None and not self._stopped

    def start(self) -> None:
        """Start the history writer, open and start the camera, then the threads.

        Raises CameraError when the camera cannot be opened or started (the writer is stopped
        again and nothing is left running).
        """
        if self._acquisition is not None:
            raise RuntimeError("a Pipeline can be started once")
        previous = self.writer.on_alarm
        self.writer.on_alarm = self._writer_alarm if previous is None else _both(previous, self._writer_alarm)
        self.writer.subscribe(self._on_stored)
        self.writer.start()
        try:
            if not self.camera.is_open:
                self.camera.open()
                self._opened_camera = True
            self.camera.start(self.trigger_mode, live=self.mode == "live", trigger_line=self.trigger_line)
        except BaseException:
            self._release_camera()
            self.writer.stop()
            raise
        self._rate.restart()
        self._acquisition_rate.restart()
        self._acquisition = threading.Thread(target=self._acquire_loop, name="pipeline-acquisition", daemon=True)
        self._worker = threading.Thread(target=self._inspect_loop, name="pipeline-engine", daemon=True)
        self._last_progress = time.monotonic()
        self._worker.start()
        self._acquisition.start()
        if self.stall_after_s is not None:
            self._watchdog = threading.Thread(target=self._watch_loop, name="pipeline-watchdog", daemon=True)
            self._watchdog.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until acquisition has ended and every acquired frame was inspected; False on
        timeout. Acquisition ends when the source runs out or ``max_frames`` were acquired
        (:attr:`source_ended` is then True), when :meth:`stop` is called, or on an internal error
        (alarmed). Call :meth:`stop` afterwards to make the last results durable."""
        return self._worker_done.wait(timeout)

    @property
    def source_ended(self) -> bool:
        """True once acquisition ended by itself (finite source or ``max_frames``)."""
        return self._source_ended.is_set()

    @property
    def storage_full(self) -> bool:
        """True once acquisition stopped because the history's disk is down to its reserve."""
        return self._storage_full.is_set()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop acquiring, inspect and record every frame acquired so far, stop the writer, then
        stop the camera (and close it if :meth:`start` opened it).

        Returns False if that took longer than ``timeout`` seconds: the frames not scored by then
        are recorded as not inspected (``metrics().not_inspected``), the writer journals what it
        could not store in time, and anything stored nowhere is counted in ``unrecorded`` (and
        the writer's ``failed``); all alarmed. Safe to repeat.
        """
        if self._acquisition is None or self._stopped:
            return self._stopped_cleanly
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stop_requested.set()
        assert self._worker is not None
        self._acquisition.join(_left(deadline))
        self._worker.join(_left(deadline))
        if self._watchdog is not None:
            self._watchdog.join(_left(deadline))
        clean = not self._acquisition.is_alive() and not self._worker.is_alive()
        if not clean:
            self._abort.set()  # the worker now records what it still holds as not inspected
            self._acquisition.join(5.0)  # its last frame, if it waited for room, is recorded too
            self._worker.join(5.0)
        clean = self.writer.stop(_left(deadline, at_least=1.0)) and clean
        self._release_camera()
        self._stopped = True
        self._stopped_cleanly = clean
        return clean

    def hurry(self) -> None:
        """Shorten a stop that is draining (a second SIGTERM: the container's grace is running
        out): frames still waiting are recorded as not inspected (``not_inspected``, alarmed)
        instead of being scored; the frame in the engine finishes."""
        self._abort.set()

    def metrics(self) -> PipelineMetrics:
        """A consistent-enough snapshot of the counters (each read under the pipeline's lock)."""
        latency = self._latency.percentiles(50, 99)
        model = self._model_latency.percentiles(50, 99)
        camera = self.camera.stats
        with self._lock:
            return PipelineMetrics(
                mode=self.mode,
                running=self.running,
                acquired=self._acquired,
                inspected=self._inspected,
                recorded=self._recorded,
                passed=self._counts.passed,
                failed=self._counts.failed,
                errors=self._counts.errors,
                rechecked=self._counts.rechecked,
                no_part=self._counts.no_part,
                dropped=self._dropped,
                unrecorded=self._unrecorded,
                not_inspected=self._not_inspected,
                queue_depth=len(self._queue),
                queue_size=self._queue.maxsize,
                queue_full_waits=self._queue_full_waits,
                acquisition_fps=self._acquisition_rate.rate(),
                rate_fps=self._rate.rate(),
                latency_p50_ms=latency[0],
                latency_p99_ms=latency[1],
                model_p50_ms=model[0],
                model_p99_ms=model[1],
                camera_lost=camera.lost,
                camera_skipped=camera.skipped,
                camera_disconnects=self._disconnects,
                camera_reconnects=camera.reconnects,
                writer=self.writer.stats,
            )

    # -- acquisition thread ----------------------------------------------------------------------

    def _acquire_loop(self) -> None:
        connected = True
        try:
            while not self._stop_requested.is_set():
                if self.max_frames is not None and self._acquired >= self.max_frames:
                    self._source_ended.set()
                    return
                try:
                    frame = self.camera.grab(self.grab_timeout_s)
                except Exception as exc:  # e.g. a Basler grab error; the next grab may work
                    message = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
                    self._alarm(CAMERA_ERROR, f"camera {self.camera.camera_id}: {message}", throttle_s=ALARM_THROTTLE_S)
                    self._stop_requested.wait(0.5)
                    continue
                now_connected = self.camera.is_connected
                if now_connected != connected:
                    connected = now_connected
                    self._camera_changed(connected)
                if frame is not None:
                    with self._lock:
                        self._acquired += 1
                    self._progress()
                    self._acquisition_rate.add()
                    self._enqueue(frame)
                elif connected and not self.camera.is_grabbing:
                    self._source_ended.set()  # a replay without looping ran out
                    return
        except Exception as exc:  # a bug: say so loudly, the frames taken so far are still inspected
            log.exception("pipeline acquisition thread failed")
            self._alarm(CAMERA_ERROR, f"acquisition stopped by an internal error: {exc}")
        finally:
            self._queue.close()

    def _camera_changed(self, connected: bool) -> None:
        if connected:
            self._alarm(CAMERA_RECONNECTED, f"camera {self.camera.camera_id} is back; inspection continues")
        else:
            with self._lock:
                self._disconnects += 1
            self._alarm(CAMERA_LOST, f"camera {self.camera.camera_id} lost; reconnecting in the background")

    def _enqueue(self, frame: Frame) -> None:
        if self.mode == "live":
            if self._queue.put_latest(frame) is not None:
                with self._lock:
                    self._dropped += 1
            return
        if self._queue.full():
            with self._lock:
                self._queue_full_waits += 1
            self._alarm(
                QUEUE_FULL,
                f"inspection queue full ({self._queue.maxsize} frames): acquisition waits for the engine "
                "and the camera may drop frames if this lasts",
                throttle_s=ALARM_THROTTLE_S,
            )
        if not self._queue.put_wait(frame, self._abort):
            self._record_not_inspected(frame, "the stop ran out of time")

    # -- engine worker ---------------------------------------------------------------------------

    def _inspect_loop(self) -> None:
        try:
            while True:
                try:
                    frame = self._queue.get()
                except Closed:
                    return
                if frame is None:
                    continue
                if self._abort.is_set():
                    self._record_not_inspected(frame, "the stop ran out of time")
                    continue
                try:
                    result = self._inspect(frame)
                except Exception as exc:  # a bug; the frame is recorded, the thread carries on
                    log.exception("pipeline could not inspect frame %s", frame.frame_id)
                    self._record_not_inspected(frame, f"{type(exc).__name__}: {exc}")
                    continue
                self._decided(result)
                self._submit(result)
        finally:
            self._worker_done.set()

    def _inspect(self, frame: Frame) -> InspectionResult:
        decider = self._decider  # one snapshot per frame: set_model() applies between frames
        score, anomaly_map, decision, model_ms, error = 0.0, None, None, None, None
        no_part, match_quality, outline = False, None, None
        started = time.perf_counter()
        try:
            prediction = decider.engine.predict(frame.image)
            model_ms = (time.perf_counter() - started) * 1000.0
            match_quality = getattr(prediction, "match_quality", None)
            outline = getattr(prediction, "outline", None)
            if getattr(prediction, "no_part", False):
                # The part was not found: nothing was scored, so the rule has nothing to judge.
                no_part = True
            else:
                score = float(prediction.score)
                if not math.isfinite(score):
                    raise InspectorError(f"the engine returned a score of {score}")
                anomaly_map = prediction.anomaly_map
                decision = decider.rule.decide(score, anomaly_map)
        except Exception as exc:
            error = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
            score, anomaly_map, model_ms, decision = 0.0, None, None, None
            no_part, match_quality, outline = False, None, None
            self._alarm(ENGINE_ERROR, f"frame {frame.frame_id} of camera {frame.camera_id} could not be scored "
                        f"and FAILs: {error}", throttle_s=ALARM_THROTTLE_S)
        latency_ms = (time.time() - frame.host_timestamp) * 1000.0
        shadow_score = self._shadow_score(frame) if error is None and not no_part else None
        if no_part:
            verdict = "NO_PART"
        else:
            verdict = "FAIL" if decision is None else decision.decision
        result = InspectionResult(
            time=datetime.fromtimestamp(frame.host_timestamp, timezone.utc),
            camera_id=frame.camera_id,
            frame_id=frame.frame_id,
            score=score,
            decision=verdict,
            threshold=decider.rule.threshold,
            rule=decider.rule,  # the displays draw this frame with it, whatever the rule is by then
            model_version_id=decider.model_version_id,
            product_id=decider.product_id,
            latency_total_ms=latency_ms,
            latency_model_ms=model_ms,
            image=frame.image,
            heatmap=anomaly_map,
            camera_timestamp=frame.camera_timestamp,
            host_timestamp=frame.host_timestamp,
            defect_area_px=None if decision is None else decision.defect_area_px,
            shadow_score=shadow_score,
            error=error,
            match_quality=_finite_or_none(match_quality),
            outline=None if outline is None else np.asarray(outline, dtype=np.float32),
        )
        self._count_no_part(no_part, frame)
        self._latency.add(latency_ms)
        if model_ms is not None:
            self._model_latency.add(model_ms)
        self._rate.add()
        with self._lock:
            self._inspected += 1
        self._progress()
        return result

    def _count_no_part(self, no_part: bool, frame: Frame) -> None:
        """Follows NO PART frames in a row; the ``no_part_alarm_after``-th raises ``no_part_run``."""
        if not no_part:
            self._no_part_run = 0
            return
        self._no_part_run += 1
        if self._no_part_run == self.no_part_alarm_after:
            self._alarm(NO_PART_RUN, f"{self._no_part_run} frames in a row without the part (NO PART), the last "
                        f"frame {frame.frame_id} of camera {frame.camera_id}: check the part feed, the fixture and "
                        "the light, or the recipe's reference")

    def _decided(self, result: InspectionResult) -> None:
        for subscriber in self._decision_subscribers:
            try:
                subscriber(result)
            except Exception as exc:  # a link's bug must not cost the record
                log.exception("decision subscriber %r failed", subscriber)
                self._alarm(SUBSCRIBER_FAILED, f"decision subscriber {subscriber!r} failed: {exc}", throttle_s=ALARM_THROTTLE_S)

    def _shadow_score(self, frame: Frame) -> float | None:
        shadow = self._shadow
        if shadow is None:
            return None
        try:
            prediction = shadow.predict(frame.image)
            # A candidate that did not find the part (its own framing) never scored the frame.
            return None if getattr(prediction, "no_part", False) else float(prediction.score)
        except Exception as exc:
            self._alarm(SHADOW_ERROR, f"the shadow model could not score frame {frame.frame_id}: {exc}",
                        throttle_s=ALARM_THROTTLE_S)
            return None

    def _submit(self, result: InspectionResult) -> None:
        # The writer's buffer is bounded too; waiting for room here (rather than letting the
        # writer refuse the record) carries the backpressure on to the frame queue. A stop out
        # of time stops waiting: the few frames left then go beyond the bound.
        while self.writer.stats.buffered >= self.writer.max_buffered and not self._abort.is_set():
            self._alarm(WRITER_BACKLOG, f"history writer holds {self.writer.max_buffered} unstored records; "
                        "inspection waits for it", throttle_s=ALARM_THROTTLE_S)
            time.sleep(0.01)
        try:
            taken = self.writer.submit(result, beyond_bound=self._abort.is_set())
        except RuntimeError:  # the writer stopped: a thread that outlived a stop out of time
            taken = False
            log.error("frame %s of camera %s decided after the history writer stopped", result.frame_id,
                      result.camera_id)
        if not taken:
            self._count_unrecorded(1)  # the writer has alarmed a full buffer already

    def _record_not_inspected(self, frame: Frame, why: str) -> None:
        """A FAIL row for an acquired frame that will not be scored: no part leaves unjudged and
        uncounted. Without images: the stop that calls for it has no time to save them."""
        decider = self._decider
        result = InspectionResult(
            time=datetime.fromtimestamp(frame.host_timestamp, timezone.utc),
            camera_id=frame.camera_id,
            frame_id=frame.frame_id,
            score=0.0,
            decision="FAIL",
            threshold=decider.rule.threshold,
            rule=decider.rule,
            model_version_id=decider.model_version_id,
            product_id=decider.product_id,
            latency_total_ms=(time.time() - frame.host_timestamp) * 1000.0,
            latency_model_ms=None,
            camera_timestamp=frame.camera_timestamp,
            host_timestamp=frame.host_timestamp,
            error=f"{NOT_INSPECTED_ERROR}: {why}",
        )
        with self._lock:
            self._not_inspected += 1
        self._alarm(FRAMES_NOT_INSPECTED, f"frame {frame.frame_id} and maybe others acquired but not inspected "
                    f"({why}): recorded as FAIL, not inspected", throttle_s=ALARM_THROTTLE_S)
        self._decided(result)
        self._submit(result)

    # -- stall watchdog --------------------------------------------------------------------------

    def _progress(self) -> None:
        with self._stall_lock:
            self._last_progress = time.monotonic()
            resumed, self._stalled = self._stalled, False
        if resumed:
            self._alarm(LINE_RESUMED, "frames again: inspection continues")

    def _watch_loop(self) -> None:
        """Raises ``line_stalled`` once per episode of ``stall_after_s`` without a frame."""
        assert self.stall_after_s is not None
        while not self._stop_requested.wait(min(1.0, self.stall_after_s / 4)):
            if self._source_ended.is_set() or self._worker_done.is_set():
                return  # acquisition ended by itself: no more frames are expected
            with self._stall_lock:
                now = time.monotonic()
                if not self.camera.is_connected:
                    self._last_progress = now  # camera_lost says it; count from the reconnect
                idle_s = now - self._last_progress
                stalled = idle_s >= self.stall_after_s and not self._stalled
                self._stalled = self._stalled or stalled
            if stalled:
                self._alarm(LINE_STALLED, f"no part inspected for {idle_s:.0f} s although camera "
                            f"{self.camera.camera_id} is connected: the line is stalled (check the "
                            "camera, its trigger and the part feed)")

    # -- history writer thread -------------------------------------------------------------------

    def _on_stored(self, result: InspectionResult) -> None:
        with self._lock:
            self._recorded += 1
            self._counts.add(result)
        for subscriber in self._result_subscribers:
            try:
                subscriber(result)
            except Exception as exc:
                log.exception("pipeline result subscriber %r failed", subscriber)
                self._alarm(SUBSCRIBER_FAILED, f"result subscriber {subscriber!r} failed: {exc}",
                            throttle_s=ALARM_THROTTLE_S)

    def _writer_alarm(self, alarm: Alarm) -> None:
        if alarm.kind == DISK_FULL:
            self._storage_full.set()
            self._stop_requested.set()  # acquisition ends; what it took is still recorded
        self._deliver(alarm)

    # -- helpers ---------------------------------------------------------------------------------

    def _count_unrecorded(self, n: int) -> None:
        with self._lock:
            self._unrecorded += n
        self._alarm(FRAMES_UNRECORDED, f"{n} frame(s) could not be recorded anywhere", throttle_s=ALARM_THROTTLE_S)

    def raise_alarm(self, kind: str, message: str) -> None:
        """Raise an alarm from outside the pipeline (e.g. a drift monitor observing its results):
        it reaches the log and every alarm subscriber like the pipeline's own (as given: it may
        concern the whole station, not this camera)."""
        self._raise(kind, message)

    def _alarm(self, kind: str, message: str, throttle_s: float = 0.0) -> None:
        if self.names_camera and f"camera {self.camera.camera_id}" not in message:
            message = f"camera {self.camera.camera_id}: {message}"
        self._raise(kind, message, throttle_s)

    def _raise(self, kind: str, message: str, throttle_s: float = 0.0) -> None:
        alarm = self._throttle.alarm(kind, message, throttle_s)
        if alarm is not None:
            self._deliver(alarm)

    def _deliver(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)
        for subscriber in self._alarm_subscribers:
            try:
                subscriber(alarm)
            except Exception:
                log.exception("alarm subscriber %r failed", subscriber)

    def _release_camera(self) -> None:
        try:
            self.camera.stop()
            if self._opened_camera:
                self.camera.close()
        except Exception as exc:  # the verdicts are safe; a camera that will not stop is only logged
            log.warning("camera %s did not stop cleanly: %s", self.camera.camera_id, exc)


def _finite_or_none(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _left(deadline: float | None, at_least: float = 0.0) -> float | None:
    return None if deadline is None else max(at_least, deadline - time.monotonic())


def _both(first: Callable[[Alarm], None], second: Callable[[Alarm], None]) -> Callable[[Alarm], None]:
    def call(alarm: Alarm) -> None:
        try:
            first(alarm)
        finally:
            second(alarm)

    return call
