"""Threshold statistics against known distributions; ROC, escapes and F1 on a hand-checked case;
the pixel rule on synthetic maps; the pass/fail rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats

from inspector.line.rule import DecisionRule, rule_from_metadata, rule_metadata
from calibration.thresholds import (
    MIN_TAIL_SCORES,
    analyse_defects,
    calibrate_pixel_rule,
    check_resolvable,
    clopper_pearson,
    largest_region_px,
    min_images_for,
    threshold_for_frr,
)
from inspector.errors import DataError, ModelFileError


def test_measured_frr_on_fresh_draws_falls_in_the_interval_at_the_nominal_rate():
    # 10,000 good scores from a known distribution, threshold for 0.5 %, then the false-reject
    # rate measured on a million fresh draws. Over 200 seeds the 95 % interval must hold it about
    # 95 % of the time (binomial sd 1.5 %; the fresh-draw noise costs ~0.3 % of coverage).
    target, n, fresh_n, seeds = 0.005, 10_000, 1_000_000, 200
    inside, measured = 0, []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        t = threshold_for_frr(rng.standard_normal(n), target)
        assert t.method == "order_statistic" and t.n_good == n and t.warnings == ()
        assert t.expected_frr <= target and t.frr_ci_low < t.expected_frr < t.frr_ci_high
        frr = np.count_nonzero(rng.standard_normal(fresh_n, dtype=np.float32) > t.threshold) / fresh_n
        inside += t.frr_ci_low <= frr <= t.frr_ci_high
        measured.append(frr)
    assert 0.90 <= inside / seeds <= 0.99
    # Unbiased: the mean of 200 true rates (sd about 5e-5) sits at the expected FRR.
    assert abs(np.mean(measured) - t.expected_frr) < 2.5e-4


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_interval_coverage_is_exact_for_any_continuous_distribution(confidence):
    # For uniform scores the true FRR at threshold t is 1 - t exactly, so the coverage of the
    # order-statistic interval can be checked without sampling noise, at a small sample size.
    seeds, inside = 1000, 0
    for seed in range(seeds):
        t = threshold_for_frr(np.random.default_rng(seed).uniform(size=500), 0.02, confidence=confidence)
        inside += t.frr_ci_low <= 1 - t.threshold <= t.frr_ci_high
    assert abs(inside / seeds - confidence) < 3.5 * math.sqrt(confidence * (1 - confidence) / seeds)


def test_order_statistic_choice_and_beta_interval_by_hand():
    scores = np.arange(1, 200, dtype=float)  # n = 199: (r + 1)/200 <= 0.01 -> r = 1
    t = threshold_for_frr(scores, 0.01)
    assert t.threshold == 198.0  # one good score (199) above it
    assert t.good_above == 1 and t.observed_frr == pytest.approx(1 / 199)
    assert t.expected_frr == pytest.approx(2 / 200)
    low, high = stats.beta.ppf([0.025, 0.975], 2, 198)
    assert (t.frr_ci_low, t.frr_ci_high) == pytest.approx((low, high))


def test_too_few_images_warn_and_unresolvable_targets_refuse_clearly():
    rng = np.random.default_rng(0)
    # Resolvable but below 3/target: a warning naming the count needed.
    t = threshold_for_frr(rng.standard_normal(300), 0.005)
    assert t.method == "order_statistic" and any("600 or more" in w for w in t.warnings)
    # Not resolvable and the tail fit refused: an error, never the highest score in silence.
    with pytest.raises(DataError, match=r"cannot resolve a false-reject rate of 0.5 %.*at least 199"):
        threshold_for_frr(rng.standard_normal(100), 0.005, tail="never")
    # Too few even for the tail fit.
    with pytest.raises(DataError, match=f"at least {MIN_TAIL_SCORES} for an extrapolated"):
        threshold_for_frr(rng.standard_normal(20), 0.005)
    assert min_images_for(0.005) == 199
    check_resolvable(199, 0.005, "never")  # exactly enough
    with pytest.raises(DataError):
        threshold_for_frr([1.0, float("nan"), 2.0], 0.2)
    with pytest.raises(DataError):
        threshold_for_frr([], 0.2)
    with pytest.raises(ValueError):
        threshold_for_frr([1.0, 2.0], 1.5)


def test_tail_fit_extrapolates_beyond_the_sample_with_a_warning():
    # 300 exponential scores (a generalised Pareto tail with shape 0) and a target of 0.1 %,
    # below the 1/301 the sample can show: the threshold must come from the fit, above the
    # highest score, and land near the true quantile; its bootstrap interval is approximate.
    target, seeds = 0.001, 10
    true_rates, inside = [], 0
    for seed in range(seeds):
        scores = np.random.default_rng(100 + seed).exponential(size=300)
        t = threshold_for_frr(scores, target, bootstrap=60, seed=seed)
        assert t.method == "tail_fit" and t.tail["exceedances"] == 60
        assert any("generalised Pareto" in w for w in t.warnings)
        assert t.threshold > scores.max() * 0.9
        true = math.exp(-t.threshold)
        true_rates.append(true)
        inside += t.frr_ci_low <= true <= t.frr_ci_high
    assert target / 3 < np.median(true_rates) < 3 * target
    assert inside / seeds >= 0.6


def test_clopper_pearson_matches_the_textbook_values():
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3084971), abs=1e-6)
    assert clopper_pearson(10, 10)[1] == 1.0
    low, high = clopper_pearson(3, 20)
    assert (low, high) == pytest.approx((0.0320709, 0.3789268), abs=1e-6)  # R: binom.test(3, 20)


def test_roc_escape_rate_and_f1_threshold_on_a_hand_checked_case():
    good = [0.1, 0.2, 0.3, 0.4]
    bad = [0.35, 0.5, 0.6]
    d = analyse_defects(good, bad, threshold=0.45)
    # Defect-over-good pairs: 0.35 beats 3 goods, 0.5 and 0.6 beat all 4 -> 11 of 12.
    assert d.auroc == pytest.approx(11 / 12)
    assert d.escapes == 1 and d.escape_rate == pytest.approx(1 / 3)  # 0.35 passes at 0.45
    assert d.frr_at_threshold == 0.0
    # Rejecting the top 4 (0.6, 0.5, 0.4, 0.35): tp 3, fp 1, fn 0 -> F1 6/7, the best cut;
    # the threshold lies halfway between 0.35 and the next lower score 0.3.
    assert d.f1 == pytest.approx(6 / 7)
    assert d.f1_threshold == pytest.approx(0.325)
    assert d.f1_escape_rate == 0.0 and d.f1_frr == pytest.approx(0.25)
    assert (d.escape_ci_low, d.escape_ci_high) == pytest.approx(clopper_pearson(1, 3))
    assert d.roc_fpr[0] == 0 and d.roc_tpr[-1] == 1


def test_pixel_rule_threshold_area_and_mm():
    rng = np.random.default_rng(0)
    maps = [rng.uniform(0, 1, (64, 64)).astype(np.float32) for _ in range(10)]
    maps[3][10:13, 10:14] = 2.0  # a 12-pixel spurious blob on one good image
    rule = calibrate_pixel_rule(maps, 0.01, mm_per_px=0.1)
    values = np.concatenate([m.ravel() for m in maps])
    assert np.mean(values > rule.pixel_threshold) <= 0.01
    assert rule.observed_pixel_fpr == pytest.approx(np.mean(values > rule.pixel_threshold))
    assert rule.largest_spurious_area_px >= 12
    assert rule.min_defect_area_px == rule.largest_spurious_area_px + 1
    assert rule.min_defect_area_mm2 == pytest.approx(rule.min_defect_area_px * 0.01)
    assert rule.expected_frr == pytest.approx(1 / 11)
    # Every good map passes its own rule.
    assert all(largest_region_px(m, rule.pixel_threshold) < rule.min_defect_area_px for m in maps)
    with pytest.raises(DataError, match="cannot resolve a pixel"):
        calibrate_pixel_rule([np.zeros((8, 8), np.float32)], 1e-3)


def test_largest_region_counts_connected_pixels():
    m = np.zeros((20, 20), np.float32)
    m[2:4, 2:4] = 1  # 4 px
    m[10:15, 10:12] = 1  # 10 px
    m[19, 19] = 1
    assert largest_region_px(m, 0.5) == 10
    assert largest_region_px(m, 1.0) == 0


def test_rule_round_trips_through_model_metadata():
    rule = DecisionRule(threshold=1.0, pixel_threshold=0.5, min_defect_area_px=5)
    assert rule_from_metadata(rule_metadata(rule)) == rule
    m = np.zeros((10, 10), np.float32)
    m[0:2, 0:3] = 0.9  # 6 px above the pixel threshold, image score below the threshold
    assert rule.decide(0.9, m).decision == "FAIL" and rule.decide(1.0, m * 0).decision == "PASS"
    # A pixel threshold without an area is no pixel rule (as `inspector run` reads it).
    assert rule_from_metadata({"threshold": 1.0, "pixel_threshold": 0.5}) == DecisionRule(1.0)
    with pytest.raises(ModelFileError, match="not calibrated"):
        rule_from_metadata({"kind": "efficientad"})
    with pytest.raises(ModelFileError, match="unusable"):
        rule_from_metadata({"threshold": "nan?"})


@pytest.mark.parametrize("edit, says", [
    ({"mm_per_px": True}, "mm_per_px True is not a number"),  # was a pixel size of 1 mm: areas in mm² = px
    ({"mm_per_px": "0.1"}, "mm_per_px '0.1' is not a number"),
    ({"recheck_threshold": "0.12"}, "recheck_threshold '0.12' is not a number"),
    ({"recheck_threshold": True}, "recheck_threshold True is not a number"),
    ({"threshold": "0.5"}, "threshold '0.5' is not a number"),
    ({"min_defect_area_px": 12.7}, "min_defect_area_px 12.7 is not a whole number of pixels"),  # was cut to 12
    ({"min_defect_area_px": "12"}, "min_defect_area_px '12' is not a whole number of pixels"),
])
def test_a_hand_edited_calibration_value_of_another_type_is_refused_not_converted(edit, says):
    """A model file's calibration edited by hand (then given its digest by inspector model upgrade)
    was converted with float() and int(): the line ran with a pixel size of 1 mm for true, a
    minimum defect area of 12 px for 12.7, without a word. Refused, naming the file and the key."""
    rule = DecisionRule(0.5, 0.3, 20, recheck_threshold=0.4, mm_per_px=0.1)
    with pytest.raises(ModelFileError, match=f"m.safetensors: its calibration metadata is unusable \\({re.escape(says)}\\)"):
        rule_from_metadata({**rule_metadata(rule), **edit}, where="m.safetensors")
    assert rule_from_metadata({**rule_metadata(rule), "min_defect_area_px": 20.0}) == rule  # a whole number written as one
