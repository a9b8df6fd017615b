"""Finding the part: a frame registered to the recipe's reference image before its region is cut.

A line camera sees the part somewhere on the belt, slightly turned. :class:`Aligner` finds the
rigid motion (shift and turn) that carries the reference's region onto the frame. What it matches
is the *edges* (gradient magnitude) of the region and a margin around it, where the reference
shows one flat grey instead of its belt: the part's outline and its own marks, never the look of
one belt or the brightness of one part. Both images are shrunk by whole factors (OpenCV's fast
area path: a 5 MP frame in a few milliseconds), once for the fine level, again for the coarse one.

1. **coarse search**, with the box (region and margin) about ``COARSE_PX`` across: its edges,
   turned in ``ANGLE_STEP_DEG`` steps within ``max_angle_deg``, are matched everywhere by
   normalised cross-correlation (``cv2.matchTemplate``); the best places (up to
   ``CANDIDATES``, no two alike) go on;
2. **ECC** (Evangelidis and Psarakis 2008, ``cv2.findTransformECC``, Euclidean motion), on the
   coarse level, then on the fine one (the box about ``FINE_PX`` across), from each place until
   one convinces.

The match quality is ECC's correlation coefficient on the fine level, in -1..1: high when the
part is there, near 0 on an empty belt. Below the recipe's minimum the frame is decided NO PART,
never scored. Images are ``(H, W)`` or ``(H, W, 3)``, uint8 or uint16; regions are ``(x, y, w, h)``
in reference pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.errors import InspectorError

#: The region's longest side in the coarse search, pixels: enough to tell the part from its
#: background, small enough that every angle's search costs about a millisecond.
COARSE_PX = 48
#: The region's longest side in the fine (ECC) step, pixels.
FINE_PX = 192
#: The largest turn a recipe may search for, either way, degrees.
MAX_TURN_DEG = 45.0
#: Angles tried in the coarse search, degrees apart; ECC refines within one step.
ANGLE_STEP_DEG = 3.0
#: The share of the box (the region and its margin) matched in the coarse search.
CORE = 1.0
#: Places the coarse search hands to ECC at most, best first; ECC stops at the first whose
#: correlation is :data:`CONVINCING`, else the best of them wins.
CANDIDATES = 3
CONVINCING = 0.5
#: How far around the region the match looks, as a share of the region's size on each side: the
#: part's outline against the belt is what one part has in common with the next, more than its
#: surface.
MARGIN = 0.25
#: ECC iterations at most, and the change in correlation that ends them.
ECC_ITERATIONS = 40
ECC_EPS = 1e-4


@dataclass(frozen=True)
class Alignment:
    """Where the reference's region lies in a frame: ``matrix`` (2×3) maps reference pixels to
    frame pixels; ``quality`` is the match's correlation coefficient (-1..1); ``angle_deg`` and
    ``shift`` (x, y, frame pixels) say the same as the matrix, for people."""

    matrix: np.ndarray
    quality: float
    angle_deg: float
    shift: tuple[float, float]

    def cut(self, frame: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
        """The frame's pixels of ``region`` (reference coordinates), at native resolution:
        an image of the region's size, the part as upright as in the reference."""
        x, y, w, h = region
        to_region = _compose(self.matrix, _translation(x, y))  # region pixels -> frame pixels
        return cv2.warpAffine(frame, to_region, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def to_box(self, region_map: np.ndarray, region: tuple[int, int, int, int], frame_shape: tuple[int, ...], *,
               interpolation: int = cv2.INTER_LINEAR,
               border: int = cv2.BORDER_CONSTANT) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """The part of the frame the region covers, ``(x0, y0, x1, y1)`` (clipped to the frame),
        and ``region_map`` resampled into it; outside the region 0 (``border``
        ``cv2.BORDER_REPLICATE``: the region's rim carried on). Only this box is resampled: in a
        5 MP frame the rest is most of it. float32 maps come back float32, uint8 uint8."""
        x, y, w, h = region
        if region_map.shape[:2] != (h, w):
            region_map = cv2.resize(region_map, (w, h), interpolation=cv2.INTER_LINEAR)
        if region_map.dtype != np.uint8:
            region_map = region_map.astype(np.float32)
        to_frame = _compose(self.matrix, _translation(x, y))  # region pixels -> frame pixels
        corners = cv2.transform(np.float32([[[0, 0], [w, 0], [w, h], [0, h]]]), to_frame)[0]
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        x1 = int(min(np.ceil(corners[:, 0].max()) + 1, frame_shape[1]))
        y1 = int(min(np.ceil(corners[:, 1].max()) + 1, frame_shape[0]))
        x0, y0 = int(min(x0, x1)), int(min(y0, y1))
        if x1 <= x0 or y1 <= y0:
            return (x0, y0, x0, y0), np.zeros((0, 0), region_map.dtype)
        box_map = cv2.warpAffine(region_map, _compose(_translation(-x0, -y0), to_frame), (x1 - x0, y1 - y0),
                                 flags=interpolation, borderMode=border, borderValue=0)
        return (x0, y0, x1, y1), box_map


def matched_box(region: tuple[int, int, int, int], reference_shape: tuple[int, ...],
                margin: float = MARGIN) -> tuple[int, int, int, int]:
    """The box (x, y, w, h) an :class:`Aligner` matches: ``region`` and ``margin`` of its size
    around it, inside the reference. A frame smaller than it cannot be searched."""
    x, y, w, h = region
    mx, my = round(margin * w), round(margin * h)
    bx, by = max(0, x - mx), max(0, y - my)
    return bx, by, min(reference_shape[1], x + w + mx) - bx, min(reference_shape[0], y + h + my) - by


def _shrink_factors(box: tuple[int, int, int, int]) -> tuple[int, int]:
    """Whole shrink factors: the frame by fine_k for ECC, that again by coarse_k for the search."""
    side = max(box[2], box[3])
    fine_k = max(1, int(side / FINE_PX))
    return fine_k, max(1, int(side / fine_k / COARSE_PX))


def _template_size(box: tuple[int, int, int, int]) -> tuple[int, int]:
    """(w, h) of the coarse search's templates of ``box``."""
    fine_k, coarse_k = _shrink_factors(box)
    scale = 1.0 / (fine_k * coarse_k)
    return max(4, round(box[2] * scale * CORE)), max(4, round(box[3] * scale * CORE))


def searchable(frame_shape: tuple[int, ...], box: tuple[int, int, int, int]) -> bool:
    """Whether a frame is large enough to search for the part by ``box`` (:func:`matched_box`):
    the coarse search's template must fit in the frame shrunk as the search shrinks it."""
    fine_k, coarse_k = _shrink_factors(box)
    tw, th = _template_size(box)
    return (frame_shape[1] // fine_k) // coarse_k >= tw and (frame_shape[0] // fine_k) // coarse_k >= th


class Aligner:
    """Registers frames to ``reference`` (see the module docstring). ``region`` (x, y, w, h) is
    where the part lies in the reference; the match takes in ``margin`` of its size around it
    (:data:`MARGIN`). Frames are searched for turns up to ``max_angle_deg`` either way. Build one
    per recipe: the turned templates are made once."""

    def __init__(self, reference: np.ndarray, region: tuple[int, int, int, int], *,
                 max_angle_deg: float = 15.0, margin: float = MARGIN) -> None:
        ref = _gray(reference)
        x, y, w, h = (int(v) for v in region)
        if w < 16 or h < 16 or x < 0 or y < 0 or x + w > ref.shape[1] or y + h > ref.shape[0]:
            raise InspectorError(f"the region {x},{y},{w},{h} does not lie inside the reference image "
                                 f"({ref.shape[1]}x{ref.shape[0]}) or is under 16 pixels across")
        if not 0 <= max_angle_deg <= MAX_TURN_DEG:
            raise InspectorError(f"the largest turn searched must be within 0..{MAX_TURN_DEG:g} degrees, got {max_angle_deg:g}")
        if float(ref[y : y + h, x : x + w].std()) < 1e-3 * _full_scale(ref):
            raise InspectorError("the region of the reference image is featureless (one flat grey): the part "
                                 "cannot be found by it")
        self.region = (x, y, w, h)
        # The box matched: the region and the margin around it, inside the reference. Around the
        # region the reference shows one flat grey, the belt's mean: the part's outline against
        # its background is matched, never the look of one belt.
        self.box = matched_box((x, y, w, h), ref.shape, margin)
        bx, by = self.box[:2]
        around = ref[by : by + self.box[3], bx : bx + self.box[2]].astype(np.float64)
        ring = around.sum() - ref[y : y + h, x : x + w].astype(np.float64).sum()
        ring_px = around.size - w * h
        flat = np.full_like(ref, round(ring / ring_px) if ring_px else int(ref.mean()))
        flat[y : y + h, x : x + w] = ref[y : y + h, x : x + w]
        ref = flat
        x, y, w, h = self.box
        self.max_angle_deg = float(max_angle_deg)
        self.fine_k, self.coarse_k = _shrink_factors(self.box)
        self.coarse_scale = 1.0 / (self.fine_k * self.coarse_k)
        fine_ref = _shrink(ref, self.fine_k)
        coarse_ref = _shrink(fine_ref, self.coarse_k)
        self._templates = [(a, _edges(t)) for a, t in self._turned_templates(_norm(coarse_ref))]
        self._box_edges = {}  # shrink factor -> the box's edges shrunk by it (ECC's templates)
        for k, shrunk in ((self.fine_k, fine_ref), (self.fine_k * self.coarse_k, coarse_ref)):
            self._box_edges[k] = _edges(_norm(shrunk[y // k : (y + h) // k, x // k : (x + w) // k]))

    def _turned_templates(self, small: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(angle, the region's core turned by it) at the coarse scale. The whole reference is
        turned about the region's centre, so the core never shows a border the turn made."""
        x, y, w, h = self.box
        cx, cy = (x + w / 2) * self.coarse_scale, (y + h / 2) * self.coarse_scale
        cw, ch = _template_size(self.box)
        steps = max(0, math.floor(self.max_angle_deg / ANGLE_STEP_DEG + 1e-9))
        templates = []
        for k in range(-steps, steps + 1):
            angle = k * ANGLE_STEP_DEG
            # The frame shows the part turned by +angle: so does this template.
            turn = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
            turned = cv2.warpAffine(small, turn, (small.shape[1], small.shape[0]), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
            x0, y0 = round(cx - cw / 2), round(cy - ch / 2)
            templates.append((angle, np.ascontiguousarray(turned[y0 : y0 + ch, x0 : x0 + cw])))
        return templates

    def align(self, frame: np.ndarray) -> Alignment:
        """Where the part lies in ``frame`` (any size at least the region's), with the match
        quality; a frame without the part gets a low quality, not an error."""
        gray = _gray(frame)
        x, y, w, h = self.box
        fine = _shrink(gray, self.fine_k)
        coarse = _shrink(fine, self.coarse_k)
        k_fine, k_coarse = self.fine_k, self.fine_k * self.coarse_k
        best: tuple[float, np.ndarray] | None = None
        for angle, centre in self._coarse(coarse, gray.shape):
            # The reference's pixels -> the frame's: turn about the box's centre, then move it.
            matrix = turn_about(angle, (x + w / 2, y + h / 2), centre)
            # ECC coarse then fine: the coarse level's reach brings the fine one within its own.
            _, matrix = self._refine(coarse, k_coarse, self._box_edges[k_coarse], matrix, blur=5)
            quality, matrix = self._refine(fine, k_fine, self._box_edges[k_fine], matrix)
            if best is None or quality > best[0]:
                best = (quality, matrix)
            if quality >= CONVINCING:
                break
        assert best is not None
        quality, matrix = best
        rx, ry, rw, rh = self.region
        centre = np.array([rx + rw / 2, ry + rh / 2, 1.0])
        moved = matrix @ centre
        angle_deg = math.degrees(math.atan2(-matrix[1, 0], matrix[0, 0]))
        return Alignment(matrix, quality, angle_deg, (float(moved[0] - centre[0]), float(moved[1] - centre[1])))

    def _coarse(self, small: np.ndarray, frame_shape: tuple[int, ...]) -> list[tuple[float, tuple[float, float]]]:
        """Up to :data:`CANDIDATES` (angle, box centre in frame pixels), the best match first,
        no two at one place."""
        small = _edges(_norm(small))
        found = []
        for angle, template in self._templates:
            if template.shape[0] > small.shape[0] or template.shape[1] > small.shape[1]:
                raise InspectorError(f"the frame ({frame_shape[1]}x{frame_shape[0]}) is smaller than the part's region")
            scores = cv2.matchTemplate(small, template, cv2.TM_CCOEFF_NORMED)
            _, score, _, (px, py) = cv2.minMaxLoc(scores)
            found.append((score, angle, (px + template.shape[1] / 2, py + template.shape[0] / 2)))
        apart = max(2.0, 0.15 * max(self._templates[0][1].shape))  # coarse pixels
        chosen: list[tuple[float, tuple[float, float]]] = []
        places: list[tuple[float, float]] = []
        for _, angle, (cx, cy) in sorted(found, key=lambda f: -f[0]):
            if all(math.hypot(cx - px, cy - py) > apart for px, py in places):
                places.append((cx, cy))
                chosen.append((angle, (cx / self.coarse_scale, cy / self.coarse_scale)))
            if len(chosen) == CANDIDATES:
                break
        return chosen

    def _refine(self, image: np.ndarray, k: int, template: np.ndarray, matrix: np.ndarray,
                blur: int = 3) -> tuple[float, np.ndarray]:
        """ECC from ``matrix`` (reference -> frame pixels) on ``image``, the frame shrunk by
        ``k``, against ``template`` (the box's edges shrunk by ``k``), on a window around the
        box; returns (correlation, refined matrix)."""
        x, y, w, h = self.box
        x, y = x // k * k, y // k * k  # where the template starts, in reference pixels
        # The window: the box's bounds in the frame and a margin for the refinement, in frame
        # pixels on the shrunk grid.
        corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64) @ matrix.T
        margin = 0.15 * max(w, h)
        x0 = int(max(0, corners[:, 0].min() - margin)) // k * k
        y0 = int(max(0, corners[:, 1].min() - margin)) // k * k
        x1 = int(min(image.shape[1] * k, corners[:, 0].max() + margin))
        y1 = int(min(image.shape[0] * k, corners[:, 1].max() + margin))
        if x1 - x0 < 2 * k or y1 - y0 < 2 * k:  # the guess lies outside the frame
            return 0.0, matrix
        window = _edges(_norm(image[y0 // k : y1 // k, x0 // k : x1 // k]))
        # ECC's warp maps template pixels to window pixels, both shrunk by k.
        warp = _compose(_scaling(1 / k), _compose(_translation(-x0, -y0),
                        _compose(matrix, _compose(_translation(x, y), _scaling(k))))).astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, ECC_ITERATIONS, ECC_EPS)
        try:
            quality, warp = cv2.findTransformECC(template, window, warp, cv2.MOTION_EUCLIDEAN, criteria, None, blur)
        except cv2.error:  # no convergence: the part is not there, or not like the reference
            return _correlation(template, window, warp), matrix
        refined = _compose(_translation(x0, y0), _compose(_scaling(k), _compose(warp.astype(np.float64),
                           _compose(_scaling(1 / k), _translation(-x, -y)))))
        return float(quality), refined


# -- small helpers: 2×3 affine matrices and images ---------------------------------------------------


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2×3 affine map ``a ∘ b`` (b first)."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def _scaling(s: float) -> np.ndarray:
    return np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])


def turn_about(angle_deg: float, source: tuple[float, float], target: tuple[float, float]) -> np.ndarray:
    """Turns by ``angle_deg`` about ``source`` (counter-clockwise on screen, as
    ``cv2.getRotationMatrix2D`` turns) and moves ``source`` to ``target``."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    turn = np.array([[c, s, 0.0], [-s, c, 0.0]])
    return _compose(_translation(*target), _compose(turn, _translation(-source[0], -source[1])))


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim != 2:
        raise InspectorError(f"cannot align an image of shape {image.shape}")
    return image


def _full_scale(image: np.ndarray) -> float:
    return 65535.0 if image.dtype == np.uint16 else 255.0


def _shrink(image: np.ndarray, k: int) -> np.ndarray:
    """The image shrunk by the whole factor ``k`` (pixel (i, j) averages the k×k block at
    (k·i, k·j)); a remainder of rows or columns is left out."""
    if k == 1:
        return image
    h, w = image.shape[0] // k, image.shape[1] // k
    return cv2.resize(image[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)


def _norm(image: np.ndarray) -> np.ndarray:
    """float32 in 0..1, whatever the depth (what matchTemplate and ECC take)."""
    return image.astype(np.float32) / np.float32(_full_scale(image))


def _edges(image: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def _correlation(template: np.ndarray, window: np.ndarray, warp: np.ndarray) -> float:
    """Zero-mean normalised correlation of the template with the window's pixels under ``warp``."""
    seen = cv2.warpAffine(window, warp, (template.shape[1], template.shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    a, b = template - template.mean(), seen - seen.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0
