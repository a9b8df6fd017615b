"""Shadow mode (``inspector teach shadow``, the handover's shadow) counts as the line counts: a
frame a model found no part in (NO PART) was never scored. It was a part in the reject rate's
denominator (3 FAIL of 14 frames, 2 of them NO PART: 21.4 %, where the line's 3 of 12 parts is
25 %), and its 0.0 entered the median score shift and the rank correlation as a score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from calibration.shadow import shadow_compare
from inspector.engine import Prediction
from inspector.line import DecisionRule


class _Fixed:
    """An engine giving, for image i (its pixels' value), scores[i], NO PART where None."""

    def __init__(self, scores: list[float | None]) -> None:
        self.scores = scores

    def predict_batch(self, images):
        flat = np.zeros((4, 4), np.float32)
        return [Prediction(0.0, flat, no_part=True) if self.scores[int(im[0, 0])] is None
                else Prediction(self.scores[int(im[0, 0])], flat) for im in images]


def test_no_part_frames_are_no_parts_in_the_reject_rate_nor_scores_in_the_shifts() -> None:
    active = [0.2, 0.3, 0.9, None, 0.4, None]
    candidate = [0.25, 0.35, 0.95, None, 0.95, None]
    images = [(f"f{i}.png", np.full((4, 4), i, np.uint8)) for i in range(len(active))]
    rule = DecisionRule(0.7)
    report = shadow_compare(_Fixed(candidate), rule, _Fixed(active), rule, images)
    assert report.n == 6 and report.no_part == 2
    assert report.active_reject_rate == pytest.approx(1 / 4) and report.candidate_reject_rate == pytest.approx(2 / 4)
    assert report.median_score_shift == pytest.approx(0.05)  # of 0.05, 0.05, 0.05, 0.55; not the NO PARTs' 0
    scored = [0, 1, 2, 4]  # the frames both models found the part in
    assert report.rank_correlation == pytest.approx(stats.spearmanr([active[i] for i in scored], [candidate[i] for i in scored]).statistic)
    assert report.summary().startswith("6 parts (2 NO PART): agreement 83.3%; candidate would reject 1 more")
    assert report.as_dict()["no_part"] == 2


def test_a_shadow_of_only_no_part_frames_has_no_rates_rather_than_a_warning() -> None:
    images = [(f"f{i}.png", np.full((4, 4), i, np.uint8)) for i in range(2)]
    report = shadow_compare(_Fixed([None, None]), DecisionRule(0.7), _Fixed([None, None]), DecisionRule(0.7), images)
    assert report.no_part == 2 and np.isnan(report.active_reject_rate) and np.isnan(report.median_score_shift)


class _Counting:
    """An engine scoring each image by its mean brightness, counting the images it scored."""

    def __init__(self) -> None:
        self.scored = 0

    def predict_batch(self, images):
        self.scored += len(images)
        return [Prediction(float(im.mean()) / 255.0, np.zeros(im.shape[:2], np.float32)) for im in images]


def test_the_handover_scores_each_good_image_once_per_model_and_its_shadow_is_shadow_modes(tmp_path) -> None:
    """The handover scored the held-out good images twice with each model: once for the AUROC and
    again for its shadow comparison (minutes of a technician's wait on large frames)."""
    import cv2

    from calibration.shadow import handover_check

    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"good_{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(60, 120, (96, 96), dtype=np.uint8))
    candidate, active = _Counting(), _Counting()
    rule = DecisionRule(0.5)
    check = handover_check(candidate, rule, active, rule, paths)
    assert candidate.scored == active.scored == 2 * len(paths)  # the good images and a synthetic defect of each
    alone = shadow_compare(_Counting(), rule, _Counting(), rule, paths)
    assert check.shadow.as_dict() == alone.as_dict()
