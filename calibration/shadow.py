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
from inspector.errors import DataError
from inspector.image_io import read_image

if TYPE_CHECKING:
    from inspector.engine import Engine


@dataclass(frozen=True)
class ShadowDifference:
    name: str
    active_score: float
    active_decision: str
    candidate_score: float
    candidate_decision: str


@dataclass(frozen=True)
class ShadowReport:
    """Agreement of candidate and active model on ``n`` parts (rates are fractions)."""

    n: int
    agreement: float
    active_reject_rate: float
    candidate_reject_rate: float
    median_score_shift: float  # median of candidate - active score
    median_relative_shift: float  # median of candidate/threshold - active/threshold
    rank_correlation: float  # Spearman's rho of the two models' scores (NaN if undefined)
    differences: list[ShadowDifference] = field(default_factory=list)

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
            f"{self.n} parts: agreement {self.agreement:.1%}; candidate would reject "
            f"{len(self.would_reject_more)} more and pass {len(self.would_pass_more)} more; reject rate "
            f"{self.active_reject_rate:.1%} -> {self.candidate_reject_rate:.1%}; median score shift "
            f"{self.median_score_shift:+.4g} ({self.median_relative_shift:+.3f} thresholds)"
        )


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
        arrays = [im for _, im in named]
        for (name, _), pa, pc in zip(named, active.predict_batch(arrays), candidate.predict_batch(arrays)):
            va = active_rule.decide(pa.score, pa.anomaly_map)
            vc = candidate_rule.decide(pc.score, pc.anomaly_map)
            rows.append(ShadowDifference(name, pa.score, va.decision, pc.score, vc.decision))
    a = np.array([r.active_score for r in rows])
    c = np.array([r.candidate_score for r in rows])
    if candidate_rule.threshold > 0 and active_rule.threshold > 0:
        rel = c / candidate_rule.threshold - a / active_rule.threshold
    else:  # a threshold at or below zero gives no scale to compare against
        rel = np.full(len(rows), np.nan)
    rho = float(stats.spearmanr(a, c).statistic) if len(rows) > 2 and np.ptp(a) > 0 and np.ptp(c) > 0 else float("nan")
    return ShadowReport(
        n=len(rows),
        agreement=float(np.mean([r.active_decision == r.candidate_decision for r in rows])),
        active_reject_rate=float(np.mean([r.active_decision == "FAIL" for r in rows])),
        candidate_reject_rate=float(np.mean([r.candidate_decision == "FAIL" for r in rows])),
        median_score_shift=float(np.median(c - a)),
        median_relative_shift=float(np.median(rel)),
        rank_correlation=rho,
        differences=[r for r in rows if r.active_decision != r.candidate_decision],
    )
