"""A camera that replays a folder of images: for development, demos and tests without hardware."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from drivers.base import Frame, PacedCamera, SourceLost, TriggerMode, apply_software_settings, to_rgb
from inspector.errors import CameraError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class FolderCamera(PacedCamera):
    """Replays the images of a folder, in file-name order, as if a camera took them.

    Free run delivers ``fps`` frames per second (``fps=0``: one whenever ``grab()`` asks); software
    trigger delivers one image per ``trigger()``. After the last image the replay starts over when
    ``loop`` is set, otherwise it ends (``is_grabbing`` turns False). Files that cannot be read are
    skipped, counted as lost and logged. If the folder itself disappears the camera counts as
    disconnected and is reopened (replay from the first image) once the folder is back. Each
    ``start()`` replays from the first image.

    Images keep their depth and channels (uint8 or uint16, gray or RGB). ``frame_id`` is the
    position in the replay (it keeps counting across loops); ``camera_timestamp`` is seconds since
    ``start()``. The file list is read at ``open()`` and after a reconnect.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        fps: float = 10.0,
        loop: bool = False,
        camera_id: str | None = None,
        backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.folder = Path(folder).expanduser()
        super().__init__(camera_id or f"folder://{self.folder}", backoff_s=backoff_s)
        if not (math.isfinite(fps) and fps >= 0):
            raise CameraError(f"{self.camera_id}: fps must be a number >= 0, got {fps!r}")
        self.fps = fps
        self.loop = loop
        self._files: list[Path] = []

    def _open(self) -> None:
        if not self.folder.is_dir():
            what = "is not a folder" if self.folder.exists() else "does not exist"
            raise CameraError(f"{self.camera_id}: image folder {self.folder} {what}")
        files = sorted(
            (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=lambda p: p.name,
        )
        if not files:
            raise CameraError(f"{self.camera_id}: no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self._files = files

    def _close(self) -> None:
        self._files = []

    def _start(self, mode: TriggerMode, live: bool, trigger_line: str) -> None:
        self._start_pacing(mode, self.fps, live)

    def _read(self, number: int, skipped: int) -> Frame | None:
        self._skipped += skipped
        # At most one pass over the files: a folder of nothing but unreadable files must not spin.
        for _ in range(len(self._files)):
            if number >= len(self._files) and not self.loop:
                self._at_end = True
                return None
            path = self._files[number % len(self._files)]
            image = _decode(path)
            if image is not None and image.dtype in (np.uint8, np.uint16):
                image = apply_software_settings(to_rgb(image), self._settings, self.camera_id)
                return self._frame(image, number, self._pacer.clock_s)
            if not self.folder.is_dir():
                raise SourceLost(f"image folder {self.folder} is gone")
            self._lost += 1
            log.warning("%s: skipping unreadable image %s", self.camera_id, path)
            number = self._pacer.take_next()
        raise CameraError(f"{self.camera_id}: none of the {len(self._files)} images in {self.folder} can be read")


def _decode(path: Path) -> np.ndarray | None:
    """The image in ``path`` as stored, None where it cannot be read whole. Decoded from its bytes,
    as every command reads images (``inspector.image_io.read_image``): ``cv2.imread`` takes a JPEG
    cut short (a copy the camera's folder got half of) and fills its missing rows with grey, a
    frame the line then judged as if it were the part."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
