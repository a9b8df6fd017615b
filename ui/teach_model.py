"""Teaching from the GUI: samples, training, calibration, activation -- the model of the Teach page.

Every action goes through the calibration package's :class:`~calibration.teach.TeachSession`
(the same code as ``inspector teach ...``), which checks the signed-in user's right once and
audits it: this model passes the user and PIN (:meth:`ui.session.Session.caller`) and adds what a
GUI needs around it: the frame on the live line as a sample, training on a worker thread with
progress, ETA and cancel, the false-reject rate at any threshold the technician drags to, and
loading the newly active recipe (:func:`inspector.recipes.load_active_recipe`) into the running
line.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from inspector.recipes import LoadedRecipe, VersionInfo, load_active_recipe
from inspector.line.rule import rule_from_calibration
from calibration.shadow import ShadowReport
from calibration.teach import TEACH_KINDS, StagedTeach, TeachResult, TeachSession
from calibration.thresholds import FrrEstimate, frr_at  # noqa: F401 -- frr_at: the teach page takes it from here
from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.method.training import TrainProgress

from ui.line import LineModel
from ui.session import Session
from ui.worker import Task, run_task

log = logging.getLogger(__name__)

DEFAULT_TARGET_FRR = 0.01
#: The recheck band's share of good parts when a technician switches it on (issue 30: 3 %).
DEFAULT_RECHECK_RATE = 0.03


@dataclass(frozen=True)
class CalibrationData:
    """A version's calibration as the calibration view shows it."""

    version_id: int
    threshold: float
    target_frr: float
    expected_frr: float
    good_scores: np.ndarray
    defect_scores: np.ndarray | None
    pixel_threshold: float | None
    min_defect_area_px: int | None
    recheck_threshold: float | None = None  # the recheck band's lower threshold (None: no band)
    expected_recheck_rate: float | None = None


#: What the Train button makes (TeachSession.teach's kinds).
TRAIN_KINDS = TEACH_KINDS


@dataclass(frozen=True)
class StageDone:
    """A step of a staged teach ended (on the worker thread): ``name`` is ``"instant"``,
    ``"efficientad"`` or ``"handover"``; ``recipe`` is the product's active recipe after it, loaded
    on the worker so that the GUI thread only swaps it in."""

    name: str
    result: object
    recipe: LoadedRecipe | None


@dataclass(frozen=True)
class TrainingState:
    running: bool
    iteration: int = 0
    total: int = 0
    eta_s: float = math.nan
    loss: float = math.nan
    message: str = ""


class TeachModel(QObject):
    """Signals: ``samples_changed()``, ``versions_changed()``, ``training_changed(TrainingState)``,
    ``shadow_changed(ShadowReport)``, ``version_created(id)``, ``message(text, is_error)``,
    ``busy_changed(bool)``."""

    samples_changed = pyqtSignal()
    versions_changed = pyqtSignal()
    training_changed = pyqtSignal(object)
    shadow_changed = pyqtSignal(object)
    version_created = pyqtSignal(int)
    message = pyqtSignal(str, bool)
    busy_changed = pyqtSignal(bool)

    def __init__(self, db: HistoryDB, line: LineModel, session: Session, workdir: Path | None = None,
                 device: str = "auto", backend: str = "auto", penalty_dir: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db, self.line, self.session = db, line, session
        self.workdir = workdir
        self.penalty_dir = penalty_dir  # natural images for the penalty loss (None: the shipped ones)
        self.device, self.backend = device, backend
        self._teach: TeachSession | None = None
        self.training: Task | None = None
        self.state = TrainingState(False)
        self._tasks: list[Task] = []  # keeps running tasks alive
        line.status_changed.connect(self._on_line_changed)

    # -- the product being taught: the line's -----------------------------------------------------

    @property
    def product(self) -> str:
        return self.line.recipe.product

    @property
    def teach(self) -> TeachSession:
        if self._teach is None or self._teach.product != self.product:
            self._teach = TeachSession(self.db, self.product, self.workdir, device=self.device, backend=self.backend)
        return self._teach

    def _on_line_changed(self) -> None:
        if self._teach is not None and self._teach.product != self.product:
            self._teach = None
            self.samples_changed.emit()
            self.versions_changed.emit()

    def active_target_frr(self) -> float | None:
        """The target false-reject rate the line's active model was calibrated for (None without
        a calibration): the natural target for its successor, which the teach page starts with."""
        version_id = self.line.recipe.model_version_id
        cal = self.db.latest_calibration(version_id) if version_id is not None else None
        return None if cal is None or cal.target_frr is None else float(cal.target_frr)

    # -- samples -------------------------------------------------------------------------------

    def sample_paths(self) -> list[Path]:
        return self.teach.sample_paths()

    def capture_sample(self) -> bool:
        """Adds the frame on the line now as a good sample, through the quality gates."""
        latest = self.line.latest
        decision = self.teach.capture_sample(self.session.caller(), None if latest is None else latest.image,
                                             inspection_id=None if latest is None else latest.inspection_id)
        if decision.accepted:
            self.message.emit(f"sample {decision.name} added ({len(self.sample_paths())} samples)", False)
        else:
            self.message.emit(f"sample refused: {'; '.join(decision.reasons)}", True)
        self.samples_changed.emit()
        return decision.accepted

    def import_samples(self, folder: Path) -> tuple[int, int]:
        """Adds the images of a folder as good samples, through the quality gates; returns
        (accepted, refused)."""
        result = self.teach.import_samples(self.session.caller(), folder)
        text = f"{len(result.accepted)} samples imported from {folder}"
        if result.rejected:
            text += f"; {len(result.rejected)} refused, e.g. {Path(result.rejected[0].name).name}: {result.rejected[0].reasons[0]}"
        self.message.emit(text, False)
        self.samples_changed.emit()
        return len(result.accepted), len(result.rejected)

    def remove_samples(self, paths: list[Path]) -> int:
        removed = self.teach.remove_samples(self.session.caller(), paths)
        if removed:
            self.samples_changed.emit()
        return len(removed)

    # -- training --------------------------------------------------------------------------------

    def train(self, iterations: int | None = None, target_frr: float = DEFAULT_TARGET_FRR, defects: Path | None = None,
              kind: str = "efficientad", framing=None, mm_per_px: float | None = None,
              recheck_rate: float | None = None) -> Task:
        """Trains on the samples in a worker thread; progress in ``training_changed``.

        ``kind="staged"`` (the page's default) builds the instant model, activates it and loads
        it into the line within about a minute, then trains EfficientAD, which takes over only
        when the handover check finds it at least as good (:meth:`TeachSession.teach`); it needs
        the right to activate as well as to teach. A refusal comes as a failed training.

        ``framing`` (:func:`calibration.teach.framing.drawn_framing`, checked by the page) is what
        of each frame the model inspects; ``mm_per_px`` the pixel size (defect sizes in mm²);
        ``recheck_rate`` (None: off) the share of good parts the recheck band is set for."""
        if kind not in TRAIN_KINDS:
            raise InspectorError(f"kind must be one of {', '.join(TRAIN_KINDS)}, not {kind!r}")
        if self.training is not None and self.training.running:
            raise InspectorError("training is already running")
        teach, caller, frames = self.teach, self.session.caller(), self.line.camera_frames()
        options = dict(iterations=iterations, target_frr=target_frr, defects=defects, penalty_dir=self.penalty_dir,
                       framing=framing, mm_per_px=mm_per_px)
        if recheck_rate is not None:  # off unless the technician sets it
            options["recheck_rate"] = recheck_rate

        def work(task: Task) -> TeachResult | StagedTeach:
            if kind != "staged":
                return teach.teach(caller, kind=kind, mode="quick", on_progress=task.progress.emit, cancel=task.cancel,
                                   note=f"taught in the GUI by {caller.user}", **options)

            def on_stage(name: str, result: object) -> None:
                recipe = None
                if name == "instant" or (name == "handover" and result.switch):
                    recipe = load_active_recipe(self.db, teach.product, device=self.device, backend=self.backend)
                task.progress.emit(StageDone(name, result, recipe))

            return teach.teach(caller, kind="staged", on_stage=on_stage, on_progress=task.progress.emit,
                               cancel=task.cancel, camera_frames=frames, **options)

        first = "building the instant model ..." if kind in ("staged", "instant") else "preparing (teacher statistics, step timing) ..."
        self._set_state(TrainingState(True, 0, iterations or 0, message=first))
        self.training = run_task("training", work, self, finished=self._on_training_finished,
                                 failed=self._on_training_failed, progress=self._on_training_progress)
        return self.training

    def cancel_training(self) -> None:
        if self.training is not None and self.training.running:
            self.training.cancel.set()
            self._set_state(TrainingState(True, self.state.iteration, self.state.total, self.state.eta_s, self.state.loss, "cancelling ..."))

    def _on_training_progress(self, p: TrainProgress | StageDone) -> None:
        if isinstance(p, StageDone):
            self._on_stage_done(p)
            return
        self._set_state(TrainingState(True, p.iteration, p.total, p.eta_s, p.loss, f"iteration {p.iteration} of {p.total}"))

    def _on_stage_done(self, stage: StageDone) -> None:
        if stage.recipe is not None:
            self.line.set_recipe(stage.recipe)
        if stage.name == "instant":
            text = (f"instant model: version {stage.result.version_id} is active on the line "
                    f"(threshold {stage.result.calibration.image.threshold:.4g}); training EfficientAD ...")
            self._set_state(TrainingState(True, 0, self.state.total, message=text))
        elif stage.name == "efficientad":
            text = f"EfficientAD trained: version {stage.result.version_id}; comparing it with the instant model ..."
        else:
            text = (f"EfficientAD takes over: {stage.result.reason}" if stage.result.switch
                    else f"the instant model stays active: {stage.result.reason}")
        self.message.emit(text, False)
        self.versions_changed.emit()

    def _on_training_finished(self, result: TeachResult | StagedTeach) -> None:
        if isinstance(result, StagedTeach):
            h = result.handover
            text = (f"EfficientAD version {result.efficientad.version_id} is active: {h.reason}" if h.switch else
                    f"instant version {result.instant.version_id} stays active: {h.reason}")
            self._set_state(TrainingState(False, self.state.total, self.state.total, 0.0, self.state.loss, text))
            self.message.emit(text, False)
            self.versions_changed.emit()
            self.version_created.emit(result.efficientad.version_id)
            return
        im = result.calibration.image
        text = (f"version {result.version_id} trained and calibrated: threshold {im.threshold:.4g}, expected "
                f"false-reject rate {100 * im.expected_frr:.2g} % ({100 * im.frr_ci_low:.2g} .. {100 * im.frr_ci_high:.2g} %)")
        self._set_state(TrainingState(False, self.state.total, self.state.total, 0.0, self.state.loss, text))
        self.message.emit(text, False)
        self.versions_changed.emit()
        self.version_created.emit(result.version_id)

    def _on_training_failed(self, text: str) -> None:
        self._set_state(TrainingState(False, self.state.iteration, self.state.total, message=text))
        self.message.emit(text, True)
        self.versions_changed.emit()

    def _set_state(self, state: TrainingState) -> None:
        self.state = state
        self.training_changed.emit(state)

    # -- versions and calibration -----------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        return self.teach.versions()

    def calibration(self, version_id: int) -> CalibrationData | None:
        """The version's latest calibration with its good (and defect) scores, if any."""
        cal = self.db.latest_calibration(version_id)
        if cal is None:
            return None
        report = cal.report or {}
        good = np.asarray(report.get("good_scores", []), dtype=np.float64)
        bad = report.get("defect_scores")
        return CalibrationData(
            version_id, cal.image_threshold, cal.target_frr, cal.expected_frr, good,
            None if bad is None else np.asarray(bad, dtype=np.float64), cal.pixel_threshold, cal.min_defect_area_px,
            getattr(cal, "recheck_threshold", None), getattr(cal, "expected_recheck_rate", None),
        )

    def set_threshold(self, version_id: int, threshold: float) -> FrrEstimate:
        """Stores a threshold chosen by hand as a new calibration of the version (audited), and
        applies it to the line at once if the version is the active one."""
        est = self.teach.set_threshold(self.session.caller(), version_id, threshold)
        self._apply_if_active(version_id, "threshold set by hand")
        self.message.emit(f"threshold of version {version_id} set to {threshold:.4g}: expected false-reject rate "
                          f"{100 * est.expected:.2g} % ({100 * est.ci_low:.2g} .. {100 * est.ci_high:.2g} %)", False)
        self.versions_changed.emit()
        return est

    def set_recheck_band(self, version_id: int, recheck_rate: float | None):
        """Sets the version's recheck band for ``recheck_rate`` of good parts, or switches it off
        (None): a new calibration, audited as ``set_recheck``; on the line at once if the version
        is the active one. Returns the band (None: off)."""
        band = self.teach.set_recheck_band(self.session.caller(), version_id, recheck_rate)
        self._apply_if_active(version_id, "recheck band set by hand")
        if band is None:
            text = f"recheck band of version {version_id} switched off: no part is RECHECK"
        else:
            text = (f"recheck band of version {version_id}: scores above {band.recheck_threshold:.4g} up to the threshold "
                    f"{band.threshold:.4g} are RECHECK, about {100 * band.expected_rate:.2g} % of good parts "
                    f"({100 * band.ci_low:.2g} .. {100 * band.ci_high:.2g} %)")
        self.message.emit(text, False)
        self.versions_changed.emit()
        return band

    def _apply_if_active(self, version_id: int, source: str) -> None:
        """The version's latest calibration on the line at once, where it is the active version."""
        if version_id == self.line.recipe.model_version_id:
            rule = rule_from_calibration(self.db.latest_calibration(version_id))
            self.line.set_recipe(replace(self.line.recipe, rule=rule, source=source))

    # -- activation, rollback, shadow ---------------------------------------------------------------

    def activate(self, version_id: int) -> Task:
        teach, caller, frames = self.teach, self.session.caller(), self.line.camera_frames()

        def work(task: Task) -> LoadedRecipe:
            teach.activate(caller, version_id, camera_frames=frames)
            return load_active_recipe(self.db, teach.product, device=self.device, backend=self.backend)

        return self._run("activation", work, lambda r: f"version {r.model_version_id} is active on the line")

    def rollback(self) -> Task:
        teach, caller, frames = self.teach, self.session.caller(), self.line.camera_frames()

        def work(task: Task) -> LoadedRecipe:
            teach.rollback(caller, camera_frames=frames)
            return load_active_recipe(self.db, teach.product, device=self.device, backend=self.backend)

        return self._run("rollback", work, lambda r: f"rolled back: version {r.model_version_id} is active on the line")

    def _run(self, name: str, work, done_text) -> Task:
        def finished(recipe: LoadedRecipe) -> None:
            self.line.set_recipe(recipe)
            self._done(task)
            self.message.emit(done_text(recipe), False)
            self.versions_changed.emit()

        def failed(text: str) -> None:
            self._done(task)
            self.message.emit(text, True)
            self.versions_changed.emit()

        self.busy_changed.emit(True)
        task = run_task(name, work, self, finished=finished, failed=failed)
        self._tasks.append(task)
        return task

    def _done(self, task: Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        self.busy_changed.emit(bool(self._tasks))

    def shadow(self, version_id: int, recent: int = 50) -> Task:
        """Compares a candidate with the active model on the product's recent stored parts."""
        teach = self.teach

        def finished(report: ShadowReport) -> None:
            self._done(task)
            self.shadow_changed.emit(report)
            self.message.emit(f"shadow comparison of version {version_id}: {report.summary()}", False)

        def failed(text: str) -> None:
            self._done(task)
            self.message.emit(text, True)

        self.busy_changed.emit(True)
        task = run_task("shadow comparison", lambda t: teach.shadow(version_id, recent=recent), self,
                        finished=finished, failed=failed)
        self._tasks.append(task)
        return task

