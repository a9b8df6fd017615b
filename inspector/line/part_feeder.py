"""Presenting parts to a software-triggered camera, one at a time: a stand-in for a conveyor.

:class:`PartFeeder` fires ``camera.trigger()`` at most ``rate`` times a second, and only once the
previous part was answered and no frame waits for the engine -- as a station takes the next part
when it is free. A part is answered by its frame, by a frame the camera reports lost
(``camera_lost``), or by nothing within ``frame_timeout_s``: a lost frame must never stall the
line. :func:`inspector.line.build_line` starts one for ``trigger="software"`` with a
``feeder_rate``; a real line's parts come with a hardware trigger instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from inspector.errors import CameraError
from inspector.frames import FrameSource
from inspector.line.line_metrics import PipelineMetrics

log = logging.getLogger(__name__)

#: A trigger with no frame (and no lost frame) after this many seconds is given up.
FRAME_TIMEOUT_S = 2.0


class PartFeeder:
    """Triggers ``camera`` one part at a time, at most ``rate`` per second.

    ``metrics`` is the pipeline's :meth:`~inspector.line.Pipeline.metrics`: a part is presented
    when every part triggered so far was answered (acquired, or lost by the camera) and the queue
    to the engine is empty. A trigger that no frame answers within ``frame_timeout_s`` (at least
    one feeder interval) is given up and counted in :attr:`missed`, so the next part comes anyway.
    A thread of its own, not a GUI timer: the parts keep coming however busy a GUI is.
    """

    def __init__(self, camera: FrameSource, metrics: Callable[[], PipelineMetrics], rate: float,
                 frame_timeout_s: float = FRAME_TIMEOUT_S) -> None:
        self.camera, self.metrics = camera, metrics
        self.interval = 1.0 / max(rate, 0.01)
        self.frame_timeout_s = max(frame_timeout_s, self.interval)
        self.triggered = 0
        #: Triggers that no frame answered in time (given up, not waited for).
        self.missed = 0
        self._answered_before = 0  # frames acquired or lost before the first trigger
        self._last_trigger = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="part-feeder", daemon=True)

    def start(self) -> None:
        self._answered_before = _answered(self.metrics())
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._ready(self.metrics()):
                continue
            try:
                self.camera.trigger()
                self.triggered += 1
                self._last_trigger = time.monotonic()
            except CameraError as exc:  # the pipeline alarms a lost camera; keep trying
                log.debug("part feeder: %s", exc)

    def _ready(self, m: PipelineMetrics) -> bool:
        """Whether the next part may come: the engine is free and the last part was answered."""
        if m.queue_depth > 0:
            return False
        answered = _answered(m) - self._answered_before + self.missed
        if answered > self.triggered:
            # A frame after its trigger was given up, or a camera that skips an unreadable image
            # and counts it lost besides: never let a surplus answer a trigger not yet fired.
            self._answered_before += answered - self.triggered
            answered = self.triggered
        if answered == self.triggered:
            return True
        if time.monotonic() - self._last_trigger < self.frame_timeout_s:
            return False
        # No frame came for the last trigger(s): give them up rather than wait forever.
        gave_up = self.triggered - answered
        self.missed += gave_up
        log.warning("part feeder: no frame for %d trigger(s) within %.3g s; presenting the next part",
                    gave_up, self.frame_timeout_s)
        return True


def _answered(m: PipelineMetrics) -> int:
    """Frames that answered a trigger: delivered to the pipeline, or reported lost by the camera."""
    return m.acquired + m.camera_lost
