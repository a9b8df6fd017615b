"""Review: "Copy false rejects to teach samples" hands a product's own false rejects to its teach
samples. It copied every false reject of the filter into the teach samples of the product on the
line: with the filter on product "tile" while the line ran "washer", tile frames became washer
samples ("2 false reject(s) added to the teach samples of 'washer'")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.errors import DataError  # noqa: E402
from inspector.history import ImageStore, InspectionFilter, InspectionResult  # noqa: E402
from ui_support import SIZE, make_db, sign_in  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def two_products(tmp_path, tile_train_paths):
    """Two products' RECHECK parts, each kept with its real frame and labelled false reject."""
    from inspector.image_io import read_image

    db = make_db(tmp_path)
    ids = {name: db.add_product(name) for name in ("tile", "washer")}
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0)
    records = []
    for i, path in enumerate(tile_train_paths[:4]):
        product = "tile" if i < 3 else "washer"
        image = cv2.resize(read_image(path), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        records.append(store.save(InspectionResult(T0 + timedelta(minutes=i), "cam", i, 0.3, "RECHECK", 0.4,
                                                   product_id=ids[product], image=image)))
    db.write_inspections(records)
    for row in db.query_inspections():
        db.label_inspection(row.id, "false_reject", "quinn")
    return db, ids


def samples(folder, product: str) -> list[str]:
    return sorted(p.name for p in (folder / product / "samples").glob("*.png"))


def test_the_filters_product_gets_its_own_false_rejects(qtbot, tmp_path, two_products) -> None:
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db, ids = two_products
    teach = tmp_path / "teach"
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session, teach_workdir=teach), session, product_provider=lambda: "washer")
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    page.product_combo.setCurrentIndex(page.product_combo.findData(ids["tile"]))
    page.apply_button.click()
    page.copy_button.click()  # the filter shows tile: tile's samples, though washer runs on the line
    tile_rows = db.query_inspections(InspectionFilter(product_id=ids["tile"]))
    assert samples(teach, "tile") == sorted(f"false-reject-{r.id}.png" for r in tile_rows)
    assert samples(teach, "washer") == []
    assert "teach samples of 'tile'" in page.message_label.text()

    page.product_combo.setCurrentIndex(0)  # any product: the line's, and only its own parts
    page.apply_button.click()
    page.copy_button.click()
    [washer_row] = db.query_inspections(InspectionFilter(product_id=ids["washer"]))
    assert samples(teach, "washer") == [f"false-reject-{washer_row.id}.png"]


def test_another_products_filter_is_refused(tmp_path, two_products) -> None:
    from inspector.roles import Caller
    from station.actions import copy_false_rejects_to_teach

    db, ids = two_products
    with pytest.raises(DataError, match="inspections of product 'tile': its false rejects are no teach samples of 'washer'"):
        copy_false_rejects_to_teach(db, Caller("quinn", "567800"), "washer", InspectionFilter(product_id=ids["tile"]),
                                    tmp_path / "teach")
    assert not (tmp_path / "teach" / "washer" / "samples").exists() or samples(tmp_path / "teach", "washer") == []


def test_a_no_part_frame_labelled_false_reject_is_no_teach_sample(qtbot, tmp_path, two_products) -> None:
    """A NO PART frame (a belt without the part, say) labelled false reject with the parts beside
    it became a teach sample of the product ('2 false reject(s) added'): it is left out, and said."""
    from ui.review_model import ReviewModel
    from ui.review_page import ReviewPage
    from ui.session import Session

    db, ids = two_products
    store = ImageStore(tmp_path / "images", pass_sample_rate=1.0)
    belt = np.random.default_rng(1).integers(90, 110, (SIZE, SIZE), dtype=np.uint8)
    [empty] = db.write_inspections([store.save(InspectionResult(T0 + timedelta(minutes=9), "cam", 9, 0.0, "NO_PART", 0.4,
                                                                product_id=ids["tile"], image=belt, match_quality=0.1))])
    db.label_inspection(empty.inspection_id, "false_reject", "quinn")
    teach = tmp_path / "teach"
    session = Session(db)
    page = ReviewPage(ReviewModel(db, session, teach_workdir=teach), session, product_provider=lambda: "tile")
    qtbot.addWidget(page)
    sign_in(session, "quinn")
    page.refresh()
    page.copy_button.click()
    assert f"false-reject-{empty.inspection_id}.png" not in samples(teach, "tile")
    assert len(samples(teach, "tile")) == 3
    assert "1 NO PART frame(s) left out: the part was not found in them" in page.message_label.text()
    [event] = [e for e in db.audit_events(100) if e.action == "copy_false_rejects_to_teach"]
    assert event.after["no_part_left_out"] == [empty.inspection_id]
    assert empty.inspection_id not in event.after["inspections"]
