"""Drift: are today's good-part scores still distributed like the calibration's?

:func:`check_drift` compares recent scores with the calibration's good scores by a two-sample
Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) and by how far the median and the 95th
percentile moved, measured in units of the calibration's own spread (95th percentile minus
median), so the figure means the same for any model's score scale. A warning needs both: a
significant test (large windows make tiny shifts significant) and a shift big enough to matter.

:class:`DriftMonitor` takes scores as they come, keeps a rolling window, checks every
``check_every`` scores and calls ``on_warning`` when the status turns to warning (once per
episode, not per check). The scores fed in should be the line's scores of all parts: occasional
defects barely move the distribution, whereas feeding only passed parts would cut it at the
threshold and look like drift.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Defaults: significance level of the KS test; the shift (in calibration spreads) that matters.
DRIFT_ALPHA = 0.01
MAX_SHIFT = 0.25
MIN_RECENT = 30
#: The kind of the alarm a drift warning raises, on the desktop and in ``inspector run``.
DRIFT_ALARM = "drift"


@dataclass(frozen=True)
class DriftStatus:
    """``status`` is ``"ok"`` or ``"warning"``; ``message`` is one line for the operator.

    ``statistic``/``p_value`` are the KS test's (NaN when too few recent scores to judge);
    ``median_shift``/``p95_shift`` are in units of the calibration's spread (positive: higher
    scores, i.e. parts look more anomalous than at calibration).
    """

    status: str
    message: str
    statistic: float
    p_value: float
    median_shift: float
    p95_shift: float
    n_recent: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_drift(
    reference: Sequence[float] | np.ndarray,
    recent: Sequence[float] | np.ndarray,
    *,
    alpha: float = DRIFT_ALPHA,
    max_shift: float = MAX_SHIFT,
    min_recent: int = MIN_RECENT,
) -> DriftStatus:
    """Compares ``recent`` scores (n,) with the calibration's good ``reference`` scores (m,)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    new = np.asarray(recent, dtype=np.float64).reshape(-1)
    ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
    if ref.size < 2:
        raise ValueError("drift needs at least two reference scores")
    if new.size < min_recent:
        return DriftStatus("ok", f"{new.size} recent scores; drift is judged from {min_recent} on",
                           float("nan"), float("nan"), 0.0, 0.0, new.size)
    r50, r95 = np.quantile(ref, [0.5, 0.95])
    n50, n95 = np.quantile(new, [0.5, 0.95])
    spread = r95 - r50 if r95 > r50 else max(abs(r50), 1e-12)
    median_shift, p95_shift = (n50 - r50) / spread, (n95 - r95) / spread
    test = stats.ks_2samp(ref, new)
    shift = max(median_shift, p95_shift, key=abs)
    significant = test.pvalue < alpha
    if significant and abs(shift) > max_shift:
        direction = "higher" if shift > 0 else "lower"
        message = (
            f"score drift: the last {new.size} scores are {direction} than at calibration (median "
            f"{n50:.4g} vs {r50:.4g}, 95th percentile {n95:.4g} vs {r95:.4g}; KS p={test.pvalue:.2g}); "
            f"check lighting, camera and parts, then recalibrate or retrain"
        )
        status = "warning"
    else:
        message = f"no drift in the last {new.size} scores (KS p={test.pvalue:.2g}, shift {shift:+.2f} spreads)"
        status = "ok"
    return DriftStatus(status, message, float(test.statistic), float(test.pvalue), float(median_shift), float(p95_shift), new.size)


class DriftMonitor:
    """Rolling-window drift check fed one score at a time; thread-safe.

    ``on_warning(status)`` is called from the thread that called :meth:`add` when the status
    changes from ok to warning; ``on_recovered(status)`` when it changes back.
    """

    def __init__(
        self,
        reference: Sequence[float] | np.ndarray,
        *,
        window: int = 200,
        check_every: int = 25,
        alpha: float = DRIFT_ALPHA,
        max_shift: float = MAX_SHIFT,
        min_recent: int = MIN_RECENT,
        on_warning: Callable[[DriftStatus], None] | None = None,
        on_recovered: Callable[[DriftStatus], None] | None = None,
    ) -> None:
        if window < min_recent:
            raise ValueError(f"window ({window}) must hold at least min_recent ({min_recent}) scores")
        self.reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        if self.reference.size < 2:
            raise ValueError("drift needs at least two reference scores")
        self.check_every = max(1, check_every)
        self.alpha, self.max_shift, self.min_recent = alpha, max_shift, min_recent
        self.on_warning, self.on_recovered = on_warning, on_recovered
        self._window: deque[float] = deque(maxlen=window)
        self._since_check = 0
        self._lock = threading.Lock()
        self._status = DriftStatus("ok", "no scores yet", float("nan"), float("nan"), 0.0, 0.0, 0)

    @property
    def status(self) -> DriftStatus:
        with self._lock:
            return self._status

    def add(self, score: float) -> DriftStatus | None:
        """Adds one score; returns the new status when a check ran, else None."""
        with self._lock:
            self._window.append(float(score))
            self._since_check += 1
            if self._since_check < self.check_every:
                return None
            self._since_check = 0
            recent = np.fromiter(self._window, dtype=np.float64)
            previous = self._status
            self._status = check_drift(self.reference, recent, alpha=self.alpha, max_shift=self.max_shift, min_recent=self.min_recent)
            status = self._status
        if status.status == "warning" and previous.status != "warning" and self.on_warning:
            self.on_warning(status)
        elif status.status == "ok" and previous.status == "warning" and self.on_recovered:
            self.on_recovered(status)
        return status

    def reset(self) -> None:
        """Forgets the window (e.g. after recalibrating against a new reference)."""
        with self._lock:
            self._window.clear()
            self._since_check = 0
            self._status = DriftStatus("ok", "no scores yet", float("nan"), float("nan"), 0.0, 0.0, 0)
