"""A training cancelled and started again resumes from its checkpoint only with the same framing:
the teach page's technician who cancels, moves the region and trains again must get a student
taught on the new cuts, not one that resumes the old region's (the fingerprint ignored the framing)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from framing_support import REGION, make_scene
from inspector.framing import Framing
from inspector.method.training import short_recipe, train


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    _, reference, _ = make_scene()
    folder = tmp_path_factory.mktemp("good")
    for i in range(10):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.roll(reference, 4 * i, axis=1))
    return sorted(folder.glob("*.png")), reference


def test_a_checkpoint_resumes_only_with_the_framing_it_was_trained_on(frames, natural_dir, tmp_path, caplog) -> None:
    paths, reference = frames
    config = short_recipe(2, image_size=64, batch_size=2)
    checkpoint = tmp_path / "training.ckpt"
    x, y, w, h = REGION

    def run(framing: Framing) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="inspector.method.training"):
            train(paths, config, penalty_dir=natural_dir, device="cpu",
                  checkpoint=checkpoint, show_progress=False, keep_checkpoint=True, framing=framing)
        return caplog.text

    first = Framing(region=REGION, reference=reference)
    run(first)
    assert checkpoint.is_file()
    assert "resuming from iteration 2" in run(first)  # the same drawing: it goes on (here: is done)
    moved = run(Framing(region=(x + 40, y, w, h), reference=reference))
    assert "resuming" not in moved and "made with other data or settings" in moved
    ignore = np.zeros(reference.shape, bool)
    ignore[y : y + 20, x : x + 20] = True
    masked = run(Framing(region=(x + 40, y, w, h), reference=reference, ignore=ignore))
    assert "resuming" not in masked and "made with other data or settings" in masked
