"""The short training recipe's parts: cached teacher targets, crops that match the whole image's
output, the cosine schedule, the recipe following the budget, and student-teacher-only models
that save, load and score through the same paths as the paper's."""

import math

import cv2
import numpy as np
import pytest
import torch

from inspector.engine import Engine
from inspector.errors import InspectorError, ModelFileError
from inspector.method import training
from inspector.method.efficientad import EfficientAD, teacher_channel_stats
from inspector.method.modes import PAPER_ITERATIONS, QUICK_TRAIN_S, SHORT_RECIPE_BELOW
from inspector.method.training import (
    SHORT_RECIPE,
    TeacherTargets,
    TrainConfig,
    crop,
    crop_window,
    feature_window,
    learning_rate,
    load_squares,
    mode_config,
    recipe_for,
    short_recipe,
    to_input,
    train,
)
from inspector.model_file import load_model, load_tensors, save_model, save_tensors

SIZE = 64  # the PDN's smallest useful input: 8x8 output positions, fast enough for unit tests


@pytest.fixture(scope="module")
def good_images(tmp_path_factory):
    """Twelve textured 'parts' with small random differences, as PNG files."""
    folder = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    base = (rng.random((SIZE, SIZE)) * 120 + 60).astype(np.float32)
    paths = []
    for i in range(12):
        image = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"good_{i:02d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.mark.parametrize("size", ["s", "m"])
def test_a_crop_at_a_stride_multiple_gives_exactly_that_window_of_the_whole_output(size):
    student = EfficientAD(size, autoencoder=False).student.eval()
    x = torch.randn(1, 3, 128, 128)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        whole = student(x)
        for _ in range(3):
            window = crop_window(128, 64, g)
            assert window[0] % 4 == 0 and window[1] % 4 == 0
            torch.testing.assert_close(student(crop(x, window)), crop(whole, feature_window(window)), rtol=0, atol=1e-5)


def test_crop_sizes_the_network_cannot_use_are_refused():
    g = torch.Generator().manual_seed(0)
    for bad in (30, 66, 300):
        with pytest.raises(InspectorError, match="crop size"):
            crop_window(256, bad, g)


def test_cached_targets_are_the_teachers_normalised_outputs_and_its_statistics(good_images):
    torch.manual_seed(0)
    model = EfficientAD("s", autoencoder=False)
    images = load_squares(good_images, SIZE, "resize")
    dev = torch.device("cpu")
    targets = TeacherTargets(model, images, dev)
    assert targets.cached
    mean, std = teacher_channel_stats(model.teacher, [to_input(images, dev)])
    torch.testing.assert_close(targets.mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(targets.std, std, rtol=1e-4, atol=1e-5)
    index = torch.tensor([3, 0, 3])
    with torch.no_grad():
        expected = (model.teacher(to_input(images[index], dev)) - mean) / std
    # fp16 storage: within a hundredth of a channel's std, far below the student's errors that
    # the hard-feature loss trains on.
    torch.testing.assert_close(targets(index), expected, rtol=0, atol=1e-2)


def test_targets_over_the_cache_limit_are_computed_per_step_with_the_same_values(good_images, monkeypatch):
    torch.manual_seed(0)
    model = EfficientAD("s", autoencoder=False)
    images = load_squares(good_images, SIZE, "resize")
    cached = TeacherTargets(model, images, torch.device("cpu"))
    monkeypatch.setattr(training, "TARGET_CACHE_MAX_BYTES", 0)
    uncached = TeacherTargets(model, images, torch.device("cpu"))
    assert not uncached.cached
    index = torch.tensor([1, 5])
    torch.testing.assert_close(uncached(index), cached(index), rtol=0, atol=1e-2)


def test_cosine_schedule_decays_from_the_rate_to_zero_and_step_drops_at_95_percent():
    cosine = TrainConfig(iterations=100, schedule="cosine", learning_rate=1e-3)
    assert learning_rate(cosine, 0) == pytest.approx(1e-3)
    assert learning_rate(cosine, 50) == pytest.approx(5e-4)
    assert learning_rate(cosine, 99) < 1e-6
    rates = [learning_rate(cosine, i) for i in range(100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    step = TrainConfig(iterations=100)
    assert learning_rate(step, 94) == pytest.approx(1e-4) and learning_rate(step, 95) == pytest.approx(1e-5)
    with pytest.raises(InspectorError, match="schedule"):
        learning_rate(TrainConfig(iterations=10, schedule="linear"), 0)


def test_the_recipe_follows_the_budget():
    assert recipe_for(None, QUICK_TRAIN_S) == "short"
    assert recipe_for(SHORT_RECIPE_BELOW - 1) == "short"
    assert recipe_for(PAPER_ITERATIONS) == "paper"
    quick, full = mode_config("quick"), mode_config("full")
    assert (quick.recipe, quick.autoencoder, quick.batch_size, quick.time_budget_s) == ("short", False, SHORT_RECIPE["batch_size"], QUICK_TRAIN_S)
    assert (full.recipe, full.autoencoder, full.batch_size, full.learning_rate) == ("paper", True, 1, 1e-4)
    assert mode_config("full", 500).recipe == "short"  # a small --iterations is a short budget
    assert mode_config("quick", 500, recipe="paper").recipe == "paper"
    with pytest.raises(InspectorError, match="recipe"):
        mode_config("quick", recipe="fast")


def short_config(**settings):
    return short_recipe(3, image_size=SIZE, batch_size=4, penalty_batch_size=1, amp=False, **settings)


def test_short_recipe_trains_a_student_teacher_model_that_saves_loads_and_scores(good_images, natural_dir, tmp_path):
    result = train(good_images, short_config(), teacher="random", penalty_dir=natural_dir, device="cpu", show_progress=False)
    model = result.model
    assert not model.has_autoencoder and model.student.conv4.out_channels == 384
    assert result.metadata["autoencoder"] is False and result.metadata["recipe"] == "short"
    assert "student-teacher only" in result.metadata["architecture"]
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)
    path = tmp_path / "st.safetensors"
    save_model(path, model, result.metadata)
    loaded, meta = load_model(path)
    assert not loaded.has_autoencoder and meta["autoencoder"] is False
    engine = Engine(path, device="cpu", backend="eager", warmup=False)
    image = cv2.imread(str(good_images[0]), cv2.IMREAD_GRAYSCALE)
    prediction = engine.predict(image)
    assert prediction.anomaly_map.shape == image.shape and math.isfinite(prediction.score)
    pytest.importorskip("onnxruntime")
    exported = Engine(path, device="cpu", backend="onnxruntime", warmup=False).predict(image)
    assert exported.score == pytest.approx(prediction.score, rel=1e-3, abs=1e-5)
    # The held-out images' 0.995 quantile maps to 0.1 (Section 3.4), with no autoencoder term.
    with torch.no_grad():
        x = to_input(load_squares(good_images, SIZE, "resize"), torch.device("cpu"))
        normalised = loaded(x)
        map_st, map_ae = loaded.raw_maps(x)
    assert map_ae is None
    torch.testing.assert_close(normalised, 0.1 * (map_st - loaded.q_st_start) / (loaded.q_st_end - loaded.q_st_start))


def test_short_recipe_is_deterministic_for_a_seed_with_crops(good_images, natural_dir):
    config = short_config(crop_size=48)
    a = train(good_images, config, teacher="random", penalty_dir=natural_dir, device="cpu", show_progress=False)
    b = train(good_images, config, teacher="random", penalty_dir=natural_dir, device="cpu", show_progress=False)
    assert a.losses == b.losses
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


def test_short_recipe_with_the_autoencoder_trains_all_three_terms(good_images, natural_dir):
    # The autoencoder's strided encoder needs the paper's 256 px.
    config = short_recipe(2, image_size=256, batch_size=2, penalty_batch_size=1, amp=False, autoencoder=True)
    result = train(good_images, config, teacher="random", penalty_dir=natural_dir, device="cpu", show_progress=False)
    assert result.model.has_autoencoder and result.metadata["autoencoder"] is True
    assert all(math.isfinite(v) for v in result.losses)


def test_a_model_file_with_an_unusable_autoencoder_flag_is_refused(good_images, natural_dir, tmp_path):
    result = train(good_images, short_config(), teacher="random", penalty_dir=natural_dir, device="cpu", show_progress=False)
    path = tmp_path / "st.safetensors"
    save_model(path, result.model, result.metadata)
    tensors, meta = load_tensors(path)
    save_tensors(path, tensors, {**meta, "autoencoder": "no"})
    with pytest.raises(ModelFileError, match="autoencoder"):
        load_model(path)
    save_tensors(path, tensors, {**meta, "autoencoder": True})  # tensors of a model without one
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(path)
