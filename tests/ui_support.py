"""Shared helpers of the desktop tests (tests/test_ui*.py): a database with users, a line
replaying real magnetic-tile images through the real engine and pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.history import HistoryDB
from inspector.image_io import read_image
from inspector.line import DecisionRule
from inspector.recipes import LoadedRecipe

USERS = {"tina": ("technician", "123400"), "quinn": ("quality", "567800"), "otto": ("operator", "730519")}
SIZE = 192  # tile images differ in size; the teach gates want one size


def make_db(tmp_path: Path) -> HistoryDB:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    for name, (role, pin) in USERS.items():
        db.add_user(name, role, pin, by="test")
    return db


def resized_copies(paths: list[Path], folder: Path) -> Path:
    """Real images resized to SIZE x SIZE, written as PNG in name order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        image = cv2.resize(read_image(p), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{i:03d}_{p.stem}.png"), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def register_model(db: HistoryDB, model_path: Path, product: str = "tile") -> tuple[int, int]:
    """(product id, version id) of the model, registered and active, with a calibration whose
    threshold is 1.0 and good scores spread around it (a stand-in for a real calibration run)."""
    product_id = db.add_product(product)
    version_id = db.add_model_version(product_id, model_path)
    db.add_calibration(version_id, image_threshold=1.0, target_frr=0.1, expected_frr=0.1, expected_frr_ci=(0.01, 0.3),
                       report={"good_scores": list(np.linspace(0.2, 1.2, 40))}, created_by="test")
    db.set_active_model(product_id, version_id, user="test", role="system")
    return product_id, version_id


#: Good scores of the stand-in calibration (see register_model).
REFERENCE = tuple(float(v) for v in np.linspace(0.2, 1.2, 40))


def loaded_recipe(engine, threshold: float, product_id: int, version_id: int, product: str = "tile",
                  reference: tuple[float, ...] = REFERENCE) -> LoadedRecipe:
    return LoadedRecipe(engine, DecisionRule(threshold), version_id, product_id, product, engine.model_path,
                        tuple(reference), "test")


def make_line(db: HistoryDB, engine, frames: Path, threshold: float, image_dir: Path, product_id: int, version_id: int,
              *, loop: bool = False, reference: tuple[float, ...] | None = None):
    """A LineModel over a folder camera replaying ``frames`` once (or forever: ``loop``), every
    frame's images kept; ``reference``: the good scores the drift monitor compares with."""
    from ui.line import LineModel, desktop_config

    config = desktop_config([f"folder://{frames}?fps=0&loop={int(loop)}"], image_dir, trigger="free_run",
                            pass_sample_rate=1.0, quota_gb=1.0)
    recipe = loaded_recipe(engine, threshold, product_id, version_id, reference=REFERENCE if reference is None else reference)
    return LineModel(db, config, recipe)


def sign_in(session, name: str) -> None:
    session.sign_in(name, USERS[name][1])


def audit_actions(db: HistoryDB) -> list[str]:
    return [e.action for e in db.audit_events(limit=1000)]
