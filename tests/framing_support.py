"""A synthetic line scene for the framing tests: a textured part on a belt whose look changes
from frame to frame, moved and turned by known amounts."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.framing.align import turn_about

W, H = 1280, 1024
REGION = (440, 330, 400, 340)  # x, y, w, h of the part in the reference


def textured_part(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    part = np.full((h, w), 110, np.uint8)
    for _ in range(30):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(part, centre, int(rng.integers(4, w // 8)), int(rng.integers(140, 250)), -1)
    for _ in range(10):
        a, b = rng.integers(0, min(w, h), 2), rng.integers(0, min(w, h), 2)
        cv2.line(part, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), int(rng.integers(0, 60)), 3)
    return part


def belt(rng: np.random.Generator) -> np.ndarray:
    """A dark belt whose look changes from frame to frame."""
    coarse = rng.normal(40, 12, (H // 16, W // 16)).astype(np.float32)
    smooth = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 6, (H, W)), 0, 255).astype(np.uint8)


def make_scene():
    rng = np.random.default_rng(7)
    x, y, w, h = REGION
    part = textured_part(rng, w, h)
    reference = belt(rng)
    reference[y : y + h, x : x + w] = part
    return rng, reference, part


def frame_with_part(rng, reference: np.ndarray, angle: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """A new belt with the reference's part turned by ``angle`` about its centre and moved by
    (dx, dy); and the true reference -> frame matrix."""
    x, y, w, h = REGION
    truth = turn_about(angle, (x + w / 2, y + h / 2), (x + w / 2 + dx, y + h / 2 + dy))
    inside = np.zeros(reference.shape, np.uint8)
    inside[y : y + h, x : x + w] = 255
    where = cv2.warpAffine(inside, truth, (W, H), flags=cv2.INTER_NEAREST) > 0
    frame = belt(rng)
    frame[where] = cv2.warpAffine(reference, truth, (W, H))[where]
    return frame, truth


