"""Several cameras on one engine: frames that arrive together share one forward pass.

Each camera keeps its own :class:`~inspector.line.Pipeline` (queue, rule, counters, records
tagged with its ``camera_id``); only the model is shared. A pipeline's engine worker calls
``predict(image)`` on its :class:`BatchedScorer` as it would on the engine, and blocks; the
:class:`FrameBatcher`'s one thread gathers the waiting requests into one ``predict_batch``::

    pipeline A --predict--> BatchedScorer \
    pipeline B --predict--> BatchedScorer  >  FrameBatcher thread: engine.predict_batch([a, b, c])
    pipeline C --predict--> BatchedScorer /                        each caller gets its own Prediction

A batch closes when ``max_batch`` requests for the same engine wait, or ``max_wait_ms`` after
the oldest of them arrived or the engine became free, whichever is later: a lone frame waits at
most ``max_wait_ms`` for others beyond the time the engine is busy anyway. Counting from the end
of the last pass lets the cameras just answered join the frames that queued during it, so the
cameras do not split into groups that take turns with half batches. Each pipeline has one
request out at a time, so with ``max_batch`` = the number of cameras a full batch never waits
for nothing.

Requests name their engine, so a model swap (``Line.set_recipe``, ``Pipeline.set_model``) or a
shadow engine works through the same thread: one batch holds one engine's requests, and the
others wait, in arrival order, for the next. When a batch's pass raises, each of its frames is
scored again alone, so a frame the engine refuses fails only its own camera's part; an error
that persists reaches every caller of the batch, whose pipeline records it as an error result
(FAIL) and goes on. :meth:`FrameBatcher.close` serves what is waiting and ends the thread; later
requests are refused with an :class:`~inspector.errors.InspectorError`, never left waiting.

All forward passes run on one thread, so several cameras never compete for the CPU's cores
with concurrent passes (and an engine that takes one call at a time, such as OpenVINO's compiled
model, is never called twice at once). Nothing here touches Qt.

Whether batching pays depends on the device: on a GPU a pass of four frames costs little more
than one; on a CPU the network already keeps every core busy with one frame, and a batch can even
cost more per frame (memory traffic). :func:`measure_batching` times the engine both ways, and
:func:`inspector.line.build_lines` batches only where a frame costs clearly less in a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from inspector.errors import InspectorError

log = logging.getLogger(__name__)

#: Frames per forward pass at most, unless told otherwise.
DEFAULT_MAX_BATCH = 4
#: How long a frame waits at most for others to join its batch (ms): about a frame's
#: preprocessing, small next to a forward pass (tens of ms on a CPU, a few on a GPU).
DEFAULT_MAX_WAIT_MS = 3.0
#: Batch only when a frame in a batch costs at most this fraction of a frame alone: a smaller
#: gain is within what a shared machine's load moves, and a batch lengthens every frame's wait.
BATCH_PAYS_BELOW = 0.9


class BatchEngine(Protocol):
    """What the batcher needs of an engine (:class:`inspector.engine.Engine` is one)."""

    def predict_batch(self, images: Sequence[np.ndarray]) -> Sequence[Any]:
        """One prediction (``score``, ``anomaly_map``) per image, in order, from one forward pass."""


@dataclass(frozen=True)
class BatcherStats:
    """Counters since the batcher was made. ``requests``: frames asked for; ``sizes``: forward
    passes per batch size; ``failed_passes``: passes that raised (a batch's frames are then
    scored alone); ``errors``: requests answered with an error."""

    requests: int
    passes: int
    failed_passes: int
    errors: int
    sizes: dict[int, int]

    @property
    def frames(self) -> int:
        """Frames that went through forward passes (a frame of a failed pass counts again alone)."""
        return sum(size * n for size, n in self.sizes.items())

    @property
    def mean_batch(self) -> float:
        """Frames per forward pass on average (nan before the first)."""
        return self.frames / self.passes if self.passes else float("nan")


class _Request:
    __slots__ = ("engine", "image", "arrived", "done", "result", "error")

    def __init__(self, engine: BatchEngine, image: np.ndarray) -> None:
        self.engine = engine
        self.image = image
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class FrameBatcher:
    """One thread that scores the frames of several callers in shared forward passes (see the
    module docstring). ``max_batch`` >= 1 frames per pass (1: one frame per pass, in arrival
    order); ``max_wait_ms`` >= 0. The thread starts with the first request; :meth:`close` ends it.
    """

    def __init__(self, max_batch: int = DEFAULT_MAX_BATCH, max_wait_ms: float = DEFAULT_MAX_WAIT_MS) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InspectorError(f"max batch must be a whole number >= 1, got {max_batch!r}")
        if not (isinstance(max_wait_ms, (int, float)) and 0.0 <= max_wait_ms < float("inf")):
            raise InspectorError(f"max wait must be a number of ms >= 0, got {max_wait_ms!r}")
        self.max_batch = max_batch
        self.max_wait_ms = float(max_wait_ms)
        self._waiting: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._free_since = 0.0  # time.monotonic() when the last pass ended
        self._thread: threading.Thread | None = None
        self._requests = self._passes = self._failed_passes = self._errors = 0
        self._sizes: Counter[int] = Counter()

    def scorer(self, engine: BatchEngine) -> BatchedScorer:
        """A :class:`~inspector.line.Scorer` for one pipeline: its ``predict`` goes through this batcher."""
        return BatchedScorer(self, engine)

    def predict(self, engine: BatchEngine, image: np.ndarray) -> Any:
        """``engine``'s prediction for ``image``, scored in a shared pass; blocks until it is done.
        Raises what the engine raised for it, or InspectorError once the batcher is closed."""
        request = _Request(engine, image)
        with self._cv:
            if self._closed:
                raise InspectorError("the frame batcher is closed: no more frames are scored")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="frame-batcher", daemon=True)
                self._thread.start()
            self._waiting.append(request)
            self._requests += 1
            self._cv.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float | None = 30.0) -> bool:
        """Refuse new requests, score the waiting ones, end the thread. False if the thread was
        still busy after ``timeout`` seconds (a pass that hangs). Safe to repeat."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def stats(self) -> BatcherStats:
        with self._cv:
            return BatcherStats(self._requests, self._passes, self._failed_passes, self._errors, dict(self._sizes))

    def __enter__(self) -> FrameBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[_Request] = []
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    return  # closed, nothing left
                self._score(batch)
                batch = []
        except BaseException as exc:  # a bug: no caller may be left waiting for an answer
            log.exception("frame batcher stopped by an internal error")
            with self._cv:
                self._closed = True
                left, self._waiting = [*batch, *self._waiting], deque()
            for request in left:
                if not request.done.is_set():
                    request.answer(error=InspectorError(f"the frame batcher stopped: {exc}"))

    def _next_batch(self) -> list[_Request]:
        """The oldest request with up to ``max_batch - 1`` later ones for the same engine, once
        the batch is full or ``max_wait_ms`` passed since the oldest arrived or the last pass
        ended, whichever is later; [] when closed and empty."""
        with self._cv:
            while not self._waiting:
                if self._closed:
                    return []
                self._cv.wait()
            first = self._waiting[0]
            deadline = max(first.arrived, self._free_since) + self.max_wait_ms / 1000.0
            while not self._closed and self._count(first.engine) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch, rest = [], deque()
            for request in self._waiting:
                if request.engine is first.engine and len(batch) < self.max_batch:
                    batch.append(request)
                else:
                    rest.append(request)
            self._waiting = rest
            return batch

    def _count(self, engine: BatchEngine) -> int:
        return sum(1 for request in self._waiting if request.engine is engine)

    def _score(self, batch: list[_Request]) -> None:
        """One pass for the batch; if it raises, each frame alone, so a frame the engine refuses
        (or a batch too large for the device) costs no other camera its verdict."""
        engine = batch[0].engine
        try:
            results = _predict(engine, [r.image for r in batch])
        except Exception as exc:  # the engine's error is the callers' to record
            with self._cv:
                self._free_since = time.monotonic()
                self._passes += 1
                self._sizes[len(batch)] += 1
                self._failed_passes += 1
            if len(batch) == 1:
                self._answer(batch[0], error=exc)
                return
            log.info("a batch of %d frames failed (%s: %s); scoring each alone", len(batch), type(exc).__name__, exc)
            for request in batch:
                self._score([request])
            return
        with self._cv:
            self._free_since = time.monotonic()
            self._passes += 1
            self._sizes[len(batch)] += 1
        for request, result in zip(batch, results):
            self._answer(request, result=result)

    def _answer(self, request: _Request, result: Any = None, error: BaseException | None = None) -> None:
        if error is not None:
            with self._cv:
                self._errors += 1
        request.answer(result, error)


def _predict(engine: BatchEngine, images: list[np.ndarray]) -> Sequence[Any]:
    """``engine.predict_batch(images)``, or ``predict`` per image for an engine without it."""
    batch_predict = getattr(engine, "predict_batch", None)
    if batch_predict is None:
        return [engine.predict(image) for image in images]  # type: ignore[attr-defined]
    results = batch_predict(images)
    if len(results) != len(images):
        raise InspectorError(f"the engine returned {len(results)} predictions for {len(images)} images")
    return results


class BatchedScorer:
    """One pipeline's :class:`~inspector.line.Scorer` on a shared :class:`FrameBatcher`:
    ``predict(image)`` is ``engine``'s prediction, scored together with other cameras' frames."""

    def __init__(self, batcher: FrameBatcher, engine: BatchEngine) -> None:
        self.batcher = batcher
        self.engine = engine

    def predict(self, image: np.ndarray) -> Any:
        return self.batcher.predict(self.engine, image)

    def __repr__(self) -> str:
        return f"BatchedScorer({self.engine!r}, max_batch={self.batcher.max_batch})"


@dataclass(frozen=True)
class BatchingChoice:
    """What :func:`measure_batching` found: ``max_batch`` (``batch`` where it pays, else 1) and
    the engine's ms per frame alone and in a batch of ``batch`` (best of the repeats)."""

    max_batch: int
    batch: int
    ms_alone: float
    ms_batched: float

    def __str__(self) -> str:
        verdict = "batching pays" if self.max_batch > 1 else "batching does not pay here"
        return (f"a frame costs {self.ms_batched:.1f} ms in a batch of {self.batch} against {self.ms_alone:.1f} ms "
                f"alone: {verdict}")


def measure_batching(engine: BatchEngine, batch: int, repeats: int = 2, size: int = 256) -> BatchingChoice:
    """Times ``engine`` on ``batch`` frames in one pass and on one frame alone, alternately
    ``repeats`` times each after one untimed pass of each, and chooses ``batch`` frames per pass
    where a frame costs at most :data:`BATCH_PAYS_BELOW` of its cost alone, else 1. Costs about
    ``(repeats + 1) * (batch + 1)`` frames' time (a random ``size`` x ``size`` gray frame, or,
    for a model with a framing, :meth:`~inspector.framing.Framing.sample_frame`)."""
    if batch <= 1:
        return BatchingChoice(1, 1, float("nan"), float("nan"))
    framing = getattr(engine, "framing", None)
    frame = framing.sample_frame(size) if framing is not None else np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    best = {1: float("inf"), batch: float("inf")}
    for timed in [False] + [True] * repeats:
        for n in (batch, 1):
            started = time.perf_counter()
            _predict(engine, [frame] * n)
            if timed:
                best[n] = min(best[n], (time.perf_counter() - started) * 1000.0 / n)
    pays = best[batch] <= BATCH_PAYS_BELOW * best[1]
    return BatchingChoice(batch if pays else 1, batch, best[1], best[batch])
