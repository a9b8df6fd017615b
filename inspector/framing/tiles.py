"""Native resolution through tiles: a region larger than the model's input, cut into overlapping
tiles at the scale that keeps the smallest defect, scored as one batch, blended without seams.

Squeezing a 1000-px region into the model's 256-px input makes a 3-px crack sub-pixel. A
:class:`TilePlan` instead picks the scale from the smallest defect the technician wants found
(``defect_px``, frame pixels: at the model's input it should still be :data:`DEFECT_INPUT_PX`
across, and never larger than native) and covers the region with square tiles of the model's
input at that scale, overlapping by :data:`OVERLAP`. Each tile's map is weighted by a ramp that
falls towards its edges (where a patch's receptive field runs off the tile), so where tiles
overlap the centre of one outweighs the edge of the other and no seam shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.errors import InspectorError

#: A defect should be this many pixels across at the model's input: EfficientAD's features have a
#: stride of 4 input pixels, so a thinner mark falls between them.
DEFECT_INPUT_PX = 4.0
#: Share of a tile that overlaps its neighbour.
OVERLAP = 0.25
#: Without a smallest defect, a region no longer than this many times its width is squeezed whole
#: as before tiles existed: parts that nearly fill a square image decide well so.
SQUEEZE_ASPECT = 2.0
#: More tiles than this per frame is refused: each costs a forward pass of the model.
MAX_TILES = 64
#: The narrowest tile a count may ask for: the narrowest region (:meth:`~.framed.Framing.check`).
MIN_TILE_PX = 16
TILE_MODES = ("auto", "off")


@dataclass(frozen=True)
class TilePlan:
    """Tiles over a ``size`` (w, h) region: ``boxes`` (x, y, w, h) in region pixels, each scored
    at ``input_px`` square. One box covering the region, at any scale: no tiling."""

    size: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...]
    input_px: int

    @property
    def count(self) -> int:
        return len(self.boxes)


def plan_tiles(size: tuple[int, int], input_px: int, tiles: str | int = "auto",
               defect_px: float | None = None) -> TilePlan:
    """The tiles for a region of ``size`` (w, h) and a model whose input is ``input_px`` square.

    ``tiles``: ``"off"`` (one tile, the region squeezed as before), ``"auto"`` (square tiles at the
    coarsest scale that keeps a ``defect_px`` defect :data:`DEFECT_INPUT_PX` across and fits the
    region's shorter side into the input; one tile when that covers the region, or when no
    ``defect_px`` is given and the region is within :data:`SQUEEZE_ASPECT` of square), or a number N:
    N tiles along the region's longer side. ``defect_px``: the smallest defect to be found, in
    frame pixels (None: only the shorter side decides).
    """
    w, h = size
    if w < 1 or h < 1:
        raise InspectorError(f"an empty region ({w}x{h}) cannot be tiled")
    if tiles == "off":
        return TilePlan(size, ((0, 0, w, h),), input_px)
    if defect_px is not None and not (defect_px > 0 and math.isfinite(defect_px)):
        raise InspectorError(f"the smallest defect must be a positive number of pixels, got {defect_px:g}")
    if isinstance(tiles, int) and not isinstance(tiles, bool):
        if tiles < 1:
            raise InspectorError(f"tiles must be auto, off or a number >= 1, got {tiles}")
        side = _side_for_count(max(w, h), tiles)
        if side < MIN_TILE_PX:
            raise InspectorError(f"{tiles} tiles along the region's {max(w, h)}-px side would be {side} px each, under "
                                 f"the {MIN_TILE_PX} px a tile needs: ask for fewer tiles")
    elif tiles == "auto":
        # The coarsest scale that keeps the smallest defect DEFECT_INPUT_PX across and fits the
        # region's shorter side into the input (a long region is tiled, not squeezed), never
        # finer than native.
        scale = min(1.0, max(input_px / min(w, h), DEFECT_INPUT_PX / defect_px if defect_px else 0.0))
        side = max(1, round(input_px / scale))  # a tile's side in region pixels
        if side >= max(w, h) or (defect_px is None and max(w, h) <= SQUEEZE_ASPECT * min(w, h)):
            return TilePlan(size, ((0, 0, w, h),), input_px)
    else:
        raise InspectorError(f"tiles must be auto, off or a number >= 1, got {tiles!r}")
    side = min(side, max(w, h))
    boxes = tuple((x, y, min(side, w), min(side, h)) for y in _starts(h, side) for x in _starts(w, side))
    if len(boxes) > MAX_TILES:
        raise InspectorError(f"{len(boxes)} tiles of {side} px over a {w}x{h} region is more than {MAX_TILES}: "
                             "give a larger smallest defect, a smaller region or fewer tiles")
    return TilePlan(size, boxes, input_px)


def cut_tiles(region: np.ndarray, plan: TilePlan) -> list[np.ndarray]:
    """The region's tiles, in the plan's order (views, not copies)."""
    return [region[y : y + bh, x : x + bw] for x, y, bw, bh in plan.boxes]


def blend_tiles(maps: Sequence[np.ndarray], plan: TilePlan, shape: tuple[int, ...]) -> np.ndarray:
    """The region's anomaly map (``shape``'s height and width, float32) from its tiles' maps,
    each fitted to its tile and blended by edge-falling weights."""
    if plan.count == 1:
        x, y, bw, bh = plan.boxes[0]
        return _fit(np.asarray(maps[0], np.float32), bw, bh)
    h, w = shape[:2]
    total = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for (x, y, bw, bh), tile_map in zip(plan.boxes, maps):
        ramp = _ramp(bw, bh)
        total[y : y + bh, x : x + bw] += ramp * _fit(np.asarray(tile_map, np.float32), bw, bh)
        weight[y : y + bh, x : x + bw] += ramp
    return total / np.maximum(weight, 1e-6)


def _side_for_count(length: int, count: int) -> int:
    """The tile side that covers ``length`` with ``count`` tiles overlapping by OVERLAP."""
    if count == 1:
        return length
    return math.ceil(length / (1 + (count - 1) * (1 - OVERLAP)))


def _starts(length: int, side: int) -> list[int]:
    """Tile origins along one axis: first at 0, last flush with the end, evenly between, each
    step at most ``side * (1 - OVERLAP)``."""
    if side >= length:
        return [0]
    steps = math.ceil((length - side) / (side * (1 - OVERLAP)))
    return [round(i * (length - side) / steps) for i in range(steps + 1)]


def _ramp(w: int, h: int) -> np.ndarray:
    """Weights that fall from 1 in the middle to a small floor at the edges (a tile's edge
    patches see past it), so overlaps blend without seams."""
    def axis(n: int) -> np.ndarray:
        t = (np.arange(n, dtype=np.float32) + 0.5) / n
        return np.clip(np.minimum(t, 1 - t) / (OVERLAP / 2), 0.05, 1.0)
    return np.outer(axis(h), axis(w))


def _fit(anomaly_map: np.ndarray, w: int, h: int) -> np.ndarray:
    if anomaly_map.shape == (h, w):
        return anomaly_map
    return cv2.resize(anomaly_map, (w, h), interpolation=cv2.INTER_LINEAR)
