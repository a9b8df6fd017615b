"""One function builds a line: :func:`build_line`; several cameras on one engine: :func:`build_lines`.

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

Several cameras share one engine with :func:`build_lines`: a line per camera (its own pipeline,
rule, drift monitor, history writer and journal, records tagged with its ``camera_id``), one
image store and database, and one :class:`~inspector.line.batcher.FrameBatcher` that scores the
frames arriving together in one forward pass::

    lines = build_lines(cameras, recipe, db, image_dir=folder, max_wait_ms=3.0)
    lines.start(); ...; lines.stop()
    lines.metrics()   # {camera_id: PipelineMetrics}
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inspector.errors import InspectorError
from inspector.frames import FrameSource, TriggerMode
from inspector.history import HistoryDB, HistoryWriter, ImageStore
from inspector.history.writer import default_journal_path
from inspector.line.batcher import DEFAULT_MAX_WAIT_MS, BatchingChoice, FrameBatcher, measure_batching
from inspector.line.drift import DRIFT_ALARM, MIN_RECENT, DriftMonitor, DriftStatus
from inspector.line.line_metrics import PipelineMetrics
from inspector.line.part_feeder import PartFeeder
from inspector.line.pipeline import NO_PART_ALARM_AFTER, Pipeline, Scorer

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

    Beside other cameras on one engine (:func:`build_lines`), ``scorer`` turns each recipe's
    engine into what the pipeline calls (the batcher's scorer), and ``names_camera`` puts the
    camera's id into the line's own alarms.
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
        scorer: Callable[[Any], Scorer] | None = None,
        names_camera: bool = False,
    ) -> None:
        self.pipeline, self.writer, self.store, self.recipe = pipeline, writer, store, recipe
        self._scorer = scorer  # a recipe's engine -> what the pipeline calls (None: the engine)
        self.names_camera = names_camera  # beside other cameras: its own alarms say which camera
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

    def raise_alarm(self, kind: str, message: str) -> None:
        """An alarm of the line (a link's, say): the log and every alarm subscriber hear it."""
        self.pipeline.raise_alarm(kind, message)

    def set_recipe(self, recipe: LoadedRecipe) -> None:
        """Decides the next frames with this recipe (the frame in the engine finishes with the
        old one); the drift monitor starts over against the new recipe's good scores -- unless
        only the rule changed (a threshold or recheck band set by hand): the same model scores
        the same parts, and starting over would forget the scores a drift is seen in."""
        engine = recipe.engine if self._scorer is None else self._scorer(recipe.engine)
        same_scores = recipe.scores_as(self.recipe)
        # The product with the model, in one swap: a frame in the engine keeps both of the old.
        self.pipeline.set_model(engine, recipe.rule, recipe.model_version_id, recipe.product_id)
        self.recipe = recipe
        if not same_scores:
            self.drift = self._drift_monitor(recipe)

    # -- drift ----------------------------------------------------------------------------------

    def _drift_monitor(self, recipe: LoadedRecipe) -> DriftMonitor | None:
        if self.drift_window <= 0 or len(recipe.reference_scores) < 2:
            return None
        return DriftMonitor(recipe.reference_scores, window=max(self.drift_window, MIN_RECENT),
                            on_warning=self._drift_warning, on_recovered=self._drift_recovered)

    def _feed_drift(self, result: Any) -> None:
        drift = self.drift
        # A NO PART frame was never scored (its 0.0 is no score); the frame that was in the engine
        # while the model changed was scored by the old one, whose scores the new reference is not.
        if (drift is not None and result.error is None and result.decision != "NO_PART"
                and result.model_version_id == self.recipe.model_version_id):
            drift.add(result.score)

    def _drift_warning(self, status: DriftStatus) -> None:
        # A pipeline alarm: the log, the console and every alarm subscriber (links too) see it.
        # Beside other cameras (build_lines) it names its own.
        message = f"camera {self.camera.camera_id}: {status.message}" if self.names_camera else status.message
        self.pipeline.raise_alarm(DRIFT_ALARM, message)
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
    disk_reserve_bytes: int = 0,
    no_part_alarm_after: int | None = NO_PART_ALARM_AFTER,
) -> Line:
    """The line that inspects ``camera``'s frames with ``recipe`` (a
    :class:`~inspector.recipes.LoadedRecipe`: engine, rule, model version, product, good scores)
    and records every verdict in ``db``; not started.

    Images go to ``image_dir`` (oldest deleted beyond ``quota_bytes``; rejects always kept, passes
    with probability ``pass_sample_rate``). Images never use the last ``disk_reserve_bytes`` of
    the disk; below a quarter of it on the history's disk the line stops (``disk_full``), so the
    verdicts always have room. ``mode``, ``trigger`` (a :class:`TriggerMode` or its
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

    NO PART: ``no_part_alarm_after`` frames in a row without the part raise ``no_part_run``
    (None: never); see :class:`~inspector.line.Pipeline`.

    ``links`` are extra subscribers (see :class:`LineLink`), subscribed before anything runs.
    """
    store = ImageStore(image_dir, quota_bytes=quota_bytes, pass_sample_rate=pass_sample_rate,
                       reserve_bytes=disk_reserve_bytes)
    writer = HistoryWriter(db, store, max_buffered=writer_max_buffered, stop_reserve_bytes=disk_reserve_bytes // 4)
    return _assemble(camera, recipe, writer, store, None, mode=mode, trigger=trigger, trigger_line=trigger_line,
                     queue_size=queue_size, max_frames=max_frames, drift_window=drift_window, on_drift=on_drift,
                     feeder_rate=feeder_rate, links=links, stall_after_s=stall_after_s,
                     no_part_alarm_after=no_part_alarm_after)


#: :func:`build_line`'s options that are not :func:`_assemble`'s: they make the store and the writer.
_STORE_AND_WRITER = ("image_dir", "quota_bytes", "pass_sample_rate", "writer_max_buffered", "disk_reserve_bytes")


def _line_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against :func:`build_line`'s keyword arguments (a TypeError names one
    it does not take, or ``image_dir`` missing), its defaults filled in."""
    bound = inspect.signature(build_line).bind_partial(**options)
    if "image_dir" not in bound.arguments:
        raise TypeError("build_lines() needs image_dir, like build_line()")
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name not in ("camera", "recipe", "db")}


def _assemble(
    camera: FrameSource,
    recipe: LoadedRecipe,
    writer: HistoryWriter,
    store: ImageStore,
    scorer: Callable[[Any], Scorer] | None,
    *,
    mode: str,
    trigger: TriggerMode | str,
    trigger_line: str,
    queue_size: int | None,
    max_frames: int | None,
    drift_window: int,
    on_drift: Callable[[DriftStatus], None] | None,
    feeder_rate: float | None,
    links: Iterable[LineLink],
    stall_after_s: float | None,
    names_camera: bool = False,
    no_part_alarm_after: int | None = NO_PART_ALARM_AFTER,
) -> Line:
    """The pipeline on ``camera`` and ``writer``, its :class:`Line` and its links (see :func:`build_line`);
    ``scorer`` turns a recipe's engine into what the pipeline calls (None: the engine itself)."""
    trigger = TriggerMode(trigger)
    expects_frames = trigger is TriggerMode.FREE_RUN or (trigger is TriggerMode.SOFTWARE and feeder_rate is not None)
    pipeline = Pipeline(
        camera, recipe.engine if scorer is None else scorer(recipe.engine), recipe.rule, writer, mode=mode,
        queue_size=queue_size, model_version_id=recipe.model_version_id, product_id=recipe.product_id,
        trigger=trigger, trigger_line=trigger_line, max_frames=max_frames,
        stall_after_s=stall_after_s if expects_frames else None, names_camera=names_camera,
        no_part_alarm_after=no_part_alarm_after,
    )
    line = Line(pipeline, writer, store, recipe, drift_window=drift_window, on_drift=on_drift, feeder_rate=feeder_rate,
                scorer=scorer, names_camera=names_camera)
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


# -- several cameras on one engine ----------------------------------------------------------------


class Lines:
    """Several cameras' :class:`Line` s on one engine (built by :func:`build_lines`): :attr:`lines`
    in camera order, the shared :attr:`batcher` and image :attr:`store`.

    :meth:`start`, :meth:`stop`, :meth:`wait`, :meth:`set_recipe` act on every line;
    :meth:`metrics` is per camera. The cameras stay the caller's to close. One camera has no
    :attr:`batcher` (None): its line scores with the engine itself.
    """

    def __init__(self, lines: Sequence[Line], batcher: FrameBatcher | None, store: ImageStore,
                 batching: BatchingChoice | None = None) -> None:
        self.lines = tuple(lines)
        self.batcher = batcher
        self.store = store
        self.batching = batching  # what build_lines measured; None where max_batch was given

    @property
    def recipe(self) -> LoadedRecipe:
        return self.lines[0].recipe

    @property
    def cameras(self) -> tuple[FrameSource, ...]:
        return tuple(line.camera for line in self.lines)

    @property
    def running(self) -> bool:
        return any(line.running for line in self.lines)

    @property
    def source_ended(self) -> bool:
        """True once every camera's acquisition ended by itself (finite source or ``max_frames``)."""
        return all(line.source_ended for line in self.lines)

    @property
    def storage_full(self) -> bool:
        """True once a camera's line stopped acquiring because the history's disk is down to its
        reserve (the others should stop too: they write to the same disk)."""
        return any(line.pipeline.storage_full for line in self.lines)

    def start(self) -> None:
        """Starts every line, in camera order. When one cannot start (a camera that will not
        open), the ones started are stopped again and the error is raised."""
        started: list[Line] = []
        try:
            for line in self.lines:
                line.start()
                started.append(line)
        except BaseException:
            for line in started:
                line.stop()
            if self.batcher is not None:
                self.batcher.close()
            raise

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stops every line at once (each inspects and records what its camera acquired, their
        frames still batched together), then the batcher's thread. False when that did not all
        finish within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        clean = [False] * len(self.lines)

        def stop(i: int) -> None:
            clean[i] = self.lines[i].stop(timeout)

        # One thread per line: stopped one after another, the later cameras would go on acquiring
        # while the earlier ones drain.
        stopping = [threading.Thread(target=stop, args=(i,), name=f"stop {line.camera.camera_id}", daemon=True)
                    for i, line in enumerate(self.lines)]
        for thread in stopping:
            thread.start()
        for thread in stopping:  # a line's stop is bounded by its timeout (plus its own grace)
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()) + 15.0)
        if self.batcher is None:
            return all(clean)
        return self.batcher.close(None if deadline is None else max(1.0, deadline - time.monotonic())) and all(clean)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every line's acquisition ended and its frames were inspected; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all(line.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
                   for line in self.lines)

    def metrics(self) -> dict[str, PipelineMetrics]:
        """Each camera's :class:`PipelineMetrics`, by camera id, in camera order."""
        return {line.camera.camera_id: line.metrics() for line in self.lines}

    def set_recipe(self, recipe: LoadedRecipe) -> None:
        """Every camera decides its next frames with this recipe (see :meth:`Line.set_recipe`)."""
        for line in self.lines:
            line.set_recipe(recipe)

    def hurry(self) -> None:
        """Every camera's stop is shortened (see :meth:`~inspector.line.Pipeline.hurry`)."""
        for line in self.lines:
            line.pipeline.hurry()

    def set_shadow(self, engine: Any | None) -> None:
        """Every camera's next frames are scored by this candidate engine too, through the batcher
        (None: no more)."""
        for line in self.lines:
            scorer = engine if engine is None or self.batcher is None else self.batcher.scorer(engine)
            line.pipeline.set_shadow(scorer)

    def raise_alarm(self, kind: str, message: str) -> None:
        """An alarm of the station as a whole (a link's): raised once, on the first camera's pipeline,
        which every link and the log hear."""
        self.lines[0].pipeline.raise_alarm(kind, message)


def build_lines(
    cameras: Sequence[FrameSource],
    recipe: LoadedRecipe,
    db: HistoryDB,
    *,
    max_batch: int | None = None,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    camera_links: Sequence[Iterable[LineLink]] = (),
    **options: Any,
) -> Lines:
    """The lines that inspect each of ``cameras`` (one or more) with ``recipe``'s engine, shared:
    frames that arrive together are scored in one forward pass
    (:class:`~inspector.line.batcher.FrameBatcher`); not started. One camera gets exactly
    :func:`build_line`'s line (no batcher, the database's own journal).

    Each camera gets what :func:`build_line` gives one: ``options`` are its keyword arguments,
    applied to each (``max_frames`` per camera), with its own pipeline, rule, drift monitor and
    history writer; the writers share ``db`` (each spills to a journal of its own camera's while
    the database is away) and one image store under ``image_dir`` (one quota for all). ``links``
    are subscribed on every camera's pipeline, so their ``on_result``/``on_decision`` are called
    from several threads; ``camera_links``, in camera order, on one camera's only (a PLC's
    register block, say). ``max_batch``: frames per forward pass at most (at most the number of cameras; 1
    scores one frame per pass). None (the default) measures the recipe's engine first
    (:func:`~inspector.line.batcher.measure_batching`, a second or two on a CPU) and batches all
    cameras' frames where that pays, else scores one frame per pass; the result is
    :attr:`Lines.batching`. ``max_wait_ms``: how long a frame waits for others.

    Camera ids must differ: they tell the records apart.
    """
    cameras = list(cameras)
    options = _line_options(options)
    store_options = {name: options.pop(name) for name in _STORE_AND_WRITER}
    links = tuple(options.pop("links"))
    camera_links = [tuple(own) for own in camera_links]
    if not cameras:
        raise InspectorError("no camera to inspect")
    if camera_links and len(camera_links) != len(cameras):
        raise InspectorError(f"{len(camera_links)} cameras' own links given for {len(cameras)} cameras")
    check_camera_ids([camera.camera_id for camera in cameras])
    check_max_batch(max_batch)
    reserve = store_options["disk_reserve_bytes"]
    store = ImageStore(store_options["image_dir"], quota_bytes=store_options["quota_bytes"],
                       pass_sample_rate=store_options["pass_sample_rate"], reserve_bytes=reserve)
    writing = {"max_buffered": store_options["writer_max_buffered"], "stop_reserve_bytes": reserve // 4}
    if len(cameras) == 1:  # nothing to batch with: the line of build_line, its journal the database's own
        writer = HistoryWriter(db, store, **writing)
        own = camera_links[0] if camera_links else ()
        return Lines([_assemble(cameras[0], recipe, writer, store, None, links=(*links, *own), **options)], None, store)
    batching = measure_batching(recipe.engine, len(cameras)) if max_batch is None else None
    batcher = FrameBatcher(min(max_batch or batching.max_batch, len(cameras)), max_wait_ms)
    lines = []
    for i, camera in enumerate(cameras):
        writer = HistoryWriter(db, store, journal_path=camera_journal_path(db, camera.camera_id), **writing)
        own = camera_links[i] if camera_links else ()
        lines.append(_assemble(camera, recipe, writer, store, batcher.scorer, links=(*links, *own),
                               names_camera=True, **options))
    return Lines(lines, batcher, store, batching)


def check_camera_ids(ids: Sequence[str]) -> None:
    """Refuses (InspectorError) a camera id given twice: the records of the two could not be told apart."""
    ids = list(ids)
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InspectorError(f"camera {twice[0]!r} given twice; each camera may run once")


def check_max_batch(max_batch: int | None) -> None:
    """Refuses (InspectorError) a batch limit that is not a whole number >= 1 (None: measured)."""
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise InspectorError(f"max batch must be a whole number >= 1, got {max_batch!r}")


def camera_journal_path(db: HistoryDB, camera_id: str) -> Path:
    """The spill journal of one camera's writer beside others on ``db``:
    ``<db's journal>.<camera>-<hash>.jsonl`` (the hash keeps ids that read alike apart). A camera
    replays what it left there the next time it runs beside others."""
    default = default_journal_path(db)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", camera_id).strip("_")[:40]
    digest = hashlib.sha256(camera_id.encode("utf-8")).hexdigest()[:8]
    return default.with_name(f"{default.stem}.{slug}-{digest}{default.suffix}")
