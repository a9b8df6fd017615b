"""The instant model (memory bank on the teacher's features) goes through the same paths as
EfficientAD: model file, engine, calibration, ONNX, the command line; and it finds a defect."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspector.engine import Engine
from inspector.errors import DataError, ModelFileError
from inspector.method.instant import InstantModel, nearest_distance, neighbourhood_average, patch_features
from inspector.method.instant_build import InstantConfig, build_instant, greedy_coreset
from inspector.model_file import load_model, save_model, save_tensors

SIZE = 128  # the teacher's map is 24 x 24: small enough for seconds, big enough to hold a defect


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A good part: a fine woven texture with a little noise and a slight brightness change."""
    y, x = np.mgrid[0:160, 0:160]
    base = 120 + 40 * np.sin(x / 3.0) * np.sin(y / 3.0) + rng.normal(0, 4, (160, 160)) + rng.uniform(-8, 8)
    return np.clip(np.repeat(base[..., None], 3, axis=2), 0, 255).astype(np.uint8)


def _with_defect(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    cv2.circle(out, (80, 80), 14, (250, 250, 250), -1)
    return out


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    for i in range(24):
        cv2.imwrite(str(folder / f"good_{i:02d}.png"), _texture(rng))
    return folder


@pytest.fixture(scope="module")
def instant_file(good_folder, tmp_path_factory) -> Path:
    paths = sorted(good_folder.glob("*.png"))
    result = build_instant(paths, InstantConfig(image_size=SIZE, bank_size=256, candidates=4000, features="pdn"), device="cpu", show_progress=False)
    path = tmp_path_factory.mktemp("model") / "instant.safetensors"
    save_model(path, result.model, result.metadata)
    return path


def test_nearest_distance_is_the_brute_force_distance():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 16, 5, 4, generator=g)
    bank = torch.randn(30, 16, generator=g)
    got = nearest_distance(features, bank, (bank**2).sum(dim=1))
    flat = features.permute(0, 2, 3, 1).reshape(-1, 16)
    expected = torch.cdist(flat, bank).min(dim=1).values.reshape(2, 5, 4)[:, None]
    assert got.shape == (2, 1, 5, 4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_greedy_coreset_covers_the_rare_points_first():
    # A dense cluster of 1,000 points and three far outliers: k-centre picks the outliers, which a
    # random sample of four would almost never hold.
    g = torch.Generator().manual_seed(1)
    cluster = torch.randn(1000, 8, generator=g) * 0.01
    outliers = torch.tensor([[50.0] + [0] * 7, [0, 50.0] + [0] * 6, [0, 0, -50.0] + [0] * 5])
    points = torch.cat([cluster, outliers])
    chosen = set(greedy_coreset(points, 4, seed=0, projection_dim=8).tolist())
    assert {1000, 1001, 1002} <= chosen
    assert greedy_coreset(points, 5000).tolist() == list(range(len(points)))  # k >= M: all of them


def test_standardising_after_the_neighbourhood_average_is_the_same():
    # _sample_features averages raw features and standardises afterwards (one teacher pass); the
    # bank must hold exactly the features that inference computes.
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(1, 6, 9, 9, generator=g) * 3 + 1
    mean, std = raw.mean(dim=(0, 2, 3), keepdim=True), raw.std(dim=(0, 2, 3), keepdim=True)
    late = (neighbourhood_average(raw, 3) - mean) / std
    early = patch_features(lambda x: x, mean, std, raw, 3)
    torch.testing.assert_close(late, early, atol=1e-5, rtol=1e-5)


def test_a_model_file_of_the_instant_kind_loads_as_one(instant_file):
    model, meta = load_model(instant_file)
    assert isinstance(model, InstantModel)
    assert meta["kind"] == "instant" and meta["bank_size"] == 256 and meta["image_size"] == SIZE
    assert meta["teacher"] == "teacher_small.safetensors" and meta["validation_images"] >= 1
    assert float(model.q_end) > float(model.q_start)


def test_the_engine_scores_a_defect_above_every_good_part(instant_file):
    engine = Engine(instant_file, device="cpu", backend="eager")
    assert engine.kind == "instant" and engine.info["kind"] == "instant"
    rng = np.random.default_rng(99)  # parts the bank has never seen
    good = [_texture(rng) for _ in range(6)]
    defect = _with_defect(_texture(rng))
    preds = engine.predict_batch([*good, defect])
    assert preds[-1].anomaly_map.shape == defect.shape[:2]
    assert preds[-1].score == pytest.approx(float(preds[-1].anomaly_map.max()))
    assert preds[-1].score > max(p.score for p in preds[:-1])
    # ... and the map lights up where the defect is, not elsewhere.
    peak = np.unravel_index(np.argmax(preds[-1].anomaly_map), defect.shape[:2])
    assert abs(peak[0] - 80) <= 24 and abs(peak[1] - 80) <= 24


def test_calibration_writes_thresholds_into_an_instant_model(instant_file, good_folder, tmp_path):
    from calibration.calibrate import calibrate_model, write_thresholds

    rng = np.random.default_rng(7)
    cal = tmp_path / "cal"
    cal.mkdir()
    for i in range(20):
        cv2.imwrite(str(cal / f"g{i}.png"), _texture(rng))
    result = calibrate_model(instant_file, sorted(cal.glob("*.png")), device="cpu", backend="eager", target_frr=0.1, show_progress=False)
    out = write_thresholds(instant_file, result, out=tmp_path / "calibrated.safetensors")
    model, meta = load_model(out)
    assert isinstance(model, InstantModel) and meta["kind"] == "instant"
    assert meta["threshold"] == pytest.approx(result.image.threshold)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime (the [onnx] extra) is not installed")
def test_onnx_export_and_the_onnxruntime_backend_agree_with_pytorch(instant_file, tmp_path):
    from inspector.onnx_export import export_and_check

    assert export_and_check(instant_file, tmp_path / "instant.onnx") < 1e-3
    eager = Engine(instant_file, device="cpu", backend="eager")
    ort = Engine(instant_file, device="cpu", backend="onnxruntime")
    image = _with_defect(_texture(np.random.default_rng(3)))
    assert ort.predict(image).score == pytest.approx(eager.predict(image).score, rel=1e-3, abs=1e-4)


def test_a_bad_neighbourhood_in_the_metadata_is_refused(instant_file, tmp_path):
    from inspector.model_file import load_model_tensors

    tensors, meta = load_model_tensors(instant_file)
    meta = {k: v for k, v in meta.items() if k not in ("tensor_sha256", "metadata_sha256")}
    bad = tmp_path / "bad.safetensors"
    save_tensors(bad, tensors, {**meta, "neighbourhood": 4})
    with pytest.raises(ModelFileError, match="neighbourhood 4"):
        load_model(bad)
    for layers in ([13, 6], [6, -1], "6,13", [6, True]):
        save_tensors(bad, tensors, {**meta, "layers": layers})
        with pytest.raises(ModelFileError, match="backbone layers"):
            load_model(bad)


def test_too_few_images_is_a_clear_error(good_folder):
    with pytest.raises(DataError, match="at least 10"):
        build_instant(sorted(good_folder.glob("*.png"))[:5], InstantConfig(image_size=SIZE), device="cpu", show_progress=False)


def test_inspector_train_kind_instant_writes_a_model_the_engine_runs(good_folder, tmp_path):
    out = tmp_path / "cli.safetensors"
    cmd = [sys.executable, "-m", "cli", "train", str(good_folder), "--out", str(out), "--kind", "instant", "--image-size", str(SIZE), "--device", "cpu"]
    # The default features are Lite2's; --teacher means the PDN's, and contradicts --features lite2.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "instant model written" in done.stdout and "memory bank" in done.stdout
    assert Engine(out, device="cpu", backend="eager").kind == "instant"
    refused = subprocess.run([*cmd, "--iterations", "5"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "--kind instant is built, not trained" in refused.stderr
    assert load_model(out)[1]["features"] == "lite2"
    contradiction = subprocess.run([*cmd, "--teacher", "random", "--features", "lite2"], capture_output=True, text=True, timeout=120)
    assert contradiction.returncode != 0 and "--teacher applies to --features pdn" in contradiction.stderr


def test_an_instant_model_on_backbone_features_saves_loads_scores_and_exports(good_folder, tmp_path):
    from inspector.method.backbones import BackboneFeatures

    paths = sorted(good_folder.glob("*.png"))
    built = build_instant(paths, InstantConfig(image_size=SIZE, bank_size=256, candidates=4000, features="lite2"),
                          device="cpu", show_progress=False)
    path = tmp_path / "lite2.safetensors"
    save_model(path, built.model, built.metadata)
    model, meta = load_model(path)  # the weights come from the file, not from the weight package
    assert isinstance(model.teacher, BackboneFeatures) and meta["features"] == "lite2" and meta["teacher"] is None
    assert meta["layers"] == [6, 13, 19] and model.teacher.targets.backbone.layers == (6, 13, 19)  # INSTANT_LAYERS
    engine = Engine(path, device="cpu", backend="eager")
    rng = np.random.default_rng(5)
    good = [_texture(rng) for _ in range(4)]
    preds = engine.predict_batch([*good, _with_defect(_texture(rng))])
    assert preds[-1].score > max(p.score for p in preds[:-1])
    if importlib.util.find_spec("onnxruntime") is not None:
        from inspector.onnx_export import export_and_check

        assert export_and_check(path, tmp_path / "lite2.onnx") < 1e-3


def test_a_file_from_before_the_layers_were_recorded_loads_with_the_backbones_own_pair(good_folder, tmp_path):
    from inspector.model_file import load_model_tensors

    paths = sorted(good_folder.glob("*.png"))
    built = build_instant(paths, InstantConfig(image_size=SIZE, bank_size=256, candidates=4000, features="lite2", layers=(6, 13)),
                          device="cpu", show_progress=False)
    path = tmp_path / "pair.safetensors"
    save_model(path, built.model, built.metadata)
    tensors, meta = load_model_tensors(path)
    old = tmp_path / "old.safetensors"  # what instant models on Lite2 were until the layers were recorded
    save_tensors(old, tensors, {k: v for k, v in meta.items() if k not in ("tensor_sha256", "metadata_sha256", "layers")})
    model, _ = load_model(old)
    assert model.teacher.targets.backbone.layers == (6, 13)
    image = torch.rand(1, 3, SIZE, SIZE)
    torch.testing.assert_close(model(image), built.model(image))


def test_a_stride_4_block_is_averaged_down_to_the_stride_8_grid():
    from inspector.method.backbones import BackboneFeatures

    image = torch.rand(1, 3, SIZE, SIZE)
    grids = {layers: BackboneFeatures("lite2", pretrained=False, layers=layers)(image).shape
             for layers in ((6, 13), (3, 6, 13), (6, 13, 19))}
    assert set(grids.values()) == {torch.Size([1, 384, SIZE // 4 - 8, SIZE // 4 - 8])}


def test_a_bank_larger_than_the_candidate_patches_is_cut_to_them(good_folder, tmp_path):
    paths = sorted(good_folder.glob("*.png"))
    built = build_instant(paths, InstantConfig(image_size=SIZE, bank_size=5000, candidates=4000, features="pdn"),
                          device="cpu", show_progress=False)
    assert built.model.bank.shape[0] == built.metadata["bank_size"] == built.metadata["candidate_patches"] <= 4000
    path = tmp_path / "small.safetensors"
    save_model(path, built.model, built.metadata)
    assert load_model(path)[0].bank.shape == built.model.bank.shape
