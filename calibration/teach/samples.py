"""A product's good samples and their quality gates: add, collect from a folder or a camera,
remove, the rejections, and the samples a training may use (screened again, split).

Owns ``samples/`` of :class:`~calibration.teach.folders.TeachFolders`: the sample files, the
gates they were collected with (``gates.json``) and every refusal (``rejections.json``). No role
checks here: the audited actions are :class:`~calibration.teach.workflow.TeachSession`'s.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.quality import QualityGates, SampleScreen, SampleVerdict, measure
from calibration.report import write_json_atomic
from calibration.teach.folders import TeachFolders, stamp
from calibration.thresholds import pct
from inspector.data_folder import make_folders
from inspector.errors import CameraError, DataError, InspectorError
from inspector.image_io import list_images, read_image
from inspector.method.training import MIN_GOOD_IMAGES

log = logging.getLogger(__name__)

#: Share of the good samples kept out of training to calibrate the thresholds.
CALIBRATION_FRACTION = 0.2
MIN_CALIBRATION_IMAGES = 3
REJECTIONS_JSON = "rejections.json"
GATES_JSON = "gates.json"


@dataclass
class CollectResult:
    """``accepted``: files added to the sample folder; ``rejected``: refused samples with reasons."""

    accepted: list[Path] = field(default_factory=list)
    rejected: list[SampleVerdict] = field(default_factory=list)
    total_samples: int = 0


class Samples:
    """The sample folder of one product. Gates given here are kept with the samples (``gates.json``),
    so later steps judge them the same way; without, the saved ones (or the defaults) apply."""

    def __init__(self, folders: TeachFolders, gates: QualityGates | None = None) -> None:
        self.folders = folders
        self.gates = gates if gates is not None else self._saved_gates()

    @property
    def dir(self) -> Path:
        return self.folders.samples

    def paths(self) -> list[Path]:
        return list_images(self.dir) if self.dir.is_dir() else []

    def rejections(self) -> list[dict[str, Any]]:
        path = self.dir / REJECTIONS_JSON
        return json.loads(path.read_text()) if path.is_file() else []

    def _saved_gates(self) -> QualityGates:
        path = self.dir / GATES_JSON
        if not path.is_file():
            return QualityGates()
        known = {f.name for f in fields(QualityGates)}
        return QualityGates(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

    def _save_gates(self) -> None:
        make_folders(self.dir)
        write_json_atomic(self.dir / GATES_JSON, asdict(self.gates))

    def _record_rejections(self, decisions: list[SampleVerdict], source: str) -> None:
        if not decisions:
            return
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entries = self.rejections() + [{**d.as_dict(), "source": source, "time": when} for d in decisions]
        make_folders(self.dir)
        write_json_atomic(self.dir / REJECTIONS_JSON, entries)

    def _screen(self) -> SampleScreen:
        """A screen that knows the samples already in the folder (so duplicates span sessions)."""
        screen = SampleScreen(self.gates)
        for path in self.paths():
            try:
                screen.remember(path.name, measure(read_image(path)))
            except InspectorError as e:
                log.warning("sample %s ignored: %s", path, e)
        return screen

    # --- adding --------------------------------------------------------------------------------

    def add(self, image: np.ndarray, name: str | None = None, *, screen: SampleScreen | None = None,
            keep_rejected: bool = True) -> SampleVerdict:
        """Screens one image (e.g. a frame the GUI grabbed) and stores it as PNG if accepted.

        Rejected images go to ``samples/rejected/`` (if ``keep_rejected``) and the rejection list.
        Pass the same ``screen`` for a run of samples to avoid re-reading the folder each time.
        """
        if screen is None:
            self._save_gates()
            screen = self._screen()
        name = name or f"sample-{stamp()}.png"
        decision = screen.judge(name, image)
        target = (self.dir if decision.accepted else self.folders.rejected) / name
        if decision.accepted or keep_rejected:
            _write_png(target, image)
        if not decision.accepted:
            self._record_rejections([decision], "frame")
        return decision

    def collect_from_folder(self, folder: str | Path, limit: int | None = None) -> CollectResult:
        """Copies the images of ``folder`` that pass the gates into the sample folder (bytes
        unchanged); returns what was accepted and what was refused, with reasons."""
        paths = list_images(folder)
        if not paths:
            raise DataError(f"{folder}: no images found")
        self._save_gates()
        screen = self._screen()
        existing = {p.name for p in self.paths()}
        result = CollectResult()
        make_folders(self.dir)
        for path in paths:
            if limit is not None and len(result.accepted) >= limit:
                break
            name = path.name if path.name not in existing else f"{path.stem}-{stamp()}{path.suffix}"
            decision = screen.judge_file(path, name)
            if decision.accepted:
                target = self.dir / name
                shutil.copyfile(path, target)
                existing.add(name)
                result.accepted.append(target)
            else:
                result.rejected.append(SampleVerdict(str(path), decision.reasons, decision.stats))
        self._record_rejections(result.rejected, f"folder:{folder}")
        result.total_samples = len(self.paths())
        return result

    def collect_from_camera(
        self,
        uri: str,
        count: int,
        *,
        camera_settings: dict[str, Any] | None = None,
        max_frames: int | None = None,
        timeout_s: float = 5.0,
        interval_s: float = 0.0,
        on_sample: Callable[[SampleVerdict], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> CollectResult:
        """Grabs frames from a camera (``drivers.open_camera`` URI) until ``count`` are accepted.

        ``camera_settings`` (the product's) are applied first. Software trigger is used when the
        camera has it (one frame per sample), else free run. Stops after ``max_frames`` frames
        (default 3 x ``count``), when ``cancel`` is set, or when the camera sends nothing for
        ``timeout_s``. ``interval_s`` waits between frames (time to present the next part).
        """
        from drivers import TriggerMode, open_camera

        camera = open_camera(uri)
        settings = {k: v for k, v in (camera_settings or {}).items() if v is not None}
        if settings.get("roi") is not None:
            settings["roi"] = tuple(int(v) for v in settings["roi"])
        self._save_gates()
        screen = self._screen()
        result = CollectResult()
        max_frames = max_frames or 3 * count
        frames = 0
        with camera:
            if settings:
                camera.configure(**settings)
            software = TriggerMode.SOFTWARE in camera.trigger_modes
            camera.start(TriggerMode.SOFTWARE if software else TriggerMode.FREE_RUN)
            try:
                while len(result.accepted) < count and frames < max_frames:
                    if cancel is not None and cancel.is_set():
                        break
                    if software:
                        camera.trigger()
                    frame = camera.grab(timeout_s)
                    if frame is None:
                        if not camera.is_grabbing or frames == 0:
                            break
                        raise CameraError(f"{uri}: no frame within {timeout_s:g} s")
                    frames += 1
                    name = f"cam-{stamp()}-{frame.frame_id}.png"
                    decision = self.add(frame.image, name, screen=screen)
                    if decision.accepted:
                        result.accepted.append(self.dir / name)
                    else:
                        result.rejected.append(decision)
                    if on_sample is not None:
                        on_sample(decision)
                    if interval_s > 0 and len(result.accepted) < count:
                        time.sleep(interval_s)
            finally:
                camera.stop()
        if frames == 0:
            raise CameraError(f"{uri}: the camera delivered no frame")
        result.total_samples = len(self.paths())
        return result

    # --- removing ------------------------------------------------------------------------------

    def remove(self, paths: Sequence[str | Path]) -> list[str]:
        """Deletes the given sample files; returns their names. DataError, before anything is
        deleted, for a path outside the sample folder."""
        folder = self.dir.resolve()
        files = [Path(p).resolve() for p in paths]
        strangers = [p for p in files if p.parent != folder]
        if strangers:
            raise DataError(f"{strangers[0]} is not one of the samples in {self.dir}")
        for p in files:
            p.unlink(missing_ok=True)
        return [p.name for p in files]

    # --- what a training uses ------------------------------------------------------------------

    def usable(self) -> tuple[list[Path], list[SampleVerdict]]:
        """The sample folder screened again: (accepted paths, rejected decisions)."""
        screen = SampleScreen(self.gates)
        accepted, rejected = [], []
        for path in self.paths():
            d = screen.judge_file(path, str(path))
            (accepted.append(path) if d.accepted else rejected.append(d))
        return accepted, rejected


def split(paths: Sequence[Path], fraction: float = CALIBRATION_FRACTION, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Deterministic (train, calibration) split; DataError when either part would be too small."""
    n = len(paths)
    n_cal = max(MIN_CALIBRATION_IMAGES, math.ceil(fraction * n))
    if n - n_cal < MIN_GOOD_IMAGES:
        raise DataError(
            f"{n} usable good samples; teaching needs at least {MIN_GOOD_IMAGES + max(MIN_CALIBRATION_IMAGES, 1)}: "
            f"{MIN_GOOD_IMAGES} or more to train and {pct(fraction)} (at least {MIN_CALIBRATION_IMAGES}) to calibrate"
        )
    order = np.random.default_rng(seed).permutation(n)
    cal = sorted(int(i) for i in order[:n_cal])
    train = sorted(int(i) for i in order[n_cal:])
    return [paths[i] for i in train], [paths[i] for i in cal]


def _write_png(path: Path, image: np.ndarray) -> None:
    """Writes an RGB or grey uint8/uint16 frame losslessly as PNG, atomically."""
    from inspector.model_file import atomic_write

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise InspectorError(f"could not encode {path.name} as PNG")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))
