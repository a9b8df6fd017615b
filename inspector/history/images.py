"""Frames and heatmaps on disk: every reject kept, passes sampled, a byte quota, oldest out first.

Layout: ``<root>/<YYYY-MM-DD>/<HHMMSS_ffffff>_<camera>_<frame>_<PASS|FAIL>.png`` for the raw frame
and ``..._heatmap.png`` beside it (dates and times UTC), so sorting paths sorts by time. Files are
written to a temporary name, fsynced and renamed, so a reader never sees half a PNG.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from .records import InspectionRecord

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class ImageStore:
    """Keeps inspection images under ``root`` within ``quota_bytes``.

    ``pass_sample_rate`` is the fraction of passes kept (``0.01`` keeps every 100th pass, ``1``
    keeps all, ``0`` none); sampling is deterministic, not random, so the rate holds exactly over
    any run. ``heatmap_range`` fixes the anomaly-map values drawn as the ends of the colour map;
    ``None`` stretches each map to its own min..max (good to look at, not comparable across
    images). ``quota_bytes=None`` means no quota.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        quota_bytes: int | None = None,
        pass_sample_rate: float = 0.0,
        heatmap_range: tuple[float, float] | None = None,
    ) -> None:
        if not 0.0 <= pass_sample_rate <= 1.0:
            raise ValueError(f"pass_sample_rate must be within 0..1, got {pass_sample_rate}")
        if quota_bytes is not None and quota_bytes <= 0:
            raise ValueError(f"quota_bytes must be positive or None, got {quota_bytes}")
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.pass_sample_rate = pass_sample_rate
        self.heatmap_range = heatmap_range
        self._lock = threading.Lock()
        self._pass_credit = 0.0
        self.root.mkdir(parents=True, exist_ok=True)
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
        """Whether a record with this decision is kept; advances the pass sampler."""
        if decision != "PASS":
            return True
        with self._lock:
            self._pass_credit += self.pass_sample_rate
            # The epsilon keeps rates like 0.1 exact despite binary rounding of the sum.
            if self._pass_credit >= 1.0 - 1e-9:
                self._pass_credit -= 1.0
                return True
            return False

    def save(self, record: InspectionRecord) -> tuple[str | None, str | None]:
        """Write the record's image and heatmap if it is kept; return their absolute paths.

        A path is ``None`` where the record carries no such array or the sampler skipped it.
        Raises :class:`ImageError` for an array that cannot be saved and ``OSError`` for a disk
        that refuses the write.
        """
        if (record.image is None and record.heatmap is None) or not self.wants(record.decision):
            return None, None
        t = record.time
        folder = self.root / t.strftime("%Y-%m-%d")
        folder.mkdir(exist_ok=True)
        camera = _UNSAFE.sub("_", record.camera_id)
        stem = f"{t.strftime('%H%M%S_%f')}_{camera}_{record.frame_id}_{record.decision}"
        written: list[tuple[Path, int]] = []
        image_path = heatmap_path = None
        if record.image is not None:
            image_path = folder / f"{stem}.png"
            written.append((image_path, self._write(image_path, _raw_png(record.image))))
        if record.heatmap is not None:
            heatmap_path = folder / f"{stem}_heatmap.png"
            png = _heatmap_png(record.heatmap, self.heatmap_range)
            written.append((heatmap_path, self._write(heatmap_path, png)))
        self._account(written)
        return (
            None if image_path is None else str(image_path.resolve()),
            None if heatmap_path is None else str(heatmap_path.resolve()),
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


def _raw_png(image: np.ndarray) -> bytes:
    """PNG of a uint8/uint16 frame ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` BGR; depth kept."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"cannot store an image of dtype {image.dtype}; expected uint8 or uint16")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ImageError(f"cannot store an image of shape {image.shape}; expected (H, W[, 1|3])")
    return _encode(image)


def _heatmap_png(heatmap: np.ndarray, value_range: tuple[float, float] | None) -> bytes:
    """8-bit JET colour-mapped PNG of an ``(h, w)`` anomaly map (float, or uint8 used as is)."""
    heatmap = np.squeeze(heatmap)
    if heatmap.ndim != 2:
        raise ImageError(f"cannot store a heatmap of shape {heatmap.shape}; expected (h, w)")
    if heatmap.dtype != np.uint8:
        values = np.nan_to_num(heatmap.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = value_range if value_range is not None else (values.min(), values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        heatmap = np.clip((values - low) * scale, 0, 255).astype(np.uint8)
    return _encode(cv2.applyColorMap(heatmap, cv2.COLORMAP_JET))


def _encode(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ImageError(f"OpenCV could not encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()
