"""The technician's Teach page: capture good samples, train, calibrate, activate, roll back.

What of the camera's frame the model inspects is drawn on the "Inspection region" tab
(:class:`~ui.framing_editor.FramingEditor`: the region, don't-care areas, align, tiles, the
smallest defect, the pixel size) over the live frame, a sample or an image file -- the first
sample unless the technician picks another. Train checks the drawing first: a drawing that
cannot work is shown as a message in the page and nothing is written. The recheck band (off by
default) sets a second, lower threshold for a share of good parts the line can afford to recheck.

A view of :class:`~ui.teach_model.TeachModel` (and the line, for the live picture). The
calibration view is a histogram of the good calibration scores (defect scores, when known, in
red) with the threshold as a draggable line; the expected false-reject rate at the line's
position, with its 95 % interval, follows it as it moves. "Apply threshold" stores it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QIcon, QImage, QPixmap
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from calibration.teach import QUICK_TRAIN_S
from inspector.errors import InspectorError
from inspector.framing import Framing
from inspector.image_io import read_image
from inspector.line import InspectionResult
from inspector.method.efficientad import IMAGE_SIZE
from inspector.overlay import heatmap_view
from ui.framing_editor import DecimalBox, FramingEditor
from ui.line import LineModel
from ui.message_line import MessageLine
from ui.session import Session
from ui.teach_model import (DEFAULT_RECHECK_RATE, DEFAULT_TARGET_FRR, CalibrationData, TeachModel, TrainingState,
                            frr_at)
from ui.widgets import FAIL_COLOR, PASS_COLOR, RECHECK_COLOR, HeatmapView

THUMB = 96
#: The models' square input (EfficientAD's, the instant model's too): what the tiles are cut for.
INPUT_PX = IMAGE_SIZE


def thumbnail(path: Path) -> QIcon:
    image = read_image(path)
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8)
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if image.ndim == 2 else QImage.Format.Format_RGB888
    qimage = QImage(image.data, w, h, image.strides[0], fmt).copy()
    return QIcon(QPixmap.fromImage(qimage).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio))


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class CalibrationPlot(pg.PlotWidget):
    """Histogram of calibration scores with a draggable threshold line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.setLabel("bottom", "score")
        self.setLabel("left", "parts")
        self.getAxis("bottom").enableAutoSIPrefix(False)
        self.addLegend(offset=(-10, 10))
        empty = dict(x=[0.0, 1.0], y=[0], stepMode="center", fillLevel=0)
        self.good_curve = pg.PlotCurveItem(**empty, brush=pg.mkBrush(46, 125, 50, 120), pen=pg.mkPen(PASS_COLOR), name="good (calibration)")
        self.bad_curve = pg.PlotCurveItem(**empty, brush=pg.mkBrush(198, 40, 40, 90), pen=pg.mkPen(FAIL_COLOR), name="defective")
        self.addItem(self.good_curve)
        self.addItem(self.bad_curve)
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#1565c0", width=3),
                                    label="threshold {value:.4g}", labelOpts={"position": 0.9, "color": "#1565c0"})
        self.addItem(self.line)
        self.recheck_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(RECHECK_COLOR, width=2, style=Qt.PenStyle.DashLine),
                                            label="recheck {value:.4g}", labelOpts={"position": 0.75, "color": RECHECK_COLOR})
        self.recheck_line.setVisible(False)
        self.addItem(self.recheck_line)

    def show_recheck(self, value: float | None) -> None:
        """The recheck band's lower threshold as an amber line (None: no band)."""
        self.recheck_line.setVisible(value is not None)
        if value is not None:
            self.recheck_line.setValue(value)

    def clear_scores(self) -> None:
        self.good_curve.setData([0.0, 1.0], [0], stepMode="center")
        self.bad_curve.setData([0.0, 1.0], [0], stepMode="center")
        self.line.setVisible(False)
        self.recheck_line.setVisible(False)
        self.setXRange(0, 1)
        self.setYRange(0, 1)

    def show_scores(self, good: np.ndarray, bad: np.ndarray | None, threshold: float) -> None:
        self.line.setVisible(True)
        values = good if bad is None else np.concatenate([good, bad])
        hi = max(float(values.max()) if values.size else 1.0, threshold) * 1.05
        lo = min(float(values.min()) if values.size else 0.0, threshold)
        edges = np.linspace(lo, hi, 41)
        counts = np.histogram(good, edges)[0]
        self.good_curve.setData(edges, counts, stepMode="center")
        if bad is not None and bad.size:
            bad_counts = np.histogram(bad, edges)[0]
            self.bad_curve.setData(edges, bad_counts, stepMode="center")
            counts = np.maximum(counts, bad_counts)
        else:
            self.bad_curve.setData([lo, hi], [0], stepMode="center")
        self.setYRange(0, max(int(counts.max()), 1) * 1.1, padding=0)
        self.line.setValue(threshold)  # its label follows; the FRR text is the page's to update
        self.setXRange(lo, hi, padding=0.02)


class TeachPage(QWidget):
    def __init__(self, model: TeachModel, line: LineModel, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model, self.line, self.session = model, line, session
        self.calibration: CalibrationData | None = None

        # live view and capture
        self.image_view = HeatmapView(controls=False)
        self.capture_button = QPushButton("Capture good sample")
        self.capture_button.setMinimumHeight(40)
        self.capture_button.clicked.connect(self._on_capture_clicked)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.gallery.setMinimumHeight(130)
        self.remove_button = QPushButton("Remove selected samples")
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.import_button = QPushButton("Import from folder …")
        self.import_button.clicked.connect(self._on_import_clicked)
        self.samples_label = QLabel()

        # what of the frame is inspected: drawn on a reference image
        self.framing_editor = FramingEditor()
        self.framing_editor.changed.connect(self._on_framing_changed)
        self.reference_live_button = QPushButton("Use live frame")
        self.reference_live_button.clicked.connect(self.use_live_reference)
        self.reference_sample_button = QPushButton("Use selected sample")
        self.reference_sample_button.clicked.connect(self._on_reference_sample_clicked)
        self.reference_file_button = QPushButton("Open image …")
        self.reference_file_button.clicked.connect(self._on_reference_file_clicked)
        self.check_framing_button = QPushButton("Check")
        self.check_framing_button.clicked.connect(self.check_framing)

        # training
        self.iterations = QSpinBox()
        self.iterations.setRange(0, 200_000)
        # 0 is the quick mode: as many iterations as fit in its time budget on this machine.
        self.iterations.setSpecialValueText(f"quick ({QUICK_TRAIN_S // 60} min)")
        self.iterations.setValue(0)
        self.kind = QComboBox()
        for label, kind in (("Instant now, EfficientAD after (recommended)", "staged"),
                            ("EfficientAD only", "efficientad"), ("Instant model only", "instant")):
            self.kind.addItem(label, kind)
        self.kind.setToolTip("The instant model is ready in about a minute and runs the line while EfficientAD trains;\n"
                             "EfficientAD takes over only when it is at least as good on the held-out samples.")
        self.target_frr = DecimalBox()
        self.target_frr.setRange(0.05, 50.0)
        self.target_frr.setDecimals(2)
        self.target_frr.setSuffix(" %")
        self.target_frr.setValue(100 * DEFAULT_TARGET_FRR)
        self.target_frr.valueChanged.connect(self._on_target_frr_changed)
        self.target_note = QLabel()
        self.target_note.setWordWrap(True)
        self._frr_default = 100 * DEFAULT_TARGET_FRR
        self.recheck_box = QCheckBox("Recheck band")
        self.recheck_box.setToolTip("a second, lower threshold: parts between it and the threshold are RECHECK,\n"
                                    "set aside for a person; set for this share of good parts (off by default)")
        self.recheck_rate = DecimalBox()
        self.recheck_rate.setRange(0.1, 50.0)
        self.recheck_rate.setDecimals(1)
        self.recheck_rate.setSuffix(" % of good parts")
        self.recheck_rate.setValue(100 * DEFAULT_RECHECK_RATE)
        self.recheck_rate.setEnabled(False)
        self.recheck_box.toggled.connect(self.recheck_rate.setEnabled)
        self.recheck_button = QPushButton("Apply recheck band")
        self.recheck_button.setToolTip("sets the selected version's recheck band for this share of good parts\n"
                                       "(or switches it off, with the box unticked): audited, on the line at once if active")
        self.recheck_button.clicked.connect(self._on_apply_recheck_clicked)
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self._on_train_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.model.cancel_training)
        self.progress = QProgressBar()
        self.eta_label = QLabel("")

        # versions and calibration
        self.versions_table = QTableWidget(0, 6)
        self.versions_table.setHorizontalHeaderLabels(["Version", "Status", "Threshold", "Expected FRR", "Created", "Note"])
        self.versions_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.versions_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.versions_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.versions_table.verticalHeader().setVisible(False)
        self.versions_table.itemSelectionChanged.connect(self._on_version_selection_changed)
        self.calib_plot = CalibrationPlot()
        self.calib_plot.setMinimumHeight(180)
        self.calib_plot.line.sigPositionChanged.connect(self._on_threshold_line_changed)
        self.frr_label = QLabel("select a calibrated version")
        self.frr_label.setWordWrap(True)
        self.apply_threshold_button = QPushButton("Apply threshold")
        self.apply_threshold_button.clicked.connect(self._on_apply_threshold_clicked)
        self.activate_button = QPushButton("Activate")
        self.activate_button.clicked.connect(self._on_activate_clicked)
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.clicked.connect(self._on_rollback_clicked)
        self.shadow_button = QPushButton("Shadow comparison")
        self.shadow_button.clicked.connect(self._on_shadow_clicked)
        self.message_label = MessageLine()

        left = QVBoxLayout()
        self.left_tabs = QTabWidget()
        live = QWidget()
        ll = QVBoxLayout(live)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.image_view, 1)
        ll.addWidget(self.capture_button)
        self.left_tabs.addTab(live, "Live view")
        framing_tab = QWidget()
        fl = QVBoxLayout(framing_tab)
        fl.setContentsMargins(0, 0, 0, 0)
        rb = QHBoxLayout()
        rb.addWidget(QLabel("Draw on:"))
        for b in (self.reference_live_button, self.reference_sample_button, self.reference_file_button):
            rb.addWidget(b)
        rb.addStretch(1)
        rb.addWidget(self.check_framing_button)
        fl.addLayout(rb)
        fl.addWidget(self.framing_editor, 1)
        self.left_tabs.addTab(framing_tab, "Inspection region")
        left.addWidget(self.left_tabs, 3)
        samples_box = QGroupBox("Good samples")
        sl = QVBoxLayout(samples_box)
        sl.addWidget(self.samples_label)
        sl.addWidget(self.gallery)
        gb = QHBoxLayout()
        gb.addWidget(self.remove_button)
        gb.addWidget(self.import_button)
        sl.addLayout(gb)
        left.addWidget(samples_box, 2)

        right = QVBoxLayout()
        train_box = QGroupBox("Training")
        form = QFormLayout(train_box)
        form.addRow("Model", self.kind)
        form.addRow("Iterations", self.iterations)
        form.addRow("Target false-reject rate", self.target_frr)
        form.addRow(self.target_note)
        recheck = QHBoxLayout()
        recheck.addWidget(self.recheck_box)
        recheck.addWidget(self.recheck_rate, 1)
        form.addRow(recheck)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.eta_label)
        right.addWidget(train_box)
        versions_box = QGroupBox("Model versions and calibration")
        vl = QVBoxLayout(versions_box)
        vl.addWidget(self.versions_table, 1)
        vl.addWidget(self.calib_plot, 2)
        vl.addWidget(self.frr_label)
        vb = QHBoxLayout()
        for b in (self.apply_threshold_button, self.recheck_button, self.activate_button, self.rollback_button,
                  self.shadow_button):
            vb.addWidget(b)
        vl.addLayout(vb)
        right.addWidget(versions_box, 1)
        right.addWidget(self.message_label)

        grid = QGridLayout(self)
        grid.addLayout(left, 0, 0)
        grid.addLayout(right, 0, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)

        line.result_changed.connect(self._on_result_changed)
        model.samples_changed.connect(self._on_samples_changed)
        model.versions_changed.connect(self._on_versions_changed)
        model.training_changed.connect(self._on_training_changed)
        model.version_created.connect(self.select_version)
        model.message.connect(self.message_label.say)
        model.busy_changed.connect(self._on_busy_changed)
        session.user_changed.connect(self._on_user_changed)
        line.status_changed.connect(self._on_line_status_changed)
        self._busy = False
        self._framing_product: str | None = None  # the product whose framing the editor shows
        self._on_line_status_changed()
        self._on_samples_changed()
        self._on_versions_changed()
        self._on_training_changed(model.state)
        self._on_user_changed(session.user, session.role)

    # -- target false-reject rate ---------------------------------------------------------------------

    def _on_line_status_changed(self) -> None:
        """Starts from the active model's target (while nobody has changed the field) and says
        where the target differs from it."""
        if self.model.product != self._framing_product:
            self._framing_product = self.model.product
            self._load_recipe_framing()
        active = self.model.active_target_frr()
        default = 100 * (DEFAULT_TARGET_FRR if active is None else active)
        if math.isclose(self.target_frr.value(), self._frr_default):
            self.target_frr.setValue(default)
        self._frr_default = default
        self._on_target_frr_changed()

    def _on_target_frr_changed(self) -> None:
        active = self.model.active_target_frr()
        value = self.target_frr.value()
        if active is None:
            text = "the active model has no calibration to compare with"
        elif math.isclose(value, 100 * active, rel_tol=1e-3):
            text = f"as the active model (version {self.line.recipe.model_version_id}) was calibrated"
        else:
            effect = ("more good parts" if value > 100 * active else
                      "fewer good parts, and let more defects pass")
            text = (f"<span style='color:{FAIL_COLOR}'>not the active model's target of {100 * active:.3g} %</span>: "
                    f"the new version will reject {effect}")
        self.target_note.setText(text)

    # -- line --------------------------------------------------------------------------------------

    def _on_result_changed(self, result: InspectionResult | None) -> None:
        if result is None or not self.isVisible():
            return  # nobody looks: skip the drawing
        self.image_view.show_frame(result.image, result.anomaly_map, heatmap_view(result))

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self.line.latest is not None:
            r = self.line.latest
            self.image_view.show_frame(r.image, r.anomaly_map, heatmap_view(r))

    # -- samples -----------------------------------------------------------------------------------

    def _on_capture_clicked(self) -> None:
        self.message_label.guard(self.model.capture_sample)

    def _on_remove_clicked(self) -> None:
        paths = [Path(item.data(Qt.ItemDataRole.UserRole)) for item in self.gallery.selectedItems()]
        if paths:
            self.message_label.guard(lambda: self.model.remove_samples(paths))

    def _on_import_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import good samples from folder")
        if folder:
            self.message_label.guard(lambda: self.model.import_samples(Path(folder)))

    def _on_samples_changed(self) -> None:
        try:
            paths = self.model.sample_paths()
        except InspectorError as exc:
            self.message_label.say(str(exc), True)
            paths = []
        self.gallery.blockSignals(True)
        self.gallery.clear()
        for p in paths:
            item = QListWidgetItem(p.name[:18])
            try:
                item.setIcon(thumbnail(p))
            except InspectorError:
                item.setText(f"{p.name} (unreadable)")
            item.setData(Qt.ItemDataRole.UserRole, str(p))
            self.gallery.addItem(item)
        self.gallery.blockSignals(False)
        self.samples_label.setText(f"{len(paths)} samples of {self.model.product!r} (at least 13 to train)")
        if self.framing_editor.reference is None and paths:
            self.use_sample_reference(paths[0])  # the reference unless the technician picks another

    # -- training ----------------------------------------------------------------------------------

    def _on_train_clicked(self) -> None:
        try:
            framing = self.framing_for_training()
        except InspectorError as exc:  # a drawing that cannot work: said here, nothing written
            self.message_label.say(f"inspection region: {exc}", True)
            self.left_tabs.setCurrentIndex(1)
            return
        # Samples too few for the target rate or the recheck band: the training refuses before its
        # start is audited, and its message comes to the message line as a failed training.
        recheck = self.recheck_rate.value() / 100.0 if self.recheck_box.isChecked() else None
        self.message_label.guard(lambda: self.model.train(self.iterations.value() or None,
                                                          self.target_frr.value() / 100.0,
                                                          kind=self.kind.currentData(), framing=framing,
                                                          mm_per_px=self.framing_editor.pixel_size,
                                                          recheck_rate=recheck))

    # -- the inspection region ----------------------------------------------------------------------

    def framing_for_training(self):
        """The framing drawn, checked on its reference (the first sample unless another was
        chosen); None where it changes nothing. InspectorError for a drawing that cannot work."""
        if self.framing_editor.reference is None:
            self._default_reference()
        if self.framing_editor.reference is None:
            return None  # no samples: the training itself says so
        framing = self.framing_editor.framing(INPUT_PX)
        self._check_samples_fit(framing)
        return framing

    def _check_samples_fit(self, framing: Framing | None) -> None:
        """The training's own check that the samples fit the drawing (their frame size, the
        memory its tiles take), made at Check: said here before Train, not only by the training."""
        from calibration.teach.sample_fit import check_samples_fit

        try:
            paths = self.model.sample_paths()
        except InspectorError:
            return
        check_samples_fit(framing, paths, INPUT_PX, remedy=f"select a sample in the list, press "
                          f"'{self.reference_sample_button.text()}' and draw the region on it")

    def check_framing(self) -> bool:
        """Checks the drawing now and says what the model will inspect, or what is wrong."""
        try:
            framing = self.framing_for_training()
        except InspectorError as exc:
            self.message_label.say(f"inspection region: {exc}", True)
            self.framing_editor.summary.setText(f"<span style='color:{FAIL_COLOR}'>{exc}</span>")
            return False
        from inspector.framing.recipe import describe

        text = f"the model will inspect {describe(framing)}"
        self.framing_editor.summary.setText(text)
        self.message_label.say(text, False)
        return True

    def _load_recipe_framing(self) -> None:
        """The product's active framing drawn again (or nothing, for a product without one): a
        page that started blank would teach the next version on the whole frame, and another
        product's drawing would fall on the wrong part."""
        recipe = self.line.recipe
        framing = getattr(recipe.engine, "framing", None)
        self.framing_editor.load_framing(framing if isinstance(framing, Framing) else None,
                                         getattr(recipe.rule, "mm_per_px", None),
                                         f"reference of version {recipe.model_version_id}")
        if self.framing_editor.reference is None:
            self._default_reference()

    def use_live_reference(self) -> None:
        latest = self.line.latest
        if latest is None or latest.image is None:
            self.message_label.say("no live frame yet: start the line, or draw on a sample", True)
            return
        self._set_reference(latest.image, f"live frame {latest.frame_id} of {latest.camera_id}")

    def use_sample_reference(self, path: Path) -> None:
        try:
            self._set_reference(read_image(path), f"sample {path.name}")
        except InspectorError as exc:
            self.message_label.say(str(exc), True)

    def _set_reference(self, image: np.ndarray, source: str) -> None:
        """The editor draws on ``image`` now; where that wipes a drawing (another size), it says so."""
        editor = self.framing_editor
        old = editor.reference.shape[:2] if editor.reference is not None and editor.has_drawing() else None
        editor.set_reference(image, source)
        if old is not None and old != image.shape[:2]:
            h, w = image.shape[:2]
            self.message_label.say(f"the {source} is {w}x{h}, the drawing was on {old[1]}x{old[0]}: draw the region and "
                                   "don't-care areas again on it", True)

    def _default_reference(self) -> None:
        try:
            paths = self.model.sample_paths()
        except InspectorError:
            return
        if paths:
            self.use_sample_reference(paths[0])

    def _on_reference_sample_clicked(self) -> None:
        items = self.gallery.selectedItems()
        if items:
            self.use_sample_reference(Path(items[0].data(Qt.ItemDataRole.UserRole)))
        else:
            self._default_reference()

    def _on_reference_file_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Reference image", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)")
        if path:
            self.use_sample_reference(Path(path))

    def _on_framing_changed(self) -> None:
        editor = self.framing_editor
        source = f"drawn on the {editor.reference_source}" if editor.reference_source else ""
        editor.summary.setText(source)

    def _on_training_changed(self, state: TrainingState) -> None:
        self.progress.setRange(0, max(state.total, 1))
        self.progress.setValue(state.iteration)
        eta = f" — ETA {format_eta(state.eta_s)}" if state.running and state.iteration else ""
        loss = f", loss {state.loss:.4f}" if math.isfinite(state.loss) else ""
        self.eta_label.setText(f"{state.message}{loss}{eta}")
        self._update_enabled()

    # -- versions and calibration --------------------------------------------------------------------

    def _on_versions_changed(self) -> None:
        try:
            versions = self.model.versions()
        except InspectorError as exc:
            self.message_label.say(str(exc), True)
            versions = []
        selected = self.selected_version()
        active = self.line.recipe.model_version_id
        self.versions_table.blockSignals(True)
        self.versions_table.setRowCount(len(versions))
        for row, v in enumerate(versions):
            cal = v.calibration
            cells = [
                str(v.id), v.status + (" (on the line)" if v.id == active else ""),
                f"{cal.image_threshold:.4g}" if cal else "–",
                f"{100 * cal.expected_frr:.2g} %" if cal else "–",
                v.created.astimezone().strftime("%Y-%m-%d %H:%M"), v.note,
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, v.id)
                self.versions_table.setItem(row, col, item)
        self.versions_table.resizeColumnsToContents()
        self.versions_table.blockSignals(False)
        target = selected if selected is not None else active
        for row, v in enumerate(versions):
            if v.id == target:
                self.versions_table.selectRow(row)
                break
        self._on_version_selection_changed()

    def selected_version(self) -> int | None:
        items = self.versions_table.selectedItems()
        return int(items[0].data(Qt.ItemDataRole.UserRole)) if items else None

    def select_version(self, version_id: int) -> None:
        for row in range(self.versions_table.rowCount()):
            if int(self.versions_table.item(row, 0).data(Qt.ItemDataRole.UserRole)) == version_id:
                self.versions_table.selectRow(row)
                return

    def _on_version_selection_changed(self) -> None:
        vid = self.selected_version()
        self.calibration = self.model.calibration(vid) if vid is not None else None
        cal = self.calibration
        if cal is None or cal.good_scores.size == 0:
            self.calib_plot.clear_scores()
            self.frr_label.setText("no calibration scores for this version" if vid is not None else "select a calibrated version")
        else:
            self.calib_plot.show_scores(cal.good_scores, cal.defect_scores, cal.threshold)
            self.calib_plot.show_recheck(cal.recheck_threshold)
            self._on_threshold_line_changed()
        self._update_enabled()

    def _on_threshold_line_changed(self, *_: object) -> None:
        cal = self.calibration
        if cal is None or cal.good_scores.size == 0:
            return
        t = float(self.calib_plot.line.value())
        est = frr_at(cal.good_scores, t)
        text = (f"at threshold <b>{t:.4g}</b>: expected false-reject rate <b>{100 * est.expected:.2g} %</b> "
                f"(95 % interval {100 * est.ci_low:.2g} .. {100 * est.ci_high:.2g} %; {est.above} of {est.n} good "
                f"calibration parts above)")
        if cal.defect_scores is not None and cal.defect_scores.size:
            escapes = int(np.count_nonzero(cal.defect_scores <= t))
            text += f"; {escapes} of {cal.defect_scores.size} known defects would pass"
        if cal.recheck_threshold is not None:
            if cal.recheck_threshold < t:
                band = int(np.count_nonzero((cal.good_scores > cal.recheck_threshold) & (cal.good_scores <= t)))
                text += (f"; recheck band above {cal.recheck_threshold:.4g}: {band} of {cal.good_scores.size} good parts "
                         "RECHECK")
            else:
                text += f"; the recheck band (above {cal.recheck_threshold:.4g}) goes with a threshold this low"
        self.frr_label.setText(text)

    def _on_apply_threshold_clicked(self) -> None:
        vid = self.selected_version()
        if vid is not None:
            self.message_label.guard(lambda: self.model.set_threshold(vid, float(self.calib_plot.line.value())))

    def _on_apply_recheck_clicked(self) -> None:
        vid = self.selected_version()
        if vid is not None:
            rate = self.recheck_rate.value() / 100.0 if self.recheck_box.isChecked() else None
            self.message_label.guard(lambda: self.model.set_recheck_band(vid, rate))

    def _on_activate_clicked(self) -> None:
        vid = self.selected_version()
        if vid is not None:
            self.message_label.guard(lambda: self.model.activate(vid))

    def _on_rollback_clicked(self) -> None:
        self.message_label.guard(self.model.rollback)

    def _on_shadow_clicked(self) -> None:
        vid = self.selected_version()
        if vid is not None:
            self.message_label.guard(lambda: self.model.shadow(vid))

    # -- state -------------------------------------------------------------------------------------

    def _on_busy_changed(self, busy: bool) -> None:
        self._busy = busy
        self._update_enabled()

    def _on_user_changed(self, user: str, role: str) -> None:
        self._update_enabled()

    def _update_enabled(self) -> None:
        teach = self.session.can("teach")
        training = self.model.state.running
        has_version = self.selected_version() is not None
        calibrated = self.calibration is not None and self.calibration.good_scores.size > 0
        self.capture_button.setEnabled(teach and not training)
        self.remove_button.setEnabled(teach and not training)
        self.import_button.setEnabled(teach and not training)
        self.train_button.setEnabled(teach and not training and not self._busy)
        self.cancel_button.setEnabled(teach and training)
        self.iterations.setEnabled(teach and not training)
        self.target_frr.setEnabled(teach and not training)
        self.framing_editor.setEnabled(teach and not training)
        self.check_framing_button.setEnabled(teach and not training)
        self.recheck_box.setEnabled(teach and not training)
        self.calib_plot.line.setMovable(self.session.can("set_threshold"))
        self.apply_threshold_button.setEnabled(self.session.can("set_threshold") and calibrated and not self._busy)
        self.recheck_button.setEnabled(self.session.can("set_threshold") and calibrated and not self._busy)
        self.activate_button.setEnabled(self.session.can("activate_model") and calibrated and not self._busy)
        self.rollback_button.setEnabled(self.session.can("activate_model") and not self._busy)
        self.shadow_button.setEnabled(teach and has_version and calibrated and not self._busy)
