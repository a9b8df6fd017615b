"""Alarms: what an operator must know about, and the throttle that keeps repeats from flooding.

The pipeline and its history writer both raise :class:`Alarm` s; each passes them through an
:class:`AlarmThrottle` first, so a fault that repeats every frame (a camera grab error, a full
queue, a disk that refuses images) is raised once per throttle period and only logged otherwise.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Alarm:
    """Something an operator must know about; ``time`` is UTC."""

    kind: str
    message: str
    time: datetime


class AlarmThrottle:
    """Turns alarm requests into :class:`Alarm` s, logged as warnings of ``source``.

    :meth:`alarm` with ``throttle_s`` returns ``None`` (and logs the message at debug level) for a
    repeat of the same kind within ``throttle_s`` seconds of the last one raised; ``throttle_s=0``
    raises every time. Thread-safe.
    """

    def __init__(self, log: logging.Logger, source: str) -> None:
        self.log = log
        self.source = source
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def alarm(self, kind: str, message: str, throttle_s: float = 0.0) -> Alarm | None:
        now = time.monotonic()
        with self._lock:
            if throttle_s and now - self._last.get(kind, -math.inf) < throttle_s:
                self.log.debug("%s alarm %s (repeat, not raised): %s", self.source, kind, message)
                return None
            self._last[kind] = now
        self.log.warning("%s alarm %s: %s", self.source, kind, message)
        return Alarm(kind, message, datetime.now(timezone.utc))
