"""The teach workflow: good samples in, an activated, calibrated model out. One API for the
``inspector teach`` command and the GUI.

A :class:`TeachSession` works on one product and keeps its files under
``<workdir>/<product>/``::

    samples/                 accepted good samples (the teaching set)
    samples/rejected/        camera frames the quality gates refused (for a person to look at)
    samples/rejections.json  every refused sample with its reasons
    samples/gates.json       the quality gates the samples were collected with
    models/                  one model file per version (never changed once registered)
    reports/<stamp>/         calibration report of each version (report.json, scores.png, roc.png)

Steps, each usable alone:

1. ``collect_from_folder`` / ``collect_from_camera`` / ``add_sample``: good samples through the
   quality gates (:mod:`calibration.quality`).
2. ``train``: quick (``QUICK_TRAIN_S`` of training, for the line) or full (the paper's 70,000) training on
   80 % of the samples; the other 20 % calibrate the thresholds (separate from the training's own
   hold-out for the map quantiles). The thresholds go into the model file's metadata and the
   history database, and the model becomes a new *candidate* version with its metrics and report.
3. ``calibrate``: recalibrate a version (other target rate, other images, defect samples): writes
   a new model file and registers it as a new candidate -- a registered file is never altered.
4. ``activate`` / ``rollback``: technician only, verified by PIN against the database, audited.
5. ``shadow``: compare a candidate with the active model on recent parts before activating.

Threads: methods run in the caller's thread; ``train`` takes a progress callback and a
``threading.Event`` to cancel (its checkpoint lets the next ``train`` resume).
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

from calibration.calibrate import (
    DEFAULT_PIXEL_FPR,
    DEFAULT_TARGET_FRR,
    CalibrationResult,
    calibrate_engine,
    defect_images,
    store_calibration,
    write_thresholds,
)
from calibration.quality import QualityGates, SampleVerdict, SampleScreen, measure, summarise
from inspector.recipes import (
    Recipe,
    VersionInfo,
    activation_history,
    active_recipe,
    ensure_product,
    get_product,
    safe_name,
    verify_model_file,
    version_of,
    versions,
)
from calibration.report import write_json_atomic, write_report
from inspector.roles import require_role
from inspector.line.rule import rule_from_calibration
from calibration.shadow import Handover, ShadowReport, handover_check, shadow_compare
from calibration.thresholds import check_resolvable, pct
from inspector.errors import CameraError, DataError, InspectorError
from inspector.history import HistoryDB, InspectionFilter, data_dir
from inspector.image_io import list_images, read_image
from inspector.method.training import (
    MIN_GOOD_IMAGES,
    PAPER_ITERATIONS,
    QUICK_MAX_ITERATIONS,
    QUICK_TRAIN_S,  # noqa: F401 -- the GUI's teach page says the quick budget
    TrainProgress,
)

log = logging.getLogger(__name__)

#: The quick mode (QUICK_TRAIN_S, QUICK_MAX_ITERATIONS) is the core's, shared with `inspector train`.
MODES = {"quick": QUICK_MAX_ITERATIONS, "full": PAPER_ITERATIONS}
#: What ``train`` makes: EfficientAD, or the instant memory-bank model (:mod:`inspector.method.instant`).
KINDS = ("efficientad", "instant")
#: Share of the good samples kept out of training to calibrate the thresholds.
CALIBRATION_FRACTION = 0.2
MIN_CALIBRATION_IMAGES = 3
REJECTIONS_JSON = "rejections.json"
GATES_JSON = "gates.json"


def default_workdir() -> Path:
    return data_dir() / "teach"


@dataclass
class CollectResult:
    """``accepted``: files added to the sample folder; ``rejected``: refused samples with reasons."""

    accepted: list[Path] = field(default_factory=list)
    rejected: list[SampleVerdict] = field(default_factory=list)
    total_samples: int = 0


@dataclass
class TeachResult:
    """A new candidate version and how it came about."""

    version_id: int
    model_path: Path
    report_path: Path
    calibration: CalibrationResult
    train_images: list[Path] = field(default_factory=list)
    calibration_images: list[Path] = field(default_factory=list)
    rejected: list[SampleVerdict] = field(default_factory=list)
    seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)  # the backend chosen here (_prepare_engine)


@dataclass
class StagedTeach:
    """A staged teach: the instant model (active at once), EfficientAD, and whether it took over."""

    instant: TeachResult
    efficientad: TeachResult | None = None
    handover: Handover | None = None


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"


class TeachSession:
    """Teaching one product. ``db`` must be upgraded (``db.upgrade()``). With ``create`` the
    product is made if it does not exist, else a missing product is a DataError.
    ``device``/``backend`` are the engine's (see :class:`Engine`)."""

    def __init__(
        self,
        db: HistoryDB,
        product: str,
        workdir: str | Path | None = None,
        *,
        gates: QualityGates | None = None,
        device: str = "auto",
        backend: str = "auto",
        create: bool = True,
    ) -> None:
        self.db = db
        self.product = product
        self.product_id = (ensure_product(db, product) if create else get_product(db, product)).id
        self.dir = Path(workdir or default_workdir()) / safe_name(product)
        # Gates given here are kept with the samples, so later steps judge them the same way.
        self.gates = gates if gates is not None else self._saved_gates()
        self.device = device
        self.backend = backend

    # --- folders -----------------------------------------------------------------------------

    @property
    def samples_dir(self) -> Path:
        return self.dir / "samples"

    @property
    def rejected_dir(self) -> Path:
        return self.samples_dir / "rejected"

    @property
    def models_dir(self) -> Path:
        return self.dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.dir / "reports"

    def _saved_gates(self) -> QualityGates:
        path = self.samples_dir / GATES_JSON
        if not path.is_file():
            return QualityGates()
        known = {f.name for f in fields(QualityGates)}
        return QualityGates(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

    def _save_gates(self) -> None:
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.samples_dir / GATES_JSON, asdict(self.gates))

    def sample_paths(self) -> list[Path]:
        return list_images(self.samples_dir) if self.samples_dir.is_dir() else []

    def rejections(self) -> list[dict[str, Any]]:
        path = self.samples_dir / REJECTIONS_JSON
        return json.loads(path.read_text()) if path.is_file() else []

    def _record_rejections(self, decisions: list[SampleVerdict], source: str) -> None:
        if not decisions:
            return
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entries = self.rejections() + [{**d.as_dict(), "source": source, "time": when} for d in decisions]
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.samples_dir / REJECTIONS_JSON, entries)

    # --- 1. collecting samples -----------------------------------------------------------------

    def _screen(self) -> SampleScreen:
        """A screen that knows the samples already in the folder (so duplicates span sessions)."""
        screen = SampleScreen(self.gates)
        for path in self.sample_paths():
            try:
                screen.remember(path.name, measure(read_image(path)))
            except InspectorError as e:
                log.warning("sample %s ignored: %s", path, e)
        return screen

    def add_sample(self, image: np.ndarray, name: str | None = None, *, screen: SampleScreen | None = None, keep_rejected: bool = True) -> SampleVerdict:
        """Screens one image (e.g. a frame the GUI grabbed) and stores it as PNG if accepted.

        Rejected images go to ``samples/rejected/`` (if ``keep_rejected``) and the rejection list.
        Pass the same ``screen`` for a run of samples to avoid re-reading the folder each time.
        """
        if screen is None:
            self._save_gates()
            screen = self._screen()
        name = name or f"sample-{_stamp()}.png"
        decision = screen.judge(name, image)
        target = (self.samples_dir if decision.accepted else self.rejected_dir) / name
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
        existing = {p.name for p in self.sample_paths()}
        result = CollectResult()
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        for path in paths:
            if limit is not None and len(result.accepted) >= limit:
                break
            name = path.name if path.name not in existing else f"{path.stem}-{_stamp()}{path.suffix}"
            decision = screen.judge_file(path, name)
            if decision.accepted:
                target = self.samples_dir / name
                shutil.copyfile(path, target)
                existing.add(name)
                result.accepted.append(target)
            else:
                result.rejected.append(SampleVerdict(str(path), decision.reasons, decision.stats))
        self._record_rejections(result.rejected, f"folder:{folder}")
        result.total_samples = len(self.sample_paths())
        return result

    def collect_from_camera(
        self,
        uri: str,
        count: int,
        *,
        max_frames: int | None = None,
        timeout_s: float = 5.0,
        interval_s: float = 0.0,
        on_sample: Callable[[SampleVerdict], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> CollectResult:
        """Grabs frames from a camera (``drivers.open_camera`` URI) until ``count`` are accepted.

        The product's camera settings are applied first. Software trigger is used when the camera
        has it (one frame per sample), else free run. Stops after ``max_frames`` frames (default
        3 x ``count``), when ``cancel`` is set, or when the camera sends nothing for ``timeout_s``.
        ``interval_s`` waits between frames (time to present the next part).
        """
        from drivers import TriggerMode, open_camera

        camera = open_camera(uri)
        settings = {k: v for k, v in (self.db.product_by_name(self.product).camera_settings or {}).items() if v is not None}
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
                    name = f"cam-{_stamp()}-{frame.frame_id}.png"
                    decision = self.add_sample(frame.image, name, screen=screen)
                    if decision.accepted:
                        result.accepted.append(self.samples_dir / name)
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
        result.total_samples = len(self.sample_paths())
        return result

    # --- 2. training ---------------------------------------------------------------------------

    def usable_samples(self) -> tuple[list[Path], list[SampleVerdict]]:
        """The sample folder screened again: (accepted paths, rejected decisions)."""
        screen = SampleScreen(self.gates)
        accepted, rejected = [], []
        for path in self.sample_paths():
            d = screen.judge_file(path, str(path))
            (accepted.append(path) if d.accepted else rejected.append(d))
        return accepted, rejected

    def split(self, paths: Sequence[Path], fraction: float = CALIBRATION_FRACTION, seed: int = 0) -> tuple[list[Path], list[Path]]:
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

    def train(
        self,
        *,
        kind: str = "efficientad",
        features: str = "lite2",
        mode: str = "quick",
        iterations: int | None = None,
        size: str = "s",
        teacher: str | Path | None = None,
        penalty_dir: Path | None = None,
        resize_mode: str = "resize",
        seed: int = 42,
        calibration_fraction: float = CALIBRATION_FRACTION,
        target_frr: float = DEFAULT_TARGET_FRR,
        confidence: float = 0.95,
        tail: str = "auto",
        pixel_fpr: float | None = DEFAULT_PIXEL_FPR,
        mm_per_px: float | None = None,
        defects: str | Path | Sequence[Path] | None = None,
        on_progress: Callable[[TrainProgress], None] | None = None,
        cancel: threading.Event | None = None,
        user: str = "system",
        note: str = "",
        show_progress: bool = False,
    ) -> TeachResult:
        """Trains on the samples, calibrates on the held-out share, prepares the engine for this
        machine (:meth:`_prepare_engine`), registers a candidate version.

        ``kind="instant"`` builds the memory-bank model (:mod:`inspector.method.instant`) instead
        of training EfficientAD: about a minute, no iterations (``mode`` and ``iterations`` do not
        apply; ``features`` says whose features it searches: ``lite2``, EfficientNet-Lite2's, or
        ``pdn``, the shipped teacher's). Both kinds use the same samples, split and calibration.

        Everything that can be checked before training is (sample count, the target rate's
        feasibility, the defect folder), so a bad request fails in seconds, not after training.
        If calibration fails after training, the trained model is still registered (without
        thresholds) and the error says which version to calibrate.
        """
        from inspector.model_file import save_model
        from inspector.method.training import mode_config, train

        if mode not in MODES:
            raise InspectorError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if kind not in KINDS:
            raise InspectorError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        t0 = time.perf_counter()
        if not self.sample_paths():
            raise DataError(f"{self.samples_dir}: no samples; collect good samples first")
        samples, rejected = self.usable_samples()
        try:
            train_paths, cal_paths = self.split(samples, calibration_fraction, seed)
        except DataError as e:
            raise DataError(f"{self.samples_dir}: {e} ({summarise(rejected)})") from None
        try:
            check_resolvable(len(cal_paths), target_frr, tail)
        except DataError as e:
            raise DataError(f"{e} (calibration uses {pct(calibration_fraction)} of the {len(samples)} samples)") from None
        defect_paths = self._defects(defects)
        if rejected:
            log.warning("samples left out of training: %s", summarise(rejected))

        self.models_dir.mkdir(parents=True, exist_ok=True)
        stamp = _stamp()
        model_path = self.models_dir / f"{safe_name(self.product)}-{stamp}.safetensors"
        if kind == "instant":
            from inspector.method.instant_build import InstantConfig, build_instant

            trained = build_instant(train_paths, InstantConfig(size=size, seed=seed, resize_mode=resize_mode, features=features),
                                    teacher=teacher, device=self.device, show_progress=show_progress)
            mode, how = "instant", "instant model"
        else:
            # The recipe follows the budget: the quick mode trains the short recipe, full the paper's.
            config = mode_config(mode, iterations, size=size, seed=seed, resize_mode=resize_mode)
            trained = train(
                train_paths, config, teacher=teacher, penalty_dir=penalty_dir, device=self.device,
                checkpoint=self.models_dir / "training.ckpt", on_progress=on_progress, cancel=cancel,
                show_progress=show_progress,
            )
            how = f"{mode} teach, {trained.metadata['iterations']} iterations of the {config.recipe} recipe"
        meta = {
            **trained.metadata,
            "product": self.product,
            "teach_mode": mode,
            "calibration_images": [p.name for p in cal_paths],
            # Where known defects are, the accuracy gate of reduced precision checks AUROC on them too.
            **({"defect_images": [str(p.resolve()) for p in defect_paths]} if defect_paths else {}),
        }
        save_model(model_path, trained.model, meta)
        train_s = time.perf_counter() - t0
        metrics = {
            "mode": mode,
            "kind": kind,
            "iterations": trained.metadata.get("iterations"),  # what a time budget fitted; None for instant
            "train_images": len(train_paths),
            "calibration_images": len(cal_paths),
            "final_loss": trained.metadata.get("final_loss"),
            "teacher": trained.metadata.get("teacher"),
            "train_seconds": round(train_s, 1),
        }
        version_id, report_path, result, engine = self._calibrate_and_register(
            model_path, cal_paths, defect_paths, metrics, how, stamp, user=user, note=note, show_progress=show_progress,
            calibration=dict(target_frr=target_frr, confidence=confidence, tail=tail, pixel_fpr=pixel_fpr, mm_per_px=mm_per_px),
        )
        return TeachResult(version_id, model_path, report_path, result, train_paths, cal_paths, rejected, time.perf_counter() - t0, engine)

    def _calibrate_and_register(
        self, model_path: Path, cal_paths: list[Path], defect_paths: list[Path] | None, metrics: dict[str, Any], how: str,
        stamp: str, *, user: str, note: str, show_progress: bool, calibration: dict[str, Any],
    ) -> tuple[int, Path, CalibrationResult, dict[str, Any]]:
        """A new model file calibrated on its held-out good images, its engine prepared, and
        registered as a candidate: (version id, report, calibration, engine). Should calibration
        fail, the model is still registered, uncalibrated, and the error names the version."""
        from inspector.engine import Engine

        # Thresholds are set in fp32, the precision the accuracy gate compares reduced ones with;
        # the CPU's automatic choice is _prepare_engine's, once they exist (choosing here as well
        # would measure every backend twice, the first time for a file about to change).
        try:
            engine = Engine(model_path, device=self.device, backend="eager" if self._chooses_cpu_backend() else self.backend)
            result = calibrate_engine(engine, cal_paths, defect_paths, show_progress=show_progress, **calibration)
        except InspectorError as e:
            version_id = self.db.add_model_version(self.product_id, model_path, metrics=metrics, note=f"{how}, NOT calibrated")
            raise type(e)(
                f"{e} -- the trained model is kept as candidate version {version_id} ({model_path}); "
                f"calibrate it with `inspector teach calibrate --version {version_id}`"
            ) from None
        write_thresholds(model_path, result)  # not registered yet, so rewriting in place is safe
        metrics = {**metrics, **self._prepare_engine(model_path)}
        report_path = write_report(self.reports_dir / stamp, result, extra={"product": self.product, "metrics": metrics})
        version_id = self._register(model_path, result, metrics, report_path, user, note or how)
        return version_id, report_path, result, metrics.get("engine", {})

    def _chooses_cpu_backend(self) -> bool:
        """Whether the engine picks among CPU backends by measuring them (``backend="auto"`` on a CPU)."""
        from inspector.devices import pick_device

        return self.backend == "auto" and pick_device(self.device).type == "cpu"

    def _prepare_engine(self, model_path: Path) -> dict[str, Any]:
        """Measures, gates and builds the CPU backends of the finished model file now, while the
        technician waits anyway, so that the line's first start with it reuses the choice and the
        int8 builds instead of spending minutes on them (:mod:`inspector.backend_cache`). Only for
        the CPU's automatic choice; a failure here is logged, never fails the teach."""
        from inspector.engine import Engine

        if not self._chooses_cpu_backend():
            return {}
        t = time.perf_counter()
        try:
            engine = Engine(model_path, device=self.device, backend="auto", warmup=False)
        except Exception as e:  # noqa: BLE001 -- the line measures again at its start
            log.warning("the engine was not prepared for %s (the line's first start measures instead): %s", model_path.name, e)
            return {"engine": {"prepared": False, "error": str(e)}}
        seconds = round(time.perf_counter() - t, 1)
        log.info("engine prepared for %s in %.0f s: %s", model_path.name, seconds, engine.backend_reason)
        return {"engine": {"prepared": True, "backend": engine.backend, "reason": engine.backend_reason, "seconds": seconds}}

    def _defects(self, defects: str | Path | Sequence[Path] | None) -> list[Path] | None:
        if defects is None:
            return None
        if isinstance(defects, (str, Path)):
            return defect_images(defects)
        return [Path(p) for p in defects]

    def _register(self, model_path: Path, result: CalibrationResult, metrics: dict[str, Any], report_path: Path, user: str, note: str) -> int:
        metrics = {**metrics, **_calibration_metrics(result)}
        version_id = self.db.add_model_version(self.product_id, model_path, metrics=metrics, report_path=str(report_path), note=note)
        role = dict(self.db.list_users()).get(user, "system")
        store_calibration(self.db, version_id, result, user=user, role=role, report_path=report_path)
        return version_id

    # --- 3. recalibrating -----------------------------------------------------------------------

    def calibrate(
        self,
        version_id: int,
        *,
        good: str | Path | Sequence[Path] | None = None,
        defects: str | Path | Sequence[Path] | None = None,
        target_frr: float = DEFAULT_TARGET_FRR,
        confidence: float = 0.95,
        tail: str = "auto",
        pixel_fpr: float | None = DEFAULT_PIXEL_FPR,
        mm_per_px: float | None = None,
        user: str = "system",
        show_progress: bool = False,
    ) -> TeachResult:
        """Calibrates a version again and registers the result as a new candidate version.

        ``good`` defaults to the calibration images recorded in the model file (still in the
        sample folder). The old version and its file stay as they were.
        """
        from inspector.engine import Engine

        t0 = time.perf_counter()
        version = version_of(self.db, self.product, version_id)
        verify_model_file(version.path, version.sha256)
        good_paths = self._calibration_images(version, good)
        check_resolvable(len(good_paths), target_frr, tail)
        defect_paths = self._defects(defects)
        engine = Engine(version.path, device=self.device, backend=self.backend)
        result = calibrate_engine(
            engine, good_paths, defect_paths, target_frr=target_frr, confidence=confidence,
            tail=tail, pixel_fpr=pixel_fpr, mm_per_px=mm_per_px, show_progress=show_progress,
        )
        stamp = _stamp()
        out = self.models_dir / f"{version.path.stem.split('-cal')[0]}-cal{stamp}.safetensors"
        report_path = write_report(self.reports_dir / stamp, result, extra={"product": self.product, "recalibrated_from": version_id})
        write_thresholds(version.path, result, out=out)
        metrics = {k: v for k, v in version.metrics.items() if k in ("mode", "kind", "iterations", "train_images", "final_loss", "teacher")}
        new_id = self._register(out, result, metrics, report_path, user, f"recalibration of version {version_id}")
        return TeachResult(new_id, out, report_path, result, [], list(good_paths), [], time.perf_counter() - t0)

    def _calibration_images(self, version: VersionInfo, good: str | Path | Sequence[Path] | None) -> list[Path]:
        if good is not None:
            return list_images(good) if isinstance(good, (str, Path)) else [Path(p) for p in good]
        from inspector.model_file import load_model_tensors

        _, meta = load_model_tensors(version.path)
        names = meta.get("calibration_images")
        if not names:
            raise DataError(f"version {version.id}: its model file names no calibration images; give good images held out from training")
        paths = [self.samples_dir / n for n in names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"version {version.id}: {len(missing)} of its calibration images are gone from {self.samples_dir} (e.g. {missing[0]}); give good images held out from training")
        return paths

    # --- 4. activation ---------------------------------------------------------------------------

    def activate(self, version_id: int, *, user: str, pin: str) -> None:
        """Makes a calibrated version the product's active model (technician only; audited)."""
        target = f"product:{self.product_id}"
        role = require_role(self.db, user, pin, "activate", target)
        self._check_usable(version_id)
        self.db.set_active_model(self.product_id, version_id, user=user, role=role)

    def rollback(self, *, user: str, pin: str) -> int:
        """Re-activates the version that was active before the current one; returns its id.

        "Before" is read from the audit trail, so a second rollback undoes the first.
        """
        target = f"product:{self.product_id}"
        role = require_role(self.db, user, pin, "rollback", target)
        current = self.db.product_by_name(self.product).active_model_version_id
        if current is None:
            raise DataError(f"product {self.product!r} has no active model to roll back from")
        previous = None
        for event in activation_history(self.db, self.product_id):
            if (event.after or {}).get("active_model_version_id") == current:
                previous = (event.before or {}).get("active_model_version_id")
                break
        if previous is None:
            raise DataError(f"product {self.product!r}: no model was active before version {current}; nothing to roll back to")
        self._check_usable(previous)
        self.db.set_active_model(self.product_id, previous, user=user, role=role)
        self.db.record_audit(user, role, "rollback", target, {"active_model_version_id": current}, {"active_model_version_id": previous})
        return previous

    def _check_usable(self, version_id: int) -> VersionInfo:
        version = version_of(self.db, self.product, version_id)
        if version.calibration is None:
            raise DataError(f"version {version_id} has no calibration; calibrate it before activating")
        verify_model_file(version.path, version.sha256)
        return version

    # --- 5. shadow mode, recipe, status ----------------------------------------------------------

    def shadow(self, candidate_version_id: int, images: str | Path | Sequence[Path] | None = None, *, recent: int = 50) -> ShadowReport:
        """Compares a candidate with the active model on ``images`` (a folder or paths), or on
        the stored images of the product's ``recent`` latest inspections."""
        from inspector.engine import Engine

        recipe = self.recipe()
        candidate = self._check_usable(candidate_version_id)
        if images is None:
            rows = self.db.query_inspections(InspectionFilter(product_id=self.product_id), limit=recent)
            paths = [Path(r.image_path) for r in rows if r.image_exists]
            if not paths:
                raise DataError(f"product {self.product!r}: no stored inspection images to compare on; give a folder of images")
        elif isinstance(images, (str, Path)):
            paths = list_images(images)
            if not paths:
                raise DataError(f"{images}: no images found")
        else:
            paths = [Path(p) for p in images]
        active_engine = Engine(recipe.model_path, device=self.device, backend=self.backend)
        candidate_engine = Engine(candidate.path, device=self.device, backend=self.backend)
        return shadow_compare(candidate_engine, rule_from_calibration(candidate.calibration), active_engine, recipe.rule, paths)

    def handover(self, candidate_version_id: int, *, user: str, pin: str, defects: str | Path | Sequence[Path] | None = None) -> Handover:
        """Activates the candidate only if it is at least as good as the active model on the
        candidate's held-out calibration images, synthetic defects made from them and ``defects``
        (:func:`calibration.shadow.handover_check`). Technician only; the check is audited
        whichever way it goes."""
        from inspector.engine import Engine

        target = f"product:{self.product_id}"
        role = require_role(self.db, user, pin, "activate", target)  # before minutes of scoring
        recipe = self.recipe()
        candidate = self._check_usable(candidate_version_id)
        good = self._calibration_images(candidate, None)
        check = handover_check(
            Engine(candidate.path, device=self.device, backend=self.backend), rule_from_calibration(candidate.calibration),
            Engine(recipe.model_path, device=self.device, backend=self.backend), recipe.rule, good, self._defects(defects),
        )
        self.db.record_audit(user, role, "handover_check", f"model_version:{candidate_version_id}",
                             {"active_model_version_id": recipe.model_version_id},
                             {k: v for k, v in check.as_dict().items() if k != "shadow"})
        if check.switch:
            self.activate(candidate_version_id, user=user, pin=pin)
        return check

    def teach_staged(
        self,
        *,
        user: str,
        pin: str,
        on_stage: Callable[[str, Any], None] | None = None,
        on_progress: Callable[[TrainProgress], None] | None = None,
        cancel: threading.Event | None = None,
        mode: str = "quick",
        defects: str | Path | Sequence[Path] | None = None,
        **options: Any,
    ) -> StagedTeach:
        """The technician's teach: the instant model first, activated as soon as it is calibrated
        (about a minute), then EfficientAD trained (``mode``) on the same samples, which takes over
        only when :meth:`handover` finds it at least as good. ``on_stage(name, result)`` is called
        with ``("instant", TeachResult)``, ``("efficientad", TeachResult)`` and ``("handover",
        Handover)`` as each step ends; ``options`` go to :meth:`train` (target rate, size, seed ...).
        A cancelled EfficientAD training leaves the instant model active."""
        stage = on_stage or (lambda name, result: None)
        instant = self.train(kind="instant", defects=defects, user=user, **options)
        self.activate(instant.version_id, user=user, pin=pin)
        stage("instant", instant)
        staged = StagedTeach(instant)
        staged.efficientad = self.train(kind="efficientad", mode=mode, defects=defects, on_progress=on_progress,
                                        cancel=cancel, user=user, **options)
        stage("efficientad", staged.efficientad)
        staged.handover = self.handover(staged.efficientad.version_id, user=user, pin=pin, defects=defects)
        stage("handover", staged.handover)
        return staged

    def recipe(self) -> Recipe:
        """The product's active model, thresholds and camera settings."""
        return active_recipe(self.db, self.product)

    def versions(self) -> list[VersionInfo]:
        return versions(self.db, self.product)

    def status(self) -> dict[str, Any]:
        """A JSON-serialisable summary: samples, versions with thresholds, the active one."""
        product = self.db.product_by_name(self.product)
        out: dict[str, Any] = {
            "product": self.product,
            "workdir": str(self.dir),
            "samples": len(self.sample_paths()),
            "rejected_samples": len(self.rejections()),
            "camera_settings": dict(product.camera_settings or {}),
            "active_version": product.active_model_version_id,
            "versions": [],
        }
        for v in self.versions():
            c = v.calibration
            out["versions"].append({
                "id": v.id,
                "status": v.status,
                "created": v.created.isoformat(),
                "path": str(v.path),
                "note": v.note,
                "threshold": c.image_threshold if c else None,
                "target_frr": c.target_frr if c else None,
                "expected_frr": c.expected_frr if c else None,
                "report": v.report_path,
                "metrics": v.metrics,
            })
        return out


def _calibration_metrics(result: CalibrationResult) -> dict[str, Any]:
    im = result.image
    out: dict[str, Any] = {
        "threshold": im.threshold,
        "target_frr": im.target_frr,
        "expected_frr": im.expected_frr,
        "frr_ci": [im.frr_ci_low, im.frr_ci_high],
        "threshold_method": im.method,
    }
    if result.defects is not None:
        out.update(auroc=result.defects.auroc, escape_rate=result.defects.escape_rate, f1_threshold=result.defects.f1_threshold)
    return out


def _write_png(path: Path, image: np.ndarray) -> None:
    """Writes an RGB or grey uint8/uint16 frame losslessly as PNG, atomically."""
    from inspector.model_file import atomic_write

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise InspectorError(f"could not encode {path.name} as PNG")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))
