"""Synthetic good parts for the teach tests: a woven texture, so they need no ../shared and run fast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def woven(rng: np.random.Generator) -> np.ndarray:
    """A woven fabric, shifted by a random phase: different enough that the duplicate gate keeps it."""
    y, x = np.mgrid[0:160, 0:160] + rng.uniform(0, 2 * np.pi * 3, (2, 1, 1))
    base = 120 + 40 * np.sin(x / 3.0) * np.sin(y / 3.0) + rng.normal(0, 4, (160, 160)) + rng.uniform(-8, 8)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_parts(folder: Path, make: Callable[[np.random.Generator], np.ndarray], n: int, seed: int) -> Path:
    """``n`` parts made by ``make`` as PNG files in ``folder`` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"part_{i:02d}.png"), make(rng))
    return folder
