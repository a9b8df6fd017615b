"""The bounded queue between acquisition and the engine, in its two disciplines."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

#: How often a blocked put() looks at its abort event, in seconds.
_POLL_S = 0.1


class Closed(Exception):
    """Raised by :meth:`FrameQueue.get` once the queue is closed and empty."""


class FrameQueue(Generic[T]):
    """FIFO of at most ``maxsize`` items, shared by one producer and one consumer.

    :meth:`put_wait` blocks while the queue is full (triggered inspection: every frame is kept and
    the camera is held back). :meth:`put_latest` never blocks; when the queue is full it drops the
    oldest waiting item to make room (live view: the engine sees the newest frames).
    :meth:`close` tells the consumer that nothing more will come; it still receives everything
    put before.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def full(self) -> bool:
        with self._cond:
            return len(self._items) >= self.maxsize

    def put_wait(self, item: T, abort: threading.Event) -> bool:
        """Append ``item``, waiting for room; False (item not queued) once ``abort`` is set."""
        with self._cond:
            while len(self._items) >= self.maxsize:
                if abort.is_set():
                    return False
                self._cond.wait(_POLL_S)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def put_latest(self, item: T) -> T | None:
        """Append ``item`` at once; returns the oldest item it pushed out, if the queue was full."""
        with self._cond:
            dropped = self._items.popleft() if len(self._items) >= self.maxsize else None
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; ``None`` after ``timeout`` seconds; raises :class:`Closed` at the end."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise Closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
