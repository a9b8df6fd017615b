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
    """``result_received(InspectionResult)`` for every durable result, in frame order;
    ``alarm_received(inspector.alarms.Alarm)`` for every alarm of the pipeline and its history
    writer."""

    result_received = pyqtSignal(object)
    alarm_received = pyqtSignal(object)

    def attach(self, pipeline: Pipeline) -> None:
        """Subscribe to ``pipeline`` (before ``pipeline.start()``)."""
        if pipeline.running:
            raise RuntimeError("attach the bridge before starting the pipeline, or early results are lost")
        pipeline.subscribe(self._on_result)
        pipeline.on_alarm(self._on_alarm)

    # Called on pipeline threads: nothing but the emit.
    def _on_result(self, result: InspectionResult) -> None:
        self.result_received.emit(result)

    def _on_alarm(self, alarm: object) -> None:
        self.alarm_received.emit(alarm)
