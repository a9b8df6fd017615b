"""Recipes: a product owns its model versions, thresholds and camera settings.

Switching the product on the line means calling :func:`active_recipe` for the new product: it
returns the active model file (verified against the SHA-256 the database recorded), the rule of
its latest calibration, and the camera settings, together. Changes that alter what the line does
(activating a model, camera settings) need a technician's PIN and are audited, refusals included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from calibration.rule import DecisionRule, rule_from_calibration
from inspector.errors import DataError, InspectorError, ModelFileError
from inspector.history import HistoryDB, file_sha256
from inspector.history.models import AuditEvent, Calibration, ModelVersion, Product

#: Roles allowed to change what the line does.
TECHNICIAN_ROLES = ("technician",)
#: Camera settings a recipe may hold (the arguments of ``drivers.Camera.configure``).
CAMERA_SETTING_KEYS = ("exposure_us", "gain_db", "roi", "pixel_format")


class AccessDenied(InspectorError):
    """The user's PIN is wrong or their role may not do this; the refusal is audited."""


def require_role(db: HistoryDB, user: str, pin: str, action: str, target: str, roles: tuple[str, ...] = TECHNICIAN_ROLES) -> str:
    """The user's role if the PIN is right and the role is in ``roles``; else AccessDenied.

    Each refusal is written to the audit trail as ``<action>_denied`` with the reason.
    """
    role = db.verify_pin(user, pin)
    if role is None:
        db.record_audit(user, "unknown", f"{action}_denied", target, None, {"reason": "wrong PIN or unknown user"})
        raise AccessDenied(f"{action} refused: wrong PIN or unknown user {user!r}")
    if role not in roles:
        db.record_audit(user, role, f"{action}_denied", target, None, {"reason": f"role {role} may not {action}"})
        raise AccessDenied(f"{action} refused: {user} is {role}; only {' or '.join(roles)} may {action}")
    return role


def safe_name(name: str) -> str:
    """A product name as a folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "product"


def get_product(db: HistoryDB, name: str) -> Product:
    product = db.product_by_name(name)
    if product is None:
        raise DataError(f"no product named {name!r} in {db.url}")
    return product


def ensure_product(db: HistoryDB, name: str, camera_settings: dict[str, Any] | None = None) -> Product:
    """The product of that name, created (with ``camera_settings``) if it does not exist."""
    product = db.product_by_name(name)
    if product is None:
        db.add_product(name, camera_settings=check_camera_settings(camera_settings or {}))
        product = db.product_by_name(name)
    return product


def check_camera_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - set(CAMERA_SETTING_KEYS)
    if unknown:
        raise DataError(f"unknown camera settings {sorted(unknown)}; known: {', '.join(CAMERA_SETTING_KEYS)}")
    out = dict(settings)
    if out.get("roi") is not None:
        out["roi"] = [int(v) for v in out["roi"]]
    return out


def set_camera_settings(db: HistoryDB, product: str, settings: dict[str, Any], *, user: str, pin: str) -> None:
    """Replaces the product's camera settings (technician only; audited with before and after)."""
    target = f"product:{get_product(db, product).id}"
    role = require_role(db, user, pin, "set_camera_settings", target)
    settings = check_camera_settings(settings)
    with db.session() as s:
        row = s.scalars(select(Product).where(Product.name == product)).one()
        before = dict(row.camera_settings or {})
        row.camera_settings = settings
    db.record_audit(user, role, "set_camera_settings", target, before, settings)


@dataclass(frozen=True)
class VersionInfo:
    """A model version with its latest calibration (None if never calibrated)."""

    id: int
    status: str
    created: datetime
    path: Path
    sha256: str
    metrics: dict[str, Any]
    report_path: str | None
    note: str
    calibration: Calibration | None = field(repr=False, default=None)


def versions(db: HistoryDB, product: str) -> list[VersionInfo]:
    """The product's model versions, newest first."""
    product_id = get_product(db, product).id
    with db.session() as s:
        rows = s.scalars(select(ModelVersion).where(ModelVersion.product_id == product_id).order_by(ModelVersion.id.desc())).all()
    return [
        VersionInfo(v.id, v.status, v.created, Path(v.path), v.sha256, dict(v.metrics or {}), v.report_path, v.note, db.latest_calibration(v.id))
        for v in rows
    ]


def version_of(db: HistoryDB, product: str, version_id: int) -> VersionInfo:
    """One version of the product; DataError if it does not exist or belongs to another product."""
    for v in versions(db, product):
        if v.id == version_id:
            return v
    raise DataError(f"product {product!r} has no model version {version_id}")


def verify_model_file(path: Path, sha256: str) -> None:
    """ModelFileError unless the file exists and has the SHA-256 the database recorded."""
    if not path.is_file():
        raise ModelFileError(f"{path}: the model file of this version is missing")
    if file_sha256(path) != sha256:
        raise ModelFileError(f"{path}: the file changed since it was registered (SHA-256 differs); refusing to use it")


@dataclass(frozen=True)
class Recipe:
    """What the line needs to inspect one product."""

    product_id: int
    product: str
    model_version_id: int
    model_path: Path
    model_sha256: str
    rule: DecisionRule
    calibration_id: int
    target_frr: float
    expected_frr: float
    camera_settings: dict[str, Any]
    reference_scores: list[float]  # good calibration scores, the drift monitor's reference


def active_recipe(db: HistoryDB, product: str, *, verify_file: bool = True) -> Recipe:
    """The product's active model, its thresholds and its camera settings.

    Raises DataError when the product has no active model or the model no calibration, and
    ModelFileError when the file is missing or differs from what was registered.
    """
    row = get_product(db, product)
    if row.active_model_version_id is None:
        raise DataError(f"product {product!r} has no active model; teach one and activate it")
    version = db.model_version(row.active_model_version_id)
    calibration = db.latest_calibration(version.id)
    if calibration is None:
        raise DataError(f"product {product!r}: active model version {version.id} has no calibration")
    path = Path(version.path)
    if verify_file:
        verify_model_file(path, version.sha256)
    return Recipe(
        product_id=row.id,
        product=row.name,
        model_version_id=version.id,
        model_path=path,
        model_sha256=version.sha256,
        rule=rule_from_calibration(calibration),
        calibration_id=calibration.id,
        target_frr=calibration.target_frr,
        expected_frr=calibration.expected_frr,
        camera_settings=dict(row.camera_settings or {}),
        reference_scores=list((calibration.report or {}).get("good_scores", [])),
    )


def activation_history(db: HistoryDB, product_id: int) -> list[AuditEvent]:
    """The product's ``set_active_model`` audit events, newest first."""
    with db.session() as s:
        stmt = (
            select(AuditEvent)
            .where(AuditEvent.action == "set_active_model", AuditEvent.target == f"product:{product_id}")
            .order_by(AuditEvent.time.desc(), AuditEvent.id.desc())
        )
        return list(s.scalars(stmt))


def list_products(db: HistoryDB) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Product.name).order_by(Product.name)))
