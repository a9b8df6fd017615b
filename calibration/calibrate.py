"""Calibrating a trained model: score held-out images, choose thresholds, store them.

:func:`calibrate_model` scores good images the model was not trained on (and, optionally,
defective ones) with the inference engine and returns a :class:`CalibrationResult`.
:func:`write_thresholds` re-saves the model file atomically with the thresholds in its metadata;
:func:`store_calibration` adds them to the history database. :func:`defect_images` reads the
defect folder forms the command accepts.

The recheck band (off unless asked for): ``recheck_rate`` puts a lower threshold under the image
threshold for that share of good parts (:func:`calibration.thresholds.recheck_threshold_for_rate`).
:func:`set_recheck_band` sets, changes or removes it on a registered version afterwards (a new
calibration, audited as ``set_recheck``), and :func:`kept_calibration_values` is what a new
calibration made from an old one (a threshold set by hand) keeps of it.

Sizes in millimetres: ``mm_per_px`` is the recipe's pixel size; the rule carries it, so areas are
reported in mm² wherever it is set, and ``min_defect_area_mm2`` gives the pixel rule's minimum
area in mm² (never below what the good parts need).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from inspector.line.rule import DecisionRule, rule_from_values, rule_metadata
from calibration.thresholds import (
    DefectAnalysis,
    ImageThreshold,
    PixelRule,
    RecheckBand,
    analyse_defects,
    calibrate_pixel_rule,
    check_recheck_resolvable,
    check_resolvable,
    largest_region_px,
    pct,
    recheck_rate_at,
    recheck_threshold_for_rate,
    threshold_for_frr,
)
from inspector.inspection import area_px_from_mm2
from inspector.errors import DataError
from inspector.framing.framed import inspected_pixels
from inspector.image_io import list_images, read_image
from inspector.model_file import load_model_tensors, save_tensors

if TYPE_CHECKING:
    from inspector.engine import Engine
    from inspector.history import HistoryDB

log = logging.getLogger(__name__)

DEFAULT_TARGET_FRR = 0.005
DEFAULT_PIXEL_FPR = 1e-3
#: Metadata keys a calibration writes into the model file.
METADATA_KEYS = ("threshold", "pixel_threshold", "min_defect_area_px", "recheck_threshold", "mm_per_px", "calibration")


def defect_images(folder: str | Path) -> list[Path]:
    """Defective images from an MVTec-layout category (``test/<type>/``), its ``test`` folder, or
    a plain folder of images. Sub-folders named ``good`` are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if folder.name == "good":
        raise DataError(f"{folder}: no defective images there (a good/ folder holds defect-free ones)")
    root = folder / "test" if (folder / "test").is_dir() else folder
    paths = list_images(root)
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and d.name != "good"):
        paths.extend(list_images(sub))
    if not paths:
        raise DataError(f"{folder}: no defective images found (looked in the folder and its sub-folders other than good/)")
    return paths


@dataclass
class CalibrationResult:
    """Everything a calibration found. ``good_scores``/``defect_scores`` are (n,) float arrays."""

    image: ImageThreshold
    pixel: PixelRule | None
    defects: DefectAnalysis | None
    good_scores: np.ndarray
    defect_scores: np.ndarray | None = None
    defect_regions_px: np.ndarray | None = None  # largest region per defective image at the pixel threshold
    good_paths: list[str] = field(default_factory=list)
    defect_paths: list[str] = field(default_factory=list)
    model: str | None = None
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    no_part_paths: list[str] = field(default_factory=list)  # images the part was not found in: left out
    recheck: RecheckBand | None = None  # the recheck band, where one was asked for
    mm_per_px: float | None = None  # the recipe's pixel size (None: areas in pixels)
    min_defect_area_mm2_asked: float | None = None

    @property
    def rule(self) -> DecisionRule:
        recheck = None if self.recheck is None else self.recheck.recheck_threshold
        if self.pixel is None:
            return rule_from_values(self.image.threshold, recheck_threshold=recheck, mm_per_px=self.mm_per_px)
        return rule_from_values(self.image.threshold, self.pixel.pixel_threshold, self.pixel.min_defect_area_px,
                                recheck, self.mm_per_px)

    @property
    def warnings(self) -> list[str]:
        no_part = ([f"the part was not found in {len(self.no_part_paths)} image(s) (NO PART), left out of the "
                    f"calibration; first: {self.no_part_paths[0]}"] if self.no_part_paths else [])
        return [*self.image.warnings, *(self.pixel.warnings if self.pixel else ()),
                *(self.recheck.warnings if self.recheck else ()), *no_part]

    def report(self) -> dict[str, Any]:
        """The content of report.json (JSON-serialisable; rates are fractions)."""
        im = self.image
        out: dict[str, Any] = {
            "model": self.model,
            "created_at": self.created_at,
            "threshold": im.threshold,
            "target_frr": im.target_frr,
            "expected_frr": im.expected_frr,
            "frr_ci_low": im.frr_ci_low,
            "frr_ci_high": im.frr_ci_high,
            "confidence": im.confidence,
            "n_good": im.n_good,
            "method": im.method,
            "good_above_threshold": im.good_above,
            "tail_fit": im.tail,
            "warnings": self.warnings,
            "mm_per_px": self.mm_per_px,
        }
        if self.recheck is not None:
            out.update(self.recheck.as_dict(), recheck_confidence=self.recheck.confidence)
            if self.defect_scores is not None:
                band = (self.defect_scores > self.recheck.recheck_threshold) & (self.defect_scores <= im.threshold)
                if self.pixel is not None and self.defect_regions_px is not None:
                    band &= self.defect_regions_px < self.pixel.min_defect_area_px  # else the pixel rule FAILs it
                out["defects_in_recheck_band"] = float(np.mean(band))  # to a person instead of passing
        if self.defects is not None:
            d = self.defects
            out.update(
                n_defective=d.n_defective,
                auroc=d.auroc,
                escape_rate=d.escape_rate,
                escape_ci_low=d.escape_ci_low,
                escape_ci_high=d.escape_ci_high,
                f1_threshold=d.f1_threshold,
                f1=d.f1,
                f1_escape_rate=d.f1_escape_rate,
                f1_frr=d.f1_frr,
            )
        if self.pixel is not None:
            p = self.pixel
            out.update(
                pixel_threshold=p.pixel_threshold,
                target_pixel_fpr=p.target_pixel_fpr,
                observed_pixel_fpr=p.observed_pixel_fpr,
                min_defect_area_px=p.min_defect_area_px,
                largest_spurious_area_px=p.largest_spurious_area_px,
                mm_per_px=p.mm_per_px,
                min_defect_area_mm2=p.min_defect_area_mm2,
                min_defect_area_mm2_asked=self.min_defect_area_mm2_asked,
                pixel_rule_expected_frr=p.expected_frr,
                pixel_rule_frr_ci_low=p.frr_ci_low,
                pixel_rule_frr_ci_high=p.frr_ci_high,
            )
            if self.defect_regions_px is not None:
                caught = self.defect_regions_px >= p.min_defect_area_px
                out["pixel_rule_escape_rate"] = float(np.mean(~caught))
                fails = caught | (self.defect_scores > im.threshold)
                out["combined_escape_rate"] = float(np.mean(~fails))
        out["good_scores"] = [float(s) for s in self.good_scores]
        out["good_images"] = self.good_paths
        if self.defect_scores is not None:
            out["defect_scores"] = [float(s) for s in self.defect_scores]
            out["defect_images"] = self.defect_paths
        return out

    def metadata(self) -> dict[str, Any]:
        """What goes into the model file's metadata: the rule plus a summary of how it was found."""
        im = self.image
        summary = {
            "created_at": self.created_at,
            "target_frr": im.target_frr,
            "expected_frr": im.expected_frr,
            "frr_ci": [im.frr_ci_low, im.frr_ci_high],
            "confidence": im.confidence,
            "n_good": im.n_good,
            "method": im.method,
            # The drift monitor's reference wherever the model file goes (``inspector run``).
            "good_scores": [float(s) for s in self.good_scores],
        }
        if self.pixel is not None:
            summary.update(target_pixel_fpr=self.pixel.target_pixel_fpr, mm_per_px=self.pixel.mm_per_px)
        if self.recheck is not None:
            summary.update(target_recheck_rate=self.recheck.target_rate, expected_recheck_rate=self.recheck.expected_rate,
                           recheck_ci=[self.recheck.ci_low, self.recheck.ci_high])
        return {**rule_metadata(self.rule), "calibration": summary}


def score_paths(
    engine: Engine,
    paths: Sequence[Path],
    on_map: Callable[[int, np.ndarray], None] | None = None,
    batch: int = 4,
    show_progress: bool = False,
    desc: str = "scoring",
    on_inspected: Callable[[int, np.ndarray | None], None] | None = None,
) -> np.ndarray:
    """Image scores of ``paths`` as (n,) float64; ``on_map(i, map)`` sees each (H, W) map, and
    ``on_inspected(i, mask)`` where in it the engine's framing inspects (None: everywhere; see
    :func:`~inspector.framing.framed.inspected_pixels`). A frame the part was not found in (NO
    PART, with a framing that aligns) scores NaN, and its map is not shown: it says nothing of
    how good parts score.

    An unreadable file stops the run with an ImageError naming it. Images are read a batch at a
    time, so memory does not grow with the number of images.
    """
    scores = np.empty(len(paths))
    for i in tqdm(range(0, len(paths), batch), desc=desc, unit="batch", disable=not show_progress):
        images = [read_image(p) for p in paths[i : i + batch]]
        if (framing := getattr(engine, "framing", None)) is not None:
            for path, image in zip(paths[i : i + batch], images):
                framing.check_frame(image.shape, path)
        for j, pred in enumerate(engine.predict_batch(images), start=i):
            if getattr(pred, "no_part", False):
                scores[j] = np.nan
                continue
            scores[j] = pred.score
            if on_map is not None:
                on_map(j, pred.anomaly_map)
            if on_inspected is not None:
                on_inspected(j, inspected_pixels(getattr(engine, "framing", None), images[j - i].shape, pred))
    return scores


def _found(scores: np.ndarray, paths: Sequence[Path], what: str) -> tuple[np.ndarray, list[Path], list[Path]]:
    """(the scores of frames the part was found in, their paths, the paths of those it was not)."""
    found = ~np.isnan(scores)
    if not found.any():
        raise DataError(f"the part was not found in any of the {len(paths)} {what} (NO PART): check the recipe's "
                        "reference and region against these images")
    return scores[found], [p for p, f in zip(paths, found) if f], [p for p, f in zip(paths, found) if not f]


def calibrate_engine(
    engine: Engine,
    good_paths: Sequence[Path],
    defect_paths: Sequence[Path] | None = None,
    *,
    target_frr: float = DEFAULT_TARGET_FRR,
    confidence: float = 0.95,
    tail: str = "auto",
    pixel_fpr: float | None = DEFAULT_PIXEL_FPR,
    mm_per_px: float | None = None,
    show_progress: bool = False,
    recheck_rate: float | None = None,
    min_defect_area_mm2: float | None = None,
) -> CalibrationResult:
    """Scores the images with ``engine`` and chooses the thresholds (``pixel_fpr=None``: no pixel rule).

    ``recheck_rate``: also a recheck band under the threshold for that share of good parts (None:
    none). ``mm_per_px``: the pixel size the rule carries (areas in mm²); ``min_defect_area_mm2``
    (needs it and the pixel rule): the smallest defect region that FAILs, in mm², raised to what
    the good parts need where it is smaller (a warning says so).

    The good images must not have been used for training; their anomaly maps are kept in memory
    for the pixel rule (4 bytes per pixel).
    """
    if not good_paths:
        raise DataError("no good images given for calibration")
    check_calibration_options(recheck_rate, mm_per_px, min_defect_area_mm2, pixel_fpr, len(good_paths))
    check_resolvable(len(good_paths), target_frr, tail)  # fail before scoring anything
    maps: list[np.ndarray] = []
    inspected: list[np.ndarray | None] = []  # framed maps: the pixels inspected (outside, 0 by construction)
    good = score_paths(engine, good_paths, (lambda i, m: maps.append(m)) if pixel_fpr else None, show_progress=show_progress,
                       desc="good images", on_inspected=(lambda i, m: inspected.append(m)) if pixel_fpr else None)
    good, good_paths, no_part = _found(good, good_paths, "good images")
    check_resolvable(len(good_paths), target_frr, tail)
    image = threshold_for_frr(good, target_frr, confidence=confidence, tail=tail)
    pixel = (calibrate_pixel_rule(maps, pixel_fpr, mm_per_px=mm_per_px, confidence=confidence, inspected=inspected)
             if pixel_fpr else None)
    maps.clear()
    inspected.clear()  # the maps are not needed any more; free them before scoring defects
    pixel = _with_min_area_mm2(pixel, min_defect_area_mm2)
    recheck = (recheck_threshold_for_rate(good, image.threshold, recheck_rate, confidence=confidence)
               if recheck_rate is not None else None)
    result = CalibrationResult(image, pixel, None, good, good_paths=[str(p) for p in good_paths], model=str(engine.model_path),
                               recheck=recheck, mm_per_px=mm_per_px, min_defect_area_mm2_asked=min_defect_area_mm2)
    if defect_paths:
        regions = np.zeros(len(defect_paths), dtype=np.int64)

        def region(i: int, m: np.ndarray) -> None:
            regions[i] = largest_region_px(m, pixel.pixel_threshold)

        bad = score_paths(engine, defect_paths, region if pixel else None, show_progress=show_progress, desc="defective images")
        regions = regions[~np.isnan(bad)]
        bad, defect_paths, defects_no_part = _found(bad, defect_paths, "defective images")
        no_part += defects_no_part
        result.defects = analyse_defects(good, bad, image.threshold, confidence)
        result.defect_scores = bad
        result.defect_regions_px = regions if pixel else None
        result.defect_paths = [str(p) for p in defect_paths]
    result.no_part_paths = [str(p) for p in no_part]
    for w in result.warnings:
        log.warning("%s", w)
    return result


def check_calibration_options(recheck_rate: float | None, mm_per_px: float | None, min_defect_area_mm2: float | None,
                              pixel_fpr: float | None, n_good: int | None = None) -> None:
    """Refuses, before anything is scored, a recheck rate or sizes in mm that cannot be used
    (a recheck rate ``n_good`` good images cannot resolve among them)."""
    if recheck_rate is not None and not (isinstance(recheck_rate, (int, float)) and 0 < recheck_rate < 1):
        raise DataError(f"the recheck rate must be a fraction strictly between 0 and 1, got {recheck_rate!r}")
    if recheck_rate is not None and n_good is not None:
        check_recheck_resolvable(n_good, recheck_rate)
    if mm_per_px is not None and not (isinstance(mm_per_px, (int, float)) and math.isfinite(mm_per_px) and mm_per_px > 0):
        raise DataError(f"the pixel size must be a positive number of mm, got {mm_per_px!r}")
    if min_defect_area_mm2 is not None:
        if mm_per_px is None:
            raise DataError("a minimum defect area in mm² needs the pixel size (--mm-per-px)")
        if not pixel_fpr:
            raise DataError("a minimum defect area needs the pixel rule (leave out --no-pixel-rule)")
        area_px_from_mm2(min_defect_area_mm2, mm_per_px)  # refuses a non-positive area


def _with_min_area_mm2(pixel: PixelRule | None, min_defect_area_mm2: float | None) -> PixelRule | None:
    if pixel is None or min_defect_area_mm2 is None or pixel.mm_per_px is None:
        return pixel
    asked = area_px_from_mm2(min_defect_area_mm2, pixel.mm_per_px)
    if asked >= pixel.min_defect_area_px:
        return replace(pixel, min_defect_area_px=asked)  # fewer regions FAIL: the rule's false rejects only fall
    warning = (f"the minimum defect area asked, {min_defect_area_mm2:g} mm² ({asked} px), is below the "
               f"{pixel.min_defect_area_px} px ({pixel.min_defect_area_mm2:.4g} mm²) that good parts' maps reach; "
               "kept at that, or good parts would FAIL")
    return replace(pixel, warnings=(*pixel.warnings, warning))


def calibrate_model(
    model_path: str | Path,
    good_paths: Sequence[Path],
    defect_paths: Sequence[Path] | None = None,
    *,
    device: str = "auto",
    backend: str = "auto",
    **kwargs: Any,
) -> CalibrationResult:
    """:func:`calibrate_engine` with an engine loaded from ``model_path``.

    ``mm_per_px`` and ``recheck_rate`` left out (or None) are the model file's own: its pixel size
    and the share of good parts its recheck band was set for, as :meth:`~calibration.teach.models.Models.calibrate` keeps a
    version's (calibrating again sets new thresholds; it does not take the recipe's pixel size or
    band away). Every image is decoded once before the model is loaded, so an unreadable file is
    reported in seconds rather than after scoring the others.
    """
    from inspector.engine import Engine
    from inspector.model_file import load_model_tensors

    _, meta = load_model_tensors(model_path)
    if kwargs.get("mm_per_px") is None:
        kwargs["mm_per_px"] = meta.get("mm_per_px")
    if kwargs.get("recheck_rate") is None:
        kwargs["recheck_rate"] = (meta.get("calibration") or {}).get("target_recheck_rate")
    check_resolvable(len(good_paths), kwargs.get("target_frr", DEFAULT_TARGET_FRR), kwargs.get("tail", "auto"))
    check_calibration_options(kwargs.get("recheck_rate"), kwargs.get("mm_per_px"), kwargs.get("min_defect_area_mm2"),
                              kwargs.get("pixel_fpr", DEFAULT_PIXEL_FPR), len(good_paths))
    for path in [*good_paths, *(defect_paths or [])]:
        read_image(path)
    engine = Engine(model_path, device=device, backend=backend)
    return calibrate_engine(engine, good_paths, defect_paths, **kwargs)


def write_thresholds(model_path: str | Path, result: CalibrationResult, out: str | Path | None = None) -> Path:
    """Re-saves the model (to ``out``, default in place) with the calibration in its metadata.

    The tensors are copied unchanged and verified on reading; the file is replaced atomically.
    """
    tensors, meta = load_model_tensors(model_path)
    meta = {k: v for k, v in meta.items() if k not in METADATA_KEYS and k != "tensor_sha256"}
    target = Path(out) if out is not None else Path(model_path)
    save_tensors(target, tensors, {**meta, **result.metadata()})
    return target


def store_calibration(
    db: HistoryDB,
    model_version_id: int,
    result: CalibrationResult,
    *,
    user: str,
    role: str = "system",
    report_path: str | Path | None = None,
) -> int:
    """Adds the calibration to the history database (audited there); returns its row id."""
    report = {k: v for k, v in result.report().items() if k not in ("good_images", "defect_images")}
    if report_path is not None:
        report["report_path"] = str(report_path)
    im, px = result.image, result.pixel
    return db.add_calibration(
        model_version_id,
        image_threshold=im.threshold,
        target_frr=im.target_frr,
        expected_frr=im.expected_frr,
        expected_frr_ci=(im.frr_ci_low, im.frr_ci_high),
        pixel_threshold=px.pixel_threshold if px else None,
        min_defect_area_px=px.min_defect_area_px if px else None,
        recheck_threshold=result.recheck.recheck_threshold if result.recheck else None,
        target_recheck_rate=result.recheck.target_rate if result.recheck else None,
        expected_recheck_rate=result.recheck.expected_rate if result.recheck else None,
        mm_per_px=result.mm_per_px,
        report=report,
        created_by=user,
        role=role,
    )


def kept_calibration_values(old: Any, threshold: float | None = None) -> dict[str, Any]:
    """What a new calibration made from ``old`` (a history ``Calibration`` row) keeps of it, as
    keywords of :meth:`~inspector.history.HistoryDB.add_calibration`: the pixel rule, the pixel
    size and the recheck band. With a new image ``threshold`` (a threshold set by hand) the band
    is kept where its lower threshold is still below it, its rate judged again on the old
    calibration's good scores; else it goes (the returned ``recheck_threshold`` is None)."""
    kept: dict[str, Any] = {
        "pixel_threshold": old.pixel_threshold, "min_defect_area_px": old.min_defect_area_px,
        "mm_per_px": getattr(old, "mm_per_px", None), "recheck_threshold": None, "target_recheck_rate": None,
        "expected_recheck_rate": None,
    }
    lower = getattr(old, "recheck_threshold", None)
    if lower is None:
        return kept
    upper = old.image_threshold if threshold is None else float(threshold)
    if not lower < upper:
        return kept
    kept.update(recheck_threshold=lower, target_recheck_rate=old.target_recheck_rate,
                expected_recheck_rate=old.expected_recheck_rate)
    scores = (old.report or {}).get("good_scores") or []
    if threshold is not None and len(scores):
        kept["expected_recheck_rate"] = recheck_rate_at(scores, lower, upper).expected_rate
    return kept


def set_recheck_band(
    db: HistoryDB,
    model_version_id: int,
    *,
    user: str,
    role: str,
    recheck_rate: float | None = None,
    recheck_threshold: float | None = None,
    confidence: float = 0.95,
) -> RecheckBand | None:
    """Sets the recheck band of a registered version as a new calibration, the rest of its latest
    one kept; audited once as ``set_recheck`` (before: the old band; after: the new one).

    Give ``recheck_rate`` (the share of good parts the line can afford to recheck: the lower
    threshold is chosen on the latest calibration's good scores) or ``recheck_threshold`` (chosen
    by a person: its rate is judged on the same scores), or neither to switch the band off.
    Returns the band (None: switched off). DataError for a version never calibrated, one without
    good scores to judge the band by, or a band that does not fit under its threshold. The
    caller checks the role (a technician's, as for a threshold)."""
    if recheck_rate is not None and recheck_threshold is not None:
        raise DataError("give a recheck rate or a recheck threshold, not both")
    old = db.latest_calibration(model_version_id)
    if old is None:
        raise DataError(f"version {model_version_id} is not calibrated; calibrate it before setting a recheck band")
    scores = np.asarray((old.report or {}).get("good_scores", []), dtype=np.float64)
    band: RecheckBand | None = None
    if recheck_rate is not None or recheck_threshold is not None:
        if scores.size == 0:
            raise DataError(f"version {model_version_id} has no calibration scores to judge a recheck band by; "
                            "calibrate it first")
        if recheck_rate is not None:
            band = recheck_threshold_for_rate(scores, old.image_threshold, recheck_rate, confidence=confidence)
        else:
            band = recheck_rate_at(scores, float(recheck_threshold), old.image_threshold, confidence)  # type: ignore[arg-type]
    kept = kept_calibration_values(old)
    kept.update(recheck_threshold=None if band is None else band.recheck_threshold,
                target_recheck_rate=None if band is None else band.target_rate,
                expected_recheck_rate=None if band is None else band.expected_rate)
    band_keys = {"recheck_threshold", "target_recheck_rate", "expected_recheck_rate", "recheck_ci_low", "recheck_ci_high",
                 "good_in_recheck_band", "recheck_confidence", "defects_in_recheck_band"}
    report = {k: v for k, v in (old.report or {}).items() if k not in band_keys}
    if band is not None:
        report.update(band.as_dict(), recheck_confidence=band.confidence)
    report.update(recheck_set_by=user)
    before = {"recheck_threshold": getattr(old, "recheck_threshold", None),
              "expected_recheck_rate": getattr(old, "expected_recheck_rate", None)}
    db.add_calibration(
        model_version_id, image_threshold=old.image_threshold, target_frr=old.target_frr, expected_frr=old.expected_frr,
        expected_frr_ci=(old.expected_frr_ci_low, old.expected_frr_ci_high) if old.expected_frr_ci_low is not None else None,
        report=report, created_by=user, role=role, action="set_recheck", before=before,
        details={"recheck_threshold": kept["recheck_threshold"], "expected_recheck_rate": kept["expected_recheck_rate"]},
        **kept,
    )
    if band is not None:
        log.info("recheck band of version %s: above %.6g (about %s of good parts)", model_version_id,
                 band.recheck_threshold, pct(band.expected_rate))
    return band
