"""The teach page's drawing of what a camera's frame the model inspects (issue 30).

:class:`FramingEditor` shows a reference image (the line's live frame, a sample, or an image
file) and lets the technician draw on it, in the image's own pixels:

- the inspection **region**: a rectangle, or a polygon (which the model inspects as its bounding
  rectangle plus a don't-care mask outside the polygon; the recipe keeps the polygon too);
- **don't-care** areas inside it: painted with a brush (left-drag while "Brush" is on; "Erase"
  takes paint away) and/or polygons ("Add don't-care polygon"; drag its corners);
- the settings beside them: "align: find the part in every frame", tiles (auto / off / N), the
  smallest defect in pixels, and the pixel size in mm (optional).

:meth:`FramingEditor.drawing` gives what was drawn as a :class:`calibration.teach.framing.Drawing`
and :meth:`FramingEditor.framing` checks it on the reference
(:func:`calibration.teach.framing.drawn_framing`): InspectorError, in one line, for a drawing
that cannot work, which the page shows. Every drawing action has a method, so tests (and a
future "load recipe" button) draw without a mouse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from calibration.teach.framing import Drawing, drawn_framing
from inspector.framing import Framing
from inspector.framing.framed import outside_polygon
from ui.widgets import levels_for

REGION_PEN = pg.mkPen("#00e5ff", width=2)
IGNORE_PEN = pg.mkPen("#ff9800", width=2)
#: The painted don't-care pixels: orange, half transparent.
IGNORE_LUT = np.array([[0, 0, 0, 0], [255, 152, 0, 130]], dtype=np.uint8)
SHAPES = ("rectangle", "polygon")
TILE_CHOICES = ("auto", "off", "N tiles")


def _on_picture(roi: pg.ROI, pos, coords: str, bounds: QRectF) -> QPointF:
    """A handle's new position (in ``coords``: pyqtgraph's "parent" or "scene") in the ROI's
    parent's coordinates, held inside ``bounds``: the picture."""
    if coords == "scene":
        pos = roi.mapSceneToParent(pos)
    return QPointF(min(max(pos.x(), bounds.left()), bounds.right()), min(max(pos.y(), bounds.top()), bounds.bottom()))


class _ImageRectROI(pg.RectROI):
    """The region's rectangle, kept on the picture (``maxBounds``): dragged past an edge it stops
    at it, and a corner pulled past one follows the mouse along it -- a region reaching a
    fraction of a pixel past the image would be refused at Check."""

    def movePoint(self, handle, pos, modifiers=None, finish=True, coords="parent"):  # noqa: N802 -- pyqtgraph's
        super().movePoint(handle, _on_picture(self, pos, coords, self.maxBounds), modifiers, finish, "parent")


class _ImagePolyROI(pg.PolyLineROI):
    """The region's polygon, kept on the picture as :class:`_ImageRectROI`: a corner pulled past
    an edge follows it, the whole polygon dragged past one stops at it."""

    def __init__(self, positions, bounds: QRectF, **kwargs) -> None:
        super().__init__(positions, closed=True, **kwargs)
        self.bounds = bounds

    def movePoint(self, handle, pos, modifiers=None, finish=True, coords="parent"):  # noqa: N802 -- pyqtgraph's
        super().movePoint(handle, _on_picture(self, pos, coords, self.bounds), modifiers, finish, "parent")

    def translate(self, *args, **kwargs):
        d = pg.Point(*args)
        corners = np.array([(p.x(), p.y()) for p in (self.mapToParent(h["item"].pos()) for h in self.handles)])
        b = self.bounds
        dx = min(max(d.x(), b.left() - corners[:, 0].min()), b.right() - corners[:, 0].max())
        dy = min(max(d.y(), b.top() - corners[:, 1].min()), b.bottom() - corners[:, 1].max())
        super().translate(pg.Point(dx, dy), **kwargs)


class DecimalBox(QDoubleSpinBox):
    """A number field that takes a decimal comma or point, whichever the locale writes: Qt drops
    the other as a bad keystroke, so "0,05" typed for a pixel size became 5 mm/px."""

    def _local(self, text: str) -> str:
        point = self.locale().decimalPoint()
        return text.replace(",", point).replace(".", point)

    def validate(self, text: str, pos: int):
        return super().validate(self._local(text), pos)

    def valueFromText(self, text: str) -> float:  # noqa: N802 -- Qt's
        return super().valueFromText(self._local(text))


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


class FramingEditor(QWidget):
    """A reference image with the region and don't-care areas drawn over it, and the framing's
    settings. ``changed()`` is emitted whenever the drawing or a setting changes."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reference: np.ndarray | None = None
        self.reference_source = ""  # where the reference came from, in words
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202020")
        self.graphics.setMinimumHeight(220)
        self.view: pg.ViewBox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item.setZValue(5)
        self.view.addItem(self.image_item)
        self.view.addItem(self.mask_item)
        self.mask: np.ndarray | None = None  # painted don't-care pixels, uint8 0/1, the reference's size
        self.region_roi: pg.RectROI | None = None
        self.polygon_roi: pg.PolyLineROI | None = None
        self.ignore_rois: list[pg.PolyLineROI] = []

        # the drawing's controls
        self.region_box = QCheckBox("Inspect a region")
        self.region_box.setToolTip("off: the whole frame is inspected")
        self.shape_combo = QComboBox()
        self.shape_combo.addItems(SHAPES)
        self.shape_combo.setToolTip("polygon: the region is its bounding rectangle, everything outside the polygon don't-care")
        self.add_ignore_button = QPushButton("Add don't-care polygon")
        self.brush_box = QCheckBox("Brush")
        self.brush_box.setToolTip("paint don't-care areas with the left mouse button")
        self.erase_box = QCheckBox("Erase")
        self.brush_size = QSpinBox()
        self.brush_size.setRange(1, 200)
        self.brush_size.setValue(8)
        self.brush_size.setSuffix(" px")
        self.clear_button = QPushButton("Clear don't-care")

        # the settings
        self.align_box = QCheckBox("align: find the part in every frame")
        self.align_box.setToolTip("each frame is registered to this reference (shift and turn) before the region is cut;\n"
                                  "frames the part is not found in are decided NO PART")
        self.tiles_combo = QComboBox()
        self.tiles_combo.addItems(TILE_CHOICES)
        self.tiles_count = QSpinBox()
        self.tiles_count.setRange(1, 64)
        self.tiles_count.setValue(2)
        self.tiles_count.setSuffix(" tiles")
        self.tiles_count.setToolTip("tiles along the region's longer side")
        self.defect_px = DecimalBox()
        self.defect_px.setRange(0.0, 10_000.0)
        self.defect_px.setDecimals(1)
        self.defect_px.setSpecialValueText("not set")
        self.defect_px.setSuffix(" px")
        self.defect_px.setToolTip("the smallest defect to find, in frame pixels: sets the scale of the tiles")
        self.mm_per_px = DecimalBox()
        self.mm_per_px.setRange(0.0, 100.0)
        self.mm_per_px.setDecimals(4)
        self.mm_per_px.setSingleStep(0.01)
        self.mm_per_px.setSpecialValueText("not set")
        self.mm_per_px.setSuffix(" mm/px")
        self.mm_per_px.setToolTip("the pixel size (from a calibration target, or typed in): defect sizes in mm²")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setMinimumHeight(2 * self.summary.fontMetrics().lineSpacing() + 4)  # two lines, never cut

        draw = QHBoxLayout()
        for w in (self.region_box, self.shape_combo, self.add_ignore_button, self.brush_box, self.erase_box,
                  self.brush_size, self.clear_button):
            draw.addWidget(w)
        draw.addStretch(1)
        left, right = QFormLayout(), QFormLayout()
        left.addRow(self.align_box)
        tiles = QHBoxLayout()
        tiles.addWidget(self.tiles_combo)
        tiles.addWidget(self.tiles_count)
        left.addRow("Tiles", tiles)
        right.addRow("Smallest defect", self.defect_px)
        right.addRow("Pixel size", self.mm_per_px)
        settings = QHBoxLayout()
        settings.addLayout(left, 1)
        settings.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(draw)
        layout.addLayout(settings)
        layout.addWidget(self.summary)

        self.region_box.toggled.connect(self._on_region_toggled)
        self.shape_combo.currentTextChanged.connect(self._on_shape_picked)
        self.add_ignore_button.clicked.connect(lambda: self.add_ignore_polygon())
        self.brush_box.toggled.connect(self._on_brush_changed)
        self.erase_box.toggled.connect(self._on_brush_changed)
        self.brush_size.valueChanged.connect(self._on_brush_changed)
        self.clear_button.clicked.connect(self.clear_ignore)
        self.tiles_combo.currentTextChanged.connect(self._on_tiles_changed)
        for signal in (self.align_box.toggled, self.tiles_count.valueChanged, self.defect_px.valueChanged,
                       self.mm_per_px.valueChanged):
            signal.connect(self.changed.emit)
        self._on_tiles_changed()
        self._enable()

    # -- the reference ----------------------------------------------------------------------------

    def set_reference(self, image: np.ndarray | None, source: str = "") -> None:
        """Draws on ``image`` ((H, W) grey or (H, W, 3) RGB) from now on. A reference of another
        size starts the drawing again (a region in other pixels would mean another place)."""
        if image is None:
            return
        old = None if self.reference is None else self.reference.shape[:2]
        self.reference = np.ascontiguousarray(image)
        self.reference_source = source
        self.image_item.setImage(self.reference, autoLevels=False, levels=levels_for(self.reference))
        h, w = self.reference.shape[:2]
        if old != (h, w):
            self.mask = np.zeros((h, w), np.uint8)
            self._show_mask()
            self.view.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)
            had_region = self.region_box.isChecked()
            self._remove_rois()
            if had_region:
                self._make_region_roi()
        self._enable()
        self.changed.emit()

    def clear(self) -> None:
        """No reference and nothing drawn, every setting back to its default (another product)."""
        self._remove_rois()
        self.reference, self.reference_source, self.mask, self.foreign_mask = None, "", None, None
        self.image_item.clear()
        self._show_mask()
        self.min_quality, self.max_angle_deg = None, 15.0
        self.region_box.setChecked(False)
        self.shape_combo.setCurrentText("rectangle")
        self.align_box.setChecked(False)
        self.tiles_combo.setCurrentText("auto")
        self.defect_px.setValue(0.0)
        self.mm_per_px.setValue(0.0)
        self._enable()
        self.changed.emit()

    def load_framing(self, framing: Framing | None, mm_per_px: float | None = None, source: str = "") -> None:
        """Shows a recipe's framing as a drawing on its own reference, so that teaching again keeps
        it unless the technician changes it: a polygon region as the polygon, with only the
        don't-care the technician drew (the polygon's outside is the polygon's, made again)."""
        self.clear()
        self.mm_per_px.setValue(mm_per_px or 0.0)
        if framing is None:
            return
        if framing.reference is not None:
            self.set_reference(framing.reference, source)
        ignore = framing.ignore
        if framing.polygon is not None:
            self.set_polygon(framing.polygon)
            if ignore is not None:
                ignore = ignore & ~outside_polygon(framing.polygon, ignore.shape)
        elif framing.region is not None:
            self.set_region(framing.region)
        if ignore is not None and ignore.any():
            self.paint_mask(ignore)
        # Not on the page, but the recipe's: kept, not silently put back to the defaults.
        self.min_quality, self.max_angle_deg = framing.min_quality, framing.max_angle_deg
        self.align_box.setChecked(bool(framing.align))
        if isinstance(framing.tiles, int):
            self.tiles_combo.setCurrentText("N tiles")
            self.tiles_count.setValue(framing.tiles)
        else:
            self.tiles_combo.setCurrentText(framing.tiles)
        self.defect_px.setValue(framing.defect_px or 0.0)

    # -- drawing by program (the mouse does the same through the ROIs and the brush) -----------------

    def set_region(self, region: tuple[float, float, float, float]) -> None:
        """A rectangle region (x, y, w, h) in reference pixels."""
        self.shape_combo.setCurrentText("rectangle")
        self.region_box.setChecked(True)
        x, y, w, h = region
        self.region_roi.setPos((x, y), finish=False)
        self.region_roi.setSize((w, h))

    def set_polygon(self, points: Sequence[tuple[float, float]]) -> None:
        """A polygon region, its corners in reference pixels."""
        self.shape_combo.setCurrentText("polygon")
        self.region_box.setChecked(True)
        self.polygon_roi.setPos((0, 0), finish=False)
        self.polygon_roi.setPoints([list(p) for p in points], closed=True)
        self.changed.emit()

    def clear_region(self) -> None:
        self.region_box.setChecked(False)

    def add_ignore_polygon(self, points: Sequence[tuple[float, float]] | None = None) -> pg.PolyLineROI | None:
        """A don't-care polygon (default: a small square in the middle of the region, to drag)."""
        if self.reference is None:
            return None
        if points is None:
            x, y, w, h = self._region_rect() or (0, 0, self.reference.shape[1], self.reference.shape[0])
            cx, cy, s = x + w / 2, y + h / 2, max(min(w, h) / 8, 4)
            points = [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
        # removable: its right-click menu takes this one away, not all the painting with it
        roi = pg.PolyLineROI([list(p) for p in points], closed=True, pen=IGNORE_PEN, removable=True)
        roi.setZValue(15)
        roi.sigRegionChangeFinished.connect(self.changed.emit)
        roi.sigRemoveRequested.connect(self._remove_ignore_polygon)
        self.view.addItem(roi)
        self.ignore_rois.append(roi)
        self._on_brush_changed()
        self.changed.emit()
        return roi

    def _remove_ignore_polygon(self, roi: pg.PolyLineROI) -> None:
        if roi in self.ignore_rois:
            self.ignore_rois.remove(roi)
            self.view.removeItem(roi)
            self.changed.emit()

    def paint(self, x: float, y: float, radius: int | None = None, erase: bool = False) -> None:
        """Paints (or erases) a disk of don't-care pixels at (x, y) of the reference."""
        if self.mask is None:
            return
        r = self.brush_size.value() if radius is None else radius
        disk = _disk(r).astype(bool)
        h, w = self.mask.shape
        x, y = int(x), int(y)
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
        if y0 >= y1 or x0 >= x1:
            return
        piece = disk[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
        self.mask[y0:y1, x0:x1][piece] = 0 if erase else 1
        self._show_mask()
        self.changed.emit()

    def paint_mask(self, mask: np.ndarray) -> None:
        """Adds a whole mask of don't-care pixels (non-zero: don't care), e.g. one read from a file.
        One of another size than the reference is kept as given, and the check says so."""
        mask = np.asarray(mask)
        mask = (mask.max(axis=2) if mask.ndim == 3 else mask).astype(bool)
        if self.mask is not None and mask.shape == self.mask.shape:
            self.mask[mask] = 1
            self._show_mask()
        else:
            self.foreign_mask = mask
        self.changed.emit()

    def clear_ignore(self) -> None:
        for roi in self.ignore_rois:
            self.view.removeItem(roi)
        self.ignore_rois = []
        if self.mask is not None:
            self.mask[:] = 0
            self._show_mask()
        self.foreign_mask = None
        self.changed.emit()

    # -- what was drawn ---------------------------------------------------------------------------

    #: A mask given whole that does not fit the reference (the check refuses it by name).
    foreign_mask: np.ndarray | None = None
    #: The match quality and largest turn of a loaded recipe (None, 15: the defaults).
    min_quality: float | None = None
    max_angle_deg: float = 15.0

    def drawing(self) -> Drawing:
        """What is drawn now, in reference pixels, with the settings."""
        region = polygon = None
        if self.region_box.isChecked():
            if self.shape_combo.currentText() == "polygon" and self.polygon_roi is not None:
                polygon = self._points(self.polygon_roi)
            else:
                region = self._region_rect()
        ignore = None
        if self.foreign_mask is not None:
            ignore = self.foreign_mask
        elif self.mask is not None and self.mask.any():
            ignore = self.mask.astype(bool)
        tiles_text = self.tiles_combo.currentText()
        tiles: str | int = self.tiles_count.value() if tiles_text == "N tiles" else tiles_text
        return Drawing(region=region, polygon=polygon, ignore=ignore,
                       ignore_polygons=tuple(self._points(roi) for roi in self.ignore_rois),
                       align=self.align_box.isChecked(), tiles=tiles,
                       defect_px=self.defect_px.value() or None, min_quality=self.min_quality,
                       max_angle_deg=self.max_angle_deg)

    def has_drawing(self) -> bool:
        """Whether a region or a don't-care area is drawn."""
        painted = self.mask is not None and bool(self.mask.any())
        return self.region_box.isChecked() or painted or bool(self.ignore_rois) or self.foreign_mask is not None

    @property
    def pixel_size(self) -> float | None:
        """mm per pixel, None where not set."""
        return self.mm_per_px.value() or None

    def framing(self, input_px: int = 256) -> Framing | None:
        """The framing drawn, checked on the reference (None: the whole frame, as before);
        InspectorError in one line for a drawing that cannot work."""
        return drawn_framing(self.reference, self.drawing(), input_px=input_px)

    # -- internals --------------------------------------------------------------------------------

    def _region_rect(self) -> tuple[float, float, float, float] | None:
        if self.region_box.isChecked() and self.shape_combo.currentText() == "polygon" and self.polygon_roi is not None:
            pts = np.asarray(self._points(self.polygon_roi))
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            return float(x0), float(y0), float(x1 - x0), float(y1 - y0)
        if self.region_roi is None or not self.region_box.isChecked():
            return None
        pos, size = self.region_roi.pos(), self.region_roi.size()
        return float(pos.x()), float(pos.y()), float(size.x()), float(size.y())

    @staticmethod
    def _points(roi: pg.PolyLineROI) -> list[tuple[float, float]]:
        out = []
        for _, local in roi.getLocalHandlePositions():
            p = roi.mapToParent(QPointF(local))
            out.append((float(p.x()), float(p.y())))
        return out

    def _make_region_roi(self) -> None:
        h, w = self.reference.shape[:2]
        x, y, rw, rh = w * 0.1, h * 0.1, w * 0.8, h * 0.8
        self.region_roi = _ImageRectROI((x, y), (rw, rh), pen=REGION_PEN, movable=True, removable=False,
                                        maxBounds=QRectF(0, 0, w, h))
        self.region_roi.addScaleHandle((0, 0), (1, 1))
        self.region_roi.setZValue(10)
        self.region_roi.sigRegionChangeFinished.connect(self.changed.emit)
        self.polygon_roi = _ImagePolyROI([[x, y], [x + rw, y], [x + rw, y + rh], [x, y + rh]], QRectF(0, 0, w, h),
                                         pen=REGION_PEN)
        self.polygon_roi.setZValue(10)
        self.polygon_roi.sigRegionChangeFinished.connect(self.changed.emit)
        self.view.addItem(self.region_roi)
        self.view.addItem(self.polygon_roi)
        self._on_shape_changed()

    def _remove_rois(self) -> None:
        for roi in (self.region_roi, self.polygon_roi, *self.ignore_rois):
            if roi is not None:
                self.view.removeItem(roi)
        self.region_roi = self.polygon_roi = None
        self.ignore_rois = []

    def _on_region_toggled(self, on: bool) -> None:
        if on and self.region_roi is None and self.reference is not None:
            self._make_region_roi()
        for roi in (self.region_roi, self.polygon_roi):
            if roi is not None:
                roi.setVisible(False)
        if on:
            self._on_shape_changed()
        self._enable()
        self.changed.emit()

    def _on_shape_picked(self, shape: str) -> None:
        """The region keeps its place in the other shape: a rectangle becomes a polygon on its
        corners, a polygon its bounding rectangle (not the default ones made with the reference)."""
        if self.region_roi is not None and self.region_box.isChecked():
            if shape == "polygon":
                pos, size = self.region_roi.pos(), self.region_roi.size()
                x, y, w, h = pos.x(), pos.y(), size.x(), size.y()
                self.polygon_roi.setPos((0, 0), finish=False)
                self.polygon_roi.setPoints([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], closed=True)
            else:
                pts = np.asarray(self._points(self.polygon_roi))
                (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
                self.region_roi.setPos((float(x0), float(y0)), finish=False)
                self.region_roi.setSize((float(x1 - x0), float(y1 - y0)))
        self._on_shape_changed()

    def _on_shape_changed(self, *_: object) -> None:
        if self.region_roi is None:
            return
        on = self.region_box.isChecked()
        polygon = self.shape_combo.currentText() == "polygon"
        self.region_roi.setVisible(on and not polygon)
        self.polygon_roi.setVisible(on and polygon)
        self.changed.emit()

    def _on_brush_changed(self, *_: object) -> None:
        # "Erase" alone erases: the technician ticks it to take paint away, not Brush as well.
        brushing = self.brush_box.isChecked() or self.erase_box.isChecked()
        if brushing:
            disk = _disk(self.brush_size.value())
            self.mask_item.setDrawKernel(disk, mask=None, center=(disk.shape[0] // 2, disk.shape[1] // 2),
                                         mode=self._draw_mode)
        else:
            self.mask_item.setDrawKernel(None)
        # While painting, a drag inside a region or polygon paints instead of moving it.
        for roi in (self.region_roi, self.polygon_roi, *self.ignore_rois):
            if roi is not None:
                roi.translatable = not brushing

    def _draw_mode(self, kernel, image, mask, ss, ts, ev) -> None:
        """The brush's stroke (pyqtgraph's drawKernel calls it with slices of the kernel and the mask)."""
        piece = kernel[ss].astype(bool)
        image[ts][piece] = 0 if self.erase_box.isChecked() else 1
        self._show_mask()
        self.changed.emit()

    def _show_mask(self) -> None:
        if self.mask is None:
            self.mask_item.clear()
            return
        self.mask_item.setImage(self.mask, autoLevels=False, levels=(0, 1), lut=IGNORE_LUT)

    def _on_tiles_changed(self, *_: object) -> None:
        self.tiles_count.setEnabled(self.tiles_combo.currentText() == "N tiles")
        self.changed.emit()

    def _enable(self) -> None:
        has = self.reference is not None
        for w in (self.region_box, self.add_ignore_button, self.brush_box, self.erase_box, self.brush_size, self.clear_button):
            w.setEnabled(has)
        self.shape_combo.setEnabled(has and self.region_box.isChecked())
