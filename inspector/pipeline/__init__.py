"""Inline inspection: every camera frame scored, decided, recorded durably, then announced.

One path, each stage applied once::

    camera --grab--> acquisition thread --FrameQueue--> engine worker --submit--> HistoryWriter
                                                        predict, decide           (own thread)
                                                                                  durable, then
                                                                                  result subscribers

Build and run::

    from drivers import open_camera
    from inspector.engine import Engine
    from inspector.history import HistoryDB, HistoryWriter, ImageStore
    from inspector.pipeline import DecisionRule, Pipeline

    db = HistoryDB(url); db.upgrade()
    writer = HistoryWriter(db, ImageStore(folder, pass_sample_rate=0.01))
    pipeline = Pipeline(open_camera("basler://SERIAL"), Engine(model), DecisionRule(threshold=0.4),
                        writer, mode="triggered", model_version_id=mv_id, product_id=product_id)
    pipeline.subscribe(show)              # InspectionResult, after it is durable, in frame order
    pipeline.on_alarm(warn)               # history.Alarm: camera lost, queue full, database, engine
    pipeline.start()
    ...
    pipeline.stop()                       # every frame acquired so far is inspected and recorded

Modes: ``triggered`` inspects every frame (a full queue holds acquisition back and raises a
``queue_full`` alarm); ``live`` keeps the newest frames (a full queue drops the oldest waiting
frame, counted in ``metrics().dropped``).

``set_model(engine, rule, model_version_id)`` switches model or threshold between two frames;
``set_shadow(engine)`` scores every frame with a candidate model too, without deciding.
``metrics()`` returns a frozen :class:`PipelineMetrics` snapshot (rate, latency p50/p99, queue,
drops, camera and writer counters).

A frame the engine cannot score becomes an error result: decision FAIL (fail-safe), score 0.0,
``error`` set, an ``engine_error`` alarm; the thread carries on with the next frame.
"""

from .core import (
    CAMERA_ERROR,
    CAMERA_LOST,
    CAMERA_RECONNECTED,
    ENGINE_ERROR,
    FRAMES_UNRECORDED,
    MODES,
    QUEUE_FULL,
    SHADOW_ERROR,
    SUBSCRIBER_FAILED,
    WRITER_BACKLOG,
    Pipeline,
    Scorer,
)
from .decision import Decision, DecisionRule, largest_region_px
from .frame_queue import FrameQueue
from .metrics import PipelineMetrics
from .result import InspectionResult

__all__ = [
    "CAMERA_ERROR",
    "CAMERA_LOST",
    "CAMERA_RECONNECTED",
    "ENGINE_ERROR",
    "FRAMES_UNRECORDED",
    "MODES",
    "QUEUE_FULL",
    "SHADOW_ERROR",
    "SUBSCRIBER_FAILED",
    "WRITER_BACKLOG",
    "Decision",
    "DecisionRule",
    "FrameQueue",
    "InspectionResult",
    "Pipeline",
    "PipelineMetrics",
    "Scorer",
    "largest_region_px",
]
