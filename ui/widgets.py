"""Widgets the pages share: the image with its heatmap, the verdict banner, charts.

Images are shown with pyqtgraph in row-major order (``image[row, col]``, as numpy and OpenCV
hold them) at fixed levels, so a frame is drawn exactly as the camera delivered it and never
auto-stretched. The heatmap is a second ImageItem stacked above the frame with its own opacity
and colour map, drawn at fixed levels ``0 .. vmax`` and outlined at the contour level; pages pass
:func:`inspector.overlay.heatmap_view` of the result or history row they show, so a frame is drawn
with the rule it was decided with (the threshold mid-scale), the same on every page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from inspector.overlay import CONTOUR_RGB, OVERLAY_FADE, HeatmapLevels, defect_contours

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

PASS_COLOR = "#2e7d32"
FAIL_COLOR = "#c62828"
IDLE_COLOR = "#616161"
#: RECHECK: amber, set aside for a person; NO PART: neutral grey-blue, neither a pass nor a defect.
RECHECK_COLOR = "#ff8f00"
NO_PART_COLOR = "#78909c"
DECISION_COLORS = {"PASS": PASS_COLOR, "FAIL": FAIL_COLOR, "RECHECK": RECHECK_COLOR, "NO_PART": NO_PART_COLOR}
#: The inspected region's outline on a live frame (where the part was found).
OUTLINE_PEN = pg.mkPen("#00e5ff", width=2, style=Qt.PenStyle.DashLine)
COLOR_MAPS = ("turbo", "inferno", "viridis", "plasma", "CET-L3")
CONTOUR_PEN = pg.mkPen(CONTOUR_RGB, width=2)


def decision_text(decision: str) -> str:
    """What people read for a decision: ``"NO PART"`` for ``"NO_PART"``."""
    return "NO PART" if decision == "NO_PART" else decision


def decision_color(decision: str | None) -> str:
    return DECISION_COLORS.get(decision or "", IDLE_COLOR)


def levels_for(image: np.ndarray) -> tuple[float, float]:
    """The full range of the image's dtype: frames are never stretched."""
    if image.dtype == np.uint16:
        return (0.0, 65535.0)
    if image.dtype == np.uint8:
        return (0.0, 255.0)
    return (0.0, 1.0)


def contour_path(anomaly_map: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outlines of the map's regions above ``level`` (:func:`inspector.overlay.defect_contours`)
    as x, y and pyqtgraph ``connect`` arrays, in the map's pixel coordinates (centres at +0.5)."""
    xs, ys, connect = [], [], []
    for c in defect_contours(anomaly_map, level):
        pts = c[:, 0, :].astype(np.float64) + 0.5
        pts = np.vstack([pts, pts[:1]])  # closed outline
        xs.append(pts[:, 0])
        ys.append(pts[:, 1])
        link = np.ones(len(pts), dtype=bool)
        link[-1] = False  # no line from one outline to the next
        connect.append(link)
    if not xs:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(connect)


def overlay_lut(name: str) -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table: the colour map, transparent for the lowest map values and
    fully opaque from mid-scale (the threshold) up, so normal regions show the part itself."""
    rgb = pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)
    ramp = np.clip((np.linspace(0.0, 1.0, 256) - OVERLAY_FADE[0]) / (OVERLAY_FADE[1] - OVERLAY_FADE[0]), 0.0, 1.0)
    return np.column_stack([rgb, (255 * ramp).round()]).astype(np.uint8)


class HeatmapControls(QWidget):
    """The heatmap overlay's settings: on or off, its opacity, its colour map, defect outlines.

    Every :class:`HeatmapView` given the same bar follows it, so one bar can set all of a
    page's views at once (the operator page's camera tiles).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.overlay_box = QCheckBox("Heatmap")
        self.overlay_box.setChecked(True)
        self.contour_box = QCheckBox("Defect contours")
        self.contour_box.setChecked(True)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setToolTip("heatmap opacity")
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(COLOR_MAPS)
        bar = QHBoxLayout(self)
        for w in (self.overlay_box, QLabel("Opacity"), self.opacity_slider, QLabel("Colours"), self.cmap_combo, self.contour_box):
            bar.addWidget(w)
        bar.addStretch(1)


class HeatmapView(QWidget):
    """A frame with its anomaly map on top, and the overlay's controls.

    :meth:`show_frame` takes the frame ((H, W) grey or (H, W, 3) RGB, uint8/uint16) and either a
    float (h, w) anomaly map (coloured here with the chosen colour map) or an already coloured
    (h, w, 3) heatmap picture (a legacy stored heatmap whose colours could not be decoded). Maps
    of another size than the frame are stretched over it.
    """

    def __init__(self, parent: QWidget | None = None, controls: bool | HeatmapControls = True) -> None:
        """``controls``: a bar of its own, shown (True) or not (False: the default settings), or
        a bar to follow, which other views may follow too."""
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202020")
        self.view: pg.ViewBox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item.setZValue(10)
        self.contour_item = pg.PlotCurveItem(pen=CONTOUR_PEN)
        self.contour_item.setZValue(20)
        self.outline_item = pg.PlotCurveItem(pen=OUTLINE_PEN)
        self.outline_item.setZValue(25)
        for item in (self.image_item, self.heat_item, self.contour_item, self.outline_item):
            self.view.addItem(item)
        self._shape: tuple[int, int] | None = None
        self._levels: HeatmapLevels | None = None
        self._map: np.ndarray | None = None

        own = not isinstance(controls, HeatmapControls)
        self.controls = HeatmapControls() if own else controls
        c = self.controls
        self.overlay_box, self.opacity_slider, self.cmap_combo, self.contour_box = (
            c.overlay_box, c.opacity_slider, c.cmap_combo, c.contour_box)
        # Bound methods, never lambdas: PyQt drops them when this view is deleted, so a shared bar
        # outlives the tiles made again beside it.
        self.overlay_box.toggled.connect(self._on_overlay_changed)
        self.contour_box.toggled.connect(self._on_overlay_changed)
        self.opacity_slider.valueChanged.connect(self._on_overlay_changed)
        self.cmap_combo.currentTextChanged.connect(self._on_colormap_changed)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        if own:  # a followed bar lives where its owner put it
            self.controls.setVisible(controls)
            layout.addWidget(self.controls)
        self._on_colormap_changed(self.cmap_combo.currentText())
        self._on_overlay_changed()

    @property
    def heat_opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def show_frame(
        self,
        image: np.ndarray | None,
        heatmap: np.ndarray | None = None,
        levels: HeatmapLevels | None = None,
    ) -> None:
        """Shows a frame; a map is drawn with ``levels`` (:func:`inspector.overlay.heatmap_view`
        of the result or row: colour scale and contour level), or, without them, stretched over
        its own range with no contour."""
        if image is None:
            self.image_item.clear()
            self.heat_item.clear()
            self.contour_item.setData([], [])
            self._shape = None
            return
        self.image_item.setImage(image, autoLevels=False, levels=levels_for(image))
        h, w = image.shape[:2]
        if self._shape != (h, w):
            self._shape = (h, w)
            self.view.setRange(xRange=(0, w), yRange=(0, h), padding=0.0)
        self._map = None
        if heatmap is None:
            self.heat_item.clear()
        elif heatmap.ndim == 3:  # an already coloured picture
            self.heat_item.setImage(heatmap, autoLevels=False, levels=(0, 255), lut=None)
        else:
            self._map = heatmap
            vmax = levels.vmax if levels is not None else max(float(np.max(heatmap)), 1e-6)
            self.heat_item.setImage(heatmap, autoLevels=False, levels=(0.0, vmax), lut=self._lut)
        if heatmap is not None:
            self.heat_item.setRect(0, 0, w, h)  # a map of another size is stretched over the frame
        self._levels = levels
        self._draw_contours()

    def show_outline(self, corners: np.ndarray | None) -> None:
        """The inspected region's outline: (N, 2) corners in frame pixels (where the part was
        found), drawn closed; None draws none (the whole frame is inspected)."""
        if corners is None or len(corners) < 2:
            self.outline_item.setData([], [])
            return
        pts = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
        pts = np.vstack([pts, pts[:1]])
        self.outline_item.setData(pts[:, 0], pts[:, 1])

    @property
    def outline(self) -> np.ndarray | None:
        """The outline drawn now ((N + 1, 2), closed), None without one."""
        x, y = self.outline_item.xData, self.outline_item.yData
        return None if x is None or len(x) == 0 else np.column_stack([x, y])

    @property
    def levels(self) -> HeatmapLevels | None:
        """The levels the current map is drawn with (None: stretched, or no map)."""
        return self._levels if self._map is not None else None

    def _draw_contours(self) -> None:
        m = self._map
        level = None if self._levels is None else self._levels.contour_level
        if m is None or level is None or not self.contour_box.isChecked():
            self.contour_item.setData([], [])
            return
        x, y, connect = contour_path(m, level)
        if self._shape is not None and m.shape != self._shape:
            x = x * self._shape[1] / m.shape[1]
            y = y * self._shape[0] / m.shape[0]
        self.contour_item.setData(x, y, connect=connect)

    def _on_overlay_changed(self, *_: object) -> None:
        self.heat_item.setVisible(self.overlay_box.isChecked())
        self.heat_item.setOpacity(self.heat_opacity)
        self._draw_contours()

    def _on_colormap_changed(self, name: str) -> None:
        self._lut = overlay_lut(name)
        if self._map is not None:
            self.heat_item.setLookupTable(self._lut)


class Banner(QLabel):
    """The large verdict with score and threshold: PASS green, FAIL red, RECHECK amber (between
    the recheck and the FAIL threshold), NO PART grey (the part was not found: nothing judged);
    ``compact``: smaller, for a camera's tile."""

    def __init__(self, parent: QWidget | None = None, compact: bool = False) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(60 if compact else 110)
        self._sizes = (20, 24, 10) if compact else (40, 48, 14)  # waiting, verdict, detail (pt)
        self.decision: str | None = None
        self.show_verdict(None)

    def show_verdict(self, decision: str | None, score: float = math.nan, threshold: float = math.nan, error: str | None = None,
                     *, recheck_threshold: float | None = None, match_quality: float | None = None) -> None:
        self.decision = decision
        color = decision_color(decision)
        waiting, verdict, small = self._sizes
        if decision is None:
            text = f"<span style='font-size:{waiting}pt;font-weight:bold'>WAITING</span><br>no part inspected yet"
        else:
            if error:
                detail = f"ERROR: {error}"
            elif decision == "NO_PART":
                found = "" if match_quality is None else f" (match {match_quality:.2f})"
                detail = f"the part was not found{found}: not inspected"
            elif decision == "RECHECK" and recheck_threshold is not None:
                detail = f"score {score:.4g} &nbsp; recheck above {recheck_threshold:.4g}, fail above {threshold:.4g}"
            else:
                detail = f"score {score:.4g} &nbsp; threshold {threshold:.4g}"
            text = (f"<span style='font-size:{verdict}pt;font-weight:bold'>{decision_text(decision)}</span><br>"
                    f"<span style='font-size:{small}pt'>{detail}</span>")
        self.setText(text)
        self.setStyleSheet(f"QLabel {{ background: {color}; color: white; border-radius: 6px; padding: 6px; }}")

    def color(self) -> QColor:
        return QColor(decision_color(self.decision))


#: The counters' columns: (key, title, colour).
COUNTER_COLUMNS = (("total", "Parts", None), ("pass", "Pass", PASS_COLOR), ("fail", "Fail", FAIL_COLOR),
                   ("recheck", "Recheck", RECHECK_COLOR), ("no_part", "No part", NO_PART_COLOR), ("yield", "Yield", None))


class CountersPanel(QWidget):
    """Parts inspected, pass, fail, recheck, no part and yield (PASS over the parts inspected: a
    NO PART frame is no part inspected); ``compact``: smaller, for a camera's tile."""

    def __init__(self, parent: QWidget | None = None, compact: bool = False) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        size = 12 if compact else 22
        if compact:
            grid.setContentsMargins(0, 0, 0, 0)
        self.labels: dict[str, QLabel] = {}
        for col, (key, name, color) in enumerate(COUNTER_COLUMNS):
            title = QLabel(name)
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            value = QLabel("0")
            value.setAlignment(Qt.AlignmentFlag.AlignCenter)
            value.setStyleSheet(f"font-size: {size}pt; font-weight: bold;" + (f" color: {color};" if color else ""))
            grid.addWidget(title, 0, col)
            grid.addWidget(value, 1, col)
            self.labels[key] = value

    def show_counts(self, total: int, passed: int, failed: int, rechecked: int = 0, no_part: int = 0) -> None:
        """``total``: the parts inspected (PASS, FAIL, RECHECK, errors), NO PART frames not among them."""
        self.labels["total"].setText(str(total))
        self.labels["pass"].setText(str(passed))
        self.labels["fail"].setText(str(failed))
        self.labels["recheck"].setText(str(rechecked))
        self.labels["no_part"].setText(str(no_part))
        self.labels["yield"].setText(f"{100.0 * passed / total:.1f} %" if total else "–")

    def show_counters(self, counts) -> None:
        """Shows a :class:`~inspector.line.Counts` (the station's, a camera's)."""
        self.show_counts(counts.total, counts.passed, counts.rejected, getattr(counts, "rechecked", 0),
                         getattr(counts, "no_part", 0))


class CameraTile(QWidget):
    """One camera beside others on the operator page: its name and state, its last part's image
    with the heatmap, that part's PASS/FAIL, and the camera's counts and yield. ``controls``: the
    heatmap bar it follows, shared with the other tiles (None: the default settings)."""

    def __init__(self, camera_id: str, parent: QWidget | None = None, controls: HeatmapControls | None = None) -> None:
        super().__init__(parent)
        self.camera_id = camera_id
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.image_view = HeatmapView(controls=False if controls is None else controls)
        self.banner = Banner(compact=True)
        self.counters = CountersPanel(compact=True)
        self.shown = None  # the InspectionResult on screen now
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.image_view, 1)
        layout.addWidget(self.banner)
        layout.addWidget(self.counters)


class TrendPlot(pg.PlotWidget):
    """Scores of the last parts (oldest left) and, as a dashed step line, the threshold each
    part was decided with: after a threshold change the line steps where the change took effect."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.setLabel("left", "score")
        self.setLabel("bottom", "part (newest right)")
        self.showGrid(x=False, y=True, alpha=0.3)
        self.setMouseEnabled(x=False, y=False)
        self.getAxis("left").enableAutoSIPrefix(False)
        self.curve = self.plot(pen=pg.mkPen("#455a64", width=1))
        self.fails = pg.ScatterPlotItem(size=7, brush=pg.mkBrush(FAIL_COLOR), pen=None)
        self.passes = pg.ScatterPlotItem(size=5, brush=pg.mkBrush(PASS_COLOR), pen=None)
        self.rechecks = pg.ScatterPlotItem(size=7, brush=pg.mkBrush(RECHECK_COLOR), pen=None)
        self.no_parts = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(NO_PART_COLOR), pen=None, symbol="x")
        for item in (self.passes, self.rechecks, self.no_parts, self.fails):
            self.addItem(item)
        self.threshold_curve = self.plot(pen=pg.mkPen(FAIL_COLOR, width=2, style=Qt.PenStyle.DashLine), name="threshold")

    def show_trend(self, scores: Sequence[float], decisions: Sequence[str], thresholds: Sequence[float]) -> None:
        """``thresholds``: each part's own (its result's), not the rule in force now."""
        y = np.asarray(scores, dtype=np.float64)
        x = np.arange(len(y))
        d = np.array(list(decisions), dtype=object)
        # A NO PART frame was never scored: a gap in the line, its mark on the axis.
        line_y = np.where(d == "NO_PART", np.nan, y) if len(d) == len(y) and len(y) else y
        self.curve.setData(x, line_y, connect="finite")
        for item, decision in ((self.fails, "FAIL"), (self.rechecks, "RECHECK"), (self.no_parts, "NO_PART")):
            chosen = d == decision if len(d) else np.zeros(0, bool)
            item.setData(x[chosen], y[chosen])
        passed = np.isin(d, ["FAIL", "RECHECK", "NO_PART"], invert=True) if len(d) else np.zeros(0, bool)
        self.passes.setData(x[passed], y[passed])
        t = np.asarray(thresholds, dtype=np.float64)
        # Centred steps: each part's threshold spans its own x, so a change shows between parts.
        if len(t):
            self.threshold_curve.setData(np.arange(len(t) + 1) - 0.5, t, stepMode="center")
        else:
            self.threshold_curve.setData([], [])
        top = max(float(y.max()) if len(y) else 0.0, float(t.max()) if len(t) else 0.0) * 1.15 or 1.0
        self.setYRange(0, top, padding=0)
        self.setXRange(0, max(len(y) - 1, 1), padding=0.02)
        step = max(1, math.ceil(len(y) / 10))  # whole parts only
        self.getAxis("bottom").setTickSpacing(major=step, minor=step)

