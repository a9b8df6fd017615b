"""A camera on cv2.VideoCapture: USB/V4L2 devices, video files and network streams."""

from __future__ import annotations

from pathlib import Path

import cv2

from drivers.base import Frame, PacedCamera, SourceLost, TriggerMode, apply_software_settings, to_rgb
from inspector.errors import CameraError

STREAM_TIMEOUT_MS = 5000


class OpenCVCamera(PacedCamera):
    """A device index, a video file or a stream URL (rtsp://, http://...) read by OpenCV.

    Video files play from the start at each ``start()``, at their own frame rate
    (``realtime=True``) or as fast as ``grab()`` asks, and at the end either stop (``is_grabbing``
    turns False) or start over (``loop``). Devices and streams deliver frames as they come; with
    ``live=True`` a device keeps only its newest frame where the backend allows it (V4L2 does). A failed read from a device or stream, or a
    video file that has vanished, means the source is gone: it is reopened in the background.
    Software trigger: each ``trigger()`` releases the next frame the source hands over. A read
    from a device or stream waits for its next frame, whatever ``grab()``'s timeout (a stream gives
    up after STREAM_TIMEOUT_MS).

    Images are RGB (converted from OpenCV's BGR), uint8. ``frame_id`` counts frames since
    ``start()`` (in a file: its frame index, counting on across loops); ``camera_timestamp`` is
    the source's position in seconds (CAP_PROP_POS_MSEC / 1000).
    """

    def __init__(
        self,
        source: int | str | Path,
        *,
        realtime: bool = True,
        loop: bool = False,
        camera_id: str | None = None,
        backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.is_file = not isinstance(source, int) and "://" not in str(source)
        self.is_stream = not isinstance(source, int) and not self.is_file
        self.source: int | str = source if isinstance(source, int) else str(source)
        if self.is_file:
            self.source = str(Path(source).expanduser())
        super().__init__(camera_id or f"opencv:{self.source}", backoff_s=backoff_s)
        self.realtime = realtime
        self.loop = loop
        self._capture: cv2.VideoCapture | None = None

    def _open(self) -> None:
        if self.is_file and not Path(self.source).is_file():
            raise CameraError(f"{self.camera_id}: video file {self.source} does not exist")
        # Bounded waits for network streams, so that stop() and close() are never held up long.
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        capture = cv2.VideoCapture(self.source, cv2.CAP_ANY, timeouts if self.is_stream else [])
        if not capture.isOpened():
            capture.release()
            if self.is_file:
                raise CameraError(f"{self.camera_id}: OpenCV cannot read video file {self.source}")
            if isinstance(self.source, int):
                raise CameraError(f"{self.camera_id}: cannot open video device {self.source} (absent or busy)")
            raise CameraError(f"{self.camera_id}: cannot open video stream {self.source}")
        self._capture = capture

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _start(self, mode: TriggerMode, live: bool, trigger_line: str) -> None:
        fps = 0.0
        if self.is_file:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # each start() plays the file from its start
        if self.is_file and self.realtime:
            fps = self._capture.get(cv2.CAP_PROP_FPS)
            fps = fps if fps > 0 else 25.0  # some containers carry no rate; play them at a usual one
        if live and not self.is_file:
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # best effort: not every backend honours it
        self._start_pacing(mode, fps, live)

    def _read(self, number: int, skipped: int) -> Frame | None:
        # In a file, frames behind schedule are passed over without decoding them.
        for _ in range(skipped):
            if not self._capture.grab() and not self._rewound():
                return None
        self._skipped += skipped
        ok, image = self._capture.read()
        if not ok:
            if not self._rewound():
                return None
            ok, image = self._capture.read()
            if not ok:
                raise CameraError(f"{self.camera_id}: video file {self.source} has no readable frame")
        image = apply_software_settings(to_rgb(image), self._settings, self.camera_id)
        return self._frame(image, number, self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)

    def _rewound(self) -> bool:
        """After a failed read: rewind a looping file (True), or mark its end (False).

        Raises SourceLost when the source is gone: a device or stream that stopped delivering, or
        a video file that no longer exists.
        """
        if not self.is_file:
            raise SourceLost(f"no frame from {self.source}")
        if not Path(self.source).is_file():
            raise SourceLost(f"video file {self.source} is gone")
        if self.loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return True
        self._at_end = True
        return False
