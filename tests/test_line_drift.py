"""Drift: KS test plus quantile shift against the calibration's scores; the rolling monitor."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from inspector.line.drift import DriftMonitor, check_drift


def test_same_distribution_is_ok_and_a_shift_warns():
    rng = np.random.default_rng(0)
    reference = rng.gamma(4.0, 0.01, 1000)  # skewed, like anomaly scores
    ok = check_drift(reference, rng.gamma(4.0, 0.01, 200))
    assert ok.ok and ok.status == "ok" and ok.p_value > 0.01 and "no drift" in ok.message
    drifted = check_drift(reference, rng.gamma(4.0, 0.01, 200) + 0.02)  # about one sd higher
    assert drifted.status == "warning" and not drifted.ok
    assert drifted.p_value < 1e-6 and drifted.statistic > 0.3
    assert drifted.median_shift > 0.3 and "higher" in drifted.message and "recalibrate" in drifted.message
    lower = check_drift(reference, rng.gamma(4.0, 0.01, 200) * 0.5)
    assert lower.status == "warning" and "lower" in lower.message


def test_too_few_recent_scores_are_not_judged():
    status = check_drift(np.arange(100.0), [500.0] * 5)
    assert status.ok and math.isnan(status.p_value) and "judged from 30" in status.message


def test_significant_but_tiny_shift_does_not_warn():
    # With huge windows the KS test finds any shift; 5 % of a spread does not matter on the line.
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(50_000)
    status = check_drift(reference, rng.standard_normal(50_000) + 0.08)
    assert status.p_value < 0.01 and status.ok


def test_false_alarm_rate_without_drift_is_low():
    rng = np.random.default_rng(2)
    reference = rng.lognormal(0, 0.4, 2000)
    alarms = sum(not check_drift(reference, rng.lognormal(0, 0.4, 200)).ok for _ in range(200))
    assert alarms <= 4  # alpha is 1 %, and the shift must matter too


def test_monitor_calls_the_operator_once_per_drift_episode():
    rng = np.random.default_rng(3)
    warnings, recoveries = [], []
    monitor = DriftMonitor(rng.normal(1.0, 0.1, 1000), window=100, check_every=20,
                           on_warning=warnings.append, on_recovered=recoveries.append)
    assert monitor.status.ok and monitor.status.message == "no scores yet"
    results = [monitor.add(s) for s in rng.normal(1.0, 0.1, 200)]
    assert sum(r is not None for r in results) == 10  # one check every 20 scores
    assert not warnings and monitor.status.ok
    for s in rng.normal(1.15, 0.1, 300):  # lighting changed: scores 1.5 sd higher
        monitor.add(s)
    assert len(warnings) == 1 and warnings[0].status == "warning" and monitor.status.status == "warning"
    for s in rng.normal(1.0, 0.1, 300):  # fixed
        monitor.add(s)
    assert len(recoveries) == 1 and monitor.status.ok and len(warnings) == 1
    monitor.reset()
    assert monitor.status.n_recent == 0


def test_monitor_accepts_scores_from_several_threads():
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(rng.normal(0, 1, 500), window=400, check_every=10)
    chunks = [rng.normal(0, 1, 100) for _ in range(4)]
    threads = [threading.Thread(target=lambda c=c: [monitor.add(s) for s in c]) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert monitor.status.n_recent == 400 and monitor.status.ok


def test_monitor_rejects_a_window_smaller_than_the_minimum():
    with pytest.raises(ValueError):
        DriftMonitor([1.0, 2.0, 3.0], window=10)
