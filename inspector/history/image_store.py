"""Frames and heatmaps on disk: every reject kept, passes sampled, a byte quota, oldest out first.

Layout: ``<root>/<YYYY-MM-DD>/<HHMMSS_ffffff>_<camera>_<frame>_<PASS|FAIL>.png`` for the raw frame
and ``..._heatmap.png`` beside it (dates and times UTC), so sorting paths sorts by time. Files are
written to a temporary name, fsynced and renamed, so a reader never sees half a PNG.

Formats, and the one place each is written and read:

* the frame: a PNG of the camera's own array, gray or colour, 8 or 16 bits, lossless. Records
  carry RGB (as cameras deliver it); the PNG encoder wants BGR, so colour is converted here, on
  the way in and out, and nowhere else. :func:`read_stored_image` gives it back as RGB (:func:`decode_stored_image` from the file's bytes).
* the anomaly map: a 16-bit grey PNG of its values, 0 and 65535 standing for the map's minimum
  and maximum, which go into the inspection row (``heatmap_low``/``heatmap_high``).
  :func:`read_heatmap` gives back the values, within (high - low) / 131070 (:func:`decode_heatmap`
  from the file's bytes, as the plant database keeps them).

Heatmaps stored before history revision 0003 are 8-bit JET colour pictures over
0 .. 2 x threshold, with no value range in their row; ``ui.review_model`` still decodes those.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from inspector.data_folder import make_folders
from inspector.errors import ImageError
from inspector.inspection import InspectionResult

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: A camera's part of a file name, at most: a camera id may be a long folder path or URI, and a
#: file name longer than 255 bytes cannot be written at all.
_CAMERA_CHARS = 64


def _camera_part(camera_id: str) -> str:
    """The camera's part of an image's file name: its id with unsafe characters replaced, or for a
    long id its last characters and a digest of the whole id after a ``+`` (which no replaced id
    holds), so two long ids never share a name."""
    safe = _UNSAFE.sub("_", camera_id)
    if len(safe) <= _CAMERA_CHARS:
        return safe
    digest = hashlib.sha256(camera_id.encode("utf-8")).hexdigest()[:12]
    return f"{safe[-(_CAMERA_CHARS - 13):]}+{digest}"


class NoRoomForImages(ImageError):
    """Saving a record's images would eat into the disk's reserve for the verdicts."""


def free_bytes(folder: Path) -> int:
    """Bytes a process may still write on the file system that holds ``folder``."""
    return shutil.disk_usage(folder).free


class ImageStore:
    """Keeps inspection images under ``root`` within ``quota_bytes``.

    ``pass_sample_rate`` is the fraction of passes kept (``0.01`` keeps every 100th pass, ``1``
    keeps all, ``0`` none); sampling is deterministic, not random, so the rate holds exactly over
    any run. ``quota_bytes=None`` means no quota.

    ``reserve_bytes``: free space on the disk that images never use, because the verdicts (the
    history database and its spill journal, usually on the same disk) need it more. The quota is
    therefore the smaller of ``quota_bytes`` and what the disk has beyond the reserve: the oldest
    images go first to make room, and a record whose images still do not fit keeps its verdict
    without them (:class:`NoRoomForImages`). ``free`` measures a folder's free bytes (a test
    passes its own).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        quota_bytes: int | None = None,
        pass_sample_rate: float = 0.0,
        *,
        reserve_bytes: int = 0,
        free: Callable[[Path], int] = free_bytes,
    ) -> None:
        if not 0.0 <= pass_sample_rate <= 1.0:
            raise ValueError(f"pass_sample_rate must be within 0..1, got {pass_sample_rate}")
        if quota_bytes is not None and quota_bytes <= 0:
            raise ValueError(f"quota_bytes must be positive or None, got {quota_bytes}")
        if reserve_bytes < 0:
            raise ValueError(f"reserve_bytes must be >= 0, got {reserve_bytes}")
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.pass_sample_rate = pass_sample_rate
        self.reserve_bytes = reserve_bytes
        self._free = free
        self._lock = threading.Lock()
        self._credits: dict[str, float] = {}  # per sampled decision
        make_folders(self.root)
        self._files, self.used_bytes = self._scan()

    def _scan(self) -> tuple[deque[tuple[Path, int]], int]:
        """Existing files oldest first with their sizes; leftovers of interrupted writes removed."""
        files: deque[tuple[Path, int]] = deque()
        total = 0
        for path in sorted(self.root.glob("*/*")):
            if path.name.startswith("."):  # temporary file of a write that never finished
                path.unlink(missing_ok=True)
            elif path.suffix == ".png" and path.is_file():
                size = path.stat().st_size
                files.append((path, size))
                total += size
        return files, total

    def wants(self, decision: str) -> bool:
        """Whether a record with this decision is kept; advances the pass sampler. FAIL and
        RECHECK are always kept (someone looks at them); PASS and NO PART at the pass sample
        rate, each with a sampler of its own (an empty belt in free run must not push the
        rejects' images out of the quota)."""
        if decision not in ("PASS", "NO_PART"):
            return True
        with self._lock:
            credit = self._credits.get(decision, 0.0) + self.pass_sample_rate
            # The epsilon keeps rates like 0.1 exact despite binary rounding of the sum.
            keep = credit >= 1.0 - 1e-9
            self._credits[decision] = credit - 1.0 if keep else credit
            return keep

    def save(self, record: InspectionResult) -> InspectionResult:
        """Write the record's image and heatmap if it is kept; return the record with their
        absolute paths (``image_path``, ``heatmap_path``) and the heatmap's value range
        (``heatmap_low``, ``heatmap_high``) filled in.

        The record comes back unchanged where it carries no arrays or the sampler skipped it; a
        path stays ``None`` where the record has no such array. Raises :class:`ImageError` for
        an array that cannot be saved and ``OSError`` for a disk that refuses the write.
        """
        if (record.image is None and record.heatmap is None) or not self.wants(record.decision):
            return record
        t = record.time
        folder = self.root / t.strftime("%Y-%m-%d")
        folder.mkdir(exist_ok=True)
        camera = _camera_part(record.camera_id)
        stem = f"{t.strftime('%H%M%S_%f')}_{camera}_{record.frame_id}_{record.decision}"
        # Encode both first: an array that cannot be stored leaves no file behind.
        image_png = None if record.image is None else _frame_png(record.image)
        heatmap_png, low, high = (None, None, None) if record.heatmap is None else _heatmap_png(record.heatmap)
        self._make_room(sum(len(png) for png in (image_png, heatmap_png) if png is not None))
        written: list[tuple[Path, int]] = []
        image_path = heatmap_path = None
        try:
            if image_png is not None:
                image_path = folder / f"{stem}.png"
                written.append((image_path, self._write(image_path, image_png)))
            if heatmap_png is not None:
                heatmap_path = folder / f"{stem}_heatmap.png"
                written.append((heatmap_path, self._write(heatmap_path, heatmap_png)))
        except BaseException:
            # The heatmap refused (a full disk) after the frame was written: the record names
            # neither, and the store does not count the frame, so no quota or reserve would
            # ever delete it. Take it away.
            for path, _ in written:
                path.unlink(missing_ok=True)
            raise
        self._account(written)
        return replace(
            record,
            image_path=None if image_path is None else str(image_path.resolve()),
            heatmap_path=None if heatmap_path is None else str(heatmap_path.resolve()),
            heatmap_low=low,
            heatmap_high=high,
        )

    def _write(self, path: Path, data: bytes) -> int:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return len(data)

    def _make_room(self, needed: int) -> None:
        """Deletes the oldest images until ``needed`` more bytes leave the reserve free."""
        if not self.reserve_bytes:
            return
        with self._lock:
            free = self._free(self.root)
            while free - needed < self.reserve_bytes and self._files:
                path, size = self._files.popleft()
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not delete %s to keep the disk's reserve: %s", path, exc)
                    continue
                self.used_bytes -= size
                free += size
                _remove_if_empty(path.parent)
            if free - needed < self.reserve_bytes:
                raise NoRoomForImages(
                    f"the disk of {self.root} has {free / 1e6:.1f} MB free and keeps "
                    f"{self.reserve_bytes / 1e6:.1f} MB for the verdicts; images not kept")

    def _account(self, written: list[tuple[Path, int]]) -> None:
        """Add the new files and delete the oldest others until the store fits its quota."""
        with self._lock:
            for entry in written:
                self._files.append(entry)
                self.used_bytes += entry[1]
            if self.quota_bytes is None:
                return
            # Never delete what was just written: the row about to be stored names it.
            while self.used_bytes > self.quota_bytes and len(self._files) > len(written):
                path, size = self._files.popleft()
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not delete %s to keep the image quota: %s", path, exc)
                self.used_bytes -= size
                _remove_if_empty(path.parent)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (or already gone): both are fine


def _frame_png(image: np.ndarray) -> bytes:
    """PNG of a uint8/uint16 frame ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` RGB; depth kept."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"cannot store an image of dtype {image.dtype}; expected uint8 or uint16")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ImageError(f"cannot store an image of shape {image.shape}; expected (H, W[, 1|3])")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # the PNG encoder's channel order
    return _encode(image)


def _heatmap_png(heatmap: np.ndarray) -> tuple[bytes, float, float]:
    """16-bit grey PNG of an ``(h, w)`` anomaly map, and the values its 0 and 65535 stand for
    (the map's minimum and maximum; non-finite values are stored as 0.0)."""
    heatmap = np.squeeze(heatmap)
    if heatmap.ndim != 2:
        raise ImageError(f"cannot store a heatmap of shape {heatmap.shape}; expected (h, w)")
    values = np.nan_to_num(heatmap.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    scale = _LEVELS / (high - low) if high > low else 0.0
    levels = np.clip(np.rint((values - low) * scale), 0, _LEVELS).astype(np.uint16)
    return _encode(levels), low, high


_LEVELS = 65535


def read_stored_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A stored frame as it was recorded: (H, W) gray or (H, W, 3) RGB, uint8/uint16.
    Raises :class:`ImageError` if the file is missing or unreadable."""
    return decode_stored_image(_read(path), str(path))


def decode_stored_image(data: bytes, name: str = "the frame") -> np.ndarray:
    """:func:`read_stored_image` of a stored frame's bytes (the file's, as the plant database
    keeps them: :mod:`inspector.links.plant_images`); ``name`` says which in an error."""
    image = _decode(data, name)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim != 2:
        raise ImageError(f"{name}: not a frame of the image store (shape {image.shape})")
    return image


def read_heatmap(path: str | os.PathLike[str], low: float, high: float) -> np.ndarray:
    """The (h, w) float32 anomaly map stored at ``path`` with the value range of its row.
    Raises :class:`ImageError` if the file is missing, unreadable or not a 16-bit grey PNG (a
    legacy colour heatmap has no range in its row; see the module docstring)."""
    return decode_heatmap(_read(path), low, high, str(path))


def decode_heatmap(data: bytes, low: float, high: float, name: str = "the heatmap") -> np.ndarray:
    """:func:`read_heatmap` of a stored map's bytes (as the plant database keeps them)."""
    levels = _decode(data, name)
    if levels.ndim != 2 or levels.dtype != np.uint16:
        raise ImageError(f"{name}: not a 16-bit grey heatmap ({levels.dtype}, shape {levels.shape})")
    return (low + levels.astype(np.float64) * ((high - low) / _LEVELS)).astype(np.float32)


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _decode(data: bytes, name: str) -> np.ndarray:
    """The one PNG decoder of stored images, for a file's bytes wherever they were read from."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None:
        raise ImageError(f"{name}: not a readable PNG (corrupt, truncated or another format)")
    return image


def _encode(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ImageError(f"OpenCV could not encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()
