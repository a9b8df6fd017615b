"""What the technician drew on the reference image, made into the recipe's framing.

The teach page (and any other face) hands over what was drawn, in pixels of the reference image:
the inspection region as a rectangle or as a polygon, don't-care areas as a painted mask and/or
polygons, and the settings beside them (align, tiles, smallest defect). :func:`drawn_framing`
turns that into the one :class:`~inspector.framing.Framing` the core checks and trains with
(:func:`inspector.framing.recipe.make_framing`): a polygon region becomes its bounding rectangle
plus a don't-care mask outside the polygon, and the polygon itself is kept beside them, so the
operator sees it outlined and the teach page draws it again as drawn. Bad input is an
InspectorError in one line, and nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.errors import InspectorError
from inspector.framing import Framing
from inspector.framing.framed import outside_polygon, polygon_bounds
from inspector.framing.recipe import describe, make_framing

Point = tuple[float, float]
#: The narrowest region (:meth:`inspector.framing.Framing.check`'s limit).
MIN_REGION_PX = 16


@dataclass(frozen=True)
class Drawing:
    """What was drawn on the reference, in its pixels: ``region`` (x, y, w, h) or ``polygon``
    (the region's corners; wins over ``region``), ``ignore`` a bool mask of the reference's size
    (painted don't-care pixels, None: none), ``ignore_polygons`` more don't-care areas; and the
    settings: ``align`` (find the part in every frame), ``tiles`` (auto, off or N), ``defect_px``
    (the smallest defect to find, in frame pixels; None: not set)."""

    region: tuple[float, float, float, float] | None = None
    polygon: Sequence[Point] | None = None
    ignore: np.ndarray | None = None
    ignore_polygons: Sequence[Sequence[Point]] = ()
    align: bool = False
    tiles: str | int = "auto"
    defect_px: float | None = None
    min_quality: float | None = None
    max_angle_deg: float = 15.0


def polygon_region(polygon: Sequence[Point]) -> tuple[int, int, int, int]:
    """The whole-pixel bounding rectangle (x, y, w, h) of a polygon's corners."""
    pts = np.asarray(polygon, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
        raise InspectorError("a region polygon needs at least three corners")
    return polygon_bounds(pts)


def fill_polygon(mask: np.ndarray, polygon: Sequence[Point], value: bool = True) -> np.ndarray:
    """``mask`` (bool, H x W) with the polygon's inside set to ``value`` (in place, returned)."""
    pts = np.asarray(polygon, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
        raise InspectorError("a don't-care polygon needs at least three corners")
    canvas = mask.astype(np.uint8)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1 if value else 0)
    mask[...] = canvas.astype(bool)
    return mask


def drawn_framing(reference: np.ndarray, drawing: Drawing, *, input_px: int = 256) -> Framing | None:
    """The framing ``drawing`` asks for, checked on the ``reference`` it was drawn on (None: it
    changes nothing, the whole frame is inspected as before). InspectorError, one line, for what
    cannot work: a region outside the image or too small, a mask of another size or covering the
    whole region, alignment without a region, a part that cannot be found, too many tiles."""
    if reference is None:
        raise InspectorError("no reference image to draw on: show a live frame or choose a sample first")
    height, width = reference.shape[:2]
    region: tuple[int, int, int, int] | None = None
    polygon: list[Point] | None = None
    ignore = None
    if drawing.ignore is not None:
        ignore = np.asarray(drawing.ignore).astype(bool)
        if ignore.shape != (height, width):
            raise InspectorError(f"the don't-care mask is {ignore.shape[1]}x{ignore.shape[0]}, the reference "
                                 f"{width}x{height}: draw it on the reference image")
        ignore = ignore.copy()
    if drawing.polygon is not None:
        region = polygon_region(drawing.polygon)
        polygon = [(float(x), float(y)) for x, y in drawing.polygon]
        outside = outside_polygon(polygon, (height, width))
        # Corners on one line still fill their outline's pixels: a thread, not an area, to inspect.
        if not cv2.erode((~outside).astype(np.uint8), np.ones((3, 3), np.uint8)).any():
            raise InspectorError("the region polygon encloses no area: drag its corners apart round the part")
        ignore = outside if ignore is None else (ignore | outside)
    elif drawing.region is not None:
        x, y, w, h = drawing.region
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise InspectorError("the region is not a rectangle of finite numbers")
        region = (int(round(x)), int(round(y)), int(round(w)), int(round(h)))
    if region is not None:
        # The core's check says both at once; the technician needs to know which, and what to do.
        x, y, w, h = region
        if w < MIN_REGION_PX or h < MIN_REGION_PX:
            raise InspectorError(f"the region {x},{y},{w},{h} is under {MIN_REGION_PX} pixels across: pull its corners "
                                 "apart round the part")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise InspectorError(f"the region {x},{y},{w},{h} does not lie inside the {width}x{height} image: drag it "
                                 "onto the picture")
    for poly in drawing.ignore_polygons:
        ignore = np.zeros((height, width), bool) if ignore is None else ignore
        fill_polygon(ignore, poly, True)
    if ignore is not None and not ignore.any():
        ignore = None
    if drawing.defect_px is not None and not drawing.defect_px > 0:
        raise InspectorError(f"the smallest defect must be a positive number of pixels, not {drawing.defect_px:g}")
    return make_framing(reference, region=region, ignore=ignore, align=drawing.align, min_quality=drawing.min_quality,
                        max_angle_deg=drawing.max_angle_deg, tiles=drawing.tiles, defect_px=drawing.defect_px,
                        input_px=input_px, polygon=polygon)


__all__ = ["Drawing", "describe", "drawn_framing", "fill_polygon", "polygon_region"]
