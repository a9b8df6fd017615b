"""A model file calibrated by hand into the history database (``inspector calibrate --db``).

Owns which version such a calibration belongs to (a registered candidate, whose file is rewritten
in place, or a new candidate of a product), the refusal to rewrite an active or retired file, and
the one audited write: ``recalibrate_candidate`` for a candidate, ``calibrate`` for a new version.
The caller's right is checked once, when the plan is made, before minutes of scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calibration.calibrate import CalibrationResult, store_calibration
from calibration.teach.models import calibration_metrics
from inspector.errors import DataError, ModelFileError
from inspector.file_digest import file_sha256
from inspector.history import HistoryDB
from inspector.recipes import ensure_product
from inspector.roles import Actor, Caller, authorize


@dataclass(frozen=True)
class FileCalibration:
    """Where a calibration of ``model`` goes: ``version_id`` (a registered candidate) or, when
    None, a new candidate of ``product``; ``actor`` is the verified technician."""

    db: HistoryDB
    model: Path
    actor: Actor
    version_id: int | None
    product: str | None

    @classmethod
    def plan(cls, db: HistoryDB, caller: Caller, model: Path, product: str | None) -> FileCalibration:
        """Checks the caller's ``calibrate`` right, then which version ``model`` is: active and
        retired files are never rewritten (DataError), a changed candidate is refused
        (ModelFileError), an unregistered file needs ``product``."""
        actor = authorize(db, caller, "calibrate", f"model:{model}")
        rows = db.model_versions_of_file(model)
        if rows:
            v = rows[-1]
            if v.status != "candidate":
                raise DataError(
                    f"{model} is model version {v.id} ({v.status}); a registered active or retired model file is never "
                    f"changed in place: use `inspector teach calibrate --version {v.id}`, which writes a new version"
                )
            if file_sha256(model) != v.sha256:
                raise ModelFileError(f"{model}: the file changed since it was registered as version {v.id}; refusing to calibrate it")
            return cls(db, model, actor, v.id, None)
        if not product:
            raise DataError(f"{model} is not registered in {db.url}; give --product to register it as a new candidate version")
        return cls(db, model, actor, None, product)

    def store(self, result: CalibrationResult, report: Path, model: Path | None = None) -> int:
        """Registers the calibrated file (``model``, default the planned one) and its calibration;
        returns the version id."""
        model = model or self.model
        sha = file_sha256(model)
        user, role = self.actor.user, self.actor.role
        if self.version_id is None:
            product = ensure_product(self.db, self.product)
            version_id = self.db.add_model_version(product.id, model, sha256=sha, metrics=calibration_metrics(result),
                                                   report_path=str(report), note="registered by inspector calibrate")
            store_calibration(self.db, version_id, result, user=user, role=role, report_path=report)
            return version_id
        before = self.db.update_model_file(self.version_id, sha256=sha, report_path=str(report), metrics=calibration_metrics(result))
        # store_calibration's row, audited as the one event of this action rather than "calibrate".
        stored = {k: v for k, v in result.report().items() if k not in ("good_images", "defect_images")}
        im, px = result.image, result.pixel
        self.db.add_calibration(
            self.version_id, image_threshold=im.threshold, target_frr=im.target_frr, expected_frr=im.expected_frr,
            expected_frr_ci=(im.frr_ci_low, im.frr_ci_high), pixel_threshold=px.pixel_threshold if px else None,
            min_defect_area_px=px.min_defect_area_px if px else None, report={**stored, "report_path": str(report)},
            created_by=user, role=role, action="recalibrate_candidate", before={"sha256": before}, details={"sha256": sha},
        )
        return self.version_id


def registration_in(url: str, model: Path) -> str | None:
    """The database URL if an existing SQLite history there registers ``model`` (by path or
    content), else None. A database that does not exist is not created."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database or ""
    if make_url(url).get_backend_name() == "sqlite" and not Path(database).is_file():
        return None
    db = HistoryDB(url)
    try:
        found = db.model_versions_of_file(model, file_sha256(model))
    except Exception:  # an unreadable or foreign database: it cannot be the line's registration
        return None
    finally:
        db.close()
    return url if found else None
