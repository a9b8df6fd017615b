"""Train, calibrate and register: the samples made into candidate model versions.

Owns ``models/`` and ``reports/`` of :class:`~calibration.teach.folders.TeachFolders` and the
model versions and calibrations a teach writes into the history database: a training on 80 % of
the usable samples calibrated on the other 20 % (:meth:`Models.train`), a version calibrated
again into a new file and version (:meth:`Models.calibrate`), a threshold set by hand
(:meth:`Models.set_threshold`). A registered model file is never altered. No role checks here:
the audited actions are :class:`~calibration.teach.workflow.TeachSession`'s, which pass the
verified :class:`~inspector.roles.Actor` on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.calibrate import (
    DEFAULT_PIXEL_FPR,
    DEFAULT_TARGET_FRR,
    CalibrationResult,
    calibrate_engine,
    defect_images,
    kept_calibration_values,
    set_recheck_band,
    store_calibration,
    write_thresholds,
)
from calibration.quality import SampleVerdict, summarise
from calibration.report import write_report
from calibration.teach.folders import TeachFolders, stamp
from calibration.teach.sample_fit import check_samples_fit
from calibration.teach.samples import CALIBRATION_FRACTION, Samples, split
from calibration.thresholds import FrrEstimate, RecheckBand, check_resolvable, frr_at, min_images_for, pct
from inspector.data_folder import make_folders
from inspector.errors import DataError, InspectorError
from inspector.framing import Framing
from inspector.framing.recipe import describe
from inspector.history import HistoryDB
from inspector.image_io import list_images
from inspector.method.efficientad import IMAGE_SIZE
from inspector.method.training import PAPER_ITERATIONS, QUICK_MAX_ITERATIONS, TrainProgress
from inspector.recipes import VersionInfo, safe_name, verify_model_file, version_of
from inspector.roles import Actor

log = logging.getLogger(__name__)

#: The quick mode (QUICK_TRAIN_S, QUICK_MAX_ITERATIONS) is the core's, shared with `inspector train`.
MODES = {"quick": QUICK_MAX_ITERATIONS, "full": PAPER_ITERATIONS}
#: What ``train`` makes: EfficientAD, or the instant memory-bank model (:mod:`inspector.method.instant`).
KINDS = ("efficientad", "instant")


def check_iterations(iterations: int | None) -> None:
    """Refuses an iteration count below 1: the model would be registered untrained, calibrated
    and ready to activate. None means the mode's own count."""
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1):
        raise InspectorError(f"iterations must be a whole number of at least 1, not {iterations!r}")


def check_recheck_rate(rate: float | None, target_frr: float) -> None:
    """Refuses a recheck rate that is not a share of good parts (0 .. 100 %, exclusive)."""
    if rate is None:
        return
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise InspectorError(f"the recheck rate must be a share of good parts between 0 and 100 %, not {rate!r}")


def check_calibration_images(n_cal: int, n_usable: int, target_frr: float, tail: str, recheck_rate: float | None,
                             fraction: float) -> None:
    """DataError where ``n_cal`` calibration images (``fraction`` of ``n_usable`` samples) cannot
    resolve the target false-reject rate, or the recheck band's rate, saying how many it needs."""
    share = f"calibration uses {pct(fraction)} of the {n_usable} samples"
    try:
        check_resolvable(n_cal, target_frr, tail)
    except DataError as e:
        raise DataError(f"{e} ({share})") from None
    if recheck_rate is None or n_cal >= min_images_for(recheck_rate):
        return
    need = min_images_for(recheck_rate)
    raise DataError(f"{n_cal} calibration images cannot resolve a recheck rate of {pct(recheck_rate)}: it needs at least "
                    f"{need} ({share}); collect about {math.ceil(need / fraction)} samples or ask for a larger rate")


Images = str | Path | Sequence[Path] | None


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
    engine: dict[str, Any] = field(default_factory=dict)  # the backend chosen here (Models.prepare_engine)
    frames_without_part: int = 0  # training images the part was not found in: left out (framed models)


class Models:
    """The model versions of one product: made from its ``samples``, registered in ``db``.
    ``device``/``backend`` are the engine's (see :class:`~inspector.engine.Engine`)."""

    def __init__(self, db: HistoryDB, product: str, product_id: int, folders: TeachFolders, samples: Samples,
                 *, device: str = "auto", backend: str = "auto") -> None:
        self.db, self.product, self.product_id = db, product, product_id
        self.folders, self.samples = folders, samples
        self.device, self.backend = device, backend

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
        defects: Images = None,
        framing: Framing | None = None,
        recheck_rate: float | None = None,
        on_checked: Callable[[], None] | None = None,
        on_progress: Callable[[TrainProgress], None] | None = None,
        cancel: threading.Event | None = None,
        user: str = "system",
        note: str = "",
        show_progress: bool = False,
    ) -> TeachResult:
        """Trains on the samples, calibrates on the held-out share, prepares the engine for this
        machine (:meth:`prepare_engine`), registers a candidate version (recording ``user``).

        ``kind="instant"`` builds the memory-bank model (:mod:`inspector.method.instant`) instead
        of training EfficientAD: about a minute, no iterations (``mode`` and ``iterations`` do not
        apply; ``features`` says whose features it searches: ``lite2``, EfficientNet-Lite2's, or
        ``pdn``, the shipped teacher's). Both kinds use the same samples, split and calibration.

        ``framing`` (:mod:`inspector.framing`; see :func:`calibration.teach.framing.drawn_framing`)
        is what of each frame the model inspects: training learns from each sample's region (found
        first, tile by tile), the model file keeps it, and the engine applies it wherever the model
        runs; the version's metrics say it in one line (``framing``). ``recheck_rate`` (None: no
        recheck band) sets the band's lower threshold for that share of the held-out good parts.

        Everything that can be checked before training is (the sample count and split, the target
        rate and the recheck band against the calibration images, the defect folder, and with a
        ``framing`` the samples' frame size and the training's memory,
        :func:`~calibration.teach.sample_fit.check_samples_fit`), so a bad request fails in seconds,
        not after training. ``on_checked()`` is called once all of it has passed, just before the
        training starts: where the teach audits its start, so that a refused request leaves no
        trace. If calibration fails after training, the trained model is still registered (without
        thresholds) and the error says which version to calibrate.
        """
        from inspector.method.training import mode_config, train
        from inspector.model_file import save_model

        if mode not in MODES:
            raise InspectorError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        check_iterations(iterations)
        check_recheck_rate(recheck_rate, target_frr)  # before training, not after
        if kind not in KINDS:
            raise InspectorError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        t0 = time.perf_counter()
        if not self.samples.paths():
            raise DataError(f"{self.samples.dir}: no samples; collect good samples first")
        usable, rejected = self.samples.usable()
        try:
            train_paths, cal_paths = split(usable, calibration_fraction, seed)
        except DataError as e:
            raise DataError(f"{self.samples.dir}: {e} ({summarise(rejected)})") from None
        check_calibration_images(len(cal_paths), len(usable), target_frr, tail, recheck_rate, calibration_fraction)
        defect_paths = self.defects(defects)
        check_samples_fit(framing, usable, IMAGE_SIZE, n_train=len(train_paths))
        if rejected:
            log.warning("samples left out of training: %s", summarise(rejected))
        if on_checked is not None:
            on_checked()

        make_folders(self.folders.models)
        when = stamp()
        model_path = self.folders.models / f"{safe_name(self.product)}-{when}.safetensors"
        if kind == "instant":
            from inspector.method.instant_build import InstantConfig, build_instant

            trained = build_instant(train_paths, InstantConfig(size=size, seed=seed, resize_mode=resize_mode, features=features),
                                    teacher=teacher, device=self.device, show_progress=show_progress, framing=framing)
            mode, how = "instant", "instant model"
        else:
            # The recipe follows the budget: the quick mode trains the short recipe, full the paper's.
            config = mode_config(mode, iterations, size=size, seed=seed, resize_mode=resize_mode)
            trained = train(
                train_paths, config, teacher=teacher, penalty_dir=penalty_dir, device=self.device,
                checkpoint=self.folders.models / "training.ckpt", on_progress=on_progress, cancel=cancel,
                show_progress=show_progress, keep_checkpoint=True,  # removed once the model file is durable
                framing=framing,
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
        save_model(model_path, trained.model, meta, framing)
        metrics = {
            "mode": mode,
            "kind": kind,
            "iterations": trained.metadata.get("iterations"),  # what a time budget fitted; None for instant
            "train_images": len(train_paths),
            "calibration_images": len(cal_paths),
            "final_loss": trained.metadata.get("final_loss"),
            "teacher": trained.metadata.get("teacher"),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "framing": describe(framing),
            # A framed training's pieces, and the frames it left out (the part not found in them).
            **{k: trained.metadata[k] for k in ("train_pieces", "frames_without_part") if k in trained.metadata},
            **({"mm_per_px": mm_per_px} if mm_per_px is not None else {}),
        }
        version_id, report_path, result, engine = self._calibrate_and_register(
            model_path, cal_paths, defect_paths, metrics, how, when, user=user, note=note, show_progress=show_progress,
            calibration=dict(target_frr=target_frr, confidence=confidence, tail=tail, pixel_fpr=pixel_fpr, mm_per_px=mm_per_px,
                             # the recheck band (calibration.thresholds.recheck_threshold_for_rate), off unless asked for
                             **({"recheck_rate": recheck_rate} if recheck_rate is not None else {})),
            # The instant model has none: an EfficientAD training's (a staged teach's) is not its to remove.
            checkpoint=None if kind == "instant" else self.folders.models / "training.ckpt",
        )
        return TeachResult(version_id, model_path, report_path, result, train_paths, cal_paths, rejected, time.perf_counter() - t0, engine,
                           trained.metadata.get("frames_without_part", 0))

    def _calibrate_and_register(
        self, model_path: Path, cal_paths: list[Path], defect_paths: list[Path] | None, metrics: dict[str, Any], how: str,
        when: str, *, user: str, note: str, show_progress: bool, calibration: dict[str, Any], checkpoint: Path | None = None,
    ) -> tuple[int, Path, CalibrationResult, dict[str, Any]]:
        """A new model file calibrated on its held-out good images, its engine prepared, and
        registered as a candidate: (version id, report, calibration, engine). Should calibration
        fail, the model is still registered, uncalibrated, and the error names the version.

        The training's ``checkpoint`` is removed once a version names the model file, not before:
        a save that failed (a full disk), and a teach killed while it calibrated and prepared the
        engine (minutes, after hours of training), leave the training to resume from, where it
        was removed as soon as the file was saved and the next teach trained again from nothing."""
        from inspector.engine import Engine

        # Thresholds are set in fp32, the precision the accuracy gate compares reduced ones with;
        # the CPU's automatic choice is prepare_engine's, once they exist (choosing here as well
        # would measure every backend twice, the first time for a file about to change).
        try:
            engine = Engine(model_path, device=self.device, backend="eager" if self._chooses_cpu_backend() else self.backend)
            result = calibrate_engine(engine, cal_paths, defect_paths, show_progress=show_progress, **calibration)
        except InspectorError as e:
            version_id = self.db.add_model_version(self.product_id, model_path, metrics=metrics, note=f"{how}, NOT calibrated")
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)
            raise type(e)(
                f"{e} -- the trained model is kept as candidate version {version_id} ({model_path}); "
                f"calibrate it with `inspector teach calibrate --version {version_id}`"
            ) from None
        write_thresholds(model_path, result)  # not registered yet, so rewriting in place is safe
        metrics = {**metrics, **self.prepare_engine(model_path)}
        report_path = write_report(self.folders.reports / when, result, extra={"product": self.product, "metrics": metrics})
        version_id = self._register(model_path, result, metrics, report_path, user, note or how)
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        return version_id, report_path, result, metrics.get("engine", {})

    def _chooses_cpu_backend(self) -> bool:
        """Whether the engine picks among CPU backends by measuring them (``backend="auto"`` on a CPU)."""
        from inspector.devices import pick_device

        return self.backend == "auto" and pick_device(self.device).type == "cpu"

    def prepare_engine(self, model_path: Path) -> dict[str, Any]:
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

    @staticmethod
    def defects(defects: Images) -> list[Path] | None:
        """Defect images: an MVTec-layout or plain folder, or the paths themselves."""
        if defects is None:
            return None
        if isinstance(defects, (str, Path)):
            return defect_images(defects)
        return [Path(p) for p in defects]

    def _register(self, model_path: Path, result: CalibrationResult, metrics: dict[str, Any], report_path: Path, user: str, note: str) -> int:
        metrics = {**metrics, **calibration_metrics(result)}
        version_id = self.db.add_model_version(self.product_id, model_path, metrics=metrics, report_path=str(report_path), note=note)
        role = dict(self.db.list_users()).get(user, "system")
        store_calibration(self.db, version_id, result, user=user, role=role, report_path=report_path)
        return version_id

    # --- calibrating again ---------------------------------------------------------------------

    def calibrate(
        self,
        version_id: int,
        *,
        good: Images = None,
        defects: Images = None,
        target_frr: float = DEFAULT_TARGET_FRR,
        confidence: float = 0.95,
        tail: str = "auto",
        pixel_fpr: float | None = DEFAULT_PIXEL_FPR,
        mm_per_px: float | None = None,
        recheck_rate: float | None = None,
        user: str = "system",
        show_progress: bool = False,
    ) -> TeachResult:
        """Calibrates a version again and registers the result as a new candidate version.

        ``good`` defaults to the calibration images recorded in the model file (still in the
        sample folder). ``mm_per_px`` and ``recheck_rate`` default to the version's latest
        calibration's (the camera's pixel size, the share of good parts its recheck band was set
        for): calibrating again sets new thresholds, it does not take the recipe's pixel size or
        band away. The old version and its file stay as they were.
        """
        from inspector.engine import Engine

        t0 = time.perf_counter()
        version = version_of(self.db, self.product, version_id)
        verify_model_file(version.path, version.sha256)
        previous = self.db.latest_calibration(version.id)
        if previous is not None:
            mm_per_px = previous.mm_per_px if mm_per_px is None else mm_per_px
            recheck_rate = previous.target_recheck_rate if recheck_rate is None else recheck_rate
        check_recheck_rate(recheck_rate, target_frr)
        good_paths = self.calibration_images(version, good)
        check_resolvable(len(good_paths), target_frr, tail)
        defect_paths = self.defects(defects)
        engine = Engine(version.path, device=self.device, backend=self.backend)
        result = calibrate_engine(
            engine, good_paths, defect_paths, target_frr=target_frr, confidence=confidence,
            tail=tail, pixel_fpr=pixel_fpr, mm_per_px=mm_per_px, show_progress=show_progress, recheck_rate=recheck_rate,
        )
        when = stamp()
        out = self.folders.models / f"{version.path.stem.split('-cal')[0]}-cal{when}.safetensors"
        report_path = write_report(self.folders.reports / when, result, extra={"product": self.product, "recalibrated_from": version_id})
        write_thresholds(version.path, result, out=out)
        kept = ("mode", "kind", "iterations", "train_images", "final_loss", "teacher", "framing", "train_pieces", "frames_without_part")
        metrics = {k: v for k, v in version.metrics.items() if k in kept}
        metrics.update({"mm_per_px": mm_per_px} if mm_per_px is not None else {})
        new_id = self._register(out, result, metrics, report_path, user, f"recalibration of version {version_id}")
        return TeachResult(new_id, out, report_path, result, [], list(good_paths), [], time.perf_counter() - t0)

    def calibration_images(self, version: VersionInfo, good: Images = None) -> list[Path]:
        """``good`` as paths, else the version's held-out calibration images named in its model
        file (DataError when it names none or they are gone from the sample folder)."""
        if good is not None:
            return list_images(good) if isinstance(good, (str, Path)) else [Path(p) for p in good]
        from inspector.model_file import load_model_tensors

        _, meta = load_model_tensors(version.path)
        names = meta.get("calibration_images")
        if not names:
            raise DataError(f"version {version.id}: its model file names no calibration images; give good images held out from training")
        paths = [self.samples.dir / n for n in names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"version {version.id}: {len(missing)} of its calibration images are gone from {self.samples.dir} "
                            f"(e.g. {missing[0]}); give good images held out from training")
        return paths

    # --- a threshold by hand -------------------------------------------------------------------

    def set_threshold(self, actor: Actor, version_id: int, threshold: float) -> FrrEstimate:
        """Stores ``threshold`` as a new calibration of the version, the rest of its latest one
        kept, with the false-reject rate its good scores give there; audited once as
        ``set_threshold``. DataError for a version without calibration scores."""
        version = version_of(self.db, self.product, version_id)
        old = self.db.latest_calibration(version.id)
        scores = np.asarray((old.report or {}).get("good_scores", []) if old is not None else [], dtype=np.float64)
        if scores.size == 0:
            raise DataError(f"version {version_id} has no calibration scores to judge a threshold by; calibrate it first")
        est = frr_at(scores, threshold)
        report = {**(old.report or {}), "manual_threshold": True, "set_by": actor.user, "threshold": threshold,
                  "expected_frr": est.expected, "frr_ci_low": est.ci_low, "frr_ci_high": est.ci_high}
        # The pixel rule and size kept, and the recheck band where it still lies under the threshold.
        kept = kept_calibration_values(old, threshold)
        self.db.add_calibration(
            version.id, image_threshold=threshold, target_frr=est.expected, expected_frr=est.expected,
            expected_frr_ci=(est.ci_low, est.ci_high), report=report, created_by=actor.user, role=actor.role,
            action="set_threshold", before={"threshold": old.image_threshold},
            details={"threshold": threshold, "expected_frr": est.expected}, **kept,
        )
        return est

    def set_recheck_band(self, actor: Actor, version_id: int, recheck_rate: float | None) -> RecheckBand | None:
        """The version's recheck band set for ``recheck_rate`` of good parts (None: switched off),
        as a new calibration on its latest one's good scores; audited once as ``set_recheck``
        (:func:`calibration.calibrate.set_recheck_band`)."""
        version = version_of(self.db, self.product, version_id)
        return set_recheck_band(self.db, version.id, user=actor.user, role=actor.role, recheck_rate=recheck_rate)


def calibration_metrics(result: CalibrationResult) -> dict[str, Any]:
    """What a version's metrics record of its calibration."""
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
