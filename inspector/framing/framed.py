"""What of the frame the engine sees: the inspection region, the don't-care areas, the part found.

A :class:`Framing` is part of a recipe: the ``region`` (x, y, w, h) of the reference image that
holds the part, an ``ignore`` mask of don't-care pixels inside it, and with ``align`` the
reference image itself, so every frame is registered to it first (:class:`~.align.Aligner`).
A region drawn as a polygon is its bounding rectangle with the outside of the polygon
don't-care; the ``polygon`` is kept beside them for people (outlines, drawing it again).
:class:`FramedScorer` puts a framing in front of an engine, for the line as for evaluation:

    frame (camera pixels) -> [align: find the part; too weak a match: NO PART]
                          -> the region cut out, at native resolution
                          -> tiles at the scale the smallest defect needs (:mod:`.tiles`)
                          -> engine.predict_batch -> the region's map
                          -> the map put back into frame pixels, 0 outside the region and in
                             don't-care areas -> score = its maximum over the pixels inspected

So the map a display, the pixel rule, the review and ``inspector eval`` see is in the frame's
coordinates, zero outside the region and in don't-care areas, the image score ignores those, and
it is the maximum of the very map shown: a FAIL always has a pixel at its score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from inspector.errors import InspectorError
from inspector.framing.align import MAX_TURN_DEG, Aligner, Alignment, matched_box, searchable
from inspector.framing.tiles import TilePlan, blend_tiles, cut_tiles, plan_tiles

#: The match quality under which a frame is NO PART unless the recipe says otherwise: on
#: magnetic-tile parts on varying belts (scripts/build_line_frames.py) every empty belt stayed
#: under 0.23 and 95 % of the parts over 0.55.
MIN_QUALITY = 0.35


class Engine(Protocol):
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        """-> one object per image with ``score`` and an ``anomaly_map`` of the image's size."""


@dataclass(frozen=True)
class Framing:
    """``region`` (x, y, w, h) in reference pixels (None: the whole frame); ``ignore`` a bool
    mask of the reference's size, True where nothing counts (None: none); ``reference`` the
    image the technician drew them on, needed with ``align``; ``min_quality`` the match quality
    under which a frame is NO PART; ``max_angle_deg`` the largest turn searched; ``tiles`` and
    ``defect_px`` how the region is tiled (:func:`~.tiles.plan_tiles`); ``polygon`` the region's
    corners as drawn, in reference pixels (None: a rectangle region), whose outside ``ignore``
    marks don't-care and whose bounding rectangle is ``region``."""

    region: tuple[int, int, int, int] | None = None
    ignore: np.ndarray | None = None
    reference: np.ndarray | None = None
    align: bool = False
    min_quality: float = MIN_QUALITY
    max_angle_deg: float = 15.0
    tiles: str | int = "auto"
    defect_px: float | None = None
    polygon: tuple[tuple[float, float], ...] | None = None

    def check(self, frame_shape: tuple[int, ...]) -> None:
        """InspectorError, in one line, for a framing that cannot work on frames of this shape:
        a region outside the frame or under 16 px, an ignore mask of another size or covering
        the whole region, alignment without a reference."""
        height, width = frame_shape[:2]
        if self.region is not None:
            x, y, w, h = self.region
            if w < 16 or h < 16 or x < 0 or y < 0 or x + w > width or y + h > height:
                raise InspectorError(f"the region {x},{y},{w},{h} does not lie inside the {width}x{height} image "
                                     "or is under 16 pixels across")
        if self.ignore is not None:
            if self.ignore.shape != (height, width):
                raise InspectorError(f"the don't-care mask is {self.ignore.shape[1]}x{self.ignore.shape[0]}, the "
                                     f"image {width}x{height}: draw it on the reference image")
            x, y, w, h = self.region or (0, 0, width, height)
            if self.ignore[y : y + h, x : x + w].all():
                raise InspectorError("the don't-care mask covers the whole region: nothing would be inspected")
        if self.polygon is not None:
            self._check_polygon(width, height)
        if self.align and (self.reference is None or self.region is None):
            raise InspectorError("alignment needs a region and the reference image it was drawn on")
        if not -1.0 <= self.min_quality <= 1.0:
            raise InspectorError(f"the minimum match quality must be within -1..1, got {self.min_quality:g}")
        if self.align and not 0 <= self.max_angle_deg <= MAX_TURN_DEG:
            # Checked here, not only where the Aligner is built: a model file's framing is checked
            # as it is read, and a refusal then names the file
            raise InspectorError(f"the largest turn searched must be within 0..{MAX_TURN_DEG:g} degrees, got {self.max_angle_deg:g}")
        if self.defect_px is not None and not (self.defect_px > 0 and math.isfinite(self.defect_px)):
            # inf would be stored, and the model file then refused wherever it is loaded
            raise InspectorError(f"the smallest defect must be a positive number of pixels, got {self.defect_px:g}")

    def _check_polygon(self, width: int, height: int) -> None:
        """The polygon must be what :meth:`check` lets the model inspect: on the image, round the
        region, its outside don't-care; else the outline shown is not what is inspected."""
        pts = np.asarray(self.polygon, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
            raise InspectorError("the region polygon needs at least three corners of finite numbers")
        if pts.min() < 0 or pts[:, 0].max() > width or pts[:, 1].max() > height:
            raise InspectorError(f"the region polygon's corners do not lie inside the {width}x{height} image")
        bounds = polygon_bounds(pts)
        if self.region != bounds:
            region = "none" if self.region is None else ",".join(str(v) for v in self.region)
            raise InspectorError(f"the region {region} is not the bounding rectangle {','.join(map(str, bounds))} "
                                 "of the region polygon")
        x, y, w, h = bounds
        # The mask, where there is one, is the image's size (checked above): so is the polygon's.
        outside = None if self.ignore is None else outside_polygon(pts, self.ignore.shape)[y : y + h, x : x + w]
        if outside is None or not self.ignore[y : y + h, x : x + w][outside].all():
            raise InspectorError("the don't-care mask does not cover the region outside its polygon: "
                                 "the model would inspect more than the polygon")

    def check_frame(self, frame_shape: tuple[int, ...], name: object = None) -> None:
        """InspectorError, in one line naming ``name`` (a file) where given, for a frame this
        framing cannot cut: one of another size than the reference, where the part is not searched
        for, because its region would fall elsewhere; one smaller than the box the part is
        searched for by (:func:`~.align.matched_box`), where it is."""
        reference = self.reference
        named = f"{name}: " if name is not None else ""
        if reference is not None and not self.align and tuple(frame_shape[:2]) != reference.shape[:2]:
            raise InspectorError(f"{named}the frame is {frame_shape[1]}x"
                                 f"{frame_shape[0]}, the recipe's reference {reference.shape[1]}x{reference.shape[0]}: "
                                 "its region would fall elsewhere")
        if self.align and reference is not None and self.region is not None:
            box = matched_box(self.region, reference.shape)
            if not searchable(frame_shape, box):
                bw, bh = box[2:]
                raise InspectorError(f"{named}the frame is {frame_shape[1]}x{frame_shape[0]}, smaller than the part's "
                                     f"region with the margin it is searched by ({bw}x{bh}): the part cannot be found in it")

    def sample_frame(self, size: int = 256) -> np.ndarray:
        """A frame to time a framed engine on: the reference, where the part is found and its
        region inspected as on the line (random pixels would be refused as smaller than the
        region, or, found nowhere, cost only the search); without one, random pixels of the
        don't-care mask's size or large enough to hold the region, at least ``size`` square."""
        if isinstance(self.reference, np.ndarray):
            return self.reference
        rng = np.random.default_rng(0)
        if isinstance(self.ignore, np.ndarray):
            return rng.integers(0, 256, self.ignore.shape[:2], dtype=np.uint8)
        x, y, w, h = self.region or (0, 0, 0, 0)
        return rng.integers(0, 256, (max(size, y + h), max(size, x + w)), dtype=np.uint8)


def polygon_bounds(polygon: Sequence[Sequence[float]] | np.ndarray) -> tuple[int, int, int, int]:
    """The whole-pixel bounding rectangle (x, y, w, h) of a polygon's corners: the region a
    polygon region is cut by."""
    pts = np.asarray(polygon, dtype=np.float64)
    x0, y0 = math.floor(pts[:, 0].min()), math.floor(pts[:, 1].min())
    x1, y1 = math.ceil(pts[:, 0].max()), math.ceil(pts[:, 1].max())
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def outside_polygon(polygon: Sequence[Sequence[float]] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W), True outside the polygon: the don't-care a polygon region adds. One
    rasterisation (corners rounded to whole pixels) for the teach that makes the mask and the
    check that finds it there."""
    inside = np.zeros(shape, np.uint8)
    cv2.fillPoly(inside, [np.round(np.asarray(polygon, np.float64)).astype(np.int32)], 1)
    return inside == 0


def region_shape_in_frame(framing: Framing | None, outline: np.ndarray | None = None) -> np.ndarray | None:
    """The inspected region's shape in frame pixels, (N, 2) float32, for people to see: ``outline``
    (the region's four corners in the frame, a prediction's; None: where the reference has them)
    for a rectangle region; for a polygon region its corners, moved as the rectangle's corners
    were (the affine from the region's rectangle onto them), so a turned part's polygon turns with
    it. None without a region."""
    if framing is None or framing.region is None:
        return None if outline is None else np.asarray(outline, np.float32)
    x, y, w, h = framing.region
    rectangle = np.float32([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    corners = rectangle if outline is None else np.asarray(outline, np.float32).reshape(4, 2)
    if framing.polygon is None:
        return corners
    to_frame = cv2.getAffineTransform(rectangle[[0, 1, 3]], corners[[0, 1, 3]])
    return cv2.transform(np.asarray(framing.polygon, np.float32)[None], to_frame)[0]


@dataclass(frozen=True)
class FramedPrediction:
    """A frame's result: ``score`` (the map's maximum over the pixels inspected, 0.0 for NO PART), the
    ``anomaly_map`` in frame pixels, ``no_part`` (the part was not found: never scored), the
    ``alignment`` (None without ``align``) and the region's ``outline`` in the frame."""

    score: float
    anomaly_map: np.ndarray
    no_part: bool = False
    alignment: Alignment | None = None
    outline: np.ndarray | None = None

    @property
    def match_quality(self) -> float | None:
        return None if self.alignment is None else float(self.alignment.quality)


class FramedScorer:
    """``engine`` behind ``framing`` (see the module docstring); what the pipeline calls.

    ``engine`` needs ``predict_batch`` and ``image_size`` (its square input); or give those as
    ``predict_batch`` and ``input_px`` (the engine itself frames through its plain path), or no
    engine at all for :meth:`cuts` alone (training). ``tiles_per_pass``: at most this many tiles
    go to the engine in one call (None: all tiles of all the frames in one); the results are the
    same either way, only the time differs (:func:`inspector.engine.tiles_per_pass`)."""

    def __init__(self, engine: Engine | None, framing: Framing, *, input_px: int | None = None,
                 predict_batch: Callable[[Sequence[np.ndarray]], list[Any]] | None = None,
                 tiles_per_pass: int | None = None) -> None:
        if tiles_per_pass is not None and tiles_per_pass < 1:
            raise InspectorError(f"tiles per pass must be at least 1 (or None: all in one), got {tiles_per_pass}")
        self.tiles_per_pass = tiles_per_pass
        framing.check(framing.reference.shape if framing.reference is not None else
                      framing.ignore.shape if framing.ignore is not None else (1 << 30, 1 << 30))
        self._predict_batch = predict_batch or (engine.predict_batch if engine is not None else None)
        self.framing = framing
        self.input_px = int(input_px or getattr(engine, "image_size", 256))  # the model's square input
        self._aligner = None
        if framing.align:
            assert framing.reference is not None and framing.region is not None  # check() said so
            self._aligner = Aligner(framing.reference, framing.region, max_angle_deg=framing.max_angle_deg)

    def predict(self, frame: np.ndarray) -> FramedPrediction:
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[FramedPrediction]:
        """The frames' results; the tiles of all their regions go to the engine together (frames
        from several cameras, batched by the line, stay one batch), in passes of at most
        ``tiles_per_pass`` tiles."""
        if self._predict_batch is None:
            raise InspectorError("a framing without an engine only cuts frames; it cannot score them")
        views = [self._view(frame) for frame in frames]
        tiles = [tile for _, cut, plan in views if cut is not None for tile in cut_tiles(cut, plan)]
        step = self.tiles_per_pass or max(1, len(tiles))
        maps = iter([p.anomaly_map for start in range(0, len(tiles), step)
                     for p in self._predict_batch(tiles[start : start + step])])
        results = []
        for frame, (alignment, cut, plan) in zip(frames, views):
            outline = self.outline(frame.shape, alignment)
            if cut is None:
                results.append(FramedPrediction(0.0, np.zeros(frame.shape[:2], np.float32), True, alignment, outline))
                continue
            region_map = blend_tiles([next(maps) for _ in range(plan.count)], plan, cut.shape)
            frame_map, score = self._to_frame(region_map, alignment, frame.shape)
            results.append(FramedPrediction(score, frame_map, False, alignment, outline))
        return results

    def outline(self, frame_shape: tuple[int, ...], alignment: Alignment | None = None) -> np.ndarray | None:
        """The region's corners in frame pixels, (4, 2) float32 clockwise from its top left, where
        the part was found (None without a region: the whole frame is inspected)."""
        if self.framing.region is None:
            return None
        x, y, w, h = self.framing.region
        corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
        if alignment is None:
            return corners
        return cv2.transform(corners[None], alignment.matrix.astype(np.float32))[0]

    def cuts(self, frame: np.ndarray) -> list[np.ndarray]:
        """What the engine is shown of ``frame``: its region's tiles, cut as :meth:`predict` cuts
        them (none where the part is not found). Training learns from exactly these."""
        _, cut, plan = self._view(frame)
        if cut is None:
            return []
        return [cut[y : y + h, x : x + w] for x, y, w, h in plan.boxes]

    # -- the steps ---------------------------------------------------------------------------------

    def _view(self, frame: np.ndarray) -> tuple[Alignment | None, np.ndarray | None, TilePlan | None]:
        """The frame's alignment, its region cut out (None: NO PART) and the region's tiles."""
        self.framing.check_frame(frame.shape)
        alignment = self._aligner.align(frame) if self._aligner is not None else None
        if alignment is not None and alignment.quality < self.framing.min_quality:
            return alignment, None, None
        cut = self._cut(frame, alignment)
        plan = plan_tiles((cut.shape[1], cut.shape[0]), self.input_px, self.framing.tiles, self.framing.defect_px)
        return alignment, cut, plan

    def _region(self, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        return self.framing.region or (0, 0, frame_shape[1], frame_shape[0])

    def _cut(self, frame: np.ndarray, alignment: Alignment | None) -> np.ndarray:
        x, y, w, h = self._region(frame.shape)
        if alignment is not None:
            return alignment.cut(frame, (x, y, w, h))
        return frame[y : y + h, x : x + w]

    def _to_frame(self, region_map: np.ndarray, alignment: Alignment | None,
                  frame_shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
        """The region's map in frame pixels, 0 where nothing is inspected (outside the region, in
        don't-care areas), and the score: that map's maximum over the pixels inspected. A turned
        part's map is resampled into the frame, which lowers a peak by about 1 %; reading the score
        after that keeps it the maximum of the map that the operator, the pixel rule and the review
        see, so a FAIL always shows where it is. The map is resampled whole and the uninspected
        pixels set to 0 afterwards, so those zeros never blend into the pixels beside them."""
        x, y, w, h = self._region(frame_shape)
        if region_map.shape != (h, w):
            region_map = cv2.resize(region_map, (w, h), interpolation=cv2.INTER_LINEAR)
        region_map = region_map.astype(np.float32, copy=False)
        inside = self._inside((x, y, w, h))  # uint8, 1 where inspected
        full = np.zeros(frame_shape[:2], np.float32)
        if alignment is None:
            full[y : y + h, x : x + w] = region_map * inside
            return full, cv2.minMaxLoc(region_map, mask=inside)[1]
        (x0, y0, x1, y1), box_map = alignment.to_box(region_map, (x, y, w, h), frame_shape,
                                                     border=cv2.BORDER_REPLICATE)
        _, inspected = alignment.to_box(inside, (x, y, w, h), frame_shape, interpolation=cv2.INTER_NEAREST)
        # A part found so near the frame's edge that some of its region left the frame: what is
        # left inside is what was measured; none of it, the region's own map.
        if box_map.size and cv2.countNonZero(inspected):
            score = cv2.minMaxLoc(box_map, mask=inspected)[1]
        else:
            score = cv2.minMaxLoc(region_map, mask=inside)[1]
        np.multiply(box_map, inspected, out=box_map, casting="unsafe")
        full[y0:y1, x0:x1] = box_map
        return full, float(score)

    def _inside(self, region: tuple[int, int, int, int]) -> np.ndarray:
        """The region's pixels that are not don't-care: uint8, 1 where inspected, (h, w)."""
        x, y, w, h = region
        if self.framing.ignore is None:
            return np.ones((h, w), np.uint8)
        return (~self.framing.ignore[y : y + h, x : x + w]).astype(np.uint8)


def inspected_pixels(framing: Framing | None, frame_shape: tuple[int, ...], prediction: Any) -> np.ndarray | None:
    """Where ``prediction`` (an engine's, or a :class:`FramedScorer`'s) measured its frame, bool
    in frame pixels: None without a framing (everywhere), no pixel for a NO PART frame (nothing
    was scored), else :func:`inspected_mask` where the part was found."""
    if framing is None:
        return None
    if getattr(prediction, "no_part", False):
        return np.zeros(frame_shape[:2], bool)
    return inspected_mask(framing, frame_shape, getattr(prediction, "outline", None))


def inspected_mask(framing: Framing, frame_shape: tuple[int, ...], outline: np.ndarray | None = None) -> np.ndarray:
    """The pixels of a frame that ``framing`` inspects, bool in frame pixels: its region where the
    part was found (``outline``, a prediction's region corners; None: where the reference has it),
    less the don't-care pixels. Elsewhere a framed map is 0 by construction, not a measurement,
    so statistics over good maps' pixels (the pixel rule's threshold) must count these only."""
    height, width = frame_shape[:2]
    if framing.region is None:
        return np.ones((height, width), bool) if framing.ignore is None else ~framing.ignore
    x, y, w, h = framing.region
    inside = np.ones((h, w), np.uint8)
    if framing.ignore is not None:
        inside[framing.ignore[y : y + h, x : x + w]] = 0
    corners = np.asarray(outline if outline is not None else [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
    to_frame = cv2.getAffineTransform(np.float32([[0, 0], [w, 0], [0, h]]), corners[[0, 1, 3]])
    return cv2.warpAffine(inside, to_frame, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0) > 0
