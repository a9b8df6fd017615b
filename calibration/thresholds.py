"""Thresholds from scores: how strict the line is, and how sure we are of it.

Decision convention, used everywhere in this package: a part is **rejected when its score is
strictly greater than the threshold** (``score > threshold``).

Image threshold from good parts
    :func:`threshold_for_frr` takes the scores of good images the model was *not* trained on and a
    target false-reject rate (FRR). With ``n`` scores it puts the threshold on the order statistic
    that leaves ``r`` good scores above it. For any continuous score distribution the true FRR at
    that threshold is then exactly Beta(r + 1, n - r) distributed over the draw of the sample
    (``1 - F(X_(n-r))`` is a uniform order statistic), so the expected FRR is ``(r + 1) / (n + 1)``
    and the Beta quantiles are an exact, distribution-free confidence interval -- the same interval
    Clopper-Pearson gives for the binomial count, here without the approximation of treating the
    threshold as fixed. ``r`` is the largest count whose expected FRR does not exceed the target.

    When the target is below ``1 / (n + 1)`` no order statistic can reach it. The threshold is then
    extrapolated with a generalised Pareto fit to the top scores (peaks over threshold), with a
    bootstrap interval and a warning. That is a model: in simulations with 300 scores and a target
    of 0.1 % the true rate came out 1.2-2x the target on average and the 95 % bootstrap interval
    held it 70-85 % of the time, so the report says so, or -- if the tail fit is off or there are too few scores for
    it -- a :class:`~inspector.errors.DataError` says how many images are needed. The highest good
    score is never used as a silent fallback.

Recheck band from good parts
    :func:`recheck_threshold_for_rate` puts a lower threshold under the image threshold so that
    about a share ``R`` of good parts (the recheck rate the line can afford) score between the two
    and go to RECHECK. With the threshold on an order statistic, the lower one is the order
    statistic ``k`` places below it, ``k`` the largest count with ``k / (n + 1) <= R``; the share
    of good parts between two order statistics ``k`` apart is Beta(k, n - k + 1) distributed, so
    the expected recheck rate is ``k / (n + 1)`` and its interval is exact (the same argument as
    the threshold's). :func:`recheck_rate_at` judges a lower threshold someone chose, as
    :func:`frr_at` judges a threshold.

With defective samples
    :func:`analyse_defects`: ROC and AUROC (scikit-learn), the escape rate (defects let through) at
    the chosen threshold with a Clopper-Pearson interval, and the F1-optimal threshold.

Pixel rule
    :func:`calibrate_pixel_rule`: a part is also rejected when its anomaly map has a connected
    region of at least ``min_defect_area_px`` pixels above ``pixel_threshold``. The pixel threshold
    is the map value exceeded by a target fraction of good-image pixels; the minimum area is one
    more than the largest such region on any good calibration image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from inspector.errors import DataError
# Regions are counted exactly as the line counts them (8-connected, in map pixels).
from inspector.line.rule import largest_region_px

#: Below ``RELIABLE_FACTOR / target_frr`` good images the threshold comes with a warning.
RELIABLE_FACTOR = 3
#: The tail fit needs at least this many good scores, and uses at least this many exceedances.
MIN_TAIL_SCORES = 25
MIN_TAIL_EXCEEDANCES = 10
#: Share of the good scores the generalised Pareto distribution is fitted to (the top 10 %).
TAIL_FRACTION = 0.20
TAIL_MODES = ("auto", "never", "always")
#: The pixel threshold is computed from at most this many map values (a regular subsample).
MAX_PIXEL_VALUES = 20_000_000


def _scores(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise DataError(f"no {what} scores given")
    if not np.all(np.isfinite(s)):
        raise DataError(f"{what} scores contain NaN or infinite values")
    return s


def _check_rate(rate: float, name: str) -> None:
    if not (isinstance(rate, (int, float)) and 0 < rate < 1):
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {rate!r}")


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for a rate seen ``successes`` times in ``trials``."""
    if trials <= 0:
        return (0.0, 1.0)
    a = 1 - confidence
    low = 0.0 if successes == 0 else float(stats.beta.ppf(a / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - a / 2, successes + 1, trials - successes))
    return low, high


@dataclass(frozen=True)
class FrrEstimate:
    """False-reject rate to expect at a threshold, from ``n`` good calibration scores.

    With ``r`` of the scores above the threshold, the true rate is Beta(r + 1, n - r)
    distributed (the order-statistic argument of :mod:`calibration.thresholds`), so
    ``expected = (r + 1) / (n + 1)`` and the interval is exact.
    """

    threshold: float
    expected: float
    ci_low: float
    ci_high: float
    above: int
    n: int


def frr_at(good_scores: Sequence[float] | np.ndarray, threshold: float, confidence: float = 0.95) -> FrrEstimate:
    """The false-reject rate to expect at a threshold someone chose (e.g. dragged in the GUI)."""
    s = np.asarray(good_scores, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        raise DataError("no good calibration scores to estimate a false-reject rate from")
    r = int(np.count_nonzero(s > threshold))
    a = 1.0 - confidence
    if r >= n:  # every good part above: it rejects (nearly) all of them
        low = float(stats.beta.ppf(a / 2, n, 1))
        return FrrEstimate(threshold, 1.0, low, 1.0, r, n)
    low, high = stats.beta.ppf([a / 2, 1 - a / 2], r + 1, n - r)
    return FrrEstimate(threshold, (r + 1) / (n + 1), float(low), float(high), r, n)


def pct(rate: float) -> str:
    """A rate as a short percentage for messages: 0.005 -> '0.5 %'."""
    return f"{100 * rate:.3g} %"


# --- Image threshold ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageThreshold:
    """The image-score threshold for a target false-reject rate, with its uncertainty.

    ``expected_frr`` is the FRR to expect on fresh good parts; ``frr_ci_low``/``frr_ci_high`` the
    ``confidence`` interval for it. ``method`` is ``"order_statistic"`` (exact, distribution-free)
    or ``"tail_fit"`` (generalised Pareto extrapolation; parameters in ``tail``).
    ``good_above`` is how many calibration scores lie above the threshold (``observed_frr`` as a
    fraction). ``warnings`` are one-line sentences to show the user.
    """

    threshold: float
    target_frr: float
    expected_frr: float
    frr_ci_low: float
    frr_ci_high: float
    confidence: float
    n_good: int
    method: str
    good_above: int
    observed_frr: float
    warnings: tuple[str, ...] = ()
    tail: dict[str, float] | None = None


def min_images_for(target_frr: float) -> int:
    """Fewest good scores whose order statistics can show ``target_frr`` (``1/(n+1) <= target``)."""
    return max(1, math.ceil(1 / target_frr - 1 - 1e-9))


def check_resolvable(n_good: int, target_frr: float, tail: str = "auto") -> None:
    """Raises DataError if ``n_good`` calibration scores cannot give a threshold for the target.

    Lets a caller (the teach workflow) refuse *before* an hour of training, not after.
    """
    _check_rate(target_frr, "target_frr")
    if tail not in TAIL_MODES:
        raise ValueError(f"tail must be one of {TAIL_MODES}, got {tail!r}")
    resolvable = n_good >= min_images_for(target_frr)
    if tail == "always" or (tail == "auto" and not resolvable):
        if n_good >= MIN_TAIL_SCORES:
            return
        if tail == "always":
            raise DataError(f"the tail fit needs at least {MIN_TAIL_SCORES} good scores, got {n_good}")
    if not resolvable:
        hint = f"or at least {MIN_TAIL_SCORES} for an extrapolated (tail-fit) threshold" if tail == "auto" else "or allow the tail fit"
        raise DataError(
            f"{n_good} good calibration images cannot resolve a false-reject rate of {pct(target_frr)}: "
            f"the lowest rate they can show is 1/{n_good + 1} = {pct(1 / (n_good + 1))}; give at least "
            f"{min_images_for(target_frr)} good images {hint}, or ask for a higher target rate"
        )


def threshold_for_frr(
    good_scores: Sequence[float] | np.ndarray,
    target_frr: float = 0.005,
    *,
    confidence: float = 0.95,
    tail: str = "auto",
    bootstrap: int = 200,
    seed: int = 0,
) -> ImageThreshold:
    """The threshold whose expected false-reject rate on good parts is at most ``target_frr``.

    Args:
        good_scores: image scores of good parts held out from training, shape (n,).
        target_frr: wanted false-reject rate, a fraction (0.005 = 0.5 %).
        confidence: level of the FRR interval.
        tail: ``"auto"`` fits the tail only when the order statistics cannot reach the target,
            ``"never"`` refuses then, ``"always"`` fits it regardless.
        bootstrap: resamples for the tail fit's interval.
        seed: seeds the bootstrap.

    Raises:
        DataError: no or non-finite scores, or too few for the target (see :func:`check_resolvable`).
    """
    _check_rate(confidence, "confidence")
    s = np.sort(_scores(good_scores, "good"))
    n = s.size
    check_resolvable(n, target_frr, tail)
    warnings: list[str] = []
    reliable = math.ceil(RELIABLE_FACTOR / target_frr)
    if n < reliable:
        warnings.append(
            f"only {n} good images for a target false-reject rate of {pct(target_frr)}: {reliable} or "
            f"more are needed for a reliable threshold; see the interval for how uncertain it is"
        )
    r = math.floor(target_frr * (n + 1) + 1e-9) - 1  # largest r with (r + 1)/(n + 1) <= target
    if tail == "always" or r < 0:
        return _tail_threshold(s, target_frr, confidence, bootstrap, seed, warnings)
    threshold = float(s[n - 1 - r])
    a = 1 - confidence
    low, high = stats.beta.ppf([a / 2, 1 - a / 2], r + 1, n - r)
    above = int(np.count_nonzero(s > threshold))  # < r when scores tie with the threshold
    return ImageThreshold(
        threshold=threshold,
        target_frr=target_frr,
        expected_frr=(r + 1) / (n + 1),
        frr_ci_low=float(low),
        frr_ci_high=float(high),
        confidence=confidence,
        n_good=n,
        method="order_statistic",
        good_above=above,
        observed_frr=above / n,
        warnings=tuple(warnings),
    )


def _tail_params(s_sorted: np.ndarray) -> tuple[int, float, float, float]:
    """(exceedances k, level u, shape c, scale) of a GPD fitted to the top scores of a sorted sample."""
    n = s_sorted.size
    k = min(n - 1, max(MIN_TAIL_EXCEEDANCES, math.ceil(TAIL_FRACTION * n)))
    u = float(s_sorted[n - k - 1])
    excess = s_sorted[n - k :] - u
    if not np.any(excess > 0):  # all top scores equal: no tail to fit
        return k, u, 0.0, 0.0
    c, _, scale = stats.genpareto.fit(excess, floc=0)
    return k, u, float(c), float(scale)


def _tail_sf(t: float, n: int, k: int, u: float, c: float, scale: float, s_sorted: np.ndarray) -> float:
    """P(score > t) under the fitted tail (the empirical rate below the fitted level)."""
    if t <= u:
        return float(np.count_nonzero(s_sorted > t)) / n
    if scale <= 0:
        return 0.0
    return (k / n) * float(stats.genpareto.sf(t - u, c, 0, scale))


def _tail_threshold(s: np.ndarray, target: float, confidence: float, bootstrap: int, seed: int, warnings: list[str]) -> ImageThreshold:
    n = s.size
    k, u, c, scale = _tail_params(s)
    if scale <= 0:
        raise DataError(f"the top {k} of the {n} good scores are all equal ({u:g}); no tail can be fitted to them")
    threshold = u + float(stats.genpareto.isf(target * n / k, c, 0, scale))
    warnings.append(
        f"the target false-reject rate {pct(target)} is beyond what {n} good images can measure "
        f"(at best {pct(1 / (n + 1))}); the threshold is extrapolated from a generalised Pareto fit "
        f"to the top {k} scores -- a model, not a measurement; collect {min_images_for(target)} or more "
        f"good images to measure it"
    )
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(bootstrap):
        b = np.sort(rng.choice(s, size=n, replace=True))
        kb, ub, cb, sb = _tail_params(b)
        rates.append(_tail_sf(threshold, n, kb, ub, cb, sb, b))
    a = 1 - confidence
    low, high = (np.quantile(rates, [a / 2, 1 - a / 2]) if rates else (0.0, 1.0))
    above = int(np.count_nonzero(s > threshold))
    return ImageThreshold(
        threshold=threshold,
        target_frr=target,
        # The fit hits the target on its own terms; averaging over refits also counts the
        # uncertainty of the shape, which pushes the true rate up (the FRR is convex in it).
        expected_frr=float(np.mean(rates)) if rates else target,
        frr_ci_low=float(low),
        frr_ci_high=float(high),
        confidence=confidence,
        n_good=n,
        method="tail_fit",
        good_above=above,
        observed_frr=above / n,
        warnings=tuple(warnings),
        tail={"exceedances": k, "level": u, "shape": c, "scale": scale, "bootstrap": bootstrap},
    )


# --- Recheck band ---------------------------------------------------------------------------------

#: The share of good parts a recheck band sends to a person unless told otherwise.
DEFAULT_RECHECK_RATE = 0.03


@dataclass(frozen=True)
class RecheckBand:
    """The recheck band under an image threshold: a part scoring above ``recheck_threshold`` and
    not above ``threshold`` is RECHECK. ``expected_rate`` is the share of good parts to expect in
    the band, ``ci_low``/``ci_high`` its ``confidence`` interval; ``good_in_band`` how many of the
    ``n_good`` calibration scores lie in it; ``target_rate`` the rate asked for (None where a
    person chose the lower threshold)."""

    recheck_threshold: float
    threshold: float
    target_rate: float | None
    expected_rate: float
    ci_low: float
    ci_high: float
    confidence: float
    n_good: int
    good_in_band: int
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The band as the report and the calibrations' report keep it (rates are fractions)."""
        return {"recheck_threshold": self.recheck_threshold, "target_recheck_rate": self.target_rate,
                "expected_recheck_rate": self.expected_rate, "recheck_ci_low": self.ci_low,
                "recheck_ci_high": self.ci_high, "good_in_recheck_band": self.good_in_band}


def check_recheck_resolvable(n_good: int, recheck_rate: float) -> None:
    """Raises DataError if ``n_good`` good scores cannot resolve ``recheck_rate`` (before scoring them)."""
    _check_rate(recheck_rate, "recheck_rate")
    if math.floor(recheck_rate * (n_good + 1) + 1e-9) < 1:
        raise DataError(
            f"{n_good} good calibration images cannot resolve a recheck rate of {pct(recheck_rate)}: the lowest rate "
            f"they can show is 1/{n_good + 1} = {pct(1 / (n_good + 1))}; give at least {min_images_for(recheck_rate)} "
            "good images, or ask for a higher recheck rate")


def recheck_threshold_for_rate(
    good_scores: Sequence[float] | np.ndarray,
    threshold: float,
    recheck_rate: float = DEFAULT_RECHECK_RATE,
    *,
    confidence: float = 0.95,
) -> RecheckBand:
    """The lower threshold of a recheck band under ``threshold`` that sends about ``recheck_rate``
    of good parts to RECHECK (see the module docstring).

    Raises:
        DataError: too few good scores to resolve the rate (fewer than ``1 / recheck_rate - 1``),
            or too few below the threshold to hold the band, or scores tied at the threshold.
    """
    _check_rate(recheck_rate, "recheck_rate")
    _check_rate(confidence, "confidence")
    s = np.sort(_scores(good_scores, "good"))
    n = s.size
    check_recheck_resolvable(n, recheck_rate)
    k = math.floor(recheck_rate * (n + 1) + 1e-9)  # largest k with k / (n + 1) <= recheck_rate
    above = int(np.count_nonzero(s > threshold))
    index = n - 1 - above - k
    if index < 0:
        raise DataError(f"only {n - above} of the {n} good scores lie at or below the threshold {threshold:.6g}: "
                        f"too few for a recheck band of {pct(recheck_rate)}")
    lower = float(s[index])
    if not lower < threshold:
        raise DataError(f"the good scores under the threshold {threshold:.6g} tie with it: no recheck band fits between")
    warnings: list[str] = []
    reliable = math.ceil(RELIABLE_FACTOR / recheck_rate)
    if n < reliable:
        warnings.append(f"only {n} good images for a recheck rate of {pct(recheck_rate)}: {reliable} or more are "
                        "needed for a reliable recheck threshold; see the interval for how uncertain it is")
    a = 1 - confidence
    low, high = stats.beta.ppf([a / 2, 1 - a / 2], k, n - k + 1)
    in_band = int(np.count_nonzero((s > lower) & (s <= threshold)))
    return RecheckBand(lower, float(threshold), recheck_rate, k / (n + 1), float(low), float(high), confidence, n,
                       in_band, tuple(warnings))


def recheck_rate_at(
    good_scores: Sequence[float] | np.ndarray, recheck_threshold: float, threshold: float, confidence: float = 0.95
) -> RecheckBand:
    """The recheck rate to expect with a lower threshold someone chose: with ``k`` good scores in
    the band, Beta(k + 1, n - k) as :func:`frr_at` counts it (a cautious estimate: never 0)."""
    if not recheck_threshold < threshold:
        raise DataError(f"the recheck threshold {recheck_threshold:.6g} must be below the threshold {threshold:.6g}")
    s = np.asarray(good_scores, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        raise DataError("no good calibration scores to estimate a recheck rate from")
    k = int(np.count_nonzero((s > recheck_threshold) & (s <= threshold)))
    a = 1.0 - confidence
    if k >= n:
        low = float(stats.beta.ppf(a / 2, n, 1))
        return RecheckBand(float(recheck_threshold), float(threshold), None, 1.0, low, 1.0, confidence, n, k)
    low, high = stats.beta.ppf([a / 2, 1 - a / 2], k + 1, n - k)
    return RecheckBand(float(recheck_threshold), float(threshold), None, (k + 1) / (n + 1), float(low), float(high),
                       confidence, n, k)


# --- With defective samples -----------------------------------------------------------------------


@dataclass(frozen=True)
class DefectAnalysis:
    """How good and defective scores separate, and what a threshold lets through.

    ``escape_rate`` is the share of defective parts scoring at or below ``threshold`` (they would
    pass), with a Clopper-Pearson interval. ``f1_threshold`` maximises F1 with *defective* as the
    positive class; it lies halfway between two neighbouring scores. ``roc_*`` are scikit-learn's
    ROC arrays (for plots; not JSON).
    """

    threshold: float
    n_good: int
    n_defective: int
    auroc: float
    escapes: int
    escape_rate: float
    escape_ci_low: float
    escape_ci_high: float
    frr_at_threshold: float
    f1_threshold: float
    f1: float
    f1_escape_rate: float
    f1_frr: float
    roc_fpr: np.ndarray = field(repr=False, compare=False)
    roc_tpr: np.ndarray = field(repr=False, compare=False)
    roc_thresholds: np.ndarray = field(repr=False, compare=False)


def analyse_defects(
    good_scores: Sequence[float] | np.ndarray,
    defect_scores: Sequence[float] | np.ndarray,
    threshold: float,
    confidence: float = 0.95,
) -> DefectAnalysis:
    """ROC, escape rate at ``threshold`` and the F1-optimal threshold (reject: score > threshold)."""
    g = _scores(good_scores, "good")
    d = _scores(defect_scores, "defective")
    labels = np.r_[np.zeros(g.size, int), np.ones(d.size, int)]
    scores = np.r_[g, d]
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    escapes = int(np.count_nonzero(d <= threshold))
    low, high = clopper_pearson(escapes, d.size, confidence)
    # roc_curve rejects ``score >= thr[i]``; skip its first point (thr = inf, nothing rejected).
    tp, fp = tpr[1:] * d.size, fpr[1:] * g.size
    f1 = 2 * tp / (tp + fp + d.size)
    best = int(np.argmax(f1))
    cut = thr[1:][best]
    below = scores[scores < cut]
    # Halfway to the next lower score: the same split as ``>= cut`` under our ``>`` rule.
    f1_threshold = float((cut + below.max()) / 2) if below.size else float(np.nextafter(cut, -np.inf))
    return DefectAnalysis(
        threshold=float(threshold),
        n_good=g.size,
        n_defective=d.size,
        auroc=float(roc_auc_score(labels, scores)),
        escapes=escapes,
        escape_rate=escapes / d.size,
        escape_ci_low=low,
        escape_ci_high=high,
        frr_at_threshold=float(np.count_nonzero(g > threshold)) / g.size,
        f1_threshold=f1_threshold,
        f1=float(f1[best]),
        f1_escape_rate=float(np.count_nonzero(d <= f1_threshold)) / d.size,
        f1_frr=float(np.count_nonzero(g > f1_threshold)) / g.size,
        roc_fpr=fpr,
        roc_tpr=tpr,
        roc_thresholds=thr,
    )


# --- Pixel rule -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelRule:
    """Map threshold and minimum defect area, calibrated on good images' anomaly maps.

    ``observed_pixel_fpr`` is the share of good pixels above ``pixel_threshold``.
    ``min_defect_area_px`` is one more than ``largest_spurious_area_px``, the largest region above
    the pixel threshold on any good calibration image. Because that is the maximum of ``n_good``
    values, the rule alone rejects a fresh good part with probability Beta(1, n_good):
    ``expected_frr`` = 1/(n_good + 1), interval ``frr_ci_low``..``frr_ci_high``.
    Areas in mm² are given when ``mm_per_px`` (side length of one pixel) is known.
    """

    pixel_threshold: float
    target_pixel_fpr: float
    observed_pixel_fpr: float
    min_defect_area_px: int
    largest_spurious_area_px: int
    n_good: int
    n_pixels: int
    expected_frr: float
    frr_ci_low: float
    frr_ci_high: float
    mm_per_px: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def min_defect_area_mm2(self) -> float | None:
        return None if self.mm_per_px is None else self.min_defect_area_px * self.mm_per_px**2


def _pixel_values(maps: Sequence[np.ndarray], inspected: Sequence[np.ndarray | None]) -> np.ndarray:
    """The maps' values where they were inspected (a None mask: everywhere), thinned alike to
    at most about MAX_PIXEL_VALUES."""
    values = [np.asarray(m, dtype=np.float32) if where is None else np.asarray(m, dtype=np.float32)[where]
              for m, where in zip(maps, inspected)]
    total = sum(int(v.size) for v in values)
    step = max(1, math.ceil(total / MAX_PIXEL_VALUES))
    return np.concatenate([v.reshape(-1)[::step] for v in values])


def calibrate_pixel_rule(
    good_maps: Sequence[np.ndarray],
    target_pixel_fpr: float = 1e-3,
    *,
    mm_per_px: float | None = None,
    confidence: float = 0.95,
    inspected: Sequence[np.ndarray | None] | None = None,
) -> PixelRule:
    """Pixel threshold at ``target_pixel_fpr`` of good-map pixels, and the minimum defect area.

    Args:
        good_maps: anomaly maps of good calibration images, each (H, W) float; sizes may differ.
        target_pixel_fpr: share of good pixels allowed above the pixel threshold.
        mm_per_px: side of one pixel in millimetres, to report areas in mm².
        inspected: for each map, the bool mask of its pixels that were inspected (a framing's
            region, less its don't-care areas), or None: all. Only those count: a framed map
            is 0 elsewhere by construction, and counting those zeros would put the threshold
            at a far higher share of the inspected pixels (20 times for a 256-px region in a
            1280x1024 frame).
    """
    _check_rate(target_pixel_fpr, "target_pixel_fpr")
    if mm_per_px is not None and not (math.isfinite(mm_per_px) and mm_per_px > 0):
        raise ValueError(f"mm_per_px must be a positive number, got {mm_per_px!r}")
    if len(good_maps) == 0:
        raise DataError("no good anomaly maps given for the pixel rule")
    inspected = list(inspected) if inspected is not None else [None] * len(good_maps)
    if len(inspected) != len(good_maps):
        raise ValueError(f"{len(inspected)} inspected masks for {len(good_maps)} maps")
    values = _pixel_values(good_maps, inspected)
    if not np.all(np.isfinite(values)):
        raise DataError("good anomaly maps contain NaN or infinite values")
    n_values = values.size
    k = math.floor(target_pixel_fpr * n_values + 1e-9)  # values allowed above the threshold
    if k < 1:
        raise DataError(
            f"{n_values} good map pixels cannot resolve a pixel false-positive rate of {target_pixel_fpr:g}; "
            f"give more good images or a higher rate"
        )
    threshold = float(np.partition(values, n_values - 1 - k)[n_values - 1 - k])
    observed = float(np.count_nonzero(values > threshold)) / n_values
    largest = max(largest_region_px(m if where is None else np.where(where, m, -np.inf), threshold)
                  for m, where in zip(good_maps, inspected))
    n = len(good_maps)
    a = 1 - confidence
    low, high = stats.beta.ppf([a / 2, 1 - a / 2], 1, n)
    warnings = []
    if largest == 0:
        warnings.append("no good calibration image has a pixel above the pixel threshold; the minimum area of 1 px is a guess")
    return PixelRule(
        pixel_threshold=threshold,
        target_pixel_fpr=target_pixel_fpr,
        observed_pixel_fpr=observed,
        min_defect_area_px=largest + 1,
        largest_spurious_area_px=largest,
        n_good=n,
        n_pixels=n_values,
        expected_frr=1 / (n + 1),
        frr_ci_low=float(low),
        frr_ci_high=float(high),
        mm_per_px=mm_per_px,
        warnings=tuple(warnings),
    )
