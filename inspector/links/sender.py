"""What the plant links' sender threads share: a retry backoff that a stop cuts short, and
alarms that go to the line's ``on_alarm`` or, without one, to the log.

A link mixes in :class:`SenderThread` and provides ``_cv`` (its condition), ``_stop_at`` (the
stop's deadline, None while running), ``_down``, ``on_alarm`` and the class attributes below.
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
