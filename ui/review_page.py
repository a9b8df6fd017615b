"""The quality engineer's Review page: the history, filtered and paged; labels; export; yield.

A view of :class:`~ui.review_model.ReviewModel`. The table is a ``QTableView`` over the paged
:class:`~ui.review_model.InspectionTableModel`; the selected part's stored image and heatmap are
shown beside it.

The recheck queue ("Recheck queue") is the RECHECK parts no one has labelled yet, within the
other filters: the quality engineer's verdict on each -- false reject or confirmed defect --
becomes its label (:func:`station.actions.label_inspections`, audited), which takes it out of
the queue, and the next part is selected.
"""

from __future__ import annotations

import html
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QDateTime, Qt
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inspector.errors import InspectorError
from inspector.history import InspectionFilter
from ui.review_model import (COLUMNS, LABEL_TEXT, ReviewModel, defect_size_text, load_review_images, missing_image_note,
                             recheck_queue)
from ui.session import Session
from ui.message_line import MessageLine
from ui.widgets import FAIL_COLOR, PASS_COLOR, RECHECK_COLOR, HeatmapView, decision_color, decision_text

ANY = "any"
BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "minute": timedelta(minutes=1)}


class ReviewPage(QWidget):
    def __init__(self, model: ReviewModel, session: Session, product_provider=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model, self.session = model, session
        self.product_provider = product_provider or (lambda: None)

        # filters
        now = QDateTime.currentDateTime()
        self.use_time = QCheckBox("Time from")
        self.start_edit = QDateTimeEdit(now.addDays(-1))
        self.end_edit = QDateTimeEdit(now.addSecs(3600))
        for e in (self.start_edit, self.end_edit):
            e.setCalendarPopup(True)
            e.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.decision_combo = QComboBox()
        # ERROR: the engine could not score; NO PART: the part was not found in the frame.
        for text, value in ((ANY, None), ("PASS", "PASS"), ("FAIL", "FAIL"), ("RECHECK", "RECHECK"),
                            ("NO PART", "NO_PART"), ("ERROR", "ERROR")):
            self.decision_combo.addItem(text, value)
        self.queue_button = QPushButton("Recheck queue")
        self.queue_button.setCheckable(True)
        self.queue_button.setToolTip("RECHECK parts without a verdict yet: label each false reject or confirmed defect")
        self.queue_button.setStyleSheet(f"QPushButton:checked {{ background: {RECHECK_COLOR}; color: white; font-weight: bold; }}")
        self.queue_button.toggled.connect(self._on_queue_toggled)
        self.label_combo = QComboBox()
        # shown as the table and the detail say them; the history's values as the data
        for text, value in ((ANY, None), ("not labelled", "none"), (LABEL_TEXT["false_reject"], "false_reject"),
                            (LABEL_TEXT["confirmed_defect"], "confirmed_defect")):
            self.label_combo.addItem(text, value)
        self.use_score = QCheckBox("Score from")
        self.min_score = QDoubleSpinBox()
        self.max_score = QDoubleSpinBox()
        for s in (self.min_score, self.max_score):
            s.setRange(-1e6, 1e6)
            s.setDecimals(4)
            s.setSingleStep(0.01)
        self.max_score.setValue(10.0)
        self.product_combo = QComboBox()
        self.station_combo = QComboBox()  # a plant database holds many stations' inspections
        self.version_spin = QSpinBox()
        self.version_spin.setRange(0, 10_000_000)
        self.version_spin.setSpecialValueText(ANY)
        self.apply_button = QPushButton("Apply filter")
        self.apply_button.clicked.connect(self._on_filter_changed)
        self.count_label = QLabel()

        filter_box = QGroupBox("Filter")
        fg = QGridLayout(filter_box)
        fg.addWidget(self.use_time, 0, 0)
        fg.addWidget(self.start_edit, 0, 1)
        fg.addWidget(QLabel("to"), 0, 2)
        fg.addWidget(self.end_edit, 0, 3)
        fg.addWidget(QLabel("Decision"), 0, 4)
        fg.addWidget(self.decision_combo, 0, 5)
        fg.addWidget(QLabel("Label"), 0, 6)
        fg.addWidget(self.label_combo, 0, 7)
        fg.addWidget(self.use_score, 1, 0)
        fg.addWidget(self.min_score, 1, 1)
        fg.addWidget(QLabel("to"), 1, 2)
        fg.addWidget(self.max_score, 1, 3)
        fg.addWidget(QLabel("Product"), 1, 4)
        fg.addWidget(self.product_combo, 1, 5)
        fg.addWidget(QLabel("Model version"), 1, 6)
        fg.addWidget(self.version_spin, 1, 7)
        fg.addWidget(QLabel("Station"), 0, 8)
        fg.addWidget(self.station_combo, 0, 9)
        fg.addWidget(self.apply_button, 0, 10)
        fg.addWidget(self.queue_button, 1, 8, 1, 2)
        fg.addWidget(self.count_label, 1, 10)

        # table and detail
        self.table = QTableView()
        self.table.setModel(model.table)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        # Fixed widths: sizing to contents would read every row.
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        model.table.modelReset.connect(self._on_table_reset)
        self.image_view = HeatmapView()
        self.detail_label = QLabel("select a part")
        self.detail_label.setWordWrap(True)
        self.false_reject_button = QPushButton("False reject")
        self.false_reject_button.clicked.connect(lambda: self._label("false_reject"))
        self.defect_button = QPushButton("Confirmed defect")
        self.defect_button.clicked.connect(lambda: self._label("confirmed_defect"))
        self.clear_label_button = QPushButton("Clear label")
        self.clear_label_button.clicked.connect(lambda: self._label("none"))
        self.copy_button = QPushButton("Copy false rejects to teach samples")
        self.copy_button.clicked.connect(self._on_copy_clicked)
        self.export_button = QPushButton("Export CSV + images …")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.message_label = MessageLine()

        # yield chart
        self.bucket_combo = QComboBox()
        self.bucket_combo.addItems(list(BUCKETS))
        self.bucket_combo.currentTextChanged.connect(self._on_yield_changed)
        self.yield_plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.yield_plot.setBackground("w")
        self.yield_plot.setLabel("left", "yield %")
        self.yield_plot.setYRange(0, 100, padding=0.02)
        self.yield_plot.setMinimumHeight(140)
        self.yield_curve = self.yield_plot.plot(pen=pg.mkPen(PASS_COLOR, width=2), symbol="o", symbolSize=6,
                                                symbolBrush=PASS_COLOR)

        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.addWidget(self.image_view, 1)
        dl.addWidget(self.detail_label)
        lb = QHBoxLayout()
        for b in (self.false_reject_button, self.defect_button, self.clear_label_button):
            lb.addWidget(b)
        dl.addLayout(lb)
        eb = QHBoxLayout()
        eb.addWidget(self.copy_button)
        eb.addWidget(self.export_button)
        dl.addLayout(eb)
        dl.addWidget(self.message_label)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        yield_box = QGroupBox("Yield over time")
        yl = QHBoxLayout(yield_box)
        yl.addWidget(self.yield_plot, 1)
        side = QVBoxLayout()
        side.addWidget(QLabel("per"))
        side.addWidget(self.bucket_combo)
        side.addStretch(1)
        yl.addLayout(side)

        layout = QVBoxLayout(self)
        layout.addWidget(filter_box)
        layout.addWidget(split, 3)
        layout.addWidget(yield_box, 1)

        model.message.connect(self.message_label.say)
        session.user_changed.connect(self._on_user_changed)
        self._on_user_changed(session.user, session.role)

    # -- filters -------------------------------------------------------------------------------------

    def reload_choices(self) -> None:
        """Products and stations for the filter (from the database)."""
        stations = self.model.stations()
        current_station = self.station_combo.currentData()
        self.station_combo.blockSignals(True)
        self.station_combo.clear()
        self.station_combo.addItem(ANY, None)
        for name in stations:
            self.station_combo.addItem(name, name)
        self.station_combo.setCurrentIndex(max(self.station_combo.findData(current_station), 0))
        self.station_combo.blockSignals(False)
        products = self.model.products()
        current = self.product_combo.currentData()
        self.product_combo.blockSignals(True)
        self.product_combo.clear()
        self.product_combo.addItem(ANY, None)
        for name, pid in products:
            self.product_combo.addItem(name, pid)
        index = self.product_combo.findData(current)
        self.product_combo.setCurrentIndex(max(index, 0))
        self.product_combo.blockSignals(False)

    def current_filter(self) -> InspectionFilter:
        start = end = None
        if self.use_time.isChecked():
            start = self.start_edit.dateTime().toPyDateTime().astimezone(timezone.utc)
            end = self.end_edit.dateTime().toPyDateTime().astimezone(timezone.utc)
            if start >= end:  # as the command line and the browser refuse it: nothing could match
                raise InspectorError(f"the time range {start.astimezone():%Y-%m-%d %H:%M} to {end.astimezone():%Y-%m-%d %H:%M} "
                                     "does not end after it starts: no part can match; swap them?")
        if self.use_score.isChecked() and self.min_score.value() > self.max_score.value():
            raise InspectorError(f"the score range {self.min_score.value():g} to {self.max_score.value():g} ends below "
                                 "its start: no part can match; swap them?")
        decision = self.decision_combo.currentData()
        label = self.label_combo.currentData()
        version = self.version_spin.value()
        filters = InspectionFilter(
            start=start, end=end,
            decision=None if decision in (None, "ERROR") else decision,
            errors_only=decision == "ERROR",
            label=label,
            min_score=self.min_score.value() if self.use_score.isChecked() else None,
            max_score=self.max_score.value() if self.use_score.isChecked() else None,
            product_id=self.product_combo.currentData(),
            model_version_id=version or None,
            station=self.station_combo.currentData(),
        )
        return recheck_queue(filters) if self.queue_button.isChecked() else filters

    @property
    def in_queue(self) -> bool:
        return self.queue_button.isChecked()

    def show_recheck_queue(self, on: bool = True) -> None:
        """Shows the recheck queue (or the filter's parts again) and selects its first part."""
        self.queue_button.setChecked(on)

    def _on_queue_toggled(self, on: bool) -> None:
        for w in (self.decision_combo, self.label_combo):
            w.setEnabled(not on)  # the queue is RECHECK, unlabelled
        self._on_filter_changed()
        if on:
            self.select_first(with_image=False)

    def refresh(self) -> None:
        """Re-reads the history with the current filter (e.g. when the page is shown)."""
        self.reload_choices()
        self._on_filter_changed()

    def _on_filter_changed(self) -> None:
        try:
            self.model.table.set_filters(self.current_filter())
        except (InspectorError, ValueError) as exc:
            self.message_label.say(str(exc), True)
            return
        self._on_yield_changed()

    def _on_table_reset(self) -> None:
        n = self.model.table.rowCount()
        self.count_label.setText(f"{n:,} parts waiting for a verdict" if self.in_queue else f"{n:,} parts")
        header = self.table.horizontalHeader()
        for col, (_, _, width) in enumerate(COLUMNS[:-1]):  # the last one stretches
            header.resizeSection(col, width)

    # -- selection -----------------------------------------------------------------------------------

    def select_first(self, decision: str | None = None, with_image: bool = True, limit: int = 500) -> int | None:
        """Selects the newest part with this decision (and a stored image); returns its index."""
        table = self.model.table
        for i in range(min(table.rowCount(), limit)):
            row = table.row(i)
            if row is not None and (decision is None or row.decision == decision) and (row.image_exists or not with_image):
                self.table.selectRow(i)
                return i
        return None

    def selected_indexes(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectionModel().selectedRows()})

    def _on_selection_changed(self, *_: object) -> None:
        rows = self.selected_indexes()
        row = self.model.table.row(rows[0]) if rows else None
        if row is None:
            self.image_view.show_frame(None)
            self.detail_label.setText("select a part")
            return
        image, heat = load_review_images(row)
        levels = self.model.heatmap_levels(row)
        if heat is not None and heat.ndim == 2:  # map values: drawn as the operator saw them
            self.image_view.show_frame(image, heat, levels)
        else:
            self.image_view.show_frame(image, heat)
        color = decision_color(row.decision)
        kept = "" if image is not None else missing_image_note(row, self.model.db.station)
        verdict = f"<b style='color:{color}'>{decision_text(row.decision)}</b>"
        if row.error is not None:  # a fail-safe FAIL, not a judgement of the part
            verdict = f"<b style='color:{FAIL_COLOR}'>ERROR</b> (FAIL, the engine could not score it: {html.escape(row.error)})"
        rule = row.rule
        pixel = ""
        if rule is not None and rule.pixel_threshold is not None:
            area = rule.min_defect_area_px or 1
            mm2 = rule.area_mm2(area)  # in the unit the largest defect is given in, where the rule has a pixel size
            pixel = f", pixel threshold {rule.pixel_threshold:.4g} over {area} px" + (f" ({mm2:.3g} mm²)" if mm2 is not None else "")
        recheck = getattr(rule, "recheck_threshold", None)
        if recheck is not None:
            pixel += f", recheck above {recheck:.4g}"
        size = defect_size_text(row)
        if size:
            pixel += f"; largest defect {size}"
        quality = getattr(row, "match_quality", None)
        if quality is not None:  # how well the part was found (alignment)
            pixel += f"; part {'not found' if row.decision == 'NO_PART' else 'found'}, match {quality:.2f}"
        if row.decision == "NO_PART":
            scored = "not scored: the part was not found"
        elif row.error is not None:  # its stored 0.0 is no score
            scored = "not scored"
        else:
            scored = f"score {row.score:.4g}"
        self.detail_label.setText(
            f"part {row.id}: {verdict}, {scored} (threshold "
            f"{row.threshold:.4g}{pixel}), {row.time.astimezone():%Y-%m-%d %H:%M:%S}, station {html.escape(row.station)}, "
            f"{row.camera_id} frame {row.frame_id}, "
            f"model version {row.model_version_id}; label: {LABEL_TEXT.get(row.label) or 'not labelled'}"
            + (f" by {html.escape(row.labelled_by)}" if row.labelled_by else "") + kept
            + (f"<br><i>{html.escape(levels.note)}</i>" if levels.note and heat is not None else "")
        )

    # -- actions -------------------------------------------------------------------------------------

    def _label(self, label: str) -> None:
        rows = self.selected_indexes()
        if rows:
            done = self.message_label.guard(lambda: self.model.label(rows, label))
            if done and self.in_queue:  # labelled parts leave the queue; the next one is selected
                self._on_filter_changed()
                n = self.model.table.rowCount()
                if n:
                    self.table.selectRow(min(rows[0], n - 1))
            self._on_selection_changed()

    def copy_product(self) -> str | None:
        """Whose teach samples the false rejects become: the product the filter shows, else the
        line's (another product's parts are no samples of it)."""
        if self.product_combo.currentData() is not None:
            return self.product_combo.currentText()
        return self.product_provider()

    def _on_copy_clicked(self) -> None:
        product = self.copy_product()
        if product:
            self.message_label.guard(lambda: self.model.copy_false_rejects_to_teach(product))

    def _on_export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into folder")
        if folder:
            self.message_label.guard(lambda: self.model.export(Path(folder)))

    def _on_yield_changed(self, *_: object) -> None:
        try:
            t, y, n = self.model.yield_series(BUCKETS[self.bucket_combo.currentText()])
        except (InspectorError, ValueError) as exc:
            self.message_label.say(str(exc), True)
            return
        ok = np.isfinite(y)
        self.yield_curve.setData(t[ok], 100 * y[ok])
        if ok.any():  # at least a bucket either side, or one point makes a sub-second axis
            step = BUCKETS[self.bucket_combo.currentText()].total_seconds()
            self.yield_plot.setXRange(t[ok].min() - step, t[ok].max() + step, padding=0)

    def _on_user_changed(self, user: str, role: str) -> None:
        can_label = self.session.can("label")
        for b in (self.false_reject_button, self.defect_button, self.clear_label_button):
            b.setEnabled(can_label)
        self.copy_button.setEnabled(self.session.can("copy_to_teach"))
        self.export_button.setEnabled(self.session.can("export"))

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh()

