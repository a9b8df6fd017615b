"""Teacher distillation end to end on a handful of images, and the shipped teacher."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from inspector.method.distill import CPU_RECIPE, PatchCoreTargets, aggregation_weights, distill
from inspector.errors import DataError
from inspector.method.networks import PDNSmall
from inspector.model_file import load_teacher

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "inspector" / "weights" / "teacher_small.safetensors"
NATURAL = REPO / "inspector" / "assets" / "natural"

efficientnet = pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [distill] extra")


def test_aggregation_is_patchcores_unfold_and_pool():
    """The fixed 3x3 convolution equals PatchCore: unfold 3x3, pool to 1024 per layer, then to 384."""
    torch.manual_seed(0)
    f = torch.randn(1, 5, 6, 6)
    (w,) = aggregation_weights([5], out_channels=8)
    unfolded = torch.nn.functional.unfold(f, 3, padding=1)  # (1, 45, 36), channel-major
    pooled = torch.nn.functional.adaptive_avg_pool1d(unfolded.permute(0, 2, 1).reshape(36, 1, 45), 1024)
    expected = torch.nn.functional.adaptive_avg_pool1d(pooled, 8).reshape(6, 6, 8).permute(2, 0, 1)
    assert torch.allclose(torch.nn.functional.conv2d(f, w, padding=1)[0], expected, atol=1e-5)


def test_targets_match_the_padded_pdn_grid():
    from inspector.method.distill import LiteBackbone

    targets = PatchCoreTargets(LiteBackbone("lite0"))
    out = targets(torch.rand(1, 3, 128, 128))
    assert out.shape == (1, 384, 16, 16)
    assert PDNSmall(padding=True)(torch.zeros(1, 3, 64, 64)).shape[-2:] == out.shape[-2:]


def test_distill_runs_end_to_end_and_resumes(tmp_path):
    config = replace(CPU_RECIPE, iterations=3, batch=2, crop=64, norm_images=4, checkpoint_every=2)
    out = tmp_path / "teacher_small.safetensors"
    card = distill([NATURAL], out, config, device="cpu", show_progress=False, command="test")
    state, meta = load_teacher(out, "s")
    PDNSmall().load_state_dict(state)  # the distilled (padded) weights run unpadded
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["iterations_done"] == 3 and written["crops_seen"] == 6
    assert written["tensor_sha256"] == meta["tensor_sha256"] == card["tensor_sha256"]
    assert written["distillation_loss_first"] > 0 and written["command"] == "test"
    assert not Path(str(out) + ".ckpt").exists()


def test_distill_needs_enough_images(tmp_path):
    with pytest.raises(DataError, match="at least 16"):
        distill([tmp_path], tmp_path / "t.safetensors", replace(CPU_RECIPE, iterations=1), device="cpu", show_progress=False)


def test_shipped_teacher_loads_with_its_card():
    state, meta = load_teacher(SHIPPED, "s")
    teacher = PDNSmall()
    teacher.load_state_dict(state)
    with torch.no_grad():
        out = teacher(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 384, 56, 56) and torch.isfinite(out).all()
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert card["tensor_sha256"] == meta["tensor_sha256"]
    assert card["distillation_loss_final"] < card["distillation_loss_first"]
    assert card["backbone"].startswith("lite0")
