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


def synthetic_defect(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, *,
                     where: np.ndarray | None = None, donor_where: np.ndarray | None = None) -> np.ndarray:
    """``image`` with a rotated patch of ``donor`` pasted in and a scratch drawn across it.

    Both images are (H, W) or (H, W, 3) of the same dtype; the result has ``image``'s shape.
    ``where`` (bool, H x W; None: the whole image) is where the part is inspected: a framed model's
    region where the part was found, less don't-care (:func:`inspector.framing.framed.inspected_pixels`).
    The patch and the scratch are then centred on its pixels and sized by its bounding box, not
    the frame, and ``donor_where`` is where in ``donor`` the patch is taken from: on a line
    camera's frame, mostly belt, a defect drawn anywhere would lie where no model looks.
    """
    if where is not None:
        return _defect_within(image, donor, rng, where, donor_where)
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
    _scratch(out, (cx, cy), angle, length, side, float(np.mean(out)), rng)
    return out


def _scratch(out: np.ndarray, centre: tuple[float, float], angle: float, length: float, side: int, mean: float,
             rng: np.random.Generator) -> None:
    """A scratch drawn into ``out`` in place, light on a dark part (``mean``), dark on a light one."""
    cx, cy = centre
    a = (int(cx - np.cos(angle) * length / 2), int(cy - np.sin(angle) * length / 2))
    b = (int(cx + np.cos(angle) * length / 2), int(cy + np.sin(angle) * length / 2))
    top = float(np.iinfo(out.dtype).max) if np.issubdtype(out.dtype, np.integer) else 1.0
    level = top if mean < top / 2 else 0.0  # light on a dark part, dark on a light one
    colour = (level,) * (out.shape[2] if out.ndim == 3 else 1)
    cv2.line(out, a, b, colour, thickness=max(1, round(side / 256 * rng.uniform(1, 3))), lineType=cv2.LINE_AA)


def _box(where: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The pixels of a non-empty mask (ys, xs) and its bounding box's shorter side."""
    ys, xs = np.nonzero(where)
    return ys, xs, int(min(ys.max() - ys.min(), xs.max() - xs.min())) + 1


def _defect_within(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, where: np.ndarray,
                   donor_where: np.ndarray | None) -> np.ndarray:
    """:func:`synthetic_defect` centred on the pixels of ``where`` (see there)."""
    where = np.asarray(where, bool)
    if where.shape != image.shape[:2] or not where.any():
        raise ValueError("where must be a non-empty mask of the image's size")
    out = image.copy()
    h, w = out.shape[:2]
    ys, xs, side = _box(where)
    p = max(4, int(side * rng.uniform(*PATCH_FRACTION)))
    dh, dw = donor.shape[:2]
    if dh > p and dw > p and h > p and w > p:
        source = donor_where if donor_where is not None and np.shape(donor_where) == (dh, dw) and np.any(donor_where) else None
        if source is None:
            y0, x0 = int(rng.integers(0, dh - p)), int(rng.integers(0, dw - p))
        else:  # from the other part, where it was found
            dys, dxs = np.nonzero(source)
            i = int(rng.integers(0, len(dys)))
            y0, x0 = min(max(int(dys[i]) - p // 2, 0), dh - p), min(max(int(dxs[i]) - p // 2, 0), dw - p)
        patch = np.rot90(donor[y0 : y0 + p, x0 : x0 + p], k=int(rng.integers(1, 4))).copy()
        if patch.ndim != out.ndim:  # a grey donor for a colour image, or the other way round
            patch = patch[..., 0] if patch.ndim == 3 else np.repeat(patch[..., None], out.shape[2], axis=2)
        i = int(rng.integers(0, len(ys)))
        y1, x1 = min(max(int(ys[i]) - p // 2, 0), h - p), min(max(int(xs[i]) - p // 2, 0), w - p)
        out[y1 : y1 + p, x1 : x1 + p] = patch
    length = side * rng.uniform(*SCRATCH_FRACTION)
    angle = rng.uniform(0, np.pi)
    i = int(rng.integers(0, len(ys)))
    _scratch(out, (float(xs[i]), float(ys[i])), angle, length, side, float(np.mean(out[where])), rng)
    return out


def synthetic_defects(images: Sequence[np.ndarray], seed: int = 0,
                      where: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """One defective copy of every image; each takes its pasted patch from the next image.
    ``where``: for each image, where its part is inspected (None: the whole image; see
    :func:`synthetic_defect`)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    where = list(where) if where is not None else [None] * n
    return [synthetic_defect(images[i], images[(i + 1) % n], rng, where=where[i], donor_where=where[(i + 1) % n])
            for i in range(n)]
