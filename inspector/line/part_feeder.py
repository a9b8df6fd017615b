"""Presenting parts to a software-triggered camera, one at a time: a stand-in for a conveyor.

:class:`PartFeeder` fires ``camera.trigger()`` at most ``rate`` times a second, and only once the
previous part was acquired and no frame waits for the engine -- as a station takes the next part
when it is free. :func:`inspector.line.build_line` starts one for ``trigger="software"`` with a
``feeder_rate``; a real line's parts come with a hardware trigger instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from inspector.errors import CameraError
from inspector.frames import FrameSource
from inspector.line.line_metrics import PipelineMetrics

log = logging.getLogger(__name__)


class PartFeeder:
    """Triggers ``camera`` one part at a time, at most ``rate`` per second.

    ``metrics`` is the pipeline's :meth:`~inspector.line.Pipeline.metrics`: a part is presented
    when every part triggered so far was acquired and the queue to the engine is empty. A thread
    of its own, not a GUI timer: the parts keep coming however busy a GUI is.
    """

    def __init__(self, camera: FrameSource, metrics: Callable[[], PipelineMetrics], rate: float) -> None:
        self.camera, self.metrics = camera, metrics
        self.interval = 1.0 / max(rate, 0.01)
        self.triggered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="part-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            m = self.metrics()
            if m.acquired < self.triggered or m.queue_depth > 0:
                continue
            try:
                self.camera.trigger()
                self.triggered += 1
            except CameraError as exc:  # the pipeline alarms a lost camera; keep trying
                log.debug("part feeder: %s", exc)
