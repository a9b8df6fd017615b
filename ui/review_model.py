"""The review page's models: a paged table over the history, labels, export, yield over time.

:class:`InspectionTableModel` shows any number of inspections without reading them all: the row
count comes from one ``count_inspections`` query, and rows are fetched a page at a time
(``query_inspections(filters, PAGE_SIZE, offset)``) when the view first asks for one of them; a
few recent pages are cached. Scrolling through 100,000 rows reads only the pages scrolled past.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, pyqtSignal
from PyQt6.QtGui import QColor

from inspector.errors import InspectorError
from inspector.history import HistoryDB, InspectionFilter, InspectionRow
from inspector.history.image_store import read_heatmap, read_stored_image
from inspector.history.queries import decided_levels
from inspector.overlay import HeatmapLevels

from station import actions
from station.actions import export_inspections
from ui.session import Session
from ui.widgets import FAIL_COLOR, decision_color, decision_text

log = logging.getLogger(__name__)

PAGE_SIZE = 200
CACHED_PAGES = 20
#: (key, title, width in pixels): what a reviewer decides by first -- decision and score, against
#: the threshold, and the label given -- then when and where; no horizontal scrolling to see them.
COLUMNS = (
    ("decision", "Decision", 70),
    ("score", "Score", 80),
    ("threshold", "Threshold", 80),
    ("defect_size", "Defect", 90),
    ("label", "Label", 120),
    ("time", "Time", 150),
    ("product_name", "Product", 110),
    ("model_version_id", "Model", 55),
    ("id", "Id", 70),
    ("station", "Station", 100),
    ("camera_id", "Camera", 120),
)


def column(key: str) -> int:
    """The table column showing ``key``."""
    return next(i for i, c in enumerate(COLUMNS) if c[0] == key)


LABEL_TEXT = {"none": "", "false_reject": "false reject", "confirmed_defect": "confirmed defect"}


def defect_size_text(row: InspectionRow) -> str:
    """The largest defect region the pixel rule measured: in mm² where the row's rule had a pixel
    size, else in pixels; empty where nothing was measured (no pixel rule, or an older row)."""
    area = getattr(row, "defect_area_px", None)
    if area is None:
        return ""
    mm2 = getattr(row, "defect_area_mm2", None)
    if mm2 is None:
        mm = getattr(row, "mm_per_px", None)
        mm2 = None if mm is None else float(area) * float(mm) ** 2
    return f"{mm2:.3g} mm²" if mm2 is not None else f"{area} px"


def recheck_queue(filters: InspectionFilter) -> InspectionFilter:
    """The recheck queue within ``filters`` (its product, station, time ...): RECHECK parts that no
    one has labelled yet, newest first. Labelling a part takes it out of the queue."""
    return replace(filters, decision="RECHECK", label="none", errors_only=False)


class InspectionTableModel(QAbstractTableModel):
    """Inspections matching a filter, newest first, fetched in pages of PAGE_SIZE."""

    def __init__(self, db: HistoryDB, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self.filters = InspectionFilter()
        self._count = 0
        self._pages: OrderedDict[int, list[InspectionRow]] = OrderedDict()
        self.pages_fetched = 0  # how many page queries ran (tests and diagnostics)

    def set_filters(self, filters: InspectionFilter) -> None:
        self.beginResetModel()
        self.filters = filters
        self._pages.clear()
        self._count = self.db.count_inspections(filters)
        self.endResetModel()

    def refresh(self) -> None:
        self.set_filters(self.filters)

    def row(self, index: int) -> InspectionRow | None:
        if not 0 <= index < self._count:
            return None
        page_no, within = divmod(index, PAGE_SIZE)
        page = self._pages.get(page_no)
        if page is None:
            page = self.db.query_inspections(self.filters, PAGE_SIZE, page_no * PAGE_SIZE)
            self.pages_fetched += 1
            self._pages[page_no] = page
            while len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        # New inspections arriving shift the offsets; a short last page is then possible.
        return page[within] if within < len(page) else None

    def update_row(self, index: int, row: InspectionRow) -> None:
        page_no, within = divmod(index, PAGE_SIZE)
        page = self._pages.get(page_no)
        if page is not None and within < len(page):
            page[within] = row
            self.dataChanged.emit(self.index(index, 0), self.index(index, len(COLUMNS) - 1))

    # -- QAbstractTableModel ------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][1]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.ToolTipRole):
            return None
        r = self.row(index.row())
        if r is None:
            return None
        key = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.ToolTipRole:  # the engine's message, on the whole row
            return f"engine error: {r.error}" if r.error is not None else None
        if role == Qt.ItemDataRole.ForegroundRole:
            if key == "decision":
                return QColor(FAIL_COLOR if r.error is not None else decision_color(r.decision))
            return None
        if key == "defect_size":
            return defect_size_text(r)
        value = getattr(r, key)
        if key == "time":
            return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if key == "score" and (r.decision == "NO_PART" or r.error is not None):
            return ""  # never scored: the part was not found, or the engine failed (the CSV's cell is empty too)
        if key in ("score", "threshold"):
            return f"{value:.4g}"
        if key == "label":
            return LABEL_TEXT.get(value, value)
        if key == "decision":
            # ERROR: a fail-safe FAIL, the engine could not score the part; NO PART: not found.
            return "ERROR" if r.error is not None else decision_text(r.decision)
        return "" if value is None else str(value)


# -- legacy heatmaps --------------------------------------------------------------------------------
# Before history revision 0003 the image store wrote anomaly maps as 8-bit JET colour pictures
# over 0 .. 2 x threshold, with no value range in the row. Only rows like that are decoded here;
# newer heatmaps are values, read with image_store.read_heatmap.
#: The scale those pictures were written over, in thresholds: fixed by what is on disk, whatever
#: scale the displays use now.
LEGACY_SCALE = 2.0


def _jet_keys() -> tuple[np.ndarray, np.ndarray]:
    """The 256 colours of OpenCV's JET map as sorted integer keys, and the level of each."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0].astype(np.int64)
    keys = (bgr[:, 0] << 16) | (bgr[:, 1] << 8) | bgr[:, 2]
    keys, first = np.unique(keys, return_index=True)
    return keys, first.astype(np.float32)


_JET_KEYS, _JET_LEVELS = _jet_keys()


def decode_legacy_heatmap(bgr: np.ndarray, threshold: float) -> np.ndarray | None:
    """LEGACY: the anomaly map a pre-0003 heatmap PNG shows, in score units, as float32 (h, w).

    Those were JET-coloured over ``0 .. 2 x threshold``, losslessly, so each colour gives its
    level back (to within one of 256 steps). None if the picture holds colours that are not
    JET's, or the threshold gives no scale.
    """
    vmax = LEGACY_SCALE * threshold if threshold > 0 else None
    b = bgr.astype(np.int64)
    keys = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    pos = np.clip(np.searchsorted(_JET_KEYS, keys), 0, len(_JET_KEYS) - 1)
    if not np.all(_JET_KEYS[pos] == keys) or vmax is None:
        return None
    return (_JET_LEVELS[pos] / 255.0 * vmax).astype(np.float32)


def _read_legacy_heatmap(path: str, threshold: float) -> np.ndarray | None:
    """A pre-0003 heatmap: the decoded map, or the (h, w, 3) RGB picture if it cannot be."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        log.warning("%s: not a readable heatmap", path)
        return None
    heat = decode_legacy_heatmap(bgr, threshold)
    return heat if heat is not None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_review_images(row: InspectionRow) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The stored frame ((H, W) grey or (H, W, 3) RGB) and heatmap of a row, each None where it
    was not kept or is gone. The heatmap is the (h, w) float32 map in score units
    (:func:`~inspector.history.image_store.read_heatmap` with the row's value range); only a
    legacy colour heatmap that cannot be decoded comes as the (h, w, 3) RGB picture stored."""
    image = heat = None
    if row.image_exists:
        try:
            image = read_stored_image(row.image_path)
        except InspectorError as exc:
            log.warning("%s", exc)
    if row.heatmap_exists:
        if row.heatmap_low is None or row.heatmap_high is None:
            heat = _read_legacy_heatmap(row.heatmap_path, row.threshold)
        else:
            try:
                heat = read_heatmap(row.heatmap_path, row.heatmap_low, row.heatmap_high)
            except InspectorError as exc:
                log.warning("%s", exc)
    return image, heat


def missing_image_note(row: InspectionRow, here: str) -> str:
    """Why the review shows no image for ``row``, seen from station ``here`` (the history's own):
    a row of another station, read from the plant database, names a file on that station's disk,
    which this computer reaches only if it is shared here under the same path."""
    if row.image_path is not None and row.station and row.station != here:
        return f" (image not reachable from here: it is on station {row.station} at {row.image_path})"
    if row.image_path is not None:  # kept, and its file gone since: the quota deletes the oldest first
        return f" (image removed since it was kept: the image quota deletes the oldest images first; it was {row.image_path})"
    if row.decision == "NO_PART":  # the image store keeps these at the pass sample rate
        return " (image not kept: NO PART frames are sampled as passes are)"
    if row.decision == "PASS":
        return " (image not kept: passes are sampled)"
    # FAIL and RECHECK frames are always kept, unless the disk had no room or no frame was scored
    return (" (image not kept: the disk had no room for it (images dropped)"
            + (", or the frame was not inspected" if row.error is not None else "") + ")")


class ReviewModel(QObject):
    """What the quality engineer does on the review page; every write is rights-checked and audited.

    Signals: ``message(text, is_error)``, ``labels_changed()``.
    """

    message = pyqtSignal(str, bool)
    labels_changed = pyqtSignal()

    def __init__(self, db: HistoryDB, session: Session, teach_workdir: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self.session = session
        self.teach_workdir = teach_workdir
        self.table = InspectionTableModel(db, self)

    def stations(self) -> list[str]:
        """The stations with inspections in this history, for the filter."""
        return self.db.stations()

    def products(self) -> list[tuple[str, int]]:
        """(name, id) of every product, by name, for the filter."""
        return self.db.products()

    def heatmap_levels(self, row: InspectionRow) -> HeatmapLevels:
        """How to draw the row's map: with the rule it was decided with, so the contour is the
        one the operator saw. A row stored before the history kept the rule is drawn with its
        model version's calibration of the same threshold, or without contour; the note says so."""
        return decided_levels(row, self.db.decided_rule(row))

    def label(self, indexes: list[int], label: str) -> int:
        """Sets the review label of the rows at these table indexes (a station action: one right
        checked, each row audited by the database)."""
        rows = [(i, row) for i in indexes if (row := self.table.row(i)) is not None]
        actor = actions.label_inspections(self.db, self.session.caller(), [row.id for _, row in rows], label)
        for i, row in rows:
            self.table.update_row(i, replace(row, label=label, labelled_by=actor.user, labelled_at=datetime.now(timezone.utc)))
        self.labels_changed.emit()
        self.message.emit(f"{len(rows)} inspection(s) labelled {LABEL_TEXT.get(label) or 'unlabelled'}", False)
        return len(rows)

    def copy_false_rejects_to_teach(self, product: str) -> tuple[int, int]:
        """Adds the stored images of inspections labelled false reject (within the current filter)
        to the product's teach samples, through the quality gates; returns (accepted, refused)."""
        accepted, refused, no_part = actions.copy_false_rejects_to_teach(self.db, self.session.caller(), product,
                                                                         self.table.filters, self.teach_workdir)
        self.message.emit(f"{accepted} false reject(s) added to the teach samples of {product!r}"
                          + (f", {refused} refused by the quality gates" if refused else "")
                          + (f", {no_part} NO PART frame(s) left out: the part was not found in them" if no_part else ""),
                          False)
        return accepted, refused

    def export(self, folder: Path, with_images: bool = True) -> tuple[Path, int, int]:
        """Writes ``inspections.csv`` for the current filter and, with ``with_images``, the stored
        images into ``folder/images/``; returns (csv path, rows, image files copied). The
        station's one export action: a quality engineer's right, audited as ``export``.

        A folder that holds an earlier export (its ``inspections.csv``, or files in ``images/``)
        is refused: the new CSV would replace the earlier one, and its images would lie among
        images of rows it does not list."""
        folder = Path(folder)
        earlier = [p.name for p in (folder / "inspections.csv", folder / "images")
                   if p.is_file() or (p.is_dir() and any(p.iterdir()))]
        if earlier:
            raise InspectorError(f"{folder} already holds an export ({' and '.join(earlier)}): choose an empty "
                                 "folder, so that the earlier one is kept and the images are those of this CSV")
        folder.mkdir(parents=True, exist_ok=True)
        done = export_inspections(self.db, self.session.caller(), folder / "inspections.csv", self.table.filters,
                                  images_dir=folder / "images" if with_images else None)
        self.message.emit(f"{done.rows} inspections exported to {done.csv_path}"
                          + (f" with {done.images} image files" if with_images else ""), False)
        return done.csv_path, done.rows, done.images

    def yield_series(self, bucket: timedelta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bucket start as epoch seconds, yield 0..1, parts) of the current filter."""
        buckets = self.db.yield_over_time(self.table.filters, bucket)
        t = np.array([b.start.timestamp() for b in buckets], dtype=np.float64)
        y = np.array([b.yield_fraction for b in buckets], dtype=np.float64)
        n = np.array([b.total for b in buckets], dtype=np.float64)
        return t, y, n
