"""Quality gates for good samples before they teach a model, each rejection with its reason.

Per image (:func:`measure`): exposure (mean level too dark or too bright), clipping (share of
pixels at full scale, and at zero), and detail (variance of the Laplacian, absolute floor).
Across the set (:class:`SampleScreen`): blur relative to the other samples (a sample far less
sharp than the set's median is out of focus or moved), near-duplicates (same thumbnail within a
small mean difference: the same part shot twice, or a camera that did not re-trigger), and size
consistency (every sample the size of the first, unless mixed sizes are allowed).

Levels are fractions of full scale, so uint8 and uint16 images are judged alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import ImageError
from inspector.image_io import read_image

THUMB = 32


@dataclass(frozen=True)
class QualityGates:
    """Limits of the gates. Set a limit to None to switch its gate off.

    dark_mean/bright_mean: mean level (0..1) below/above which a sample is too dark/bright.
    max_white_clipped/max_black_clipped: share of pixels at full scale/at zero allowed.
    min_sharpness: variance of the Laplacian (on the 0..255 scale) below which a sample has no
    usable detail. blur_ratio: reject a sample less sharp than this share of the set's median
    (judged once ``blur_min_set`` samples are known). duplicate_mad: mean absolute difference
    (0..1) of 32x32 thumbnails at or below which two samples count as the same.
    same_size: all samples must have the size of the first.
    """

    dark_mean: float | None = 0.04
    bright_mean: float | None = 0.96
    max_white_clipped: float | None = 0.02
    max_black_clipped: float | None = 0.30
    min_sharpness: float | None = 2.0
    blur_ratio: float | None = 0.2
    blur_min_set: int = 5
    duplicate_mad: float | None = 0.006
    same_size: bool = True


@dataclass(frozen=True)
class SampleStats:
    """What the gates look at in one image. ``thumb`` is (32, 32) float32 grey in 0..1."""

    height: int
    width: int
    mean: float
    white_clipped: float
    black_clipped: float
    sharpness: float
    thumb: np.ndarray = field(repr=False, compare=False)


def measure(image: np.ndarray) -> SampleStats:
    """Gate statistics of an (H, W) or (H, W, 3) uint8/uint16 image."""
    full = 255.0 if image.dtype == np.uint8 else 65535.0
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    level = gray.astype(np.float32) / full
    lap = cv2.Laplacian(level * 255.0, cv2.CV_32F)
    thumb = cv2.resize(level, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return SampleStats(
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        mean=float(level.mean()),
        white_clipped=float(np.count_nonzero(gray >= full)) / gray.size,
        black_clipped=float(np.count_nonzero(gray == 0)) / gray.size,
        sharpness=float(lap.var()),
        thumb=thumb,
    )


def image_reasons(s: SampleStats, gates: QualityGates) -> list[str]:
    """Reasons one image fails the per-image gates (empty if it passes)."""
    reasons = []
    if gates.dark_mean is not None and s.mean < gates.dark_mean:
        reasons.append(f"too dark (mean level {s.mean:.1%} < {gates.dark_mean:.0%})")
    if gates.bright_mean is not None and s.mean > gates.bright_mean:
        reasons.append(f"too bright (mean level {s.mean:.1%} > {gates.bright_mean:.0%})")
    if gates.max_white_clipped is not None and s.white_clipped > gates.max_white_clipped:
        reasons.append(f"overexposed ({s.white_clipped:.1%} of pixels clipped white, > {gates.max_white_clipped:.0%})")
    if gates.max_black_clipped is not None and s.black_clipped > gates.max_black_clipped:
        reasons.append(f"underexposed ({s.black_clipped:.1%} of pixels clipped black, > {gates.max_black_clipped:.0%})")
    if gates.min_sharpness is not None and s.sharpness < gates.min_sharpness:
        reasons.append(f"no detail (variance of Laplacian {s.sharpness:.2f} < {gates.min_sharpness:g}): blank, covered or far out of focus")
    return reasons


@dataclass(frozen=True)
class SampleVerdict:
    """One sample's verdict; ``reasons`` is empty when accepted."""

    name: str
    reasons: tuple[str, ...]
    stats: SampleStats | None = field(default=None, repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        out = {"name": self.name, "accepted": self.accepted, "reasons": list(self.reasons)}
        if self.stats is not None:
            out["stats"] = {k: v for k, v in asdict(self.stats).items() if k != "thumb"}
        return out


class SampleScreen:
    """Screens samples one at a time against the gates and the samples accepted so far.

    Accepted samples are remembered (their thumbnails, sizes and sharpness), so duplicates, size
    changes and blur are judged against the whole set, including samples collected earlier:
    :meth:`remember` adds those without re-judging them.
    """

    def __init__(self, gates: QualityGates = QualityGates()) -> None:
        self.gates = gates
        self._names: list[str] = []
        self._thumbs: list[np.ndarray] = []
        self._sharpness: list[float] = []
        self._sizes: Counter[tuple[int, int]] = Counter()
        self._first_size: tuple[int, int] | None = None

    @property
    def accepted_count(self) -> int:
        return len(self._names)

    def remember(self, name: str, s: SampleStats) -> None:
        self._names.append(name)
        self._thumbs.append(s.thumb.reshape(-1))
        self._sharpness.append(s.sharpness)
        self._sizes[(s.height, s.width)] += 1
        if self._first_size is None:
            self._first_size = (s.height, s.width)

    def judge(self, name: str, image: np.ndarray) -> SampleVerdict:
        """Judges one image; an accepted one is remembered for the next judgements."""
        s = measure(image)
        g = self.gates
        reasons = image_reasons(s, g)
        if g.same_size and self._first_size is not None and (s.height, s.width) != self._first_size:
            h, w = self._first_size
            reasons.append(f"size {s.width}x{s.height} differs from the samples' {w}x{h}")
        if g.blur_ratio is not None and len(self._sharpness) >= g.blur_min_set:
            median = float(np.median(self._sharpness))
            if s.sharpness < g.blur_ratio * median:
                reasons.append(
                    f"blurred (variance of Laplacian {s.sharpness:.1f}, under {g.blur_ratio:.0%} of the samples' median {median:.1f})"
                )
        if g.duplicate_mad is not None and self._thumbs:
            diffs = np.abs(np.stack(self._thumbs) - s.thumb.reshape(1, -1)).mean(axis=1)
            nearest = int(np.argmin(diffs))
            if diffs[nearest] <= g.duplicate_mad:
                reasons.append(f"duplicate of {self._names[nearest]} (mean difference {diffs[nearest]:.4f})")
        if not reasons:
            self.remember(name, s)
        return SampleVerdict(name, tuple(reasons), s)

    def judge_file(self, path: str | Path, name: str | None = None) -> SampleVerdict:
        """Judges an image file; an unreadable one is rejected with the reader's message."""
        name = name or Path(path).name
        try:
            image = read_image(path)
        except ImageError as e:
            return SampleVerdict(name, (f"unreadable: {e}",))
        return self.judge(name, image)


def screen_files(paths: list[Path], gates: QualityGates = QualityGates()) -> list[SampleVerdict]:
    """Judges files in order against the gates and each other."""
    screen = SampleScreen(gates)
    return [screen.judge_file(p, str(p)) for p in paths]


def summarise(rejected: list[SampleVerdict], limit: int = 3) -> str:
    """'11 rejected: duplicate of a.png (...); ...' -- a one-line summary for error messages."""
    if not rejected:
        return "none rejected"
    shown = "; ".join(f"{Path(d.name).name}: {d.reasons[0]}" for d in rejected[:limit])
    more = f"; and {len(rejected) - limit} more" if len(rejected) > limit else ""
    return f"{len(rejected)} rejected ({shown}{more})"
