"""The camera interface every driver implements, the frame it delivers, and the reconnect loop.

A driver subclasses :class:`Camera` and fills in the ``_open``/``_close``/``_configure``/``_start``/
``_stop``/``_trigger``/``_grab`` hooks. The base class owns the state the drivers share: the last
settings and start mode (replayed after a reconnect), the frame counters, and the background loop
that reopens a camera that went away.

Threading: ``grab()`` is meant to be called from one acquisition thread. ``trigger()``, ``stats``
and ``is_connected`` may be used from any thread. ``stop()`` and ``close()`` may come from another
thread too; they wait for a ``grab()`` in progress to return (at most its ``timeout_s``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from inspector.errors import CameraError
from inspector.frames import CameraStats, Frame, TriggerMode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What ``configure()`` was given; ``None`` leaves the camera's current value alone.

    exposure_us: exposure time in microseconds. gain_db: analog gain in dB. roi: (x, y, w, h) in
    sensor pixels. pixel_format: a GenICam PixelFormat name such as "Mono8", "RGB8".
    """

    exposure_us: float | None = None
    gain_db: float | None = None
    roi: tuple[int, int, int, int] | None = None
    pixel_format: str | None = None


class SourceLost(Exception):
    """Raised by a driver's ``_grab`` when its source went away (unplugged, folder deleted).

    Internal to the drivers: ``Camera.grab`` turns it into ``None`` and starts the reconnect loop.
    """


class Camera(ABC):
    """A camera: open, configure, start in a trigger mode, grab frames, stop, close.

    ``camera_id`` names the camera in frames, logs and error messages (``open_camera`` uses the
    URI). ``backoff_s`` is (first, longest) wait in seconds between reconnect attempts; the wait
    doubles after each failed attempt.
    """

    #: The trigger modes this kind of camera supports.
    trigger_modes: tuple[TriggerMode, ...] = tuple(TriggerMode)

    def __init__(self, camera_id: str, *, backoff_s: tuple[float, float] = (0.2, 5.0)) -> None:
        self.camera_id = camera_id
        self._backoff_s = backoff_s
        self._settings = Settings()
        self._mode: TriggerMode | None = None  # None while not started
        self._live = False
        self._trigger_line = "Line1"
        self._is_open = False
        self._connected = threading.Event()
        # Held by grab() around the device read and by anything that tears the device down, so
        # that a reconnect or stop() never pulls the handle out from under a read.
        self._io_lock = threading.RLock()
        self._reconnect_thread: threading.Thread | None = None
        self._stop_reconnect = threading.Event()
        self._grabbed = self._lost = self._skipped = self._reconnects = 0

    # ---- public interface -------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the camera. Raises CameraError when it is missing or busy."""
        with self._io_lock:
            if self._is_open:
                return
            self._open()
            self._is_open = True
            self._grabbed = self._lost = self._skipped = self._reconnects = 0
            self._connected.set()

    def close(self) -> None:
        """Stop grabbing, end any reconnect attempts and release the camera. Safe to repeat."""
        self._end_reconnect_loop()
        with self._io_lock:
            if not self._is_open:
                return
            self._mode = None
            self._is_open = False
            self._connected.clear()
            self._close()
        self._end_reconnect_loop()  # one a grab() may have started just before the lock was taken

    def configure(
        self,
        exposure_us: float | None = None,
        gain_db: float | None = None,
        roi: tuple[int, int, int, int] | None = None,
        pixel_format: str | None = None,
    ) -> None:
        """Set exposure (µs), gain (dB), region of interest (x, y, w, h) and pixel format.

        ``None`` leaves a value as it is. The settings are remembered and applied again after a
        reconnect. Raises CameraError for a value the camera refuses.
        """
        self._require_open()
        if exposure_us is not None and not (math.isfinite(exposure_us) and exposure_us > 0):
            raise CameraError(f"{self.camera_id}: exposure must be a positive number of µs, got {exposure_us!r}")
        if gain_db is not None and not math.isfinite(gain_db):
            raise CameraError(f"{self.camera_id}: gain must be a finite number of dB, got {gain_db!r}")
        if roi is not None:
            if len(roi) != 4 or not all(isinstance(v, (int, np.integer)) for v in roi):
                raise CameraError(f"{self.camera_id}: ROI must be four integers (x, y, w, h), got {roi!r}")
            x, y, w, h = (int(v) for v in roi)
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise CameraError(f"{self.camera_id}: ROI {roi!r} needs x, y >= 0 and w, h > 0")
            roi = (x, y, w, h)
        change = Settings(exposure_us, gain_db, roi, pixel_format)
        with self._io_lock:
            if self._connected.is_set():  # else the reconnect applies the remembered settings
                self._configure(change)
            given = {f.name: getattr(change, f.name) for f in fields(change)}
            self._settings = replace(self._settings, **{k: v for k, v in given.items() if v is not None})

    def start(
        self, mode: TriggerMode = TriggerMode.FREE_RUN, *, live: bool = False, trigger_line: str = "Line1"
    ) -> None:
        """Start acquiring.

        ``live=False`` keeps every frame in order (triggered inspection); ``live=True`` hands out
        only the newest frame and counts the older ones as skipped (live view). ``trigger_line``
        is the input line for ``TriggerMode.HARDWARE``.
        """
        self._require_open()
        mode = TriggerMode(mode)
        if mode not in self.trigger_modes:
            supported = ", ".join(m.name for m in self.trigger_modes)
            raise CameraError(f"{self.camera_id}: {type(self).__name__} has no {mode.name} trigger; use {supported}")
        with self._io_lock:
            if self._connected.is_set():  # else the reconnect starts it in this mode
                if self._mode is not None:
                    self._mode = None
                    self._stop()
                self._start(mode, live, trigger_line)
            self._mode, self._live, self._trigger_line = mode, live, trigger_line

    def stop(self) -> None:
        """Stop acquiring; the camera stays open and configured. Safe to repeat."""
        with self._io_lock:
            if self._mode is None:
                return
            self._mode = None
            if self._connected.is_set():
                self._stop()

    def trigger(self) -> None:
        """Fire one software trigger: exactly one frame follows (after ``start(SOFTWARE)``)."""
        if self._mode is not TriggerMode.SOFTWARE:
            raise CameraError(f"{self.camera_id}: trigger() needs start(TriggerMode.SOFTWARE)")
        if not self._connected.is_set():
            raise CameraError(f"{self.camera_id}: cannot trigger, the camera is disconnected")
        self._trigger()

    def grab(self, timeout_s: float = 1.0) -> Frame | None:
        """Wait up to ``timeout_s`` for the next frame; ``None`` if none came.

        ``None`` also while the camera is disconnected (it is being reopened in the background),
        and after ``timeout_s`` when it is not grabbing: before ``start()``, after ``stop()``, or
        once a replay without looping has ended (``is_grabbing`` tells).
        """
        if not self.is_grabbing:
            time.sleep(timeout_s)  # like a camera that sends nothing; an acquisition loop must not spin
            return None
        deadline = time.monotonic() + timeout_s
        if not self._connected.wait(timeout_s):
            return None
        if not self._io_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None  # a reconnect attempt or stop() holds the device
        try:
            if self._mode is None or not self._connected.is_set():
                return None  # stopped or disconnected while this call waited for the lock
            frame = self._grab(max(0.0, deadline - time.monotonic()))
        except SourceLost as exc:
            log.warning("%s: camera lost (%s); reconnecting in the background", self.camera_id, exc)
            self._connected.clear()
            self._start_reconnect_loop()
            return None
        finally:
            self._io_lock.release()
        if frame is not None:
            self._grabbed += 1
        return frame

    @property
    def stats(self) -> CameraStats:
        """A snapshot of the frame counters since ``open()``."""
        return CameraStats(self._grabbed, self._lost, self._skipped, self._reconnects)

    @property
    def is_open(self) -> bool:
        return self._is_open

    @property
    def is_connected(self) -> bool:
        """False from the moment a removal is noticed until the camera has been reopened."""
        return self._is_open and self._connected.is_set()

    @property
    def is_grabbing(self) -> bool:
        """True between ``start()`` and ``stop()``, unless a finite replay has run out."""
        return self._mode is not None and not self._ended()

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.camera_id!r})"

    # ---- driver hooks -----------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Connect; raise CameraError naming the problem when the source is missing."""

    @abstractmethod
    def _close(self) -> None:
        """Release the source; must not raise, even when the source is already gone."""

    @abstractmethod
    def _configure(self, change: Settings) -> None:
        """Apply the fields of ``change`` that are not None."""

    @abstractmethod
    def _start(self, mode: TriggerMode, live: bool, trigger_line: str) -> None: ...

    @abstractmethod
    def _stop(self) -> None: ...

    @abstractmethod
    def _trigger(self) -> None: ...

    @abstractmethod
    def _grab(self, timeout_s: float) -> Frame | None:
        """Return the next frame, None on timeout; raise SourceLost when the source went away."""

    def _ended(self) -> bool:
        """True once a finite source (a replay without looping) has delivered its last frame."""
        return False

    def _frame(self, image: np.ndarray, frame_id: int, camera_timestamp: int | float) -> Frame:
        return Frame(image, int(frame_id), camera_timestamp, time.time(), self.camera_id)

    def _reopen(self) -> None:
        """Reconnect and restore the remembered settings and start mode (run with the I/O lock)."""
        self._close()  # the old handle may be half dead; drivers' _close never raises
        self._open()
        self._configure(self._settings)
        if self._mode is not None:
            self._start(self._mode, self._live, self._trigger_line)

    # ---- reconnect loop ---------------------------------------------------------------------

    def _start_reconnect_loop(self) -> None:
        if not self._is_open or (self._reconnect_thread is not None and self._reconnect_thread.is_alive()):
            return
        self._stop_reconnect.clear()
        self._reconnect_thread = threading.Thread(
            target=self._reconnect_loop, name=f"reconnect {self.camera_id}", daemon=True
        )
        self._reconnect_thread.start()

    def _end_reconnect_loop(self) -> None:
        self._stop_reconnect.set()
        thread = self._reconnect_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._reconnect_thread = None

    def _reconnect_loop(self) -> None:
        delay, longest = self._backoff_s
        while not self._stop_reconnect.wait(delay):
            with self._io_lock:
                if self._stop_reconnect.is_set() or not self._is_open:
                    return
                try:
                    self._reopen()
                except Exception as exc:  # noqa: BLE001 - any failure just means "not back yet"
                    delay = min(delay * 2, longest)
                    log.info("%s: still unavailable (%s); next try in %.1f s", self.camera_id, exc, delay)
                    continue
                self._reconnects += 1
                self._connected.set()
                log.warning("%s: reconnected", self.camera_id)
                return

    def _require_open(self) -> None:
        if not self._is_open:
            raise CameraError(f"{self.camera_id}: camera is not open; call open() first")


# ---- helpers for the software cameras (folder, OpenCV) ---------------------------------------

SOFTWARE_PIXEL_FORMATS = ("Mono8", "RGB8")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An OpenCV image (gray, BGR or BGRA; uint8 or uint16) as H×W or H×W×3 RGB."""
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return image


def apply_software_settings(image: np.ndarray, settings: Settings, camera_id: str) -> np.ndarray:
    """Crop to the ROI and convert to the pixel format, for cameras that cannot do it themselves.

    The ROI is clipped at the image border (replayed images may differ in size); an ROI wholly
    outside the image is a CameraError.
    """
    if settings.roi is not None:
        x, y, w, h = settings.roi
        height, width = image.shape[:2]
        image = image[y : y + h, x : x + w]
        if image.size == 0:
            raise CameraError(f"{camera_id}: ROI {settings.roi} lies outside the {width}×{height} image")
    if settings.pixel_format == "Mono8":
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
    elif settings.pixel_format == "RGB8":
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(image)


def check_software_settings(change: Settings, camera_id: str) -> None:
    """Refuse what a software camera cannot do; warn about what it cannot honour at all."""
    if change.pixel_format is not None and change.pixel_format not in SOFTWARE_PIXEL_FORMATS:
        raise CameraError(
            f"{camera_id}: pixel format {change.pixel_format!r} is not supported here; "
            f"use one of {', '.join(SOFTWARE_PIXEL_FORMATS)}"
        )
    for name in ("exposure_us", "gain_db"):
        if getattr(change, name) is not None:
            log.warning("%s: %s has no effect on a replayed or OpenCV source; ignored", camera_id, name)


class Pacer:
    """Hands out frame numbers of a replayed sequence the way a camera would deliver them.

    Free run: frame k is due ``k / fps`` seconds after start (``fps <= 0``: as fast as asked for);
    every frame is handed out in order, or, when ``live``, only the newest due one, the ones
    jumped over being counted as skipped. Software trigger: one frame per ``trigger()``.
    """

    def __init__(self) -> None:
        self._triggers = threading.Semaphore(0)
        self._mode = TriggerMode.FREE_RUN
        self._fps = 0.0
        self._live = False
        self._t0 = 0.0
        self._next = 0

    def start(self, mode: TriggerMode, fps: float, live: bool) -> None:
        self._mode, self._fps, self._live = mode, fps, live
        self._triggers = threading.Semaphore(0)  # triggers fired before this start do not count
        self._t0 = time.monotonic()
        self._next = 0

    def trigger(self) -> None:
        self._triggers.release()

    @property
    def clock_s(self) -> float:
        """Seconds since ``start()``: the replay's "camera clock"."""
        return time.monotonic() - self._t0

    def wait(self, timeout_s: float) -> tuple[int, int] | None:
        """Block until the next frame is due: (frame number, frames skipped to get there), or None."""
        if self._mode is TriggerMode.SOFTWARE:
            if not self._triggers.acquire(timeout=timeout_s):
                return None
            return self.take_next(), 0
        skipped = 0
        if self._fps > 0:
            now = time.monotonic()
            newest_due = int((now - self._t0) * self._fps)
            if self._live and newest_due > self._next:
                skipped, self._next = newest_due - self._next, newest_due
            wait_s = self._t0 + self._next / self._fps - now
            if wait_s > timeout_s:
                time.sleep(timeout_s)
                return None
            if wait_s > 0:
                time.sleep(wait_s)
        return self.take_next(), skipped

    def take_next(self) -> int:
        """The next frame number at once, e.g. to replace an unreadable frame within one trigger."""
        number, self._next = self._next, self._next + 1
        return number


class PacedCamera(Camera):
    """A software camera: frames read when a :class:`Pacer` says the next one is due.

    The folder and OpenCV cameras pace, end and configure alike; this is that part, written once.
    A subclass opens and closes its source, calls :meth:`_start_pacing` from ``_start`` and reads
    the due frame in :meth:`_read`; a finite source sets ``_at_end`` after its last frame, after
    which ``grab()`` returns None without waiting.
    """

    trigger_modes = (TriggerMode.FREE_RUN, TriggerMode.SOFTWARE)

    def __init__(self, camera_id: str, *, backoff_s: tuple[float, float] = (0.2, 5.0)) -> None:
        super().__init__(camera_id, backoff_s=backoff_s)
        self._pacer = Pacer()
        self._at_end = False

    def _configure(self, change: Settings) -> None:
        check_software_settings(change, self.camera_id)

    def _start_pacing(self, mode: TriggerMode, fps: float, live: bool) -> None:
        self._pacer.start(mode, fps, live)
        self._at_end = False

    def _stop(self) -> None:
        pass  # nothing runs between grabs: the source is read only when grab() asks

    def _trigger(self) -> None:
        self._pacer.trigger()

    def _ended(self) -> bool:
        return self._at_end

    def _grab(self, timeout_s: float) -> Frame | None:
        if self._at_end:
            return None
        due = self._pacer.wait(timeout_s)
        if due is None:
            return None
        number, skipped = due
        return self._read(number, skipped)

    @abstractmethod
    def _read(self, number: int, skipped: int) -> Frame | None:
        """The frame numbered ``number``, ``skipped`` frames having been passed over to reach it;
        None at the end of a finite source. Raise SourceLost when the source went away."""
