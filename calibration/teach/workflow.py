"""The teach workflow of one product, and the actions people take in it.

:class:`TeachSession` composes the three parts -- :class:`~calibration.teach.samples.Samples`,
:class:`~calibration.teach.models.Models`, :class:`~calibration.teach.lifecycle.Lifecycle` -- and
owns the audited actions: each takes the :class:`~inspector.roles.Caller` a face built, checks
the caller's right once (:func:`inspector.roles.authorize`, which audits a refusal as
``<action>_denied``) and writes one audit event:

===========================  ================  ===================  =======================
method                       right             refused as           audit event
===========================  ================  ===================  =======================
``capture_sample``           teach             add_sample           add_sample
``import_samples``           teach             import_samples       import_samples
``collect_samples``          teach             collect_samples      collect_samples
``remove_samples``           teach             remove_samples       remove_samples
``teach``                    teach             teach_train          train_started
``teach`` (kind staged)      activate_model    teach_train          train_started
``recalibrate``              calibrate         teach_calibrate      calibrate
``set_threshold``            set_threshold     set_threshold        set_threshold
``set_recheck_band``         set_threshold     set_recheck          set_recheck
``activate``                 activate_model    activate             set_active_model
``rollback``                 activate_model    rollback             rollback
``handover``                 activate_model    handover             handover_check
===========================  ================  ===================  =======================

A training registers its version(s) with their calibration (``calibrate`` events) and a staged
teach activates the instant model (``set_active_model``) and hands over (``handover_check``):
what each step changed, under the one check. ``teach`` checks the iteration count and the right
first, then :meth:`~calibration.teach.models.Models.train` checks the request (samples, the
target rate and recheck band, the defect folder, the samples against the framing, memory) and
only then is ``train_started`` written -- so a refused request leaves nothing but, for a missing
right, its ``teach_train_denied``. A staged teach writes it once, before its instant model's
``set_active_model``. The methods without a caller (``collect_from_folder``,
``add_sample``, ``train``, ``calibrate``, ``shadow``, ...) change no active model and audit
nothing: the steps for scripts, benchmarks and faces that audit their own action (review's copy
of false rejects), or only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibration.quality import QualityGates, SampleScreen, SampleVerdict
from calibration.shadow import Handover, ShadowReport
from calibration.teach.folders import TeachFolders
from calibration.teach.lifecycle import CameraFrames, Lifecycle, StagedTeach, check_fits_cameras
from calibration.teach.models import Images, Models, TeachResult, check_iterations
from calibration.teach.samples import CollectResult, Samples, split
from calibration.thresholds import FrrEstimate, RecheckBand
from inspector.errors import DataError, InspectorError
from inspector.framing.recipe import describe
from inspector.history import HistoryDB
from inspector.recipes import Recipe, VersionInfo, ensure_product, get_product
from inspector.roles import Actor, Caller, authorize

#: What :meth:`TeachSession.teach` makes: a model of :data:`~calibration.teach.models.KINDS`, or
#: the staged teach (the instant model active at once, EfficientAD taking over when as good).
TEACH_KINDS = ("staged", "efficientad", "instant")


class TeachSession:
    """Teaching one product. ``db`` must be upgraded (``db.upgrade()``). With ``create`` the
    product is made if it does not exist, else a missing product is a DataError.
    ``device``/``backend`` are the engine's (see :class:`~inspector.engine.Engine`)."""

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
        self.folders = TeachFolders.of(product, workdir)
        self.samples = Samples(self.folders, gates)
        self.models = Models(db, product, self.product_id, self.folders, self.samples, device=device, backend=backend)
        self.lifecycle = Lifecycle(db, product, self.product_id, self.models)

    @property
    def dir(self) -> Path:
        return self.folders.dir

    @property
    def samples_dir(self) -> Path:
        return self.folders.samples

    @property
    def models_dir(self) -> Path:
        return self.folders.models

    @property
    def gates(self) -> QualityGates:
        return self.samples.gates

    @property
    def target(self) -> str:
        return f"product:{self.product_id}"

    def _authorize(self, caller: Caller, right: str, action: str, target: str | None = None) -> Actor:
        return authorize(self.db, caller, right, target or self.target, action=action)

    # --- the audited actions ------------------------------------------------------------------

    def capture_sample(self, caller: Caller, image: np.ndarray | None, *, inspection_id: int | None = None) -> SampleVerdict:
        """A frame (e.g. the line's latest part, None while it has shown none) added as a good
        sample through the gates."""
        actor = self._authorize(caller, "teach", "add_sample")
        if image is None:
            raise DataError("no frame to capture yet: wait for the line to show a part")
        decision = self.samples.add(image)
        self.db.record_audit(actor.user, actor.role, "add_sample", self.target, None,
                             {"sample": decision.name, "accepted": decision.accepted, "reasons": list(decision.reasons),
                              "inspection_id": inspection_id})
        return decision

    def import_samples(self, caller: Caller, folder: str | Path, limit: int | None = None) -> CollectResult:
        """The images of a folder added as good samples through the gates."""
        actor = self._authorize(caller, "teach", "import_samples")
        result = self.samples.collect_from_folder(folder, limit)
        self.db.record_audit(actor.user, actor.role, "import_samples", self.target, None,
                             {"folder": str(folder), "accepted": [p.name for p in result.accepted],
                              "refused": {d.name: list(d.reasons) for d in result.rejected}})
        return result

    def collect_samples(self, caller: Caller, uri: str, count: int, **options: Any) -> CollectResult:
        """Good samples grabbed from a camera with the product's settings
        (:meth:`Samples.collect_from_camera`'s ``options``)."""
        actor = self._authorize(caller, "teach", "collect_samples")
        result = self.collect_from_camera(uri, count, **options)
        self.db.record_audit(actor.user, actor.role, "collect_samples", self.target, None,
                             {"camera": uri, "accepted": [p.name for p in result.accepted],
                              "refused": {d.name: list(d.reasons) for d in result.rejected}})
        return result

    def remove_samples(self, caller: Caller, paths: Sequence[str | Path]) -> list[str]:
        """Sample files deleted (only from the sample folder); returns their names."""
        actor = self._authorize(caller, "teach", "remove_samples")
        removed = self.samples.remove(paths)
        if removed:
            self.db.record_audit(actor.user, actor.role, "remove_samples", self.target, {"samples": removed}, None)
        return removed

    def teach(self, caller: Caller, *, kind: str = "efficientad", camera_frames: CameraFrames = None,
              **options: Any) -> TeachResult | StagedTeach:
        """A training on the samples (``kind`` of :data:`TEACH_KINDS`): a candidate version, or
        the staged teach, which activates as it goes (so it needs the right to activate; it is
        refused where its framing cannot cut ``camera_frames``, the line's latest frames).
        ``options`` go to :meth:`Models.train` / :meth:`Lifecycle.teach_staged` (``framing`` among
        them: what of each frame the model inspects, audited with the event in one line). Long: call
        it off a GUI thread; a refusal comes before any work."""
        if kind not in TEACH_KINDS:
            raise InspectorError(f"kind must be one of {', '.join(TEACH_KINDS)}, not {kind!r}")
        # Before the audit and the staged teach's instant activation: a count of 0 would register
        # (and a staged teach activate) an untrained model.
        check_iterations(options.get("iterations"))
        actor = self._authorize(caller, "activate_model" if kind == "staged" else "teach", "teach_train")
        if kind == "staged":
            check_fits_cameras(options.get("framing"), camera_frames, "the drawn region",
                               "draw it on a live frame of this camera (or on a sample taken by it)")

        def started() -> None:  # only once the training's own checks have passed: a refusal leaves no trace
            self.db.record_audit(actor.user, actor.role, "train_started", self.target, None,
                                 {"kind": kind, "samples": len(self.samples.paths()),
                                  **{k: options[k] for k in ("iterations", "target_frr", "mode", "mm_per_px") if k in options},
                                  "framing": describe(options.get("framing"))})

        if kind == "staged":
            return self.lifecycle.teach_staged(actor, on_checked=started, **options)
        return self.models.train(kind=kind, user=actor.user, on_checked=started, **options)

    def recalibrate(self, caller: Caller, version_id: int, **options: Any) -> TeachResult:
        """A version calibrated again into a new candidate (:meth:`Models.calibrate`)."""
        actor = self._authorize(caller, "calibrate", "teach_calibrate")
        return self.models.calibrate(version_id, user=actor.user, **options)

    def set_threshold(self, caller: Caller, version_id: int, threshold: float) -> FrrEstimate:
        """A threshold chosen by hand stored as the version's new calibration."""
        actor = self._authorize(caller, "set_threshold", "set_threshold", f"model_version:{version_id}")
        return self.models.set_threshold(actor, version_id, threshold)

    def set_recheck_band(self, caller: Caller, version_id: int, recheck_rate: float | None) -> RecheckBand | None:
        """The version's recheck band set for ``recheck_rate`` of good parts, or switched off
        (None): a threshold, so the right to set thresholds."""
        actor = self._authorize(caller, "set_threshold", "set_recheck", f"model_version:{version_id}")
        return self.models.set_recheck_band(actor, version_id, recheck_rate)

    def activate(self, caller: Caller, version_id: int, *, camera_frames: CameraFrames = None) -> None:
        """Makes a calibrated version the product's active model; refused where it cannot cut
        ``camera_frames``, the line's latest frames (:meth:`Lifecycle.check_cameras`)."""
        self.lifecycle.activate(self._authorize(caller, "activate_model", "activate"), version_id,
                                camera_frames=camera_frames)

    def rollback(self, caller: Caller, *, camera_frames: CameraFrames = None) -> int:
        """Re-activates the version active before the current one; returns its id."""
        return self.lifecycle.rollback(self._authorize(caller, "activate_model", "rollback"), camera_frames)

    def handover(self, caller: Caller, candidate_version_id: int, *, defects: Images = None) -> Handover:
        """Activates the candidate only if it is at least as good as the active model."""
        actor = self._authorize(caller, "activate_model", "handover")  # before minutes of scoring
        return self.lifecycle.handover(actor, candidate_version_id, defects)

    # --- steps without a caller: no active model changes, nothing audited --------------------

    def sample_paths(self) -> list[Path]:
        return self.samples.paths()

    def rejections(self) -> list[dict[str, Any]]:
        return self.samples.rejections()

    def add_sample(self, image: np.ndarray, name: str | None = None, *, screen: SampleScreen | None = None,
                   keep_rejected: bool = True) -> SampleVerdict:
        return self.samples.add(image, name, screen=screen, keep_rejected=keep_rejected)

    def collect_from_folder(self, folder: str | Path, limit: int | None = None) -> CollectResult:
        return self.samples.collect_from_folder(folder, limit)

    def collect_from_camera(self, uri: str, count: int, **options: Any) -> CollectResult:
        settings = self.db.product_by_name(self.product).camera_settings
        return self.samples.collect_from_camera(uri, count, camera_settings=settings, **options)

    def usable_samples(self) -> tuple[list[Path], list[SampleVerdict]]:
        return self.samples.usable()

    split = staticmethod(split)

    def train(self, **options: Any) -> TeachResult:
        return self.models.train(**options)

    def calibrate(self, version_id: int, **options: Any) -> TeachResult:
        return self.models.calibrate(version_id, **options)

    def shadow(self, candidate_version_id: int, images: Images = None, *, recent: int = 50) -> ShadowReport:
        return self.lifecycle.shadow(candidate_version_id, images, recent=recent)

    def recipe(self) -> Recipe:
        return self.lifecycle.recipe()

    def versions(self) -> list[VersionInfo]:
        return self.lifecycle.versions()

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
                "recheck_threshold": c.recheck_threshold if c else None,
                "target_recheck_rate": c.target_recheck_rate if c else None,
                "mm_per_px": c.mm_per_px if c else None,
                # what of each frame it inspects (describe(framing)); None for a version taught before
                "framing": (v.metrics or {}).get("framing"),
                "report": v.report_path,
                "metrics": v.metrics,
            })
        return out

