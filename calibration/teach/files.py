"""A model file calibrated by hand into the history database (``inspector calibrate --db``).

The calibrated model is always a new file (a registered file is never rewritten, whichever
database registered it), registered here as a new candidate version: of the product the
calibrated file is registered under, else of the product named. The caller's right is checked
once, when the plan is made, before minutes of scoring; the calibration is audited as ``calibrate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calibration.calibrate import CalibrationResult, store_calibration
from calibration.teach.models import calibration_metrics
from inspector.errors import DataError, ModelFileError
from inspector.file_digest import file_sha256
from inspector.framing.recipe import describe
from inspector.history import HistoryDB
from inspector.model_file import load_framing
from inspector.recipes import ensure_product
from inspector.roles import Actor, Caller, authorize


@dataclass(frozen=True)
class FileCalibration:
    """Where a calibration of ``model`` goes: a new candidate of the product of ``version_id``
    (the version ``model`` is registered as) or, when None, of ``product``; ``actor`` is the
    verified technician."""

    db: HistoryDB
    model: Path
    actor: Actor
    version_id: int | None
    product: str | None

    @classmethod
    def plan(cls, db: HistoryDB, caller: Caller, model: Path, product: str | None) -> FileCalibration:
        """Checks the caller's ``calibrate`` right, then which version ``model`` is: a registered
        file that changed since is refused (ModelFileError), an unregistered one needs ``product``."""
        actor = authorize(db, caller, "calibrate", f"model:{model}")
        rows = db.model_versions_of_file(model)
        if rows:
            v = rows[-1]
            if file_sha256(model) != v.sha256:
                raise ModelFileError(f"{model}: the file changed since it was registered as version {v.id}; refusing to calibrate it")
            return cls(db, model, actor, v.id, None)
        if not product:
            raise DataError(f"{model} is not registered in {db.url}; give --product to register it as a new candidate version")
        return cls(db, model, actor, None, product)

    def store(self, result: CalibrationResult, report: Path, calibrated: Path) -> int:
        """Registers ``calibrated`` (the new file) with its calibration as a new candidate;
        returns its version id."""
        if self.version_id is None:
            product_id, note = ensure_product(self.db, self.product).id, "registered by inspector calibrate"
        else:
            product_id = self.db.model_version(self.version_id).product_id
            note = f"inspector calibrate of version {self.version_id}"
        # What of the frame it inspects, as a taught version's metrics name it (teach status, the
        # activation's audit): the calibrated file's own framing, None for the whole frame.
        metrics = {**calibration_metrics(result), "framing": describe(load_framing(calibrated)),
                   **({"mm_per_px": result.mm_per_px} if result.mm_per_px is not None else {})}
        version_id = self.db.add_model_version(product_id, calibrated, sha256=file_sha256(calibrated),
                                               metrics=metrics, report_path=str(report), note=note)
        store_calibration(self.db, version_id, result, user=self.actor.user, role=self.actor.role, report_path=report)
        return version_id
