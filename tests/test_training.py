"""Training: a short run on real images already separates defects; checkpoints, resume, cancel."""

import threading

import numpy as np
import pytest
import torch

from inspector.engine import Engine
from inspector.errors import DataError, InspectorError
from inspector.image_io import list_images, read_image
from inspector.ad_metrics import image_auroc
from inspector.model_file import load_tensors, save_model
from inspector.method.training import (
    MIN_GOOD_IMAGES,
    PAPER_ITERATIONS,
    QUICK_MAX_ITERATIONS,
    QUICK_TRAIN_S,
    TrainConfig,
    TrainingCancelled,
    augment,
    mode_config,
    split_holdout,
    train,
)


@pytest.mark.slow
def test_short_training_ranks_defects_above_good_parts(shared_data, natural_dir, tmp_path):
    """40 iterations with the shipped teacher: defective tiles score higher than good ones."""
    tile = shared_data / "magnetic_tile"
    train_paths = list_images(tile / "train" / "good")[::19][:40]
    result = train(train_paths, TrainConfig(iterations=40), penalty_dir=natural_dir, device="cpu", show_progress=False)
    assert result.metadata["teacher"] == "teacher_small.safetensors"
    path = tmp_path / "m.safetensors"
    save_model(path, result.model, result.metadata)
    engine = Engine(path, device="cpu", backend="eager", warmup=False)
    good = list_images(tile / "test" / "good")[::8][:20]
    bad = list_images(tile / "test" / "blowhole")[::8][:10] + list_images(tile / "test" / "break")[::8][:10]
    scores = [engine.predict(read_image(p)).score for p in good + bad]
    auroc = image_auroc(np.array([0] * len(good) + [1] * len(bad)), np.array(scores))
    assert auroc >= 0.7, f"image AUROC {auroc:.3f} after a short run"


def test_too_few_images_says_how_many_are_needed(tile_train_paths):
    with pytest.raises(DataError, match=f"at least {MIN_GOOD_IMAGES}"):
        train(tile_train_paths[:3], TrainConfig(iterations=1), teacher="random")


def test_holdout_split_is_deterministic_and_disjoint():
    train_idx, val_idx = split_holdout(50, 0.1, seed=3)
    assert len(val_idx) == 5 and not set(train_idx) & set(val_idx)
    assert split_holdout(50, 0.1, seed=3) == (train_idx, val_idx)
    assert len(split_holdout(10, 0.1, seed=0)[1]) == 1


def test_augmentation_changes_brightness_contrast_or_saturation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    outs = [augment(x, g) for _ in range(20)]
    assert all(o.shape == x.shape and o.min() >= 0 and o.max() <= 1 for o in outs)
    assert any(not torch.allclose(o, x) for o in outs)


def test_training_is_deterministic_and_resumes_from_a_checkpoint(tile_train_paths, natural_dir, tmp_path):
    config = TrainConfig(iterations=4, checkpoint_every=2)
    full = train(tile_train_paths, config, teacher="random", penalty_dir=natural_dir, device="cpu", show_progress=False)

    # Cancel after the first iteration (from the progress callback, as another thread would).
    cancel = threading.Event()
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(TrainingCancelled, match="cancelled at iteration 1"):
        train(tile_train_paths, config, teacher="random", penalty_dir=natural_dir, device="cpu", checkpoint=ckpt,
              on_progress=lambda p: cancel.set(), cancel=cancel, show_progress=False)
    _, meta = load_tensors(ckpt, "checkpoint")
    assert meta["iteration"] == 1
    seen = []
    resumed = train(tile_train_paths, config, teacher="random", penalty_dir=natural_dir, device="cpu", checkpoint=ckpt,
                    on_progress=seen.append, show_progress=False)
    assert [p.iteration for p in seen] == [2, 3, 4]
    assert not ckpt.exists()  # a finished run removes its checkpoint
    assert resumed.losses == pytest.approx(full.losses[1:], rel=1e-4)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_training_works_offline_with_only_what_ships(tile_train_paths, monkeypatch):
    """The default teacher and penalty images ship in the package: no network, no ../shared."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    result = train(tile_train_paths, TrainConfig(iterations=1), device="cpu", show_progress=False)
    assert result.metadata["teacher"] == "teacher_small.safetensors"
    assert result.metadata["teacher_sha256"]


def test_a_time_budget_fixes_the_iteration_count_up_front_and_a_resume_keeps_it(tile_train_paths, natural_dir, tmp_path, monkeypatch):
    """The quick teach trains for a time, not a count: the count comes from a measured step time
    (here pinned, as real timings vary), the schedule ends where the recipe says, and a resumed
    run keeps the count it chose even if the machine now measures faster."""
    import inspector.method.training as training

    monkeypatch.setattr(training, "estimate_step_seconds", lambda *a, **k: 10.0)
    config = TrainConfig(iterations=50, time_budget_s=35.0)  # 0.9 * 35 / 10 -> 3 iterations
    cancel = threading.Event()
    ckpt = tmp_path / "run.ckpt"
    seen = []

    def progress(p):
        seen.append(p)
        cancel.set()

    with pytest.raises(TrainingCancelled, match="iteration 1 of 3"):
        train(tile_train_paths, config, teacher="random", penalty_dir=natural_dir, device="cpu", checkpoint=ckpt,
              on_progress=progress, cancel=cancel, show_progress=False)
    assert seen[0].total == 3
    monkeypatch.setattr(training, "estimate_step_seconds", lambda *a, **k: 0.001)  # would fit the cap of 50
    resumed = train(tile_train_paths, config, teacher="random", penalty_dir=natural_dir, device="cpu", checkpoint=ckpt, show_progress=False)
    assert resumed.metadata["iterations"] == 3 and len(resumed.losses) == 2

    capped = train(tile_train_paths, TrainConfig(iterations=2, time_budget_s=35.0), teacher="random",
                   penalty_dir=natural_dir, device="cpu", show_progress=False)
    assert capped.metadata["iterations"] == 2  # the configured count is the cap


def test_modes_set_the_count_or_the_time_and_an_explicit_count_overrides_both():
    quick = mode_config("quick", size="m")
    assert (quick.iterations, quick.time_budget_s, quick.size) == (QUICK_MAX_ITERATIONS, QUICK_TRAIN_S, "m")
    assert (mode_config("full").iterations, mode_config("full").time_budget_s) == (PAPER_ITERATIONS, None)
    assert (mode_config("quick", 7).iterations, mode_config("quick", 7).time_budget_s) == (7, None)
    with pytest.raises(InspectorError, match="mode must be one of quick, full"):
        mode_config("slow")


def test_a_declined_plan_trains_nothing(tile_train_paths, natural_dir, tmp_path, monkeypatch):
    """``confirm`` sees the measured plan before the first step; False stops there."""
    import inspector.method.training as training

    monkeypatch.setattr(training, "estimate_step_seconds", lambda *a, **k: 2.0)
    monkeypatch.setattr(training, "train_step", lambda *a, **k: pytest.fail("a declined run trained"))
    plans = []
    with pytest.raises(TrainingCancelled, match="not started"):
        train(tile_train_paths, TrainConfig(iterations=60), teacher="random", penalty_dir=natural_dir, device="cpu",
              checkpoint=tmp_path / "run.ckpt", confirm=lambda plan: plans.append(plan) or False, show_progress=False)
    assert [(p.iterations, p.start, p.eta_s) for p in plans] == [(60, 0, 120.0)]
    assert not (tmp_path / "run.ckpt").exists()


def test_a_checkpoint_is_kept_on_a_time_interval_whatever_the_iteration_count(tile_train_paths, natural_dir, tmp_path):
    """A process killed between iteration checkpoints loses minutes, not the run: with the
    interval at 0 s every finished iteration is on disk before the next starts."""
    ckpt = tmp_path / "run.ckpt"
    config = TrainConfig(iterations=4, checkpoint_every=1000, checkpoint_every_s=0.0)

    def killed_during_the_third(progress):
        if progress.iteration == 3:
            raise KeyboardInterrupt  # as a kill that gives the loop no chance to save anything

    with pytest.raises(KeyboardInterrupt):
        train(tile_train_paths, config, teacher="random", penalty_dir=natural_dir, device="cpu", checkpoint=ckpt,
              on_progress=killed_during_the_third, show_progress=False)
    _, meta = load_tensors(ckpt, "checkpoint")
    assert meta["iteration"] == 2
