"""Which version runs the line: activate, roll back, hand over, compare in shadow, the staged teach.

Owns the product's active model as the history database keeps it -- the product's
``active_model_version_id``, each change an :class:`~inspector.history.tables.Activation` row
with the version active before it, which is where a rollback returns to. Methods take the
:class:`~inspector.roles.Actor` an audited action of
:class:`~calibration.teach.workflow.TeachSession` verified; none checks a role itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.shadow import Handover, ShadowReport, handover_check, shadow_compare
from calibration.teach.models import Images, Models, TeachResult
from inspector.errors import DataError, InspectorError
from inspector.framing import Framing
from inspector.history import HistoryDB, InspectionFilter
from inspector.image_io import list_images
from inspector.line.rule import rule_from_calibration
from inspector.method.training import TrainProgress
from inspector.model_file import load_framing
from inspector.recipes import Recipe, VersionInfo, active_recipe, verify_model_file, version_of, versions
from inspector.roles import Actor


#: Camera id -> (height, width) of the latest frame the line saw from it (None: none seen).
CameraFrames = Mapping[str, tuple[int, int]] | None


def check_fits_cameras(framing: Framing | None, camera_frames: CameraFrames, what: str, remedy: str) -> None:
    """InspectorError naming ``what`` (the version, the drawing) and ``remedy`` where
    ``framing`` cannot cut a frame of ``camera_frames``; nothing to check without a framing."""
    if framing is None or not camera_frames:
        return
    for camera_id, shape in camera_frames.items():
        try:
            framing.check_frame(shape, f"camera {camera_id}")
        except InspectorError as exc:
            raise InspectorError(f"{what} cannot inspect this line's frames ({exc}); {remedy}") from None


@dataclass
class StagedTeach:
    """A staged teach: the instant model (active at once), EfficientAD, and whether it took over."""

    instant: TeachResult
    efficientad: TeachResult | None = None
    handover: Handover | None = None


class Lifecycle:
    """The active model of one product, and the candidates that may replace it."""

    def __init__(self, db: HistoryDB, product: str, product_id: int, models: Models) -> None:
        self.db, self.product, self.product_id, self.models = db, product, product_id, models

    @property
    def target(self) -> str:
        return f"product:{self.product_id}"

    def recipe(self) -> Recipe:
        """The product's active model, thresholds and camera settings."""
        return active_recipe(self.db, self.product)

    def versions(self) -> list[VersionInfo]:
        return versions(self.db, self.product)

    def usable(self, version_id: int) -> VersionInfo:
        """The version, if it is calibrated and its file is the one registered."""
        version = version_of(self.db, self.product, version_id)
        if version.calibration is None:
            raise DataError(f"version {version_id} has no calibration; calibrate it before activating")
        verify_model_file(version.path, version.sha256)
        return version

    def activate(self, actor: Actor, version_id: int, *, action: str = "set_active_model",
                 details: dict[str, Any] | None = None, camera_frames: CameraFrames = None) -> None:
        """Makes a calibrated version the active model, audited once as ``action``, with what of
        each frame the line inspects from now on (``framing``, the version's: an activation or a
        rollback may change the region, not only the model). ``camera_frames`` (camera id ->
        (height, width) of its latest frame), where the line has seen them: a version whose
        framing cannot cut them is refused (:meth:`check_cameras`)."""
        version = self.usable(version_id)
        self.check_cameras(version, camera_frames)
        framing = (version.metrics or {}).get("framing")
        details = {**({"framing": framing} if framing is not None else {}), **(details or {})}
        self.db.set_active_model(self.product_id, version_id, user=actor.user, role=actor.role, action=action, details=details)

    def check_cameras(self, version: VersionInfo, camera_frames: CameraFrames) -> None:
        """InspectorError, before anything changes, where ``version``'s framing cannot cut the
        line's frames: the line would FAIL every part (an ``engine_error`` per frame) until the
        version was replaced. Nothing to check without frames or without a framing."""
        if camera_frames:
            check_fits_cameras(load_framing(version.path), camera_frames, f"version {version.id}",
                               "it was taught on frames of another camera or size: teach it again on this camera's frames")

    def rollback(self, actor: Actor, camera_frames: CameraFrames = None) -> int:
        """Re-activates the version that was active before the current one (the last activation
        records it); returns its id. A second rollback undoes the first."""
        current = self.db.product_by_name(self.product).active_model_version_id
        if current is None:
            raise DataError(f"product {self.product!r} has no active model to roll back from")
        last = self.db.last_activation(self.product_id)
        previous = last.previous_version_id if last is not None and last.model_version_id == current else None
        if previous is None:
            raise DataError(f"product {self.product!r}: no model was active before version {current}; nothing to roll back to")
        self.activate(actor, previous, action="rollback", camera_frames=camera_frames)
        return previous

    def shadow(self, candidate_version_id: int, images: Images = None, *, recent: int = 50) -> ShadowReport:
        """Compares a candidate with the active model on ``images`` (a folder or paths), or on
        the stored images of the product's ``recent`` latest inspections."""
        from inspector.engine import Engine

        recipe = self.recipe()
        candidate = self.usable(candidate_version_id)
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
        device, backend = self.models.device, self.models.backend
        active_engine = Engine(recipe.model_path, device=device, backend=backend)
        candidate_engine = Engine(candidate.path, device=device, backend=backend)
        return shadow_compare(candidate_engine, rule_from_calibration(candidate.calibration), active_engine, recipe.rule, paths)

    def handover(self, actor: Actor, candidate_version_id: int, defects: Images = None) -> Handover:
        """Activates the candidate only if it is at least as good as the active model on the
        candidate's held-out calibration images, synthetic defects made from them and ``defects``
        (:func:`calibration.shadow.handover_check`). One audit event, ``handover_check``, whichever
        way it goes; when the candidate takes over, it is the activation's."""
        from inspector.engine import Engine

        recipe = self.recipe()
        candidate = self.usable(candidate_version_id)
        good = self.models.calibration_images(candidate)
        device, backend = self.models.device, self.models.backend
        check = handover_check(
            Engine(candidate.path, device=device, backend=backend), rule_from_calibration(candidate.calibration),
            Engine(recipe.model_path, device=device, backend=backend), recipe.rule, good, self.models.defects(defects),
        )
        outcome = {"candidate": candidate_version_id, **{k: v for k, v in check.as_dict().items() if k != "shadow"}}
        if check.switch:
            self.activate(actor, candidate_version_id, action="handover_check", details=outcome)
        else:
            self.db.record_audit(actor.user, actor.role, "handover_check", self.target,
                                 {"active_model_version_id": recipe.model_version_id}, outcome)
        return check

    def teach_staged(
        self,
        actor: Actor,
        *,
        on_stage: Callable[[str, Any], None] | None = None,
        on_checked: Callable[[], None] | None = None,
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
        Handover)`` as each step ends; ``options`` go to :meth:`Models.train` (target rate, size,
        seed ...). ``on_checked()`` is called once, when the instant model's checks have passed:
        before anything is trained or activated. A cancelled EfficientAD training leaves the
        instant model active."""
        stage = on_stage or (lambda name, result: None)
        instant = self.models.train(kind="instant", defects=defects, on_checked=on_checked, user=actor.user, **options)
        self.activate(actor, instant.version_id)
        stage("instant", instant)
        staged = StagedTeach(instant)
        staged.efficientad = self.models.train(kind="efficientad", mode=mode, defects=defects, on_progress=on_progress,
                                               cancel=cancel, user=actor.user, **options)
        stage("efficientad", staged.efficientad)
        staged.handover = self.handover(actor, staged.efficientad.version_id, defects)
        stage("handover", staged.handover)
        return staged
