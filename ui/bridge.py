"""The one place where the pipeline's threads meet Qt.

The pipeline calls its result subscribers on the history writer's thread and its alarm
subscribers on whichever thread raised the alarm. :class:`PipelineBridge` lives in the GUI thread
and re-emits both as Qt signals; Qt queues a signal emitted from another thread, so the slots run
in the GUI thread and the pipeline's threads never wait for the display. Emitting costs the
pipeline thread one queued event holding a reference to the frozen result -- no copy, no lock the
GUI could hold.

Connect the bridge (:meth:`attach`) before the pipeline starts, so that no early result is missed.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal

from inspector.line import InspectionResult, Pipeline


class PipelineBridge(QObject):
    """``result_received(InspectionResult)`` for every durable result, in frame order per camera;
    ``alarm_received(inspector.alarms.Alarm, camera_id)`` for every alarm of the pipeline and its
    history writer, with the id of the camera whose pipeline raised it. One bridge may attach to
    several pipelines (several cameras on one engine): a result names its camera itself."""

    result_received = pyqtSignal(object)
    alarm_received = pyqtSignal(object, str)

    def attach(self, pipeline: Pipeline) -> None:
        """Subscribe to ``pipeline`` (before ``pipeline.start()``)."""
        if pipeline.running:
            raise RuntimeError("attach the bridge before starting the pipeline, or early results are lost")
        camera_id = pipeline.camera.camera_id
        pipeline.subscribe(self._on_result)
        pipeline.on_alarm(lambda alarm: self.alarm_received.emit(alarm, camera_id))

    # Called on pipeline threads: nothing but the emit.
    def _on_result(self, result: InspectionResult) -> None:
        self.result_received.emit(result)
