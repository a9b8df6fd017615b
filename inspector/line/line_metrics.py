"""Per-stage figures of a running pipeline: counts, rate, latency percentiles, queue, camera."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.history import WriterStats

#: Decisions per second are counted over this many recent seconds.
RATE_WINDOW_S = 10.0
#: Latency percentiles are taken over this many most recent frames.
LATENCY_WINDOW = 1000


@dataclass(frozen=True)
class PipelineMetrics:
    """A snapshot of :meth:`Pipeline.metrics`.

    Frames: ``acquired`` (delivered by the camera to the pipeline), ``inspected`` (got a
    decision, errors included), ``recorded`` (durable and handed to the result subscribers;
    ``passed``/``failed``/``rechecked``/``no_part``/``errors`` split these; ``no_part``: frames the
    part was not found in, no part inspected), ``dropped`` (live mode: waiting frames replaced
    by newer ones), ``not_inspected`` (acquired, never scored -- a stop that ran out of time, a
    second signal -- and recorded as such: a FAIL row whose error says why, counted among the
    ``errors``; alarmed), ``unrecorded`` (stored nowhere: refused by a full history buffer, or
    left by a writer that could not even journal them; alarmed). In triggered mode ``acquired ==
    inspected + not_inspected == recorded`` once the pipeline is stopped; in live mode
    ``acquired == inspected + not_inspected + dropped``.

    ``queue_depth``: frames waiting for the engine now, of ``queue_size``. ``queue_full_waits``:
    times acquisition found the queue full and waited (triggered mode backpressure).
    ``acquisition_fps``: frames delivered by the camera per second and ``rate_fps``: decisions
    per second, both over the last ``RATE_WINDOW_S`` (they differ in live mode). Latencies are
    milliseconds over the last ``LATENCY_WINDOW`` frames (``nan`` before the first):
    ``latency_*`` from the frame reaching the host to the decision, ``model_*`` the engine's
    predict alone. Camera counters come from the driver (``camera_lost``: frames the camera
    could not deliver; ``camera_skipped``: frames the driver dropped for newer ones;
    ``camera_disconnects``/``camera_reconnects``: the camera going away and coming back).
    ``writer``: the history writer's own counters.
    """

    mode: str
    running: bool
    acquired: int
    inspected: int
    recorded: int
    passed: int
    failed: int
    errors: int
    dropped: int
    unrecorded: int
    queue_depth: int
    queue_size: int
    queue_full_waits: int
    acquisition_fps: float
    rate_fps: float
    latency_p50_ms: float
    latency_p99_ms: float
    model_p50_ms: float
    model_p99_ms: float
    camera_lost: int
    camera_skipped: int
    camera_disconnects: int
    camera_reconnects: int
    writer: WriterStats
    not_inspected: int = 0
    rechecked: int = 0
    no_part: int = 0

    @property
    def yield_fraction(self) -> float:
        """PASS over the parts decided PASS, FAIL or RECHECK (errors among the FAILs); NO PART
        frames are no part inspected and count nowhere in it."""
        parts = self.passed + self.failed + self.rechecked + self.errors
        return self.passed / parts if parts else math.nan


@dataclass
class Counts:
    """Recorded frames by outcome: the one counting rule, used by the pipeline's metrics and the
    station's shift counts alike. An error (a frame the engine could not score) is decided FAIL
    for the PLC (fail-safe), but counted apart: a reject that says nothing about the part.
    ``rechecked``: parts set aside for a person (RECHECK). ``no_part``: frames the part was not
    found in (NO PART): no part inspected, so neither in ``total`` nor in the yield.

    ``total`` is the parts inspected (passed, failed, rechecked and errors); ``frames`` adds the
    NO PART frames; ``rejected`` (failed and errors) is what left the line as NG;
    ``yield_fraction`` is passed over ``total``. Not thread-safe: the owner holds a lock."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    rechecked: int = 0
    no_part: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.rechecked

    @property
    def frames(self) -> int:
        return self.total + self.no_part

    @property
    def rejected(self) -> int:
        return self.failed + self.errors

    @property
    def yield_fraction(self) -> float:
        return self.passed / self.total if self.total else math.nan

    def add(self, result: Any) -> None:
        if result.error is not None:
            self.errors += 1
        elif result.decision == "PASS":
            self.passed += 1
        elif result.decision == "RECHECK":
            self.rechecked += 1
        elif result.decision == "NO_PART":
            self.no_part += 1
        else:
            self.failed += 1

    def plus(self, other: Counts) -> Counts:
        return Counts(self.passed + other.passed, self.failed + other.failed, self.errors + other.errors,
                      self.rechecked + other.rechecked, self.no_part + other.no_part)


class RollingRate:
    """Events per second over the last ``window_s`` seconds (thread-safe)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self._since = time.monotonic()

    def restart(self) -> None:
        with self._lock:
            self._times.clear()
            self._since = time.monotonic()

    def add(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            # Until a full window has passed, divide by the time actually observed.
            span = min(self.window_s, now - self._since)
            return len(self._times) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()


class RollingPercentiles:
    """Percentiles of the last ``size`` values (thread-safe)."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(value)

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        if values.size == 0:
            return tuple(math.nan for _ in qs)
        return tuple(float(v) for v in np.percentile(values, qs))
