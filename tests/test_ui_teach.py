"""Desktop: the Teach page end to end with a tiny training budget.

Capture a good sample from the live line, import more, remove one, cancel a training, train two
iterations for real (progress and ETA shown), look at the calibration, drag the threshold and
apply it, activate the new version on the running line, compare in shadow mode, roll back --
each step through the page's buttons where there is one, each audited.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from inspector.roles import AccessDenied  # noqa: E402
from ui_support import audit_actions, make_db, make_line, register_model, resized_copies, sign_in  # noqa: E402


@pytest.fixture(scope="module")
def engine(tiny_model):
    from inspector.engine import Engine

    return Engine(tiny_model, device="cpu", backend="eager")


def test_teach_flow(qtbot, tmp_path, tiny_model, engine, shared_data, tile_train_paths, natural_dir):
    from PyQt6.QtCore import Qt

    from ui.session import Session
    from ui.teach_model import TeachModel
    from ui.teach_page import TeachPage

    db = make_db(tmp_path)
    product_id, v1 = register_model(db, tiny_model)
    frames = resized_copies(sorted((shared_data / "magnetic_tile" / "test" / "good").glob("*.jpg"))[:3], tmp_path / "frames")
    samples = resized_copies(tile_train_paths, tmp_path / "samples")
    line = make_line(db, engine, frames, 1.0, tmp_path / "images", product_id, v1)
    session = Session(db)
    teach = TeachModel(db, line, session, workdir=tmp_path / "teach", device="cpu", backend="eager",
                        penalty_dir=natural_dir)
    page = TeachPage(teach, line, session)
    qtbot.addWidget(page)
    page.show()
    messages: list[tuple[str, bool]] = []
    teach.message.connect(lambda text, error: messages.append((text, error)))

    assert line.start()
    qtbot.waitUntil(lambda: line.counters.total == 3 and len(line.trend) == 3, timeout=60_000)  # counted and shown

    # The operator may watch, not teach.
    assert not page.capture_button.isEnabled() and not page.train_button.isEnabled()
    with pytest.raises(AccessDenied):
        teach.capture_sample()

    sign_in(session, "tina")
    assert page.capture_button.isEnabled()
    page.capture_button.click()
    assert len(teach.sample_paths()) == 1, messages
    accepted, refused = teach.import_samples(samples)
    assert accepted == len(tile_train_paths) and refused == 0
    assert page.gallery.count() == 1 + len(tile_train_paths)
    # One sample too many: select it in the gallery and remove it.
    extra = resized_copies([sorted((shared_data / "magnetic_tile" / "test" / "good").glob("*.jpg"))[5]], tmp_path / "extra")
    teach.import_samples(extra)
    n = page.gallery.count()
    stem = next(extra.glob("*.png")).stem
    item = next(page.gallery.item(i) for i in range(n) if Path(page.gallery.item(i).data(Qt.ItemDataRole.UserRole)).stem.startswith(stem))
    item.setSelected(True)
    page.remove_button.click()
    assert page.gallery.count() == n - 1 == 1 + len(tile_train_paths)

    # Training runs off the GUI thread and can be cancelled.
    assert page.kind.currentData() == "staged"  # the technician's default
    page.kind.setCurrentIndex(page.kind.findData("efficientad"))
    page.iterations.setValue(1000)
    page.target_frr.setValue(25.0)  # 3 calibration images resolve 25 %, not less
    assert "not the active model's target of 10 %" in page.target_note.text()  # the page says so
    page.train_button.click()
    assert teach.state.running and not page.train_button.isEnabled() and page.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: teach.state.iteration >= 1, timeout=180_000)
    page.cancel_button.click()
    qtbot.waitUntil(lambda: not teach.state.running, timeout=60_000)
    assert "cancelled" in teach.state.message
    assert teach.versions()[0].id == v1  # nothing registered

    # A real training of two iterations: progress, ETA, a calibrated candidate version.
    states = []
    teach.training_changed.connect(states.append)
    page.iterations.setValue(2)
    page.train_button.click()
    qtbot.waitUntil(lambda: not teach.state.running, timeout=300_000)
    assert any(s.iteration == 2 and s.total == 2 for s in states), [s.message for s in states]
    assert any(math.isfinite(s.eta_s) for s in states if s.running and s.iteration)
    assert "trained and calibrated" in teach.state.message, teach.state.message
    v2 = teach.versions()[0].id
    assert v2 != v1 and page.selected_version() == v2

    # The calibration view: the held-out scores, the threshold line and its expected FRR.
    cal = page.calibration
    assert cal is not None and cal.good_scores.size == 3
    above_all = float(cal.good_scores.max()) * 1.5
    page.calib_plot.line.setValue(above_all)
    assert "0 of 3 good" in page.frr_label.text() and "25 %" in page.frr_label.text()
    page.apply_threshold_button.click()
    assert db.latest_calibration(v2).image_threshold == pytest.approx(above_all)

    # Activate on the running line (the model loads off the GUI thread), compare, roll back.
    page.activate_button.click()
    qtbot.waitUntil(lambda: line.recipe.model_version_id == v2, timeout=120_000)
    assert db.product_by_name("tile").active_model_version_id == v2
    assert line.recipe.rule.threshold == pytest.approx(above_all)
    reports = []
    teach.shadow_changed.connect(reports.append)
    page.select_version(v1)
    page.shadow_button.click()
    qtbot.waitUntil(lambda: bool(reports), timeout=120_000)
    assert reports[0].n == 3  # the three parts the line stored
    page.rollback_button.click()
    qtbot.waitUntil(lambda: line.recipe.model_version_id == v1, timeout=120_000)
    assert db.product_by_name("tile").active_model_version_id == v1

    # The staged teach: the instant model runs the line within about a minute, EfficientAD trains
    # after it and takes over only when the handover check finds it at least as good.
    running = []
    line.status_changed.connect(lambda: running.append(line.recipe.model_version_id))
    page.kind.setCurrentIndex(page.kind.findData("staged"))
    page.target_frr.setValue(25.0)
    page.train_button.click()
    qtbot.waitUntil(lambda: not teach.state.running, timeout=300_000)
    kinds = {v.id: v.metrics.get("kind") for v in teach.versions()}
    assert "instant" in kinds.values(), (teach.state.message, messages[-3:])
    instant = max(i for i, k in kinds.items() if k == "instant")
    trained = max(i for i, k in kinds.items() if k == "efficientad")
    assert instant in running  # the line ran the instant model while EfficientAD trained
    assert ("stays active" in teach.state.message) != ("is active" in teach.state.message), teach.state.message
    assert line.recipe.model_version_id == (instant if "stays active" in teach.state.message else trained)
    assert "handover_check" in audit_actions(db)
    line.stop()

    session.sign_out()
    with pytest.raises(AccessDenied):
        teach.set_threshold(v2, 0.5)
    actions = audit_actions(db)
    for expected in ("add_sample", "import_samples", "remove_samples", "train_started", "calibrate", "set_threshold",
                     "set_active_model", "rollback", "set_threshold_denied"):
        assert expected in actions, expected
    assert not [text for text, error in messages if error and "cancelled" not in text]


def test_the_target_frr_starts_at_the_active_models_and_says_when_it_differs(qtbot, tmp_path):
    from types import SimpleNamespace

    from ui.session import Session
    from ui.teach_model import TeachModel
    from ui.teach_page import TeachPage
    from ui_support import loaded_recipe

    db = make_db(tmp_path)
    model_file = tmp_path / "m.safetensors"
    model_file.write_bytes(b"stand-in")
    product_id, v1 = register_model(db, model_file)  # calibrated for a 10 % target
    line = make_line(db, SimpleNamespace(model_path=model_file), tmp_path, 1.0, tmp_path / "images", product_id, v1)
    teach = TeachModel(db, line, Session(db), workdir=tmp_path / "teach")
    page = TeachPage(teach, line, Session(db))
    qtbot.addWidget(page)
    assert page.target_frr.value() == pytest.approx(10.0) and "as the active model" in page.target_note.text()
    page.target_frr.setValue(1.0)
    assert "not the active model's target of 10 %" in page.target_note.text()
    assert "reject fewer good parts" in page.target_note.text()

    # A product whose model has no calibration: the default target, and the page says why.
    other_file = tmp_path / "o.safetensors"
    other_file.write_bytes(b"other")
    other_id = db.add_product("bare")
    bare = db.add_model_version(other_id, other_file)
    page.target_frr.setValue(10.0)  # untouched since the default
    line.set_recipe(loaded_recipe(SimpleNamespace(model_path=other_file), 1.0, other_id, bare, product="bare"))
    assert page.target_frr.value() == pytest.approx(1.0) and "no calibration" in page.target_note.text()
