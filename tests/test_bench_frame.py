"""``inspector bench`` times a tiled model on frames of the line's size. A model tiled over the
whole frame (tall or long parts, ``--tiles``, ``--defect-px``) keeps no reference image, and the
bench timed it on 256x256 random pixels, one tile where the line's 300x750 frames need three:
it reported a third of the line's latency and did not say on what. It now times the model's own
good images where it has them (``--images``, or those its file names) and says the frame size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cli.main import main
from inspector.framing import Framing
from inspector.method.efficientad import EfficientAD
from inspector.model_file import save_model


@pytest.fixture(autouse=True)
def _threads_back():
    """An engine sets PyTorch's threads for the whole process: the tests after these keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiled(tmp_path, monkeypatch):
    """A model tiled over the whole frame (no region, no reference) and a folder of its tall frames."""
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "tall.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256, "threshold": 1.0}, Framing(tiles=3))
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.png"), rng.integers(0, 256, (600, 200), dtype=np.uint8))
    return path, frames


def test_a_tiled_model_is_timed_on_its_own_frames_and_the_size_is_said(tiled, tmp_path, capsys) -> None:
    import json

    path, frames = tiled
    common = ["bench", str(path), "--device", "cpu", "--backend", "eager", "--runs", "1", "--repeats", "1"]
    assert main([*common, "--images", str(frames), "--json", str(tmp_path / "b.json")]) == 0
    assert "batch 1 of 200x600 frames: latency p50" in capsys.readouterr().out
    assert json.loads((tmp_path / "b.json").read_text())["frame"] == "200x600"
    assert main(common) == 0  # nothing to time on but the sample frame: said so
    assert "batch 1 of 256x256 frames: latency p50" in capsys.readouterr().out
