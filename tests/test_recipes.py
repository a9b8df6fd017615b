"""Where a model's rule comes from: the recipe (inspector.recipes), the one place that decides it.

The database's latest calibration wins over the calibration written into the model file; the
file's is used when the database has none; a model with neither gives a clear error. No model is
loaded: a recipe is database rows and a model file's metadata.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.errors import DataError, ModelFileError
from inspector.history import file_sha256
from inspector.line import DecisionRule
from inspector.recipes import (
    LoadedRecipe,
    NotCalibrated,
    active_recipe,
    model_file_recipe,
    register_model,
    version_recipe,
)

META = {"threshold": 0.3, "pixel_threshold": 0.2, "min_defect_area_px": 12,
        "calibration": {"good_scores": [0.1, 0.15, 0.2]}}


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, str]:
    """A file standing in for a model (its bytes only give it a SHA-256)."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"not really a model")
    return path, file_sha256(path)


def test_the_model_files_calibration_is_used_when_the_database_has_none(db, model) -> None:
    path, sha = model
    recipe = model_file_recipe(db, path, sha, META)
    assert recipe.rule == DecisionRule(0.3, 0.2, 12)
    assert recipe.source == "the model file's calibration" and recipe.calibration_id is None
    assert recipe.reference_scores == [0.1, 0.15, 0.2]
    assert recipe.product == "default" and recipe.model_path == path.resolve() and recipe.model_sha256 == sha
    # Registered once, by its hash: asking again gives the same version.
    assert model_file_recipe(db, path, sha, META).model_version_id == recipe.model_version_id
    # As calibration records it, a pixel threshold without a minimum area is no pixel rule.
    assert model_file_recipe(db, path, sha, {"threshold": 0.3, "pixel_threshold": 0.2}).rule == DecisionRule(0.3)


def test_a_calibration_in_the_database_wins_over_the_model_file(db, model) -> None:
    path, sha = model
    _, version_id = register_model(db, path, sha, "tile")
    calibration_id = db.add_calibration(version_id, image_threshold=0.4, pixel_threshold=0.25, min_defect_area_px=9,
                                        target_frr=0.01, expected_frr=0.02, report={"good_scores": [0.3, 0.35]},
                                        created_by="test")
    recipe = model_file_recipe(db, path, sha, META)  # registered for "tile" already: that product
    assert recipe.rule == DecisionRule(0.4, 0.25, 9) and recipe.product == "tile"
    assert recipe.source.startswith(f"calibration {calibration_id} of ") and recipe.source.endswith(" UTC")
    assert (recipe.calibration_id, recipe.target_frr, recipe.expected_frr) == (calibration_id, 0.01, 0.02)
    assert recipe.reference_scores == [0.3, 0.35]
    assert version_recipe(db, version_id, metadata=META) == recipe
    # The product's active model gets the same recipe.
    db.set_active_model(recipe.product_id, version_id, user="test", role="system")
    assert active_recipe(db, "tile") == recipe


def test_an_explicit_rule_overrides_both(db, model) -> None:
    path, sha = model
    recipe = model_file_recipe(db, path, sha, {}, rule=DecisionRule(0.5), rule_source="--threshold")
    assert recipe.rule == DecisionRule(0.5) and recipe.source == "--threshold" and recipe.reference_scores == []


def test_an_uncalibrated_model_gives_a_clear_error(db, model) -> None:
    path, sha = model
    with pytest.raises(NotCalibrated, match=r"model .*model\.safetensors has no threshold: calibrate it on good images first"):
        model_file_recipe(db, path, sha, {"architecture": "small"})
    with pytest.raises(ModelFileError, match="calibration metadata is unusable"):
        model_file_recipe(db, path, sha, {"threshold": "high"})
    # An active model without a calibration is refused as before: activation needs one.
    product_id, version_id = register_model(db, path, sha, "tile")
    db.set_active_model(product_id, version_id, user="test", role="system")
    with pytest.raises(DataError, match="has no calibration"):
        active_recipe(db, "tile")


def test_a_file_whose_unusable_calibration_would_decide_is_refused_before_it_is_registered(db, model) -> None:
    """inspector run --model FILE with a hand-edited calibration (a negative minimum area, a
    recheck band over the threshold) was refused only after the file was registered: the
    database kept a model version, and a product 'default', for a file no line can run."""
    path, sha = model
    for bad in ({**META, "min_defect_area_px": -5}, {**META, "recheck_threshold": 0.5}):
        with pytest.raises(ModelFileError, match=f"{path}: its calibration metadata is unusable"):
            model_file_recipe(db, path, sha, bad, "tile")
    assert db.model_versions_of_file(path, sha) == [] and db.product_by_name("tile") is None
    # Where the database has a calibration of the file, that decides: the file's is not read.
    _, version_id = register_model(db, path, sha, "tile")
    db.add_calibration(version_id, image_threshold=0.4, target_frr=0.01, expected_frr=0.01, created_by="test")
    assert model_file_recipe(db, path, sha, {**META, "min_defect_area_px": -5}, "tile").rule == DecisionRule(0.4)


def test_a_loaded_recipe_carries_what_the_line_needs(db, model) -> None:
    path, sha = model
    recipe = model_file_recipe(db, path, sha, META, "tile")
    engine = object()
    loaded = LoadedRecipe.of(recipe, engine)
    assert loaded.engine is engine and loaded.rule == recipe.rule and loaded.source == recipe.source
    assert (loaded.model_version_id, loaded.product_id, loaded.product) == (recipe.model_version_id, recipe.product_id, "tile")
    assert loaded.reference_scores == (0.1, 0.15, 0.2) and loaded.model_path == recipe.model_path


def test_an_active_model_file_moved_away_says_where_it_must_be_and_the_way_out(db, model, tmp_path) -> None:
    """The active version's file renamed by hand: 'MODEL: the model file of this version is
    missing', and nothing of what to do about it."""
    path, sha = model
    product_id, version_id = register_model(db, path, sha, "tile")
    db.add_calibration(version_id, image_threshold=0.4, target_frr=0.01, expected_frr=0.01, created_by="test")
    db.set_active_model(product_id, version_id, user="test", role="system")
    path.rename(tmp_path / "renamed.safetensors")
    with pytest.raises(ModelFileError, match=rf"{path}: the model file of this version is missing \(moved, renamed or "
                                             r"deleted\): put it back under that name, or activate another version"):
        active_recipe(db, "tile")
