"""``inspector eval``'s escapes: the share of defects that pass a threshold set for 1 % or 5 % false
rejects on the good test images, overall and per defect type; a frame the part was not found in
never passes."""

import math

import numpy as np
import pytest

from inspector.evaluate import NO_PART_SCORE, Scored, defects_passing, format_table, metrics_for


def scored(kind: str, score: float, no_part: bool = False) -> Scored:
    return Scored(kind, score, np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), no_part)


def test_the_defects_under_the_threshold_for_a_false_reject_rate_pass() -> None:
    labels = np.array([0] * 100 + [1] * 10)
    scores = np.r_[np.arange(100.0), [50, 98.5, 99, 200, NO_PART_SCORE, 3, 4, 5, 500, 600]]
    # 1 %: the good scores' 0.99 quantile, 98.01; 5 %: 94.05. 98.5 passes neither.
    assert defects_passing(labels, scores, 0.01) == pytest.approx(0.4)
    assert defects_passing(labels, scores, 0.05) == pytest.approx(0.4)
    assert defects_passing(labels, np.r_[np.arange(100.0), [96] * 10], 0.05) == 0.0
    assert defects_passing(labels, np.r_[np.arange(100.0), [96] * 10], 0.01) == 1.0
    assert math.isnan(defects_passing(np.zeros(5, int), np.arange(5.0), 0.01))


def test_eval_counts_the_escapes_per_defect_type_against_all_good_images() -> None:
    items = ([scored("good", float(s)) for s in range(100)] + [scored("crack", 10.0), scored("crack", 200.0)]
             + [scored("uneven", NO_PART_SCORE, no_part=True), scored("uneven", 99.5)])
    overall = metrics_for(items)
    assert overall["pass_at_1pct_fr"] == pytest.approx(0.25) and overall["pass_at_5pct_fr"] == pytest.approx(0.25)
    crack = metrics_for(items[:102])
    assert crack["pass_at_1pct_fr"] == pytest.approx(0.5)
    uneven = metrics_for(items[:100] + items[102:])
    assert uneven["pass_at_1pct_fr"] == 0.0  # NO PART never passes; 99.5 is over the 1 % threshold
    table = format_table({**overall, "per_type": {"crack": crack, "uneven": uneven}})
    header, first = table.splitlines()[:2]
    assert header.split()[-6:] == ["pass", "@1%", "FR", "pass", "@5%", "FR"]
    assert first.split()[-2:] == ["25.0", "25.0"]


def test_good_frames_without_the_part_leave_the_threshold_alone_and_defective_ones_never_pass() -> None:
    """Ranked at NO_PART_SCORE, three good frames the part was not found in set the 1 % threshold
    above every defect's score (a line's calibration leaves them out), and 99.7 % of the defects of
    a real evaluation were counted as passing."""
    good = [scored("good", float(s)) for s in range(100)] + [scored("good", NO_PART_SCORE, True)] * 3
    defects = [scored("crack", 10.0), scored("crack", 99.5), scored("crack", NO_PART_SCORE, True)]
    figures = metrics_for(good + defects)
    assert figures["pass_at_1pct_fr"] == pytest.approx(1 / 3)  # 10.0 passes; 99.5 does not; NO PART never
    labels = np.array([0] * 100 + [1])
    assert defects_passing(labels, np.r_[np.arange(100.0), 0.0], 0.01, np.r_[np.ones(100, bool), False]) == 0.0
