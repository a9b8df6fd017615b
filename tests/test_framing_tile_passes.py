"""How many tiles the engine scores in one forward pass (issue 30's leftover; docs/decisions.md,
"A frame's tiles: one batch, one at a time on one thread"): the policy the engine follows, and
that any number of tiles per pass gives a framed model's real networks the same stitched map and
score, on every CPU backend."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from framing_support import REGION, frame_with_part, make_scene
from inspector.engine import Engine, tiles_per_pass
from inspector.framing import Framing
from inspector.method.efficientad import EfficientAD
from inspector.model_file import save_model


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    """A framed EfficientAD-S (random weights: time and arithmetic are a trained one's) whose
    region, a band across the part, is cut into three tiles, and two frames of its part, as two
    cameras would send them."""
    rng, reference, _ = make_scene()
    x, y, w, _ = REGION
    framing = Framing(region=(x, y, w, 160), tiles=3)
    path = tmp_path_factory.mktemp("tile-passes") / "framed.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256, "threshold": 1.0}, framing)
    frames = [reference, frame_with_part(rng, reference, 0.0, 0.0, 0.0)[0]]
    return path, frames


@pytest.fixture(autouse=True)
def _threads_back():
    """An engine sets PyTorch's threads for the whole process: the tests after these keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _installed(backend: str) -> bool:
    return backend == "eager" or importlib.util.find_spec(backend) is not None


@pytest.mark.parametrize("backend", ["eager", "onnxruntime", "openvino"])
def test_tiles_in_any_passes_give_the_same_map_and_score(framed, backend) -> None:
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    path, frames = framed
    engine = Engine(path, device="cpu", backend=backend, threads=2, warmup=False)
    assert engine.tiles_per_pass is None
    assert len(engine._framed.cuts(frames[0])) == 3
    together = engine.predict_batch(frames)  # both frames' six tiles in one pass
    for per_pass in (1, 2, 4):
        engine._framed.tiles_per_pass = per_pass
        for one, other in zip(together, engine.predict_batch(frames)):
            # A batch's convolutions may sum in another order than one image's: the last bits of a
            # float32 may differ, nothing a decision could see.
            np.testing.assert_allclose(other.anomaly_map, one.anomaly_map, rtol=1e-5, atol=1e-6)
            assert other.score == pytest.approx(one.score, rel=1e-5)


def test_the_policy_batches_but_efficientad_on_one_cpu_thread() -> None:
    """The decision: one batch wherever it was as fast or faster (two CPU threads, the instant
    model, a GPU); one tile a pass for EfficientAD on one CPU thread, where the batch was slower."""
    assert tiles_per_pass("efficientad", "cpu", 1) == 1
    assert tiles_per_pass("efficientad", "cpu", 2) is None and tiles_per_pass("efficientad", "cpu", 16) is None
    assert tiles_per_pass("instant", "cpu", 1) is None and tiles_per_pass("instant", "cpu", 2) is None
    assert tiles_per_pass("efficientad", "cuda", 0) is None and tiles_per_pass("instant", "cuda", 0) is None


@pytest.mark.parametrize("threads, passes", [(2, [6]), (1, [1] * 6)])
def test_the_engine_scores_tiles_as_the_policy_says(framed, threads, passes) -> None:
    """Two frames of three tiles each (two cameras' frames batched by the line): one pass of six
    on two threads, six passes of one on one thread."""
    path, frames = framed
    engine = Engine(path, device="cpu", backend="eager", threads=threads, warmup=False)
    assert engine.info["tiles_per_pass"] == engine.tiles_per_pass == tiles_per_pass("efficientad", "cpu", threads)
    seen: list[int] = []
    square_maps = engine.square_maps
    engine.square_maps = lambda squares: seen.append(len(squares)) or square_maps(squares)
    engine.predict_batch(frames)
    assert seen == passes
