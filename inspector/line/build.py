"""One function builds a line: :func:`build_line`.

``inspector run``, the desktop and the pipeline benchmark all put the same parts together: the
image store and history writer on the database, the pipeline from the camera through the
recipe's engine and rule, the drift monitor fed with every part's score, a part feeder for a
software-triggered camera, and any extra subscribers (``links``: the hook a PLC or MES link plugs
into). Opening a camera from a URI stays with the caller (``drivers.open_camera``)::

    camera = open_camera(uri); camera.open()
    line = build_line(camera, load_active_recipe(db, "tile"), db, image_dir=folder,
                      quota_bytes=5_000_000_000, pass_sample_rate=0.01)
    line.start()
    ...
    line.stop()      # every frame acquired so far is inspected and recorded
    camera.close()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inspector.frames import FrameSource, TriggerMode
from inspector.history import HistoryDB, HistoryWriter, ImageStore
from inspector.line.drift import DRIFT_ALARM, MIN_RECENT, DriftMonitor, DriftStatus
from inspector.line.line_metrics import PipelineMetrics
from inspector.line.part_feeder import PartFeeder
from inspector.line.pipeline import Pipeline

if TYPE_CHECKING:
    from inspector.recipes import LoadedRecipe

log = logging.getLogger(__name__)

#: Recent scores the drift monitor compares with the calibration's good scores.
DRIFT_WINDOW = 200
#: Records the history writer holds in memory at most: each carries its frame and a float map.
WRITER_MAX_BUFFERED = 64
#: A line that expects frames and gets none for this many seconds raises ``line_stalled``.
STALL_AFTER_S = 10.0


class LineLink(Protocol):
    """An extra subscriber of the line (a PLC or MES link). Any method may be left out.

    ``on_result(InspectionResult)`` is called for every result once it is durable, in frame
    order, on the history writer's thread; ``on_alarm(Alarm)`` for every alarm, on the thread
    that raised it. A link that must act on a verdict at once (a PLC diverting the part) offers
    ``on_decision(InspectionResult)`` instead of ``on_result``: called on the inspection thread as
    soon as the part is decided, before the record is stored (no id or image paths yet). All
    must be quick: they only hand the result to the link's own thread.
    """

    def on_decision(self, result: Any) -> None: ...

    def on_result(self, result: Any) -> None: ...

    def on_alarm(self, alarm: Any) -> None: ...


class Line:
    """A built line: its :attr:`pipeline`, :attr:`writer`, :attr:`store`, :attr:`drift` monitor
    (None when off) and, for a software trigger with a feeder rate, a :class:`PartFeeder`.

    :meth:`start`, :meth:`stop`, :meth:`wait` and :meth:`metrics` are the pipeline's (the
    feeder starts and stops with it); :meth:`set_recipe` switches product or model between two
    frames. The camera stays the caller's to close.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        writer: HistoryWriter,
        store: ImageStore,
        recipe: LoadedRecipe,
        *,
        drift_window: int,
        on_drift: Callable[[DriftStatus], None] | None,
        feeder_rate: float | None,
    ) -> None:
        self.pipeline, self.writer, self.store, self.recipe = pipeline, writer, store, recipe
        self.drift_window = drift_window
        self.on_drift = on_drift
        self.feeder_rate = feeder_rate
        self.feeder: PartFeeder | None = None
        self.drift = self._drift_monitor(recipe)
        # All parts, not only passes: cutting the scores at the threshold would itself look like drift.
        pipeline.subscribe(self._feed_drift)

    @property
    def camera(self) -> FrameSource:
        return self.pipeline.camera

    @property
    def running(self) -> bool:
        return self.pipeline.running

    @property
    def source_ended(self) -> bool:
        return self.pipeline.source_ended

    def start(self) -> None:
        """Starts the pipeline (opening the camera if it is not open), then the part feeder."""
        self.pipeline.start()
        if self.feeder_rate is not None and self.pipeline.trigger_mode is TriggerMode.SOFTWARE:
            self.feeder = PartFeeder(self.pipeline.camera, self.pipeline.metrics, self.feeder_rate)
            self.feeder.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stops feeding parts, then the pipeline: every frame acquired so far is inspected and
        recorded first. False when that did not finish within ``timeout``."""
        if self.feeder is not None:
            self.feeder.stop()
            self.feeder = None
        return self.pipeline.stop(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        return self.pipeline.wait(timeout)

    def metrics(self) -> PipelineMetrics:
        return self.pipeline.metrics()

    def set_recipe(self, recipe: LoadedRecipe) -> None:
        """Decides the next frames with this recipe (the frame in the engine finishes with the
        old one); the drift monitor starts over against the new recipe's good scores."""
        if recipe.product_id != self.recipe.product_id:
            self.pipeline.product_id = recipe.product_id
        self.pipeline.set_model(recipe.engine, recipe.rule, recipe.model_version_id)
        self.recipe = recipe
        self.drift = self._drift_monitor(recipe)

    # -- drift ----------------------------------------------------------------------------------

    def _drift_monitor(self, recipe: LoadedRecipe) -> DriftMonitor | None:
        if self.drift_window <= 0 or len(recipe.reference_scores) < 2:
            return None
        return DriftMonitor(recipe.reference_scores, window=max(self.drift_window, MIN_RECENT),
                            on_warning=self._drift_warning, on_recovered=self._drift_recovered)

    def _feed_drift(self, result: Any) -> None:
        drift = self.drift
        if drift is not None and result.error is None:
            drift.add(result.score)

    def _drift_warning(self, status: DriftStatus) -> None:
        # A pipeline alarm: the log, the console and every alarm subscriber (links too) see it.
        self.pipeline.raise_alarm(DRIFT_ALARM, status.message)
        if self.on_drift is not None:
            self.on_drift(status)

    def _drift_recovered(self, status: DriftStatus) -> None:
        log.info("drift over: %s", status.message)
        if self.on_drift is not None:
            self.on_drift(status)


def build_line(
    camera: FrameSource,
    recipe: LoadedRecipe,
    db: HistoryDB,
    *,
    image_dir: str | Path,
    quota_bytes: int | None = None,
    pass_sample_rate: float = 0.01,
    mode: str = "triggered",
    trigger: TriggerMode | str = TriggerMode.FREE_RUN,
    trigger_line: str = "Line1",
    queue_size: int | None = None,
    max_frames: int | None = None,
    drift_window: int = DRIFT_WINDOW,
    on_drift: Callable[[DriftStatus], None] | None = None,
    feeder_rate: float | None = None,
    links: Iterable[LineLink] = (),
    writer_max_buffered: int = WRITER_MAX_BUFFERED,
    stall_after_s: float | None = STALL_AFTER_S,
) -> Line:
    """The line that inspects ``camera``'s frames with ``recipe`` (a
    :class:`~inspector.recipes.LoadedRecipe`: engine, rule, model version, product, good scores)
    and records every verdict in ``db``; not started.

    Images go to ``image_dir`` (oldest deleted beyond ``quota_bytes``; rejects always kept, passes
    with probability ``pass_sample_rate``). ``mode``, ``trigger`` (a :class:`TriggerMode` or its
    value: ``"free_run"``, ``"software"``, ``"hardware"``), ``trigger_line``, ``queue_size`` and
    ``max_frames`` are the :class:`~inspector.line.Pipeline`'s. With ``trigger="software"`` and a
    ``feeder_rate``, a :class:`PartFeeder` presents parts at most that many per second.

    Drift: every scored part's score is compared with the recipe's good calibration scores over
    the last ``drift_window`` parts (0: off; off too when the recipe has fewer than two). A
    warning raises the pipeline alarm :data:`~inspector.line.drift.DRIFT_ALARM`; ``on_drift(status)``
    is called as well when the status turns to warning or back to ok (on the writer's thread).

    Stall: a line that expects frames all the time -- free run, or a software trigger with a
    feeder -- raises the pipeline alarm ``line_stalled`` when it inspects nothing for
    ``stall_after_s`` seconds (None: never), and ``line_resumed`` when frames come again. A
    hardware-triggered line (or a software trigger someone else fires) may simply have no parts,
    so it raises none.

    ``links`` are extra subscribers (see :class:`LineLink`), subscribed before anything runs.
    """
    store = ImageStore(image_dir, quota_bytes=quota_bytes, pass_sample_rate=pass_sample_rate)
    writer = HistoryWriter(db, store, max_buffered=writer_max_buffered)
    trigger = TriggerMode(trigger)
    expects_frames = trigger is TriggerMode.FREE_RUN or (trigger is TriggerMode.SOFTWARE and feeder_rate is not None)
    pipeline = Pipeline(
        camera, recipe.engine, recipe.rule, writer, mode=mode, queue_size=queue_size,
        model_version_id=recipe.model_version_id, product_id=recipe.product_id,
        trigger=trigger, trigger_line=trigger_line, max_frames=max_frames,
        stall_after_s=stall_after_s if expects_frames else None,
    )
    line = Line(pipeline, writer, store, recipe, drift_window=drift_window, on_drift=on_drift, feeder_rate=feeder_rate)
    for link in links:
        on_decision, on_result, on_alarm = (getattr(link, name, None) for name in ("on_decision", "on_result", "on_alarm"))
        if on_decision is None and on_result is None and on_alarm is None:
            raise TypeError(f"a line link needs on_decision, on_result or on_alarm, {type(link).__name__} has none")
        if on_decision is not None:  # the verdict now; the durable record would come too late
            pipeline.on_decision(on_decision)
        elif on_result is not None:
            pipeline.subscribe(on_result)
        if on_alarm is not None:
            pipeline.on_alarm(on_alarm)
    return line
