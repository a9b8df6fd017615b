"""Shadow mode and the handover check on frames a framed model cannot cut (another size than
its reference, the part not searched for): the refusal names the model and the frame, as train,
calibrate, eval and predict name the file. It said only 'the frame is 640x512, the recipe's
reference 1280x1024: its region would fall elsewhere' -- of which of the recent inspections, for
which of the two models, `inspector teach shadow` did not say."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.shadow import handover_check, shadow_compare
from inspector.engine import Prediction
from inspector.errors import InspectorError
from inspector.framing.recipe import make_framing
from inspector.line.rule import DecisionRule


class Flat:
    """Scores every frame 0.1; ``framing`` as given (None: the whole frame)."""

    def __init__(self, framing=None) -> None:
        self.framing = framing

    def predict_batch(self, images):
        if self.framing is not None:
            for image in images:
                self.framing.check_frame(image.shape)  # the engine's own refusal, which names no file
        return [Prediction(0.1, np.zeros(image.shape[:2], np.float32)) for image in images]


def test_a_frame_the_framing_cannot_cut_is_refused_naming_the_model_and_the_frame(tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    framed = Flat(make_framing(reference, region=(8, 8, 48, 40)))
    rule = DecisionRule(0.5)
    images = [("ok.png", rng.integers(0, 255, (64, 80), dtype=np.uint8)),
              ("small.png", rng.integers(0, 255, (32, 40), dtype=np.uint8))]
    with pytest.raises(InspectorError, match=r"^the active model: small.png: the frame is 40x32, the recipe's reference 80x64"):
        shadow_compare(Flat(), rule, framed, rule, images)
    with pytest.raises(InspectorError, match=r"^the candidate model: small.png: the frame is 40x32"):
        shadow_compare(framed, rule, Flat(), rule, images)
    for name, image in images:
        cv2.imwrite(str(tmp_path / name), image)
    with pytest.raises(InspectorError, match=r"^the active model: .*small.png: the frame is 40x32"):
        handover_check(Flat(), rule, framed, rule, [tmp_path / "ok.png", tmp_path / "small.png"])
