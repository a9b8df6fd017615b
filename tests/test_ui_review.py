"""Desktop: the Review page -- filters, the selected part's pictures, labels, export, yield, and a
paged table that stays fast on 100,000 rows."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.roles import AccessDenied  # noqa: E402
from inspector.history import ImageStore, InspectionFilter, InspectionResult  # noqa: E402
from ui.review_model import column  # noqa: E402
from ui_support import audit_actions, make_db, register_model, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
N_PLAIN = 30


@pytest.fixture
def history(tmp_path, tiny_model, tile_train_paths):
    """A database with real inspections of two products: six with stored frames and real
    anomaly maps (scored by the engine), thirty recorded without images, over ten hours."""
    from inspector.engine import Engine
    from inspector.image_io import read_image

    db = make_db(tmp_path)
    tile_id, v1 = register_model(db, tiny_model, "tile")
    other_id = db.add_product("other")
    v2 = db.add_model_version(other_id, tiny_model)
    engine = Engine(tiny_model, device="cpu", backend="eager")
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0)
    items = []
    for i, path in enumerate(tile_train_paths[:6]):
        image = cv2.resize(read_image(path), (192, 192))
        pred = engine.predict(image)
        record = InspectionResult(T0 + timedelta(minutes=10 * i), "cam", i, pred.score, "FAIL", 1.0, v1, tile_id,
                                  image=image, heatmap=pred.anomaly_map)
        items.append(store.save(record))
    for j in range(N_PLAIN):
        decision = "FAIL" if j % 3 == 0 else "PASS"
        product, version = (tile_id, v1) if j % 2 == 0 else (other_id, v2)
        items.append(InspectionResult(T0 + timedelta(minutes=20 * j + 5), "cam", 100 + j, j / 10, decision, 1.0, version, product))
    db.write_inspections(items)
    return db, tile_id, other_id, v2


def test_review_filters_labels_export_and_yield(qtbot, tmp_path, history):
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db, tile_id, other_id, v2 = history
    session = Session(db)
    model = ReviewModel(db, session, teach_workdir=tmp_path / "teach")
    page = ReviewPage(model, session, product_provider=lambda: "tile")
    qtbot.addWidget(page)
    page.show()
    total = 6 + N_PLAIN
    assert model.table.rowCount() == total

    # Filters, each checked against what the rows hold.
    page.decision_combo.setCurrentText("FAIL")
    page.apply_button.click()
    assert model.table.rowCount() == 6 + len(range(0, N_PLAIN, 3))
    assert all(model.table.row(i).decision == "FAIL" for i in range(model.table.rowCount()))
    page.decision_combo.setCurrentText("any")
    page.use_score.setChecked(True)
    page.min_score.setValue(1.0)
    page.max_score.setValue(2.0)
    page.apply_button.click()
    assert model.table.rowCount() == len([j for j in range(N_PLAIN) if 1.0 <= j / 10 <= 2.0])
    page.use_score.setChecked(False)
    page.product_combo.setCurrentIndex(page.product_combo.findData(other_id))
    page.apply_button.click()
    assert model.table.rowCount() == N_PLAIN // 2
    page.product_combo.setCurrentIndex(0)
    page.version_spin.setValue(v2)
    page.apply_button.click()
    assert model.table.rowCount() == N_PLAIN // 2
    page.version_spin.setValue(0)
    page.use_time.setChecked(True)
    from PyQt6.QtCore import QDateTime

    page.start_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(T0.timestamp())))
    page.end_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int((T0 + timedelta(hours=1)).timestamp())))
    page.apply_button.click()
    in_hour = 6 + len([j for j in range(N_PLAIN) if 20 * j + 5 < 60])
    assert model.table.rowCount() == in_hour == db.count_inspections(InspectionFilter(start=T0, end=T0 + timedelta(hours=1)))
    page.use_time.setChecked(False)
    page.apply_button.click()
    assert model.table.rowCount() == total

    # The selected part's frame and stored heatmap.
    imaged = [i for i in range(total) if model.table.row(i).image_exists]
    assert len(imaged) == 6
    page.table.selectRow(imaged[0])
    # The stored map is read back as values (its maximum is the score), drawn like the live view.
    heat = page.image_view.heat_item.image
    row = model.table.row(imaged[0])
    assert page.image_view.image_item.image is not None and heat.ndim == 2 and heat.dtype == np.float32
    assert float(heat.max()) == pytest.approx(row.score, rel=1e-5, abs=1e-6)
    assert f"part {model.table.row(imaged[0]).id}" in page.detail_label.text()

    # The operator may not label; quality may, and every label is stored and audited.
    assert not page.false_reject_button.isEnabled()
    with pytest.raises(AccessDenied):
        model.label(imaged[:2], "false_reject")
    sign_in(session, "quinn")
    assert page.false_reject_button.isEnabled() and page.export_button.isEnabled()
    page.table.clearSelection()
    for i in imaged[:2]:
        page.table.selectionModel().select(model.table.index(i, 0), page.table.selectionModel().SelectionFlag.Select
                                           | page.table.selectionModel().SelectionFlag.Rows)
    page.false_reject_button.click()
    page.table.selectRow(imaged[2])
    page.defect_button.click()
    labelled = db.query_inspections(InspectionFilter(label="false_reject"))
    assert sorted(r.id for r in labelled) == sorted(model.table.row(i).id for i in imaged[:2])
    assert all(r.labelled_by == "quinn" for r in labelled)
    assert db.count_inspections(InspectionFilter(label="confirmed_defect")) == 1
    assert model.table.data(model.table.index(imaged[0], column("label"))) == "false reject"
    assert audit_actions(db).count("label") == 3

    # False rejects become teach samples (through the quality gates).
    page.copy_button.click()
    samples = sorted((tmp_path / "teach" / "tile" / "samples").glob("*.png"))
    assert len(samples) == 2

    # Export: CSV of the filtered rows and their stored images.
    page.decision_combo.setCurrentText("FAIL")
    page.apply_button.click()
    csv_path, n, copied = model.export(tmp_path / "export")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert n == len(rows) == model.table.rowCount()
    assert {r["decision"] for r in rows} == {"FAIL"}
    assert copied == 12 and len(list((tmp_path / "export" / "images").glob("*.png"))) == 12
    assert "export" in audit_actions(db)

    # Yield per hour over the filtered parts; every bucket of FAIL-only parts has yield 0.
    page.decision_combo.setCurrentText("any")
    page.apply_button.click()
    t, y = page.yield_curve.getData()
    _, _, parts = model.yield_series(timedelta(hours=1))
    assert len(t) == len(parts) and parts.sum() == total
    assert np.all((y >= 0) & (y <= 100))


def test_stored_frames_and_maps_read_back_as_recorded(tmp_path, tiny_model, tile_train_paths):
    """The review shows the frame in the camera's colours and the map as the engine made it."""
    from inspector.engine import Engine
    from inspector.image_io import read_image
    from ui.review_model import load_review_images

    image = cv2.resize(read_image(tile_train_paths[0]), (96, 64))
    image = np.dstack([image, image // 2, image // 3]) if image.ndim == 2 else image  # a colour frame
    pred = Engine(tiny_model, device="cpu", backend="eager").predict(image)
    db = make_db(tmp_path)
    store = ImageStore(tmp_path / "images")
    db.write_inspections([store.save(InspectionResult(T0, "cam", 1, pred.score, "FAIL", pred.score / 2, image=image,
                                                      heatmap=pred.anomaly_map))])
    [row] = db.query_inspections()
    frame, heat = load_review_images(row)
    assert np.array_equal(frame, image)  # RGB in, RGB out
    step = (row.heatmap_high - row.heatmap_low) / 65535
    assert heat.dtype == np.float32 and np.abs(heat - pred.anomaly_map).max() <= step / 2 + 1e-6


def test_legacy_jet_heatmaps_still_decode_to_map_values(tmp_path, tiny_model, tile_train_paths):
    """Rows from before the history stored map values (no range; a JET picture over 0 .. 2 x
    threshold) still show the map, to within one of the picture's 256 colour steps."""
    from inspector.engine import Engine
    from inspector.image_io import read_image
    from ui.review_model import decode_legacy_heatmap, load_review_images

    pred = Engine(tiny_model, device="cpu", backend="eager").predict(read_image(tile_train_paths[0]))
    threshold = pred.score / 2  # the top of the map is above it, the rest of it below
    # Written as the image store of the time did: scaled over 0 .. 2 x threshold, JET-coloured.
    levels = np.clip(pred.anomaly_map / (2 * threshold) * 255, 0, 255).astype(np.uint8)
    legacy = tmp_path / "000000_000000_cam_1_FAIL_heatmap.png"
    assert cv2.imwrite(str(legacy), cv2.applyColorMap(levels, cv2.COLORMAP_JET))
    db = make_db(tmp_path)
    db.write_inspections([InspectionResult(T0, "cam", 1, pred.score, "FAIL", threshold, heatmap_path=str(legacy))])
    [row] = db.query_inspections()
    assert row.heatmap_low is None and row.heatmap_high is None
    _, decoded = load_review_images(row)
    expected = np.clip(pred.anomaly_map, 0.0, 2 * threshold)
    assert decoded.ndim == 2 and np.abs(decoded - expected).max() <= 2 * threshold / 255 + 1e-6  # one colour step
    assert decode_legacy_heatmap(np.full((8, 8, 3), 200, np.uint8), threshold) is None  # grey: not JET's colours
    cv2.imwrite(str(legacy), np.full((8, 8, 3), 200, np.uint8))
    _, picture = load_review_images(row)  # not JET's colours: shown as the picture it is
    assert picture.shape == (8, 8, 3) and picture.dtype == np.uint8


def test_paged_table_reads_only_what_is_shown_of_100000_rows(qtbot, tmp_path):
    from PyQt6.QtWidgets import QTableView
    from sqlalchemy import insert

    from inspector.history.tables import Inspection
    from ui.review_model import PAGE_SIZE, InspectionTableModel

    db = make_db(tmp_path)
    n = 100_000
    rows = [{"uid": f"{i:032x}", "time": T0 + timedelta(seconds=i), "camera_id": "cam", "frame_id": i,
             "score": (i % 1000) / 1000, "decision": "FAIL" if i % 10 == 0 else "PASS", "threshold": 0.5, "label": "none"}
            for i in range(n)]
    with db.session() as s:
        s.execute(insert(Inspection), rows)

    model = InspectionTableModel(db)
    model.set_filters(InspectionFilter())
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(800, 600)
    view.show()
    qtbot.waitExposed(view)
    assert model.rowCount() == n
    view.scrollToBottom()
    qtbot.wait(50)
    # Newest first: the last row is the first inserted; only the pages on screen were read.
    assert model.data(model.index(n - 1, column("id"))) == str(db.query_inspections(InspectionFilter(), 1, n - 1)[0].id)
    assert model.pages_fetched <= 3
    before = model.pages_fetched
    model.set_filters(InspectionFilter(decision="FAIL"))
    qtbot.wait(50)
    assert model.rowCount() == n // 10
    assert model.data(model.index(n // 10 - 1, column("decision"))) == "FAIL"
    assert model.pages_fetched - before <= 3 and PAGE_SIZE * 3 < n // 10


def test_decision_and_score_come_first_and_show_at_the_default_window_size(qtbot, tmp_path):
    from PyQt6.QtWidgets import QLabel
    from sqlalchemy import insert

    from inspector.history.tables import Inspection
    from ui.main_window import MainWindow
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db = make_db(tmp_path)
    rows = [{"uid": f"{i:032x}", "time": T0 + timedelta(seconds=i), "camera_id": "basler://emulated?images=/a/long/path",
             "frame_id": i, "score": 0.1 * i, "decision": "FAIL" if i % 2 else "PASS", "threshold": 0.25, "label": "none"}
            for i in range(5)]
    with db.session() as s:
        s.execute(insert(Inspection), rows)
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session), session, product_provider=lambda: None)
    window = MainWindow(session, {"operator": QLabel("operator"), "review": page})
    qtbot.addWidget(window)
    window.resize(1400, 900)  # as the desktop opens
    sign_in(session, "quinn")
    window.show()
    window.show_page("review")
    qtbot.waitExposed(window)
    assert (column("decision"), column("score")) == (0, 1)
    table = page.table
    for key in ("decision", "score", "threshold", "label"):
        x = table.columnViewportPosition(column(key))
        assert 0 <= x and x + table.columnWidth(column(key)) <= table.viewport().width(), f"{key} is off screen"
    assert table.model().data(table.model().index(0, column("decision"))) == "PASS"  # the newest part
