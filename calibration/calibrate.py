"""Calibrating a trained model: score held-out images, choose thresholds, store them.

:func:`calibrate_model` scores good images the model was not trained on (and, optionally,
defective ones) with the inference engine and returns a :class:`CalibrationResult`.
:func:`write_thresholds` re-saves the model file atomically with the thresholds in its metadata;
:func:`store_calibration` adds them to the history database. :func:`defect_images` reads the
defect folder forms the command accepts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from inspector.line.rule import DecisionRule, rule_from_values, rule_metadata
from calibration.thresholds import (
    DefectAnalysis,
    ImageThreshold,
    PixelRule,
    analyse_defects,
    calibrate_pixel_rule,
    check_resolvable,
    largest_region_px,
    threshold_for_frr,
)
from inspector.errors import DataError
from inspector.image_io import list_images, read_image
from inspector.model_file import load_model_tensors, save_tensors

if TYPE_CHECKING:
    from inspector.engine import Engine
    from inspector.history import HistoryDB

log = logging.getLogger(__name__)

DEFAULT_TARGET_FRR = 0.005
DEFAULT_PIXEL_FPR = 1e-3
#: Metadata keys a calibration writes into the model file.
METADATA_KEYS = ("threshold", "pixel_threshold", "min_defect_area_px", "calibration")


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

    @property
    def rule(self) -> DecisionRule:
        if self.pixel is None:
            return rule_from_values(self.image.threshold)
        return rule_from_values(self.image.threshold, self.pixel.pixel_threshold, self.pixel.min_defect_area_px)

    @property
    def warnings(self) -> list[str]:
        no_part = ([f"the part was not found in {len(self.no_part_paths)} image(s) (NO PART), left out of the "
                    f"calibration; first: {self.no_part_paths[0]}"] if self.no_part_paths else [])
        return [*self.image.warnings, *(self.pixel.warnings if self.pixel else ()), *no_part]

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
        }
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
        return {**rule_metadata(self.rule), "calibration": summary}


def score_paths(
    engine: Engine,
    paths: Sequence[Path],
    on_map: Callable[[int, np.ndarray], None] | None = None,
    batch: int = 4,
    show_progress: bool = False,
    desc: str = "scoring",
) -> np.ndarray:
    """Image scores of ``paths`` as (n,) float64; ``on_map(i, map)`` sees each (H, W) map. A
    frame the part was not found in (NO PART, with a framing that aligns) scores NaN, and its
    map is not shown: it says nothing of how good parts score.

    An unreadable file stops the run with an ImageError naming it. Images are read a batch at a
    time, so memory does not grow with the number of images.
    """
    scores = np.empty(len(paths))
    for i in tqdm(range(0, len(paths), batch), desc=desc, unit="batch", disable=not show_progress):
        images = [read_image(p) for p in paths[i : i + batch]]
        for j, pred in enumerate(engine.predict_batch(images), start=i):
            if getattr(pred, "no_part", False):
                scores[j] = np.nan
                continue
            scores[j] = pred.score
            if on_map is not None:
                on_map(j, pred.anomaly_map)
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
) -> CalibrationResult:
    """Scores the images with ``engine`` and chooses the thresholds (``pixel_fpr=None``: no pixel rule).

    The good images must not have been used for training; their anomaly maps are kept in memory
    for the pixel rule (4 bytes per pixel).
    """
    if not good_paths:
        raise DataError("no good images given for calibration")
    check_resolvable(len(good_paths), target_frr, tail)  # fail before scoring anything
    maps: list[np.ndarray] = []
    good = score_paths(engine, good_paths, (lambda i, m: maps.append(m)) if pixel_fpr else None, show_progress=show_progress, desc="good images")
    good, good_paths, no_part = _found(good, good_paths, "good images")
    check_resolvable(len(good_paths), target_frr, tail)
    image = threshold_for_frr(good, target_frr, confidence=confidence, tail=tail)
    pixel = calibrate_pixel_rule(maps, pixel_fpr, mm_per_px=mm_per_px, confidence=confidence) if pixel_fpr else None
    maps.clear()  # the maps are not needed any more; free them before scoring defects
    result = CalibrationResult(image, pixel, None, good, good_paths=[str(p) for p in good_paths], model=str(engine.model_path))
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

    Every image is decoded once before the model is loaded, so an unreadable file is reported
    in seconds rather than after scoring the others.
    """
    from inspector.engine import Engine

    check_resolvable(len(good_paths), kwargs.get("target_frr", DEFAULT_TARGET_FRR), kwargs.get("tail", "auto"))
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
        report=report,
        created_by=user,
        role=role,
    )
