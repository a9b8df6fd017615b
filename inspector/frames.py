"""What the line needs of a camera: a frame, a trigger mode, and the frame source protocol.

The core defines these and the drivers implement them (``drivers.Camera`` is a
:class:`FrameSource`), so the line runs on any source -- a Basler camera, a replayed folder, a
test's list of arrays -- without importing a driver.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class TriggerMode(enum.Enum):
    """What makes the camera take a picture."""

    FREE_RUN = "free_run"  # continuously, at the camera's own rate
    SOFTWARE = "software"  # one frame per call to Camera.trigger()
    HARDWARE = "hardware"  # one frame per edge on a trigger input line, e.g. "Line1"


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: arrays have no truth value
class Frame:
    """One picture from a camera.

    ``image`` is H×W (grayscale) or H×W×3 (RGB order), dtype uint8 or uint16. ``frame_id`` is the
    source's own frame number (camera block id, index in the replayed sequence); it increases
    within one ``start()``, jumps over skipped frames and may restart after a reconnect.
    ``camera_timestamp`` is the source's clock in the source's units (see each driver);
    ``host_timestamp`` is ``time.time()`` when the frame reached the host.
    """

    image: np.ndarray
    frame_id: int
    camera_timestamp: int | float
    host_timestamp: float
    camera_id: str


@dataclass(frozen=True)
class CameraStats:
    """Counters since ``open()``.

    grabbed: frames delivered by ``grab()``. lost: frames the source produced that could not be
    delivered (a failed or incomplete grab, an unreadable file). skipped: frames dropped on purpose
    because a newer one was ready (latest-only live view). reconnects: successful reopenings.
    """

    grabbed: int = 0
    lost: int = 0
    skipped: int = 0
    reconnects: int = 0


class FrameSource(Protocol):
    """What :class:`inspector.line.Pipeline` calls on a camera (``drivers.Camera`` is one).

    ``grab`` returns a :class:`Frame`, or ``None`` when none came within ``timeout_s`` (or the
    source is reconnecting); ``is_grabbing`` turns False when a finite source ran out.
    """

    camera_id: str

    @property
    def is_open(self) -> bool: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def is_grabbing(self) -> bool: ...

    @property
    def stats(self) -> CameraStats: ...

    def open(self) -> None: ...

    def start(self, trigger: TriggerMode = TriggerMode.FREE_RUN, *, live: bool = False, trigger_line: str = "Line1") -> None: ...

    def trigger(self) -> None: ...

    def grab(self, timeout_s: float = 1.0) -> Frame | None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
