"""What the plant links' sender threads share: a retry backoff that a stop cuts short, and
alarms that go to the line's ``on_alarm`` or, without one, to the log; for a sender that naps
until a result wakes it (the MQTT and plant links), the wake, the nap and the stop.

A link mixes in :class:`SenderThread` and provides ``_cv`` (its condition), ``_stop_at`` (the
stop's deadline, None while running), ``_down``, ``on_alarm`` and the class attributes below;
one that naps provides ``_woken`` and ``_thread`` as well.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class SenderThread:
    #: The alarm kinds of "went down" and "is back": down warns in the log, recovered informs.
    DOWN_ALARM: str
    RECOVERED_ALARM: str
    #: What waits while the link is down, said with its first down alarm.
    WAITING: str
    #: The link's name in log messages ("MQTT link").
    NAME: str

    _cv: threading.Condition
    _stop_at: float | None
    _down: bool
    on_alarm: Callable[[str, str], None] | None
    _woken: bool
    _thread: threading.Thread | None

    def _wake(self) -> None:
        """Something waits to be sent (a durable result, a held alarm): end the sender's nap now
        rather than at its timeout. Quick, never blocks: the line calls it."""
        with self._cv:
            self._woken = True
            self._cv.notify_all()

    def _nap(self, ready: Callable[[], bool] = lambda: False) -> None:
        """Until :meth:`_wake`, unless ``ready()`` (asked under the lock, so that what it reads
        cannot change unseen before the wait) says there is work already. The timeout also finds
        rows written by anything that did not wake the sender (a journal replay), and is short
        while stopping."""
        with self._cv:
            if not (ready() or self._woken):
                self._cv.wait(0.05 if self._stop_at is not None else 0.5)
            self._woken = False

    def _end_thread(self, timeout: float) -> None:
        """Give the sender ``timeout`` seconds from now to send what it can, wake it to see that,
        and wait until it has ended."""
        with self._cv:
            self._stop_at = time.monotonic() + timeout
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _sleep(self, seconds: float) -> None:
        """The retry backoff, cut short by a stop's deadline."""
        end = time.monotonic() + seconds
        with self._cv:
            while True:
                limit = end if self._stop_at is None else min(end, self._stop_at)
                left = limit - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(left)

    def _alarm_down(self, message: str) -> None:
        """The down alarm once per outage; later failures of the same outage go to the debug log."""
        if not self._down:
            self._down = True
            self._alarm(self.DOWN_ALARM, f"{message}; {self.WAITING}")
        else:
            log.debug("%s", message)

    def _alarm(self, kind: str, message: str) -> None:
        if self.on_alarm is None:
            (log.info if kind == self.RECOVERED_ALARM else log.warning)("%s: %s", kind, message)
            return
        try:
            self.on_alarm(kind, message)
        except Exception:
            log.exception("%s alarm callback failed", self.NAME)
