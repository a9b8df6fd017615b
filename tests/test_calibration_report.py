"""The calibration report (report.json and plots), thresholds written into a model file, and the
defect-folder forms `inspector calibrate --defects` accepts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from calibration.calibrate import CalibrationResult, defect_images, write_thresholds
from calibration.report import read_report, write_report
from calibration.thresholds import analyse_defects, calibrate_pixel_rule, threshold_for_frr
from inspector.method.efficientad import EfficientAD
from inspector.errors import DataError, ModelFileError
from inspector.model_file import load_model, save_model


def synthetic_result(with_defects: bool = True) -> CalibrationResult:
    rng = np.random.default_rng(0)
    good = rng.gamma(4, 0.01, 400)
    image = threshold_for_frr(good, 0.01)
    maps = [rng.uniform(0, 0.05, (32, 32)).astype(np.float32) for _ in range(20)]
    pixel = calibrate_pixel_rule(maps, 0.01, mm_per_px=0.2)
    result = CalibrationResult(image, pixel, None, good, good_paths=[f"g{i}.png" for i in range(400)])
    if with_defects:
        bad = rng.gamma(4, 0.01, 60) + 0.05
        result.defects = analyse_defects(good, bad, image.threshold)
        result.defect_scores = bad
        result.defect_regions_px = rng.integers(0, 3 * pixel.min_defect_area_px, 60)
        result.defect_paths = [f"d{i}.png" for i in range(60)]
    return result


def test_report_json_and_plots(tmp_path):
    result = synthetic_result()
    path = write_report(tmp_path / "report", result)
    report = json.loads(path.read_text())  # strict JSON: would fail on NaN
    im = result.image
    assert report["threshold"] == im.threshold and report["n_good"] == 400
    assert report["expected_frr"] == pytest.approx(im.expected_frr)
    assert report["frr_ci_low"] < report["expected_frr"] < report["frr_ci_high"]
    assert report["escape_rate"] == pytest.approx(result.defects.escape_rate)
    assert report["f1_threshold"] == pytest.approx(result.defects.f1_threshold)
    assert report["pixel_threshold"] == pytest.approx(result.pixel.pixel_threshold)
    assert report["min_defect_area_px"] == result.pixel.min_defect_area_px
    assert report["min_defect_area_mm2"] == pytest.approx(result.pixel.min_defect_area_px * 0.04)
    caught = result.defect_regions_px >= result.pixel.min_defect_area_px
    assert report["pixel_rule_escape_rate"] == pytest.approx(np.mean(~caught))
    assert report["combined_escape_rate"] <= min(report["escape_rate"], report["pixel_rule_escape_rate"])
    assert len(report["good_scores"]) == 400 and report["plots"] == {"scores": "scores.png", "roc": "roc.png"}
    for name in ("scores.png", "roc.png"):
        image = cv2.imread(str(path.parent / name))
        assert image is not None and image.shape[0] > 200 and image.std() > 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json", "roc.png", "scores.png"]
    assert read_report(path.parent)["threshold"] == im.threshold


def test_report_without_defects_has_no_roc(tmp_path):
    path = write_report(tmp_path, synthetic_result(with_defects=False))
    report = read_report(path)
    assert "escape_rate" not in report and not (tmp_path / "roc.png").exists()
    with pytest.raises(DataError, match="no calibration report"):
        read_report(tmp_path / "elsewhere")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model(path, EfficientAD("s"), {"architecture": "EfficientAD-S", "image_size": 256, "note": "kept"})
    return path


def test_thresholds_go_into_the_model_metadata_and_the_weights_stay(model_file, tmp_path):
    before, _ = load_model(model_file)
    result = synthetic_result()
    out = write_thresholds(model_file, result, out=tmp_path / "calibrated.safetensors")
    model, meta = load_model(out)
    assert meta["threshold"] == result.image.threshold
    assert meta["pixel_threshold"] == result.pixel.pixel_threshold
    assert meta["min_defect_area_px"] == result.pixel.min_defect_area_px
    assert meta["calibration"]["target_frr"] == 0.01 and meta["note"] == "kept"
    for (name, a), b in zip(before.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    # Recalibrating replaces the keys (no pixel rule now), in place.
    result.pixel = None
    write_thresholds(out, result)
    _, meta = load_model(out)
    assert meta["pixel_threshold"] is None and meta["min_defect_area_px"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_damaged_model_is_refused_and_left_alone(model_file, tmp_path):
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        write_thresholds(damaged, synthetic_result())
    assert damaged.read_bytes() == bytes(data)


def test_defect_folder_forms(tmp_path):
    png = cv2.imencode(".png", np.zeros((16, 16), np.uint8))[1].tobytes()
    mvtec = tmp_path / "cat"
    for sub in ("test/good", "test/crack", "test/hole", "train/good"):
        (mvtec / sub).mkdir(parents=True)
    for rel in ("test/good/0.png", "test/crack/0.png", "test/crack/1.png", "test/hole/0.png", "train/good/0.png"):
        (mvtec / rel).write_bytes(png)
    expected = ["crack/0.png", "crack/1.png", "hole/0.png"]
    assert [f"{p.parent.name}/{p.name}" for p in defect_images(mvtec)] == expected
    assert [f"{p.parent.name}/{p.name}" for p in defect_images(mvtec / "test")] == expected
    assert [p.name for p in defect_images(mvtec / "test" / "crack")] == ["0.png", "1.png"]
    with pytest.raises(DataError, match="no defective images"):
        defect_images(mvtec / "test" / "good")
    with pytest.raises(DataError, match="no such folder"):
        defect_images(tmp_path / "missing")
