"""The handover check of framed models (issue 30): the synthetic defects lie where the models
inspect, and NO PART frames are left out of the comparison, as calibration leaves them out.

Stand-in engines keep it fast: a framed "model" that sees only its region and scores a scratch's
bright pixels there, and finds no part in a black frame.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from calibration.shadow import handover_check
from calibration.synthetic import synthetic_defects
from inspector.engine import Prediction
from inspector.errors import DataError
from inspector.line.rule import DecisionRule

from teach_support import woven

REGION = (8, 8, 48, 48)  # a part in the corner of a 160x160 frame, the rest belt


class RegionModel:
    """Looks at its region only: the score is how many pixels there are near white (a scratch on
    the woven part; the part itself never reaches 230). A black frame has no part (NO PART)."""

    framing = SimpleNamespace(region=REGION, ignore=None, polygon=None, check_frame=lambda shape, name=None: None)

    def predict_batch(self, images):
        x, y, w, h = REGION
        out = []
        for image in images:
            if float(np.mean(image)) < 20:
                out.append(Prediction(0.0, np.zeros(image.shape[:2], np.float32), no_part=True))
                continue
            score = float(np.count_nonzero(image[y : y + h, x : x + w] > 230))
            out.append(Prediction(score, np.zeros(image.shape[:2], np.float32), outline=np.float32(
                [[x, y], [x + w, y], [x + w, y + h], [x, y + h]])))
        return out


def write_frames(folder, n, black=()):
    folder.mkdir()
    rng = np.random.default_rng(4)
    paths = []
    for i in range(n):
        image = np.zeros((160, 160), np.uint8) if i in black else woven(rng)
        paths.append(folder / f"frame_{i:02d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def test_synthetic_defects_of_a_framed_model_lie_where_it_inspects():
    rng = np.random.default_rng(0)
    images = [woven(rng) for _ in range(12)]
    x, y, w, h = REGION
    where = np.zeros((160, 160), bool)
    where[y : y + h, x : x + w] = True
    for image, defect in zip(images, synthetic_defects(images, seed=1, where=[where] * len(images))):
        changed = defect != image
        assert changed[where].sum() > 20, "the defect must be drawn on the part's region"
        assert (defect[where] > 230).any()  # the scratch's centre lies in the region
    # Without a region, the same defects as ever (the same seed makes the same defects).
    plain = synthetic_defects(images, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(plain, synthetic_defects(images, seed=1, where=None)))


def test_the_handover_of_framed_models_draws_its_defects_in_their_region_and_leaves_no_part_frames_out(tmp_path):
    model, rule = RegionModel(), DecisionRule(0.5)
    good = write_frames(tmp_path / "good", 14, black=(3, 9))
    check = handover_check(model, rule, model, rule, good)
    # Every defect lies where the model looks, so a model that sees a scratch finds them all; drawn
    # anywhere in the frame, most fell on the belt and the AUROC said little of either model.
    assert check.candidate_auroc == check.active_auroc == 1.0
    # The frames without the part were never scored: neither good nor made into defects.
    assert check.no_part == 2 and check.good_images == check.synthetic_defects == 12
    assert check.as_dict()["no_part"] == 2 and check.switch

    with pytest.raises(DataError, match="found by both models in 1 of the 3"):
        handover_check(model, rule, model, rule, write_frames(tmp_path / "empty", 3, black=(0, 1)))


def test_the_staged_teach_says_how_many_held_out_images_the_handover_left_out(tmp_path, capsys):
    from cli.teach_commands import _print_stage

    model, rule = RegionModel(), DecisionRule(0.5)
    check = handover_check(model, rule, model, rule, write_frames(tmp_path / "good", 6, black=(2,)))
    _print_stage("quick")("handover", check)
    out = capsys.readouterr().out
    assert "(5 good, 5 synthetic and 0 real defects; 1 held-out image(s) without the part (NO PART) left out)" in out, out


class OffFrame(RegionModel):
    """Finds its part where its region lies wholly outside the frame (a part at the frame's edge,
    turned out of it): it inspects no pixel of the frame, yet is not NO PART."""

    def predict_batch(self, images):
        far = np.float32([[200, 200], [248, 200], [248, 248], [200, 248]])
        return [Prediction(p.score, p.anomaly_map, outline=far) for p in super().predict_batch(images)]


class Whole:
    """The whole frame: scores its near-white pixels."""

    def predict_batch(self, images):
        return [Prediction(float(np.count_nonzero(image > 230)), np.zeros(image.shape[:2], np.float32)) for image in images]


def test_defects_for_a_region_that_left_the_frame_are_drawn_where_the_other_model_looks(tmp_path):
    rule = DecisionRule(0.5)
    check = handover_check(OffFrame(), rule, Whole(), rule, write_frames(tmp_path / "good", 6))
    assert check.good_images == 6 and check.active_auroc == 1.0
