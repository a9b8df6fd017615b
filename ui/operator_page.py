"""The operator's page: live image with heatmap, the verdict, counters, trend, figures, alarms.

Beside other cameras, each camera has a tile of its own (:class:`~ui.widgets.CameraTile`: its
last part's image, heatmap and verdict, its counts and yield) in place of the one image and
banner, one heatmap bar below the tiles sets every tile's overlay, and the counters are the
station's, all cameras together.

A view of :class:`~ui.line.LineModel`: it subscribes to the model's signals (which arrive at most
at the display rate, with the newest result) and writes back only through the model's methods
(acknowledge alarms, reset counters).

A FAIL or RECHECK stays on screen at least :data:`HOLD_S` seconds: the newest result is drawn,
but a pass or an empty belt (NO PART) that follows a reject within that time waits for it to
end, so a reject among fast parts, or just before the belt runs empty, is not gone before an
operator can see it. A later reject replaces it at once. The counts and the trend hear every
result as it comes.
"""

from __future__ import annotations

import html
import math
import time

import numpy as np

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from inspector.framing.framed import region_shape_in_frame
from inspector.line import InspectionResult, PipelineMetrics
from inspector.overlay import heatmap_view
from ui.line import LineModel, link_state_html, link_title
from ui.session import Session
from ui.widgets import FAIL_COLOR, Banner, CameraTile, CountersPanel, HeatmapControls, HeatmapView, TrendPlot

CAMERA_STATE_COLORS = {"connected": "#2e7d32", "lost": FAIL_COLOR, "unavailable": FAIL_COLOR, "stalled": FAIL_COLOR}


#: Seconds a FAIL or RECHECK stays on screen before a pass or an empty belt replaces it.
HOLD_S = 2.0
#: The decisions an operator must see.
HELD = frozenset({"FAIL", "RECHECK"})


#: Characters of a camera's id shown in the line's figures; a longer one (a URI with a folder's
#: path) is cut in the middle, so it takes one line and never pushes the verdict out of sight.
CAMERA_ID_CHARS = 56


def short_camera_id(camera_id: str) -> str:
    """``camera_id`` as the page prints it: whole, or its start and end around an ellipsis."""
    if len(camera_id) <= CAMERA_ID_CHARS:
        return camera_id
    keep = CAMERA_ID_CHARS - 1
    return f"{camera_id[: keep // 2]}…{camera_id[-(keep - keep // 2):]}"


def camera_state_html(state: str) -> str:
    """A camera's state, coloured: green connected, red lost, unavailable or stalled."""
    return f"<b style='color:{CAMERA_STATE_COLORS.get(state, '#616161')}'>{state}</b>"


def region_outline(framing) -> np.ndarray | None:
    """The outline (N, 2) of a framing's region where the reference has it: its four corners
    clockwise from the top left, or a polygon region's own corners (None: no framing or no
    region: the whole frame is inspected)."""
    return region_shape_in_frame(framing)


def result_outline(result: InspectionResult, engine) -> np.ndarray | None:
    """What to outline on ``result``'s frame: the region where the part was found (the result's
    own ``outline``, its four corners; a polygon region's corners moved as they were), else the
    region of the engine's framing where the reference has it; none for a NO PART frame (the
    part is not there)."""
    return framed_outline(result, getattr(engine, "framing", None))


def framed_outline(result: InspectionResult, framing) -> np.ndarray | None:
    """:func:`result_outline` with the framing of the recipe that decided ``result``."""
    if result.decision == "NO_PART":
        return None  # where the search looked best is no part: nothing to outline
    return region_shape_in_frame(framing, getattr(result, "outline", None))


def figures_text(m: PipelineMetrics | None) -> str:
    """A line's figures (rate, latencies, queue, what was recorded and what was not) as rich text."""
    if m is None:
        return "rate – parts/s &nbsp; latency p50 – ms, p99 – ms"

    def ms(v: float) -> str:
        return "–" if math.isnan(v) else f"{v:.0f}"

    extra = []
    if m.dropped:
        extra.append(f"dropped {m.dropped}")
    if m.writer.images_dropped:
        extra.append(f"images not kept {m.writer.images_dropped} (disk)")
    if m.not_inspected:
        extra.append(f"<b style='color:{FAIL_COLOR}'>NOT INSPECTED {m.not_inspected}</b>")
    if m.unrecorded or m.writer.failed:
        extra.append(f"<b style='color:{FAIL_COLOR}'>UNRECORDED {m.unrecorded + m.writer.failed}</b>")
    if m.writer.journal_pending:
        extra.append(f"<b style='color:{FAIL_COLOR}'>{m.writer.journal_pending} held in journal (database down)</b>")
    return (
        f"rate <b>{m.rate_fps:.2f}</b> parts/s &nbsp; latency p50 <b>{ms(m.latency_p50_ms)}</b> ms, "
        f"p99 <b>{ms(m.latency_p99_ms)}</b> ms &nbsp; model p50 {ms(m.model_p50_ms)} ms<br>"
        f"queue {m.queue_depth}/{m.queue_size} &nbsp; recorded {m.recorded}" + (" &nbsp; " + ", ".join(extra) if extra else "")
    )


class OperatorPage(QWidget):
    def __init__(self, line: LineModel, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.line = line
        self.session = session
        self.shown: InspectionResult | None = None  # the result on screen now
        self._pending: InspectionResult | None = None  # the newest result, drawn when visible
        self._held_until: dict[str | None, float] = {}  # by camera (None: the one view): a reject's hold
        self._hold_timer = QTimer(self)  # draws what waited for a hold to end
        self._hold_timer.setSingleShot(True)
        self._hold_timer.timeout.connect(lambda: self._draw(self._pending))

        self.image_view = HeatmapView()
        self.banner = Banner()
        self.tiles: dict[str, CameraTile] = {}  # by camera id, in camera order; none for one camera
        # One heatmap bar for all tiles: a bar in each would crowd them, and the operator would
        # set the same thing once per camera. Below the tiles, so it shows only with them.
        self.tile_controls = HeatmapControls()
        self.tiles_box = QWidget()
        tiles_layout = QVBoxLayout(self.tiles_box)
        tiles_layout.setContentsMargins(0, 0, 0, 0)
        self.tiles_grid = QGridLayout()
        self.tiles_grid.setContentsMargins(0, 0, 0, 0)
        tiles_layout.addLayout(self.tiles_grid, 1)
        tiles_layout.addWidget(self.tile_controls)
        self.station_label = QLabel("<b>Station</b>: all cameras together")
        self.counters = CountersPanel()
        self.trend = TrendPlot()
        self.trend.setMinimumHeight(160)
        self.figures = QLabel()
        self.figures.setTextFormat(Qt.TextFormat.RichText)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.links = QLabel()  # the plant links' states; hidden when none is configured (the demo)
        self.links.setWordWrap(True)
        self.alarm_list = QListWidget()
        self.alarm_list.setMaximumHeight(140)
        self.ack_button = QPushButton("Acknowledge alarms")
        self.ack_button.clicked.connect(self._on_ack_clicked)
        self.reset_button = QPushButton("Reset counters")
        self.reset_button.clicked.connect(self.line.reset_counters)

        right = QVBoxLayout()
        right.addWidget(self.banner)
        right.addWidget(self.station_label)
        right.addWidget(self.counters)
        figures_box = QGroupBox("Line")
        fl = QVBoxLayout(figures_box)
        fl.addWidget(self.figures)
        fl.addWidget(self.status)
        fl.addWidget(self.links)
        right.addWidget(figures_box)
        alarms_box = QGroupBox("Alarms")
        al = QVBoxLayout(alarms_box)
        al.addWidget(self.alarm_list)
        buttons = QHBoxLayout()
        buttons.addWidget(self.ack_button)
        buttons.addWidget(self.reset_button)
        al.addLayout(buttons)
        right.addWidget(alarms_box)
        right.addStretch(1)

        grid = QGridLayout(self)
        grid.addWidget(self.image_view, 0, 0)
        grid.addWidget(self.tiles_box, 0, 0)  # shown instead of the image beside other cameras
        grid.addLayout(right, 0, 1)
        grid.addWidget(self.trend, 1, 0, 1, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 1)

        line.result_changed.connect(self._on_result_changed)
        line.counters_changed.connect(self._on_counters_changed)
        line.trend_changed.connect(self._on_trend_changed)
        line.alarms_changed.connect(self._on_alarms_changed)
        line.metrics_changed.connect(self._on_metrics_changed)
        line.status_changed.connect(self._on_status_changed)
        line.links_changed.connect(self._on_links_changed)
        session.user_changed.connect(self._on_user_changed)
        self._on_status_changed()
        self._on_links_changed()
        self._on_metrics_changed(line.last_metrics)
        self._on_alarms_changed()
        self._on_user_changed(session.user, session.role)

    # -- handlers ------------------------------------------------------------------------------

    def _on_result_changed(self, result: InspectionResult | None) -> None:
        self._pending = result
        if self.isVisible():  # a hidden page draws when it is shown again
            self._draw(result)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().showEvent(event)
        if self._pending is not self.shown or self.tiles:  # a tile draws only what changed
            self._draw(self._pending)

    def _draw(self, result: InspectionResult | None) -> None:
        if self.tiles:  # each tile its camera's newest; only those that changed are drawn again
            self.shown = result
            for camera_id, tile in self.tiles.items():
                latest = self.line.views[camera_id].latest
                if latest is not tile.shown and not self._waits(camera_id, latest, tile.shown):
                    tile.shown = latest
                    self._show(tile.image_view, tile.banner, latest)
            return
        if self._waits(None, result, self.shown):
            return
        self.shown = result
        self._show(self.image_view, self.banner, result)

    def _waits(self, key: str | None, result: InspectionResult | None, shown: InspectionResult | None) -> bool:
        """Whether ``result`` waits for the reject on screen (``shown``) to have been seen (the hold
        timer draws it then); a new reject starts a hold of its own."""
        now = time.monotonic()
        if result is None or result is shown:
            return False
        if result.decision in HELD:
            self._held_until[key] = now + HOLD_S
            return False
        left = self._held_until.get(key, 0.0) - now
        if left > 0:
            if not self._hold_timer.isActive() or self._hold_timer.remainingTime() > left * 1000:
                self._hold_timer.start(max(1, math.ceil(left * 1000)))
            return True
        return False

    def _show(self, view: HeatmapView, banner: Banner, result: InspectionResult | None) -> None:
        if result is None:
            banner.show_verdict(None)
            return
        # The result's own rule, not the line's: a frame decided before a threshold change is
        # drawn as it was decided, like its banner and its point on the trend.
        view.show_frame(result.image, result.anomaly_map, heatmap_view(result))
        # Its own recipe's region too: a part decided just before a recipe change keeps its polygon.
        view.show_outline(framed_outline(result, self.line.framing_of(result)))
        rule = result.rule
        banner.show_verdict(result.decision, result.score, result.threshold, result.error,
                            recheck_threshold=getattr(rule, "recheck_threshold", None),
                            match_quality=getattr(result, "match_quality", None))

    def banner_of(self, result: InspectionResult) -> Banner:
        """The banner that shows ``result``'s verdict: its camera's tile's beside other cameras."""
        tile = self.tiles.get(result.camera_id)
        return tile.banner if tile is not None else self.banner

    def _sync_tiles(self) -> None:
        """A tile per camera when there are several (the cameras may have changed in the
        settings); the one image and banner for one."""
        ids = list(self.line.views) if len(self.line.views) > 1 else []
        if ids != list(self.tiles):
            for tile in self.tiles.values():
                self.tiles_grid.removeWidget(tile)
                tile.deleteLater()
            columns = math.ceil(math.sqrt(len(ids)))
            self.tiles = {camera_id: CameraTile(camera_id, controls=self.tile_controls) for camera_id in ids}
            for i, tile in enumerate(self.tiles.values()):
                self.tiles_grid.addWidget(tile, i // columns, i % columns)
            self.shown = None  # draw everything again
        several = bool(self.tiles)
        self.image_view.setVisible(not several)
        self.banner.setVisible(not several)
        self.tiles_box.setVisible(several)
        self.station_label.setVisible(several)

    def _on_counters_changed(self) -> None:
        # Fail counts an engine error too (it left the line as NG); NO PART is no part inspected.
        self.counters.show_counters(self.line.counters)
        for camera_id, tile in self.tiles.items():
            tile.counters.show_counters(self.line.views[camera_id].counters)

    def _on_trend_changed(self) -> None:
        points = list(self.line.trend)
        self.trend.show_trend([p.score for p in points], [p.decision for p in points], [p.threshold for p in points])

    def _on_metrics_changed(self, m: PipelineMetrics | None) -> None:
        if self.tiles:
            self.figures.setText("<br>".join(f"<b>{html.escape(camera_id)}</b>: {figures_text(view.metrics)}"
                                             for camera_id, view in self.line.views.items()))
        else:
            self.figures.setText(figures_text(m))

    def _on_status_changed(self) -> None:
        self._sync_tiles()
        line = self.line
        model = line.recipe
        drift = line.drift_status
        drift_text = "" if drift is None else f"<br>drift: {drift.status}"
        # Which backend runs and why (the engine's choice and its accuracy gate), in one line.
        reason = getattr(model.engine, "backend_reason", "")
        engine_text = f"<br>engine: {html.escape(reason)}" if reason else ""
        cameras = "<br>".join(f"camera {camera_state_html(view.state)}: {html.escape(short_camera_id(camera_id))}"
                              for camera_id, view in line.views.items())
        self.status.setText(
            f"{cameras}<br>"
            f"product <b>{model.product}</b>, model {model.model_path.name}"
            f" (version {model.model_version_id if model.model_version_id is not None else '–'}), "
            f"threshold <b>{model.rule.threshold:.4g}</b>{drift_text}{engine_text}"
        )
        self.status.setToolTip("\n".join(line.views))  # the cameras' whole ids
        for camera_id, tile in self.tiles.items():
            view = line.views[camera_id]
            tile_drift = "" if view.drift is None else f" &nbsp; drift: {view.drift.status}"
            tile.title.setText(f"<b>{html.escape(camera_id)}</b> &nbsp; {camera_state_html(view.state)}{tile_drift}")
        self._on_counters_changed()
        self._on_metrics_changed(line.last_metrics)
        if self.isVisible() and self.tiles:
            self._draw(self.line.latest)
        self._on_trend_changed()

    def _on_links_changed(self) -> None:
        states = self.line.link_states
        self.links.setVisible(bool(states))
        self.links.setText(" &nbsp; ".join(link_state_html(link_title(name), state) for name, state in states.items()))

    def _on_alarms_changed(self) -> None:
        self.alarm_list.blockSignals(True)
        self.alarm_list.clear()
        for a in self.line.alarms:
            item = QListWidgetItem(f"{a.time.astimezone():%H:%M:%S}  {a.kind}: {a.message}")
            if not a.acknowledged:
                item.setForeground(Qt.GlobalColor.red)
            self.alarm_list.addItem(item)
        self.alarm_list.blockSignals(False)
        n = len(self.line.unacknowledged)
        self.ack_button.setText(f"Acknowledge alarms ({n})" if n else "Acknowledge alarms")

    def _on_user_changed(self, user: str, role: str) -> None:
        self.ack_button.setEnabled(self.session.can("acknowledge_alarms"))

    def _on_ack_clicked(self) -> None:
        self.line.acknowledge_alarms(self.session.user, self.session.role)
