"""A row's pictures for the browser, drawn by the core's overlay code (:mod:`inspector.overlay`).

The part page stacks two pictures: the stored frame as recorded, and over it the *heat layer*, an
RGBA PNG of the map coloured over ``0 .. vmax`` with the desktop's fade-in as its alpha
(:func:`~inspector.overlay.overlay_alpha` at full opacity) and the defect outlined; the page's
opacity slider scales that alpha, which makes what the browser shows
:func:`~inspector.overlay.overlay` at that opacity. The levels come from the rule the row was
decided with (:func:`~inspector.overlay.heatmap_view`, as the desktop's review draws it). The
colour scale is :func:`~inspector.overlay.colour_bar`; the annotated PNG for a report is
:func:`~inspector.overlay.annotated_overlay`, as ``inspector predict`` writes it.

Where a row's pictures come from (:class:`ImageSource`): its file, where the file lies inside the
image store's folders on this computer; else the copy the plant database holds (the forwarder
copies each kept frame and map into ``plant_images``, :mod:`station.plant_images`), whatever path
the row names. Only files inside the folders are opened: a row naming a path elsewhere (a database
edited by hand, a path that climbs out with ``..`` or a link) is refused with
:class:`OutsideStore` unless the plant holds its image; an image neither here nor in the plant
with :class:`NotHere`, saying why (not kept, not forwarded yet, removed by the plant's retention).
Both kinds of bytes are decoded by the image store's one decoder
(:func:`~inspector.history.image_store.decode_stored_image`, :func:`~inspector.history.image_store.decode_heatmap`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import InspectorError
from inspector.history import HistoryDB, InspectionRow
from inspector.history.image_store import decode_heatmap, decode_stored_image
from inspector.history.queries import DecidedRule, decided_levels
from inspector.overlay import (CONTOUR_RGB, HeatmapLevels, annotated_overlay, colorize, colour_bar, defect_contours,
                               overlay_alpha)
from station.plant_images import ObjectStore, plant_image, plant_kinds, why_not_in_plant


class OutsideStore(InspectorError):
    """A row names an image outside every folder of the image store: never opened."""


class NotHere(InspectorError):
    """A row's image is not kept, or not on this computer (another station's disk)."""


@dataclass(frozen=True)
class ImageStoreFolders:
    """The folders a row's images may be read from (resolved: links followed)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, folders: list[str | os.PathLike[str]]) -> ImageStoreFolders:
        return cls(tuple(Path(os.path.realpath(f)) for f in folders))

    def inside(self, path: str) -> Path:
        """``path`` resolved, if it lies in one of the folders; else OutsideStore."""
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(root) for root in self.roots):
            raise OutsideStore(f"the image path {path} is outside the image store ({', '.join(map(str, self.roots)) or 'none given'})")
        return real

    def file(self, row: InspectionRow, which: str) -> Path:
        """The row's frame (``image``) or heatmap (``heatmap``) file: inside the store and here."""
        path = row.image_path if which == "image" else row.heatmap_path
        if path is None:
            if which == "heatmap" and row.decision == "NO_PART":  # not a sampling matter: no map was ever made
                raise NotHere(f"inspection {row.id}: no heatmap: the part was not found in the frame, nothing was scored")
            if row.decision == "NO_PART":  # the image store keeps these at the pass sample rate
                raise NotHere(f"inspection {row.id}: no {which} kept (NO PART frames are sampled as passes are)")
            raise NotHere(f"inspection {row.id}: no {which} kept (passes are sampled, errors have no map)")
        real = self.inside(path)
        if not real.is_file():
            where = f" (on station {row.station}'s disk)" if row.station else ""
            raise NotHere(f"image not available here: {path}{where} cannot be opened from this computer")
        return real


@dataclass(frozen=True)
class ImageSource:
    """A row's images: its files inside ``folders``, else the plant's copy in ``db`` (through
    ``objects`` where an object store keeps it)."""

    folders: ImageStoreFolders
    db: HistoryDB
    objects: ObjectStore | None = None

    def where(self, row: InspectionRow, which: str) -> Path | None:
        """The row's ``image`` or ``heatmap`` file here, or None where the plant's copy is to be
        shown; OutsideStore or NotHere (saying why) where neither may be."""
        try:
            return self.folders.file(row, which)
        except OutsideStore as exc:  # never opened; the plant's copy, or the refusal with why it has none
            if self.in_plant(row, which):
                return None
            raise OutsideStore(f"{exc}; this database holds no copy of it either: "
                               f"{why_not_in_plant(self.db, row, which, objects=self.objects is not None)}") from None
        except NotHere as exc:
            if (row.image_path if which == "image" else row.heatmap_path) is None:
                raise
            if self.in_plant(row, which):
                return None
            raise NotHere(f"{exc}, and this database holds no copy of it: "
                          f"{why_not_in_plant(self.db, row, which, objects=self.objects is not None)}") from None

    def in_plant(self, row: InspectionRow, which: str) -> bool:
        held = plant_kinds(self.db, row)
        return which in held and (held[which] is None or self.objects is not None)

    def read(self, row: InspectionRow, which: str) -> bytes:
        """The stored PNG's bytes, from the file or the plant (see :meth:`where`)."""
        path = self.where(row, which)
        if path is not None:
            try:
                return path.read_bytes()
            except OSError:  # gone since (the station's quota): said as for any file not here
                raise NotHere(f"image not available here: {path} is gone") from None
        return self.from_plant(row, which)

    def from_plant(self, row: InspectionRow, which: str) -> bytes:
        """The plant's copy of the row's image (where :meth:`where` said None), else NotHere."""
        try:
            data = plant_image(self.db, row, which, self.objects)
        except InspectorError as exc:  # the object store holding it does not answer
            raise NotHere(f"image not available here: {exc}") from None
        if data is None:  # removed since it was looked for (the retention)
            raise NotHere(f"image not available here: {why_not_in_plant(self.db, row, which, objects=self.objects is not None)}")
        return data

    def frame(self, row: InspectionRow) -> np.ndarray:
        return decode_stored_image(self.read(row, "image"), f"inspection {row.id}'s frame")

    def heat_map(self, row: InspectionRow) -> np.ndarray:
        if row.heatmap_low is None or row.heatmap_high is None:
            self.where(row, "heatmap")  # not kept, outside, not here: said first
            raise NotHere(f"inspection {row.id}: a heatmap stored before its values were kept (a colour picture); "
                          "the desktop's review decodes those")
        return decode_heatmap(self.read(row, "heatmap"), row.heatmap_low, row.heatmap_high, f"inspection {row.id}'s heatmap")


def levels_of(row: InspectionRow, known: DecidedRule) -> HeatmapLevels:
    """How to draw the row's map: with the rule it was decided with, as the desktop's review does."""
    return decided_levels(row, known)


def png(rgb_or_rgba: np.ndarray) -> bytes:
    image = rgb_or_rgba
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise InspectorError("could not encode a picture as PNG")
    return data.tobytes()


def heat_layer(heat: np.ndarray, levels: HeatmapLevels) -> np.ndarray:
    """(h, w, 4) uint8 RGBA: the map's colours, the fade-in as alpha, the defect outlined opaque."""
    rgba = np.dstack([colorize(heat, levels.vmax), (overlay_alpha(heat, levels.vmax, 1.0) * 255).round().astype(np.uint8)])
    if levels.contour_level is not None:
        cv2.drawContours(rgba, defect_contours(heat, levels.contour_level), -1, (*CONTOUR_RGB, 255), 2, cv2.LINE_8)
    return rgba


def scale_picture(levels: HeatmapLevels, height: int = 240) -> np.ndarray:
    return colour_bar(height, levels.vmax, levels.threshold)


def annotated(source: ImageSource, row: InspectionRow, levels: HeatmapLevels) -> np.ndarray:
    """The frame with its overlay, banner and colour bar, as ``inspector predict`` draws it."""
    image = source.frame(row)
    heat = source.heat_map(row)
    verdict = row.decision if row.error is None else "ERROR"
    return annotated_overlay(image, heat, row.score, levels, verdict)
