"""Line frames without masks (ELPV, issue 30): scripts/elpv_layout.py lays the cells out with no
ground_truth, build_line_frames.py builds frames from such a source, and eval_framing.py scores
them with AU-PRO null ("no masks") and the image AUROC and pass shares computed as ever."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from script_support import load_script

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    return load_script(f"{name}.py")


class _Darkness:
    """Scores a frame by how dark its darkest pixel is: the tiny defective parts are darker."""

    def predict(self, frame):
        grey = frame if frame.ndim == 2 else frame.mean(axis=2)
        return SimpleNamespace(score=float(255 - grey.min()), anomaly_map=np.zeros(grey.shape, np.float32))


def test_frames_without_masks_score_with_a_null_aupro(shared_data, tmp_path):
    belts = shared_data / "natural" / "bsds500"
    if not any(belts.glob("*.jpg")):
        pytest.skip(f"no belt photographs in {belts}")
    source = tmp_path / "cells"
    rng = np.random.default_rng(0)
    for split_kind, count, dark in (("train/good", 2, 90), ("test/good", 2, 90), ("test/defect", 2, 10)):
        (source / split_kind).mkdir(parents=True)
        for i in range(count):
            cell = rng.integers(100, 140, (48, 48), dtype=np.uint8)
            cell[20:28, 20:28] = dark
            cv2.imwrite(str(source / split_kind / f"cell{i:04d}.png"), cell)
    frames = tmp_path / "frames"
    subprocess.run([sys.executable, str(SCRIPTS / "build_line_frames.py"), str(source), str(frames), "--frame", "160x128",
                    "--part-px", "48", "--max-shift", "10", "--max-turn", "5", "--belts", str(belts)], check=True)
    assert not (frames / "ground_truth").exists()
    assert len(list(frames.rglob("*.png"))) == 6
    eval_framing = _script("eval_framing")
    tests = eval_framing.scored_images(frames)
    assert [(t.defect_type, t.mask_path) for t in tests] == [("defect", None)] * 2 + [("good", None)] * 2
    figures = eval_framing.score(_Darkness(), tests)
    assert figures["aupro"] is None and figures["aupro_note"] == "no masks"
    assert figures["image_auroc"] == 1.0 and figures["pass_at_1pct_fr"] == 0.0
    assert figures["by_kind"] == {"defect": {"frames": 2, "pass_at_1pct_fr": 0.0, "pass_at_5pct_fr": 0.0}}


def test_elpv_layout_is_the_earlier_evidence_cells(tmp_path):
    pytest.importorskip("elpv_dataset", reason="the ELPV cells come from the elpv-dataset package ('demo' extra)")
    counts = _script("elpv_layout").lay_out(tmp_path / "elpv")
    # The demo's 300 training cells; every other good mono cell; every mono cell of probability 1.
    assert counts == {"train/good": 300, "test/good": 288, "test/defect": 313}
    assert not (tmp_path / "elpv" / "ground_truth").exists()
    train = {p.name for p in (tmp_path / "elpv" / "train" / "good").iterdir()}
    assert not train & {p.name for p in (tmp_path / "elpv" / "test" / "good").iterdir()}
