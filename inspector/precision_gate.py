"""The accuracy gate: may a reduced-precision backend (int8, bf16, fp16) run a model?

A faster backend is worth nothing if it changes what the line decides. So before the engine runs a
model in reduced precision it scores the model's own good parts (and its known defects, where
there are some) with fp32 and with the candidate, and lets the candidate run only if

- decisions at the calibrated threshold agree with fp32 on at least ``MIN_AGREEMENT`` of the parts
  (not counting ties: parts whose fp32 score is the threshold, within ``TIE``);
- every part's image score is within ``SCORE_TOLERANCE`` of the threshold of its fp32 score (of
  the fp32 score itself where that is higher: a part far above the threshold fails either way);
- where defects are known, image AUROC (and AU-PRO, where they have masks) is within
  ``METRIC_TOLERANCE`` of fp32's.

A model without a calibrated threshold or without known good images cannot be checked, so no
reduced precision is eligible for it. Where the images come from: :func:`find_gate_images`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import DataError
from inspector.image_io import list_images, mvtec_test_set, read_image, read_mask

log = logging.getLogger(__name__)

#: Share of parts whose PASS/FAIL must be the same as fp32's.
MIN_AGREEMENT = 0.995
#: A part whose fp32 score is within this fraction of the threshold is a tie, left out of the
#: decision count: calibration puts the threshold on a good part's score (an order statistic), and
#: that part's verdict flips under any change at all (even between fp32 backends, whose scores
#: agree within 0.1 % of the threshold: tests/test_engine.py).
TIE = 1e-3
#: Largest change of an image score, as a fraction of the threshold (see the module docstring).
#: Were every good part's score 5 % higher, the demo models' false-reject rates on their 200
#: calibration cells would go from 0.5 to 1.0 % and from 1.5 to 2.5 %, inside their thresholds'
#: own 95 % intervals (0.1-2.8 %, 0.5-4.3 %).
SCORE_TOLERANCE = 0.05
#: Largest drop of image AUROC or AU-PRO (0.5 point) where defects are known.
METRIC_TOLERANCE = 0.005
#: At most this many good and this many defective parts are scored (evenly spread over the
#: lists): each costs one fp32 and one candidate forward pass at the first start with a model.
MAX_GATE_IMAGES = 100
#: Good images the int8 backends calibrate their activation ranges on.
QUANTISE_IMAGES = 32


@dataclass(frozen=True)
class GateImages:
    """The model's own images: ``good`` held-out good parts and ``defects`` (with ``masks``, or
    none) are what the gate compares on; ``train`` good training images are what int8 calibrates
    on (``good`` where none are known)."""

    good: tuple[Path, ...]
    defects: tuple[Path, ...] = ()
    masks: tuple[Path | None, ...] = ()
    train: tuple[Path, ...] = ()
    source: str = ""

    def gate_set(self) -> tuple[list[Path], list[Path], list[Path | None]]:
        """(good, defects, masks) thinned to MAX_GATE_IMAGES each."""
        keep = _spread(len(self.defects), MAX_GATE_IMAGES)
        masks = [self.masks[i] for i in keep] if self.masks else [None] * len(keep)
        return [self.good[i] for i in _spread(len(self.good), MAX_GATE_IMAGES)], [self.defects[i] for i in keep], masks

    def calibration_set(self) -> list[Path]:
        return thinned(self.train or self.good, QUANTISE_IMAGES)

    def digest(self) -> str:
        """SHA-256 over the bytes of every image used: other images, another gate."""
        h = hashlib.sha256()
        good, defects, masks = self.gate_set()
        for path in [*good, *defects, *(m for m in masks if m), *self.calibration_set()]:
            h.update(path.name.encode() + b"\0")
            try:
                h.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                h.update(b"missing")
        return h.hexdigest()


def thinned(items: Sequence[Any], most: int) -> list[Any]:
    """``items``, at most ``most`` of them, evenly spread over the sequence."""
    return [items[i] for i in _spread(len(items), most)]


def _spread(n: int, most: int) -> list[int]:
    return list(range(n)) if n <= most else [int(i) for i in np.linspace(0, n - 1, most).round()]


def images_from_folder(folder: str | Path) -> GateImages:
    """An MVTec-layout folder (int8 calibrates on ``train/good``, the gate compares on the test set
    with its masks) or a plain folder of good images."""
    folder = Path(folder)
    if (folder / "test").is_dir():
        items = mvtec_test_set(folder)
        train = list_images(folder / "train" / "good") if (folder / "train" / "good").is_dir() else []
        bad = [it for it in items if it.defect_type != "good"]
        return GateImages(
            good=tuple(it.path for it in items if it.defect_type == "good"), defects=tuple(it.path for it in bad),
            masks=tuple(it.mask_path for it in bad), train=tuple(train), source=f"{folder} (MVTec layout)",
        )
    good = list_images(folder)
    if not good:
        raise DataError(f"{folder}: no images for the accuracy gate")
    return GateImages(good=tuple(good), source=str(folder))


def find_gate_images(model_path: Path, metadata: dict[str, Any]) -> GateImages | None:
    """The model's own good images where its file says where they are, else None.

    A model taught by :mod:`calibration.teach` names its held-out calibration images
    (``calibration_images``), which lie in the sample folder beside its ``models/`` folder; the
    other samples there are its training images. Known defective parts it was calibrated with
    (``defect_images``, absolute paths) join the gate where they still exist, for its AUROC check.
    Model files from ``inspector train`` record no image paths, so nothing can be found for them
    (give the images explicitly).
    """
    names = metadata.get("calibration_images")
    samples = model_path.parent.parent / "samples"
    if not names or model_path.parent.name != "models" or not samples.is_dir():
        return None
    good = [samples / n for n in names if (samples / n).is_file()]
    if len(good) < len(names):
        log.info("%d of the %d calibration images of %s are gone from %s: no accuracy gate", len(names) - len(good), len(names), model_path.name, samples)
        return None
    train = [p for p in list_images(samples) if p.name not in set(names)]
    defects = [Path(p) for p in metadata.get("defect_images") or [] if Path(p).is_file()]
    if len(defects) < len(metadata.get("defect_images") or []):
        log.info("%d of the defect images %s was calibrated with are gone: the gate compares on the %d left",
                 len(metadata["defect_images"]) - len(defects), model_path.name, len(defects))
    source = f"{samples} (the teach samples)" + (f" and {len(defects)} known defective parts" if defects else "")
    return GateImages(good=tuple(good), defects=tuple(defects), train=tuple(train), source=source)


@dataclass(frozen=True)
class Scored:
    """One backend's image scores (N,) on the gate's parts, and their maps where AU-PRO needs them."""

    scores: np.ndarray
    maps: list[np.ndarray] | None = None


@dataclass(frozen=True)
class GateResult:
    """Whether ``backend`` may run the model, and the figures that decided it."""

    backend: str
    precision: str
    passed: bool
    reason: str
    parts: int = 0
    agreement: float | None = None
    worst_score_change: float | None = None  # fraction of the threshold (see SCORE_TOLERANCE)
    auroc_change: float | None = None
    aupro_change: float | None = None
    reference: str = ""
    ties: int = 0  # parts at the threshold, left out of the agreement (see TIE)
    tolerances: dict[str, float] = field(default_factory=lambda: {
        "min_agreement": MIN_AGREEMENT, "tie": TIE, "score_tolerance": SCORE_TOLERANCE, "metric_tolerance": METRIC_TOLERANCE})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def not_eligible(backend: str, precision: str, why: str) -> GateResult:
    return GateResult(backend, precision, False, f"not eligible: {why}")


def judge(backend: str, precision: str, reference: Scored, candidate: Scored, threshold: float,
          labels: np.ndarray, masks: Sequence[np.ndarray] | None = None, reference_name: str = "fp32") -> GateResult:
    """Compares ``candidate`` with the fp32 ``reference`` on the same parts (``labels`` 1 for a
    known defect) at ``threshold``; ``masks`` (one (H, W) per defect) add the AU-PRO check."""
    from inspector.ad_metrics import aupro, image_auroc  # scikit-learn: only when a gate runs

    ref, got = np.asarray(reference.scores, np.float64), np.asarray(candidate.scores, np.float64)
    if not np.isfinite(got).all():
        return GateResult(backend, precision, False, "failed: a score is NaN or infinite", len(ref), reference=reference_name)
    counted = np.abs(ref - threshold) > TIE * threshold
    agreement = float(np.mean((ref > threshold) == (got > threshold), where=counted)) if counted.any() else 1.0
    change = float(np.max(np.abs(got - ref) / np.maximum(threshold, np.abs(ref))))
    auroc_change = aupro_change = None
    failures = []
    if agreement < MIN_AGREEMENT:
        failures.append(f"decisions agree on {agreement:.1%} of {int(counted.sum())} parts (< {MIN_AGREEMENT:.1%})")
    if change > SCORE_TOLERANCE:
        failures.append(f"a score moved by {change:.1%} of the threshold (> {SCORE_TOLERANCE:.0%})")
    if labels.any() and not labels.all():
        auroc_change = image_auroc(labels, got) - image_auroc(labels, ref)
        if auroc_change < -METRIC_TOLERANCE:
            failures.append(f"image AUROC {auroc_change * 100:+.2f} points")
        if masks is not None and reference.maps is not None and candidate.maps is not None:
            aupro_change = aupro(masks, candidate.maps) - aupro(masks, reference.maps)
            if aupro_change < -METRIC_TOLERANCE:
                failures.append(f"AU-PRO {aupro_change * 100:+.2f} points")
    if failures:
        reason = "failed: " + "; ".join(failures)
    else:
        reason = f"passed on {len(ref)} parts: decisions {agreement:.1%} the same, scores within {change:.1%} of the threshold"
    ties = int(len(ref) - counted.sum())
    return GateResult(backend, precision, not failures, reason, len(ref), agreement, change, auroc_change, aupro_change,
                      reference_name, ties)


@dataclass
class LoadedGateSet:
    """The gate's images in memory, read once per start: (H, W[, 3]) camera-like arrays."""

    images: list[np.ndarray]
    labels: np.ndarray
    masks: list[np.ndarray] | None  # the full-size masks of every part (good ones empty), or None

    @classmethod
    def read(cls, gate: GateImages) -> LoadedGateSet:
        good, defects, mask_paths = gate.gate_set()
        images = [read_image(p) for p in [*good, *defects]]
        labels = np.array([0] * len(good) + [1] * len(defects))
        masks = None
        if defects and all(mask_paths):
            masks = [np.zeros(im.shape[:2], bool) for im in images[: len(good)]]
            masks += [read_mask(m, im.shape[:2]) for m, im in zip(mask_paths, images[len(good):])]
        return cls(images, labels, masks)
