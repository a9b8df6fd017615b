"""Shadow mode: what would a candidate model decide on parts the active model has seen?

:func:`shadow_compare` scores the same images with both models, judges each with its own rule,
and reports how often they agree, which parts they would decide differently, and how the scores
moved -- in raw score units and relative to each model's threshold (scores of two models are on
different scales; ``score / threshold`` is comparable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from inspector.line.rule import DecisionRule
from inspector.errors import DataError, InspectorError
from inspector.image_io import read_image

if TYPE_CHECKING:
    from inspector.engine import Engine


def verdict(rule: DecisionRule, prediction: Any) -> str:
    """The decision the line would make of an engine's prediction: NO_PART where the framing did
    not find the part (the rule never sees it), else the rule's (PASS, FAIL or RECHECK)."""
    if getattr(prediction, "no_part", False):
        return "NO_PART"
    return rule.decide(prediction.score, prediction.anomaly_map).decision


@dataclass(frozen=True)
class ShadowDifference:
    name: str
    active_score: float
    active_decision: str
    candidate_score: float
    candidate_decision: str


@dataclass(frozen=True)
class ShadowReport:
    """Agreement of candidate and active model on ``n`` frames (rates are fractions). As in the
    line's yield, a frame a model found no part in (NO PART, never scored) is left out of its
    reject rate, and out of the score shifts and their correlation; ``no_part`` counts the frames
    either model found no part in."""

    n: int
    agreement: float
    active_reject_rate: float
    candidate_reject_rate: float
    median_score_shift: float  # median of candidate - active score
    median_relative_shift: float  # median of candidate/threshold - active/threshold
    rank_correlation: float  # Spearman's rho of the two models' scores (NaN if undefined)
    differences: list[ShadowDifference] = field(default_factory=list)
    no_part: int = 0

    @property
    def would_reject_more(self) -> list[ShadowDifference]:
        return [d for d in self.differences if d.candidate_decision == "FAIL"]

    @property
    def would_pass_more(self) -> list[ShadowDifference]:
        return [d for d in self.differences if d.candidate_decision == "PASS"]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = [asdict(d) for d in self.differences]
        return out

    def summary(self) -> str:
        return (
            f"{self.n} parts{f' ({self.no_part} NO PART)' if self.no_part else ''}: agreement {self.agreement:.1%}; candidate would reject "
            f"{len(self.would_reject_more)} more and pass {len(self.would_pass_more)} more; reject rate "
            f"{self.active_reject_rate:.1%} -> {self.candidate_reject_rate:.1%}; median score shift "
            f"{self.median_score_shift:+.4g} ({self.median_relative_shift:+.3f} thresholds)"
        )


def check_frames(named: Sequence[tuple[str, np.ndarray]], **engines: Any) -> None:
    """InspectorError, in one line naming the model and the file, for a frame a framed model
    cannot cut (:meth:`~inspector.framing.Framing.check_frame`: another size than its reference,
    where it does not search for the part); the engine's own refusal names neither."""
    for who, engine in engines.items():
        if (framing := getattr(engine, "framing", None)) is None:
            continue
        for name, image in named:
            try:
                framing.check_frame(image.shape, name)
            except InspectorError as e:
                raise InspectorError(f"the {who} model: {e}") from None


def shadow_compare(
    candidate: Engine,
    candidate_rule: DecisionRule,
    active: Engine,
    active_rule: DecisionRule,
    images: Sequence[Path] | Sequence[tuple[str, np.ndarray]],
    batch: int = 4,
) -> ShadowReport:
    """Judges ``images`` (paths, or (name, image) pairs) with both models and compares."""
    if len(images) == 0:
        raise DataError("shadow mode needs at least one image")
    rows = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        named = [(str(x), read_image(x)) if isinstance(x, (str, Path)) else (str(x[0]), x[1]) for x in chunk]
        check_frames(named, candidate=candidate, active=active)
        arrays = [im for _, im in named]
        rows += _shadow_rows([name for name, _ in named], candidate.predict_batch(arrays), candidate_rule,
                             active.predict_batch(arrays), active_rule)
    return _shadow_report(rows, candidate_rule, active_rule)


def _shadow_rows(names: Sequence[str], candidate: Sequence[Any], candidate_rule: DecisionRule,
                 active: Sequence[Any], active_rule: DecisionRule) -> list[ShadowDifference]:
    """Each image's scores and verdicts by both models, from their predictions."""
    return [ShadowDifference(name, pa.score, verdict(active_rule, pa), pc.score, verdict(candidate_rule, pc))
            for name, pa, pc in zip(names, active, candidate)]


def _shadow_report(rows: list[ShadowDifference], candidate_rule: DecisionRule, active_rule: DecisionRule) -> ShadowReport:
    # A NO PART frame was never scored (its 0.0 is no score): only frames both models scored are
    # compared by score, and each model's reject rate is over the parts it inspected.
    scored = [r for r in rows if "NO_PART" not in (r.active_decision, r.candidate_decision)]
    a = np.array([r.active_score for r in scored])
    c = np.array([r.candidate_score for r in scored])
    if candidate_rule.threshold > 0 and active_rule.threshold > 0:
        rel = c / candidate_rule.threshold - a / active_rule.threshold
    else:  # a threshold at or below zero gives no scale to compare against
        rel = np.full(len(scored), np.nan)
    rho = float(stats.spearmanr(a, c).statistic) if len(scored) > 2 and np.ptp(a) > 0 and np.ptp(c) > 0 else float("nan")
    return ShadowReport(
        n=len(rows),
        agreement=float(np.mean([r.active_decision == r.candidate_decision for r in rows])),
        active_reject_rate=_reject_rate([r.active_decision for r in rows]),
        candidate_reject_rate=_reject_rate([r.candidate_decision for r in rows]),
        median_score_shift=float(np.median(c - a)) if scored else float("nan"),
        median_relative_shift=float(np.median(rel)) if scored else float("nan"),
        rank_correlation=rho,
        differences=[r for r in rows if r.active_decision != r.candidate_decision],
        no_part=len(rows) - len(scored),
    )


def _reject_rate(decisions: list[str]) -> float:
    """FAIL over the parts inspected (NO PART frames left out, as the line's yield leaves them)."""
    inspected = [d for d in decisions if d != "NO_PART"]
    return float(np.mean([d == "FAIL" for d in inspected])) if inspected else float("nan")


# --- Handing over from a running model to a new one ---------------------------------------------

#: A candidate may take over when its AUROC is at most this much below the running model's: the
#: two are measured on the same few dozen images, where a single image moves the AUROC by more.
HANDOVER_AUROC_TOLERANCE = 0.005


@dataclass(frozen=True)
class Handover:
    """Whether a candidate is at least as good as the active model on held-out good images and
    defects (synthetic ones made from those images, plus real ones where given). ``no_part``: good
    images left out because either model did not find the part in them (NO PART: never scored)."""

    candidate_auroc: float
    active_auroc: float
    good_images: int
    synthetic_defects: int
    real_defects: int
    candidate_escape_rate: float | None  # real defects passed at the candidate's threshold
    active_escape_rate: float | None
    shadow: ShadowReport  # the two models' verdicts on the good images
    switch: bool
    reason: str
    no_part: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shadow"] = self.shadow.as_dict()
        return out


def _predict(engine: Any, images: Sequence[np.ndarray], batch: int = 8) -> list[Any]:
    return [p for i in range(0, len(images), batch) for p in engine.predict_batch(list(images[i : i + batch]))]


def _both_inspect(candidate: Any, active: Any, image: np.ndarray, pc: Any, pa: Any) -> np.ndarray | None:
    """Where in ``image`` both models inspect it (None: both the whole frame; see
    :func:`~inspector.framing.framed.inspected_pixels`); where their regions do not meet, the
    candidate's (the active model's where the candidate's lies wholly outside the frame)."""
    from inspector.framing.framed import inspected_pixels

    masks = [m for m in (inspected_pixels(getattr(e, "framing", None), image.shape, p) for e, p in ((candidate, pc), (active, pa)))
             if m is not None]
    if not masks:
        return None
    # Where they do not meet, the candidate's; a region that left the frame whole, the image.
    return next((m for m in (np.logical_and.reduce(masks), *masks) if m.any()), None)


def handover_check(
    candidate: Engine,
    candidate_rule: DecisionRule,
    active: Engine,
    active_rule: DecisionRule,
    good_paths: Sequence[Path],
    defect_paths: Sequence[Path] | None = None,
    seed: int = 0,
) -> Handover:
    """Scores the good images, a synthetic defect made from each (:mod:`calibration.synthetic`) and
    any real defects with both models; the candidate should take over when its AUROC is within
    :data:`HANDOVER_AUROC_TOLERANCE` of the active model's or better, and it passes no more of the
    real defects.

    Framed models (:mod:`inspector.framing`): each synthetic defect is drawn where both models
    inspect that image (the region where the part was found, less don't-care), not anywhere in
    the frame, mostly belt, where neither looks. A good image either model does not find the part
    in (NO PART) is left out, with its defect, as calibration leaves it out: it was never scored,
    so it is neither a pass nor a reject (``Handover.no_part`` counts them). A defect the part is
    then not found in ranks above every score, as in ``inspector eval``: the line never passes it.
    """
    from calibration.synthetic import synthetic_defects
    from inspector.ad_metrics import image_auroc
    from inspector.evaluate import NO_PART_SCORE

    if len(good_paths) < 2:
        raise DataError("comparing two models needs at least two held-out good images")
    good_all = [read_image(p) for p in good_paths]
    check_frames([(str(p), im) for p, im in zip(good_paths, good_all)], candidate=candidate, active=active)
    real = [read_image(p) for p in defect_paths or []]
    on_good = {"candidate": _predict(candidate, good_all), "active": _predict(active, good_all)}
    found = [i for i, (pc, pa) in enumerate(zip(on_good["candidate"], on_good["active"]))
             if not getattr(pc, "no_part", False) and not getattr(pa, "no_part", False)]
    if len(found) < 2:
        raise DataError(f"the part was found by both models in {len(found)} of the {len(good_paths)} held-out good images "
                        "(NO PART in the others): comparing two models needs at least two; check the recipes' "
                        "reference and region against these images")
    good = [good_all[i] for i in found]
    where = [_both_inspect(candidate, active, good_all[i], on_good["candidate"][i], on_good["active"][i]) for i in found]
    defects = synthetic_defects(good, seed, where=where if any(w is not None for w in where) else None) + real
    labels = np.array([0] * len(good) + [1] * len(defects))
    scores: dict[str, np.ndarray] = {}
    escape: dict[str, float | None] = {"candidate": None, "active": None}
    for name, engine, rule in (("candidate", candidate, candidate_rule), ("active", active, active_rule)):
        preds = [on_good[name][i] for i in found] + _predict(engine, defects)
        scores[name] = np.array([NO_PART_SCORE if getattr(p, "no_part", False) else p.score for p in preds])
        if real:  # judged by the model's whole rule, pixel rule included, as on the line
            verdicts = [verdict(rule, p) for p in preds[-len(real):]]
            escape[name] = float(np.mean([v == "PASS" for v in verdicts]))
    auroc = {name: image_auroc(labels, s) for name, s in scores.items()}
    # The good images' predictions made above, not a second scoring of them: as shadow_compare would judge them.
    shadow = _shadow_report(_shadow_rows([str(p) for p in good_paths], on_good["candidate"], candidate_rule,
                                         on_good["active"], active_rule), candidate_rule, active_rule)
    if auroc["candidate"] < auroc["active"] - HANDOVER_AUROC_TOLERANCE:
        switch, reason = False, f"the candidate's AUROC {auroc['candidate']:.3f} is below the active model's {auroc['active']:.3f}"
    elif real and escape["candidate"] > escape["active"]:
        switch, reason = False, (f"the candidate passes {escape['candidate']:.0%} of the real defects, "
                                 f"the active model {escape['active']:.0%}")
    else:
        switch, reason = True, f"the candidate's AUROC {auroc['candidate']:.3f} is at least the active model's {auroc['active']:.3f}"
        if real:
            reason += f" and it passes no more real defects ({escape['candidate']:.0%} vs {escape['active']:.0%})"
    return Handover(
        auroc["candidate"], auroc["active"], len(good), len(good), len(real),
        escape["candidate"], escape["active"], shadow, switch, reason, no_part=len(good_paths) - len(good),
    )
