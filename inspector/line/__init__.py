"""Inline inspection: every camera frame scored, decided, recorded durably, then announced.

One path, each stage applied once::

    camera --grab--> acquisition thread --FrameQueue--> engine worker --submit--> HistoryWriter
                                                        predict, decide           (own thread)
                                                                                  durable, then
                                                                                  result subscribers

Build and run (:func:`build_line` puts image store, history writer, pipeline, drift monitor and
part feeder together; ``inspector run``, the desktop and the benchmark all use it)::

    from drivers import open_camera
    from inspector.history import HistoryDB
    from inspector.line import build_line
    from inspector.recipes import load_active_recipe

    db = HistoryDB(url); db.upgrade()
    camera = open_camera("basler://SERIAL"); camera.open()   # the camera is the caller's
    line = build_line(camera, load_active_recipe(db, "tile"), db, image_dir=folder,
                      quota_bytes=20_000_000_000, pass_sample_rate=0.01, mode="triggered",
                      trigger="hardware", trigger_line="Line1", links=[plc])
    line.pipeline.subscribe(show)         # InspectionResult, after it is durable, in frame order
    line.pipeline.on_alarm(warn)          # history.Alarm: camera lost, queue full, database, drift
    line.start()
    ...
    line.stop()                           # every frame acquired so far is inspected and recorded
    camera.close()

The recipe (:class:`inspector.recipes.LoadedRecipe`: engine, decision rule, model version,
product, good calibration scores) comes from the product's active model or a model file
(:mod:`inspector.recipes`). ``links`` are extra subscribers with ``on_result``/``on_alarm`` (a PLC
or MES link). The drift monitor compares every part's score with the calibration's good scores
and raises a ``drift`` alarm. ``trigger="software"`` with ``feeder_rate`` presents parts with a
:class:`PartFeeder`. A :class:`Pipeline` can also be built by hand from a camera, an engine, a
:class:`DecisionRule` and a ``HistoryWriter``.

Modes: ``triggered`` inspects every frame (a full queue holds acquisition back and raises a
``queue_full`` alarm); ``live`` keeps the newest frames (a full queue drops the oldest waiting
frame, counted in ``metrics().dropped``).

``set_model(engine, rule, model_version_id[, product_id])`` switches model, threshold or product between two frames;
``set_shadow(engine)`` scores every frame with a candidate model too, without deciding.
``metrics()`` returns a frozen :class:`PipelineMetrics` snapshot (rate, latency p50/p99, queue,
drops, camera and writer counters).

Several cameras on one engine: :func:`build_lines` builds a line per camera (each with its own
queue, rule, drift monitor, writer and records tagged with its ``camera_id``) around one
:class:`FrameBatcher`, which scores frames that arrive together in one forward pass (a frame
waits at most ``max_wait_ms`` for the others)::

    lines = build_lines([camera_a, camera_b], recipe, db, image_dir=folder, max_wait_ms=3.0)
    lines.start(); ...; lines.stop()      # lines.metrics(): {camera_id: PipelineMetrics}

A frame the engine cannot score becomes an error result: decision FAIL (fail-safe), score 0.0,
``error`` set, an ``engine_error`` alarm; the thread carries on with the next frame.
"""

from inspector.line.pipeline import (
    CAMERA_ERROR,
    CAMERA_LOST,
    CAMERA_RECONNECTED,
    ENGINE_ERROR,
    FRAMES_UNRECORDED,
    LINE_RESUMED,
    LINE_STALLED,
    MODES,
    NO_PART_ALARM_AFTER,
    NO_PART_RUN,
    QUEUE_FULL,
    SHADOW_ERROR,
    SUBSCRIBER_FAILED,
    WRITER_BACKLOG,
    Pipeline,
    Scorer,
)
from inspector.line.rule import Decision, DecisionRule, largest_region_px
from inspector.line.frame_queue import FrameQueue
from inspector.line.line_metrics import Counts, PipelineMetrics
from inspector.line.part_feeder import PartFeeder
from inspector.line.build import Line, LineLink, Lines, build_line, build_lines
from inspector.line.batcher import BatchedScorer, BatcherStats, FrameBatcher
from inspector.inspection import InspectionResult

__all__ = [
    "CAMERA_ERROR",
    "Counts",
    "CAMERA_LOST",
    "CAMERA_RECONNECTED",
    "ENGINE_ERROR",
    "FRAMES_UNRECORDED",
    "LINE_RESUMED",
    "LINE_STALLED",
    "MODES",
    "NO_PART_ALARM_AFTER",
    "NO_PART_RUN",
    "QUEUE_FULL",
    "SHADOW_ERROR",
    "SUBSCRIBER_FAILED",
    "WRITER_BACKLOG",
    "Decision",
    "DecisionRule",
    "FrameQueue",
    "InspectionResult",
    "BatchedScorer",
    "BatcherStats",
    "FrameBatcher",
    "Line",
    "LineLink",
    "Lines",
    "PartFeeder",
    "Pipeline",
    "PipelineMetrics",
    "Scorer",
    "build_line",
    "build_lines",
    "largest_region_px",
]
