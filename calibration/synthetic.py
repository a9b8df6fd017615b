"""Synthetic defects made from good images, for comparing two models when no real defect is at hand.

A technician teaches on good parts only. To say whether a newly trained model is at least as good
as the one running, both are asked to tell the held-out good calibration images from copies of the
same images with a defect drawn in. The defects are the two families that self-supervised
anomaly detection uses for this (CutPaste, Li et al., CVPR 2021): a patch of another good image,
rotated, pasted somewhere else (a structural flaw in the part's own texture), and a thin scratch.
Neither model ever sees them in training, so they are a fair, if rough, test of both.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Pasted patches are this share of the image's shorter side.
PATCH_FRACTION = (0.08, 0.16)
#: Scratches are this share of the shorter side long, 1-3 pixels per 256 wide.
SCRATCH_FRACTION = (0.15, 0.35)


def synthetic_defect(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` with a rotated patch of ``donor`` pasted in and a scratch drawn across it.

    Both images are (H, W) or (H, W, 3) of the same dtype; the result has ``image``'s shape.
    """
    out = image.copy()
    h, w = out.shape[:2]
    side = min(h, w)
    p = max(4, int(side * rng.uniform(*PATCH_FRACTION)))
    dh, dw = donor.shape[:2]
    if dh > p and dw > p:
        y0, x0 = int(rng.integers(0, dh - p)), int(rng.integers(0, dw - p))
        patch = np.rot90(donor[y0 : y0 + p, x0 : x0 + p], k=int(rng.integers(1, 4))).copy()
        if patch.ndim != out.ndim:  # a grey donor for a colour image, or the other way round
            patch = patch[..., 0] if patch.ndim == 3 else np.repeat(patch[..., None], out.shape[2], axis=2)
        y1, x1 = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        out[y1 : y1 + p, x1 : x1 + p] = patch
    length = side * rng.uniform(*SCRATCH_FRACTION)
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    a = (int(cx - np.cos(angle) * length / 2), int(cy - np.sin(angle) * length / 2))
    b = (int(cx + np.cos(angle) * length / 2), int(cy + np.sin(angle) * length / 2))
    top = float(np.iinfo(out.dtype).max) if np.issubdtype(out.dtype, np.integer) else 1.0
    level = top if float(np.mean(out)) < top / 2 else 0.0  # light on a dark part, dark on a light one
    colour = (level,) * (out.shape[2] if out.ndim == 3 else 1)
    cv2.line(out, a, b, colour, thickness=max(1, round(side / 256 * rng.uniform(1, 3))), lineType=cv2.LINE_AA)
    return out


def synthetic_defects(images: Sequence[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """One defective copy of every image; each takes its pasted patch from the next image."""
    rng = np.random.default_rng(seed)
    n = len(images)
    return [synthetic_defect(images[i], images[(i + 1) % n], rng) for i in range(n)]
