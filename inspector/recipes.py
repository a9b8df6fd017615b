"""Recipes: a product owns its model versions, thresholds and camera settings.

Switching the product on the line means calling :func:`active_recipe` for the new product: it
returns the active model file (verified against the SHA-256 the database recorded), the rule of
its latest calibration, and the camera settings, together. A model file given by hand
(``inspector run --model``, ``inspector gui --model``) gets its recipe from
:func:`model_file_recipe`. Both go through :func:`version_recipe`, the one place that decides
which rule a model decides with: the latest calibration in the database, else the one written into
the model file, else :class:`NotCalibrated`. :class:`LoadedRecipe` is a recipe with its engine
loaded, what :func:`inspector.line.build_line` runs (:func:`load_active_recipe`,
:func:`load_model_file_recipe`).

Changes that alter what the line does (activating a model, camera settings) need a technician's
PIN and are audited, refusals included.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inspector.line.rule import DecisionRule, rule_from_calibration, rule_from_metadata
from inspector.errors import DataError, ModelFileError
from inspector.roles import require_role
from inspector.history import HistoryDB, file_sha256
from inspector.history.tables import Calibration, ModelVersion, Product

log = logging.getLogger(__name__)

#: Camera settings a recipe may hold (the arguments of ``drivers.Camera.configure``).
CAMERA_SETTING_KEYS = ("exposure_us", "gain_db", "roi", "pixel_format")


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
        # A file moved or renamed by hand: say where it must be, and the other way out.
        raise ModelFileError(f"{path}: the model file of this version is missing (moved, renamed or deleted): put it "
                             "back under that name, or activate another version (inspector teach activate or rollback)")
    if file_sha256(path) != sha256:
        raise ModelFileError(f"{path}: the file changed since it was registered (SHA-256 differs); refusing to use it")


class NotCalibrated(ModelFileError):
    """A model with no threshold: no calibration in the database, none in its file."""


@dataclass(frozen=True)
class Recipe:
    """What the line needs to inspect one product: the model version, the rule it decides with
    (and where that came from), the camera settings and the good-part scores for drift."""

    product_id: int
    product: str
    model_version_id: int
    model_path: Path
    model_sha256: str
    rule: DecisionRule
    calibration_id: int | None  # None: the rule is not a calibration's of the database
    target_frr: float | None
    expected_frr: float | None
    camera_settings: dict[str, Any]
    reference_scores: list[float]  # good calibration scores, the drift monitor's reference
    #: Where the rule came from, in words: "calibration 3 of 2026-03-01 08:00 UTC", "the model
    #: file's calibration", or what an override said ("--threshold").
    source: str = ""


def version_recipe(
    db: HistoryDB,
    version_id: int,
    *,
    metadata: dict[str, Any] | None = None,
    rule: DecisionRule | None = None,
    rule_source: str = "",
) -> Recipe:
    """The recipe of one registered model version -- the one place that works out which rule a
    model decides with.

    The rule is ``rule`` when given (an explicit override, described by ``rule_source``), else
    the version's latest calibration in the database, else the calibration in the model file's
    ``metadata`` (keys ``threshold``, ``pixel_threshold``, ``min_defect_area_px``). The good-part
    scores come from the latest calibration's report, else from ``metadata["calibration"]``.

    Raises NotCalibrated when there is no rule anywhere, ModelFileError when the metadata's is
    unusable.
    """
    version = db.model_version(version_id)
    if version is None:
        raise DataError(f"no model version {version_id} in {db.url}")
    with db.session() as s:
        product = s.get(Product, version.product_id)
        product_name, camera_settings = product.name, dict(product.camera_settings or {})
    path = Path(version.path)
    metadata = metadata or {}
    calibration = db.latest_calibration(version.id)
    if rule is not None:
        source = rule_source or "the rule given"
    elif calibration is not None:
        rule = rule_from_calibration(calibration)
        source = f"calibration {calibration.id} of {calibration.created:%Y-%m-%d %H:%M} UTC"
    elif metadata.get("threshold") is not None:
        rule = rule_from_metadata(metadata, where=str(path))
        source = "the model file's calibration"
    else:
        raise NotCalibrated(f"model {path} has no threshold: calibrate it on good images first")
    return Recipe(
        product_id=version.product_id,
        product=product_name,
        model_version_id=version.id,
        model_path=path,
        model_sha256=version.sha256,
        rule=rule,
        calibration_id=calibration.id if calibration is not None else None,
        target_frr=calibration.target_frr if calibration is not None else None,
        expected_frr=calibration.expected_frr if calibration is not None else None,
        camera_settings=camera_settings,
        reference_scores=_reference_scores(calibration, metadata),
        source=source,
    )


def _reference_scores(calibration: Calibration | None, metadata: dict[str, Any]) -> list[float]:
    scores = (calibration.report or {}).get("good_scores") if calibration is not None else None
    if not scores:
        summary = metadata.get("calibration")
        scores = summary.get("good_scores") if isinstance(summary, dict) else None
    try:
        return [float(s) for s in scores or []]
    except (TypeError, ValueError):
        log.warning("the calibration's good scores are unreadable; no drift alarm")
        return []


def active_recipe(db: HistoryDB, product: str, *, verify_file: bool = True) -> Recipe:
    """The product's active model, its thresholds and its camera settings.

    Raises DataError when the product has no active model or the model no calibration, and
    ModelFileError when the file is missing or differs from what was registered.
    """
    row = get_product(db, product)
    if row.active_model_version_id is None:
        raise DataError(f"product {product!r} has no active model; teach one and activate it")
    version = db.model_version(row.active_model_version_id)
    if db.latest_calibration(version.id) is None:
        raise DataError(f"product {product!r}: active model version {version.id} has no calibration")
    if verify_file:
        verify_model_file(Path(version.path), version.sha256)
    return version_recipe(db, version.id)


def model_file_recipe(
    db: HistoryDB,
    model_path: Path,
    sha256: str,
    metadata: dict[str, Any],
    product: str | None = None,
    *,
    rule: DecisionRule | None = None,
    rule_source: str = "",
) -> Recipe:
    """The recipe of a model file given by hand (``inspector run --model``, ``inspector gui
    --model``): the file is registered (by its SHA-256, see :func:`register_model`) and its rule
    found as :func:`version_recipe` finds it -- ``rule`` if given, else its latest calibration in
    the database, else the one in its ``metadata``. A file whose own calibration would decide and
    is unusable is refused before anything is registered (it left a model version, and a new
    product, for a file no line can run)."""
    if rule is None and metadata.get("threshold") is not None and not _calibrated_in_db(db, sha256):
        rule_from_metadata(metadata, where=str(model_path))
    _, version_id = register_model(db, model_path, sha256, product)
    return version_recipe(db, version_id, metadata=metadata, rule=rule, rule_source=rule_source)


@dataclass(frozen=True)
class LoadedRecipe:
    """A recipe with its engine loaded: what decides on the line (see
    :func:`inspector.line.build_line`). Ids are None for an engine and rule not from the database."""

    engine: Any  # inspector.engine.Engine, or anything with predict()
    rule: DecisionRule
    model_version_id: int | None = None
    product_id: int | None = None
    product: str = ""
    model_path: Path | None = None
    reference_scores: tuple[float, ...] = ()  # good calibration scores, for the drift monitor
    source: str = ""  # where the rule came from

    @classmethod
    def of(cls, recipe: Recipe, engine: Any) -> LoadedRecipe:
        return cls(engine, recipe.rule, recipe.model_version_id, recipe.product_id, recipe.product,
                   recipe.model_path, tuple(recipe.reference_scores), recipe.source)

    def scores_as(self, other: LoadedRecipe) -> bool:
        """Whether ``other`` scores parts as this one does (the same engine and version, judged
        against the same good scores): only the rule differs, as after a threshold set by hand."""
        return (self.engine is other.engine and self.model_version_id == other.model_version_id
                and tuple(self.reference_scores) == tuple(other.reference_scores))


def load_active_recipe(db: HistoryDB, product: str, *, device: str = "auto", backend: str = "auto") -> LoadedRecipe:
    """The product's :func:`active_recipe` with its engine loaded (slow: seconds)."""
    from inspector.engine import Engine

    recipe = active_recipe(db, product)
    return LoadedRecipe.of(recipe, Engine(recipe.model_path, device=device, backend=backend))


def load_model_file_recipe(db: HistoryDB, path: str | Path, product: str | None = None, *,
                           device: str = "auto", backend: str = "auto") -> LoadedRecipe:
    """A model file's :func:`model_file_recipe` with its engine loaded (slow: seconds)."""
    from inspector.engine import Engine

    engine = Engine(path, device=device, backend=backend)
    recipe = model_file_recipe(db, engine.model_path, engine.model_sha256, engine.metadata, product)
    return LoadedRecipe.of(recipe, engine)


def list_products(db: HistoryDB) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Product.name).order_by(Product.name)))


#: Product of a model file registered without one (``inspector run --model`` with no ``--product``).
DEFAULT_PRODUCT = "default"


def _calibrated_in_db(db: HistoryDB, sha256: str) -> bool:
    """Whether a version of the file with this SHA-256 has a calibration in the database (which
    decides instead of the file's own)."""
    with db.session() as s:
        ids = s.execute(select(ModelVersion.id).where(ModelVersion.sha256 == sha256)).scalars().all()
    return any(db.latest_calibration(i) is not None for i in ids)


def register_model(db: HistoryDB, model_path: Path, sha256: str, product: str | None) -> tuple[int, int]:
    """(product id, model version id) of the model file, registering it (by its SHA-256) and the
    product when they are new. Without ``product``, a model already registered keeps its product;
    a new one goes to :data:`DEFAULT_PRODUCT`."""
    with db.session() as s:
        versions = s.execute(
            select(ModelVersion.id, ModelVersion.product_id).where(ModelVersion.sha256 == sha256).order_by(ModelVersion.id)
        ).all()
    if product is None and versions:
        version_id, product_id = versions[0]
        return product_id, version_id
    name = product or DEFAULT_PRODUCT
    found = db.product_by_name(name)
    product_id = found.id if found is not None else db.add_product(name, "created when its first model was registered")
    for version_id, owner in versions:
        if owner == product_id:
            return product_id, version_id
    version_id = db.add_model_version(product_id, model_path.resolve(), sha256=sha256, note="registered on first use")
    return product_id, version_id
