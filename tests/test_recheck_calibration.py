"""The recheck band's lower threshold from good parts (issue 30, part 4): its statistics, a
calibration that sets it (and the pixel size), ``inspector calibrate --recheck-rate``, and the
core function that sets it on a registered version afterwards, audited."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.calibrate import (calibrate_engine, kept_calibration_values, set_recheck_band, store_calibration)
from calibration.thresholds import recheck_rate_at, recheck_threshold_for_rate, threshold_for_frr
from inspector.engine import Prediction
from inspector.errors import DataError
from inspector.history import HistoryDB
from inspector.line.rule import DecisionRule, rule_from_calibration, rule_from_metadata


def test_the_lower_threshold_leaves_about_the_rate_between_the_thresholds() -> None:
    """Exact for order statistics: the expected share in the band is k/(n+1) <= R, and over many
    draws the true share of fresh good parts in the band averages it."""
    rng = np.random.default_rng(1)
    n, rate = 399, 0.03
    shares, covered = [], 0
    for _ in range(200):
        good = rng.normal(size=n)
        threshold = threshold_for_frr(good, 0.01).threshold
        band = recheck_threshold_for_rate(good, threshold, rate)
        assert band.recheck_threshold < threshold and band.expected_rate == pytest.approx(12 / 400)
        assert band.good_in_band == 12 and band.target_rate == rate
        from scipy.stats import norm

        true = norm.cdf(threshold) - norm.cdf(band.recheck_threshold)
        shares.append(true)
        covered += band.ci_low <= true <= band.ci_high
    assert np.mean(shares) == pytest.approx(0.03, abs=0.002)
    assert covered / 200 >= 0.9  # a 95 % interval


def test_a_rate_the_good_images_cannot_resolve_is_refused() -> None:
    good = np.linspace(0, 1, 20)
    with pytest.raises(DataError, match="cannot resolve a recheck rate"):
        recheck_threshold_for_rate(good, 0.95, 0.03)  # 1/21 > 3 %
    with pytest.raises(DataError, match="too few for a recheck band"):
        recheck_threshold_for_rate(good, 0.0, 0.5)
    chosen = recheck_rate_at(good, 0.5, 0.95)
    assert chosen.good_in_band == 9 and chosen.expected_rate == pytest.approx(10 / 21) and chosen.target_rate is None
    with pytest.raises(DataError):
        recheck_rate_at(good, 0.95, 0.95)


class BrightnessEngine:
    """A small real scorer for calibration: an image's score is its mean brightness / 255, its map
    the brightness itself; ``predict_batch`` as the engine has it."""

    model_path = Path("brightness.safetensors")

    def predict_batch(self, images):
        out = []
        for image in images:
            gray = (image if image.ndim == 2 else image.mean(axis=2)).astype(np.float32) / 255.0
            out.append(Prediction(float(gray.mean()), gray * 0.1))
        return out


def _images(folder: Path, levels) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, level in enumerate(levels):
        path = folder / f"{i:03d}.png"
        cv2.imwrite(str(path), np.full((16, 16), int(level), np.uint8))
        paths.append(path)
    return paths


def _calibrated(tmp_path: Path, **kwargs):
    good = _images(tmp_path / "good", np.linspace(60, 160, 99))
    return calibrate_engine(BrightnessEngine(), good, target_frr=0.02, pixel_fpr=None, **kwargs)


def test_a_calibration_with_a_recheck_rate_and_a_pixel_size(tmp_path: Path, db: HistoryDB) -> None:
    result = _calibrated(tmp_path, recheck_rate=0.05, mm_per_px=0.1)
    band = result.recheck
    assert band is not None and band.expected_rate == pytest.approx(5 / 100)
    rule = result.rule
    assert rule.recheck_threshold == band.recheck_threshold < rule.threshold and rule.mm_per_px == 0.1
    report = result.report()
    assert report["expected_recheck_rate"] == pytest.approx(0.05) and report["target_recheck_rate"] == 0.05
    assert report["recheck_threshold"] == band.recheck_threshold and report["mm_per_px"] == 0.1
    assert rule_from_metadata(result.metadata()) == rule  # the model file keeps the band and the size
    assert result.metadata()["calibration"]["expected_recheck_rate"] == pytest.approx(0.05)
    # Stored in the history: the recipe's rule has the band.
    _, version = _register(db)
    store_calibration(db, version, result, user="tech")
    stored = db.latest_calibration(version)
    assert (stored.recheck_threshold, stored.target_recheck_rate, stored.mm_per_px) == (band.recheck_threshold, 0.05, 0.1)
    assert rule_from_calibration(stored) == rule
    # Off unless asked for: no band, and no RECHECK ever.
    plain = _calibrated(tmp_path / "plain")
    assert plain.recheck is None and plain.rule.recheck_threshold is None and "recheck_threshold" not in plain.report()
    with pytest.raises(DataError, match="needs the pixel size"):
        _calibrated(tmp_path / "x", min_defect_area_mm2=1.0)


def test_a_minimum_defect_area_in_mm2_becomes_pixels(tmp_path: Path) -> None:
    good = _images(tmp_path / "good", np.linspace(60, 160, 40))
    result = calibrate_engine(BrightnessEngine(), good, target_frr=0.05, pixel_fpr=0.01, mm_per_px=0.5,
                              min_defect_area_mm2=1000.0)
    assert result.pixel is not None and result.pixel.min_defect_area_px == 4000  # 1000 mm² / 0.25 mm² per px
    assert result.rule.min_defect_area_mm2 == pytest.approx(1000.0)
    assert result.report()["min_defect_area_mm2"] == pytest.approx(1000.0)


def _register(db: HistoryDB) -> tuple[int, int]:
    product = db.add_product("tile")
    version = db.add_model_version(product, "/models/tile.safetensors", sha256="ab" * 32)
    return product, version


def test_set_recheck_band_on_a_registered_version_is_a_new_calibration_audited(tmp_path: Path, db: HistoryDB) -> None:
    result = _calibrated(tmp_path, mm_per_px=0.1)
    _, version = _register(db)
    first = store_calibration(db, version, result, user="tech")
    band = set_recheck_band(db, version, user="tech", role="technician", recheck_rate=0.05)
    now = db.latest_calibration(version)
    assert now.id != first and now.recheck_threshold == band.recheck_threshold
    assert (now.image_threshold, now.mm_per_px, now.report["good_scores"]) == (
        result.image.threshold, 0.1, result.report()["good_scores"])
    assert rule_from_calibration(now) == DecisionRule(result.image.threshold, recheck_threshold=band.recheck_threshold,
                                                      mm_per_px=0.1)
    [event] = [e for e in db.audit_events(limit=20) if e.action == "set_recheck"]
    assert event.before == {"recheck_threshold": None, "expected_recheck_rate": None}
    assert event.after["recheck_threshold"] == band.recheck_threshold and event.user == "tech"
    # A lower threshold a person chose; then off again.
    chosen = set_recheck_band(db, version, user="tech", role="technician", recheck_threshold=result.image.threshold - 0.05)
    assert chosen.target_rate is None and db.latest_calibration(version).recheck_threshold == chosen.recheck_threshold
    assert set_recheck_band(db, version, user="tech", role="technician") is None
    assert db.latest_calibration(version).recheck_threshold is None
    with pytest.raises(DataError):
        set_recheck_band(db, version, user="tech", role="technician", recheck_threshold=result.image.threshold)
    with pytest.raises(DataError, match="not calibrated"):
        set_recheck_band(db, db.add_model_version(1, "/m2", sha256="cd" * 32), user="tech", role="technician", recheck_rate=0.05)


def test_a_threshold_set_by_hand_keeps_the_band_while_it_fits(tmp_path: Path, db: HistoryDB) -> None:
    result = _calibrated(tmp_path, recheck_rate=0.05, mm_per_px=0.1)
    _, version = _register(db)
    store_calibration(db, version, result, user="tech")
    old = db.latest_calibration(version)
    higher = kept_calibration_values(old, old.image_threshold + 0.1)
    assert higher["recheck_threshold"] == old.recheck_threshold and higher["mm_per_px"] == 0.1
    assert higher["expected_recheck_rate"] > old.expected_recheck_rate  # a wider band
    below = kept_calibration_values(old, old.recheck_threshold)
    assert below["recheck_threshold"] is None and below["expected_recheck_rate"] is None


# -- inspector calibrate --recheck-rate ----------------------------------------------------------------


def test_inspector_calibrate_recheck_rate(tiny_model, tmp_path, monkeypatch, capsys) -> None:
    from cli.main import main
    from inspector.model_file import load_model

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    model = tmp_path / "m.safetensors"
    shutil.copyfile(tiny_model, model)
    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        cv2.imwrite(str(folder / f"good_{i:02d}.png"), np.clip(128 + rng.normal(0, 6, (64, 64)), 0, 255).astype(np.uint8))
    out = tmp_path / "calibrated.safetensors"
    code = main(["calibrate", str(model), str(folder), "--target-frr", "0.1", "--no-pixel-rule", "--recheck-rate", "0.1",
                 "--mm-per-px", "0.2", "--report", str(tmp_path / "report"), "--out", str(out), "--device", "cpu",
                 "--backend", "eager"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "recheck band: scores above" in printed and "expected recheck rate 9.52 %" in printed  # 2/21
    meta = load_model(out)[1]
    assert meta["recheck_threshold"] < meta["threshold"] and meta["mm_per_px"] == 0.2
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["expected_recheck_rate"] == pytest.approx(2 / 21) and report["target_recheck_rate"] == 0.1
    # predict names the band its RECHECK verdicts come from: its header gave the FAIL threshold only
    assert main(["predict", str(out), *map(str, sorted(folder.iterdir())), "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--backend", "eager"]) == 0
    printed = capsys.readouterr().out
    assert f"one above {meta['recheck_threshold']:.4g} that does not FAIL is RECHECK" in printed.splitlines()[0]
    assert "RECHECK" in printed.split("image\n", 1)[1]
    code = main(["calibrate", str(model), str(folder), "--target-frr", "0.1", "--no-pixel-rule", "--recheck-rate", "0.01",
                 "--report", str(tmp_path / "r2"), "--device", "cpu", "--backend", "eager"])
    assert code == 2 and "cannot resolve a recheck rate" in capsys.readouterr().err


def test_shadow_and_handover_judge_a_prediction_as_the_line_does() -> None:
    from calibration.shadow import verdict

    rule = DecisionRule(0.7, recheck_threshold=0.5)
    flat = np.zeros((4, 4), np.float32)
    assert verdict(rule, Prediction(0.0, flat, no_part=True)) == "NO_PART"  # never scored by the rule
    assert [verdict(rule, Prediction(s, flat)) for s in (0.2, 0.6, 0.9)] == ["PASS", "RECHECK", "FAIL"]


def test_defects_the_pixel_rule_fails_are_not_counted_in_the_recheck_band(tmp_path: Path) -> None:
    """report.json's defects_in_recheck_band is the share of defective parts that go to a person
    instead of passing; it counted every defect scoring in the band, also those whose region the
    pixel rule FAILs (a FAIL on the line, no person asked), so it overstated the band's catch."""
    good = _images(tmp_path / "good", np.linspace(60, 160, 99))
    result = calibrate_engine(BrightnessEngine(), good, target_frr=0.02, pixel_fpr=0.01, recheck_rate=0.05)
    assert result.pixel is not None and result.recheck is not None
    inside = (result.recheck.recheck_threshold + result.image.threshold) / 2
    area = result.pixel.min_defect_area_px
    result.defect_scores = np.array([inside, inside, inside, result.image.threshold + 0.1])
    result.defect_regions_px = np.array([area + 10, area - 1, 0, 0])  # the first FAILs by the pixel rule
    rule = result.rule
    on_the_line = [rule.decide(float(score), np.zeros((1, 1), np.float32)).decision if region < area else "FAIL"
                   for score, region in zip(result.defect_scores, result.defect_regions_px)]
    assert on_the_line == ["FAIL", "RECHECK", "RECHECK", "FAIL"]
    assert result.report()["defects_in_recheck_band"] == pytest.approx(2 / 4)
