"""The teach layer's audited actions and the one truth for the active model, without training:
stand-in model files, calibrations written directly.

Each action checks the caller's right once and writes one audit event; the active model is the
product's column alone, every change an activation row, and a rollback returns to what that row
recorded -- not to what the audit trail says.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import delete, inspect, text

from calibration.teach import TeachSession
from inspector.errors import DataError
from inspector.history import HistoryDB
from inspector.history.tables import AuditEvent
from inspector.roles import AccessDenied, Caller

TECH, TECH_PIN = "tina", "471108"
OPERATOR, OPERATOR_PIN = "otto", "620814"
QUALITY, QUALITY_PIN = "quinn", "246810"


@pytest.fixture
def teach(tmp_path, db):
    db.add_user(TECH, "technician", TECH_PIN)
    db.add_user(OPERATOR, "operator", OPERATOR_PIN)
    db.add_user(QUALITY, "quality", QUALITY_PIN)
    return TeachSession(db, "tile", tmp_path / "work")


def calibrated_versions(teach: TeachSession, tmp_path, n: int) -> list[int]:
    """``n`` registered stand-in model files, each with a calibration (good scores 0.2 .. 1.2)."""
    ids = []
    for i in range(n):
        path = tmp_path / f"model-{i}.safetensors"
        path.write_bytes(f"stand-in {i}".encode())
        version = teach.db.add_model_version(teach.product_id, path)
        teach.db.add_calibration(version, image_threshold=1.0, target_frr=0.1, expected_frr=0.1,
                                 report={"good_scores": list(np.linspace(0.2, 1.2, 40))}, created_by="test")
        ids.append(version)
    return ids


def actions(db: HistoryDB) -> list[tuple[str, str]]:
    """(user, action) of the audit events after the setting up (users, stand-in calibrations), oldest first."""
    return [(e.user, e.action) for e in reversed(db.audit_events(1000)) if e.action != "add_user" and e.user != "test"]


def test_rollback_returns_to_the_recorded_previous_version_without_the_audit_trail(teach, tmp_path):
    v1, v2, v3 = calibrated_versions(teach, tmp_path, 3)
    tech = Caller(TECH, TECH_PIN)
    for version in (v1, v2, v3, v2, v3):
        teach.activate(tech, version)
    # The audit trail is a record for people, not the state: without its activation events the
    # rollback still knows where to return.
    with teach.db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.action == "set_active_model"))
    assert teach.rollback(tech) == v2
    assert teach.recipe().model_version_id == v2
    assert teach.rollback(tech) == v3  # a second rollback undoes the first
    assert teach.db.last_activation(teach.product_id).previous_version_id == v2
    assert [a for a in actions(teach.db) if a[1] == "rollback"] == [(TECH, "rollback")] * 2


def test_a_rollback_needs_a_previous_version(teach, tmp_path):
    (v1,) = calibrated_versions(teach, tmp_path, 1)
    with pytest.raises(DataError, match="no active model to roll back from"):
        teach.rollback(Caller(TECH, TECH_PIN))
    teach.activate(Caller(TECH, TECH_PIN), v1)
    with pytest.raises(DataError, match="nothing to roll back to"):
        teach.rollback(Caller(TECH, TECH_PIN))


def test_the_active_model_is_the_products_column_alone(teach, tmp_path, db):
    v1, v2, v3 = calibrated_versions(teach, tmp_path, 3)
    assert "status" not in {c["name"] for c in inspect(db.engine).get_columns("model_versions")}
    teach.activate(Caller(TECH, TECH_PIN), v1)
    teach.activate(Caller(TECH, TECH_PIN), v2)
    assert {v.id: v.status for v in teach.versions()} == {v1: "retired", v2: "active", v3: "candidate"}
    # Whatever moves the product's column moves the status with it: there is nothing else to update.
    with db.session() as s:
        s.execute(text("UPDATE products SET active_model_version_id = :v WHERE id = :p"), {"v": v3, "p": teach.product_id})
    assert {v.id: v.status for v in teach.versions()} == {v1: "retired", v2: "retired", v3: "active"}
    assert db.model_version(v3).status == "active" and teach.status()["active_version"] == v3


def test_an_operator_cannot_remove_samples_and_the_refusal_is_one_event(teach, tmp_path):
    teach.samples_dir.mkdir(parents=True)
    sample = teach.samples_dir / "a.png"
    sample.write_bytes(b"png")
    with pytest.raises(AccessDenied, match="only technician may remove_samples"):
        teach.remove_samples(Caller(OPERATOR, OPERATOR_PIN), [sample])
    with pytest.raises(AccessDenied, match="sign in"):
        teach.remove_samples(Caller(OPERATOR), [sample])  # the desktop's operator holds no PIN
    assert sample.is_file()
    assert actions(teach.db) == [(OPERATOR, "remove_samples_denied")] * 2

    stranger = tmp_path / "not-a-sample.png"
    stranger.write_bytes(b"png")
    with pytest.raises(DataError, match="not one of the samples"):
        teach.remove_samples(Caller(TECH, TECH_PIN), [sample, stranger])
    assert sample.is_file() and stranger.is_file()  # nothing deleted when one path is wrong
    assert teach.remove_samples(Caller(TECH, TECH_PIN), [sample]) == ["a.png"] and not sample.exists()
    assert actions(teach.db)[-1] == (TECH, "remove_samples")


def test_a_threshold_by_hand_is_one_set_threshold_event(teach, tmp_path):
    (v1,) = calibrated_versions(teach, tmp_path, 1)
    before = len(teach.db.audit_events(1000))
    with pytest.raises(AccessDenied):
        teach.set_threshold(Caller(QUALITY, QUALITY_PIN), v1, 0.5)
    assert teach.db.latest_calibration(v1).image_threshold == 1.0
    est = teach.set_threshold(Caller(TECH, TECH_PIN), v1, 1.25)
    assert est.above == 0 and teach.db.latest_calibration(v1).image_threshold == 1.25
    events = teach.db.audit_events(1000)[: len(teach.db.audit_events(1000)) - before]
    assert [(e.user, e.action) for e in reversed(events)] == [(QUALITY, "set_threshold_denied"), (TECH, "set_threshold")]
    assert events[0].before == {"threshold": 1.0} and events[0].after["threshold"] == 1.25


def test_a_staged_teach_is_refused_before_any_work(teach):
    with pytest.raises(AccessDenied):
        teach.teach(Caller(OPERATOR, OPERATOR_PIN), kind="staged")
    assert actions(teach.db) == [(OPERATOR, "teach_train_denied")]


def test_an_old_database_gets_its_activations_from_the_audit_trail(tmp_path):
    """A database at revision 0006 -- status column, rollback target in the audit trail --
    upgrades with its activations recorded, and downgrades with its statuses back."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade("0006")
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"m")
    with db.engine.begin() as c:
        c.execute(text("INSERT INTO products (id, name, description, camera_settings, active_model_version_id, created) "
                       "VALUES (1, 'tile', '', '{}', NULL, '2026-01-01 00:00:00')"))
        for vid, status in ((1, "retired"), (2, "active"), (3, "candidate"), (4, "retired")):
            c.execute(text("INSERT INTO model_versions (id, product_id, sha256, path, created, metrics, status, note) "
                           "VALUES (:id, 1, 'x', :path, '2026-01-01 00:00:00', '{}', :status, '')"),
                      {"id": vid, "path": str(model), "status": status})
        c.execute(text("UPDATE products SET active_model_version_id = 2"))
        # Version 4 was made active by hand, without an audit event; 1 then 2 through the inspector.
        for i, (before, after) in enumerate(((None, 1), (1, 2)), start=1):
            c.execute(text("INSERT INTO audit_events (id, time, user, role, action, target, before, after) "
                           "VALUES (:id, :t, 'tina', 'technician', 'set_active_model', 'product:1', :b, :a)"),
                      {"id": i, "t": f"2026-01-0{i + 1} 00:00:00", "b": json.dumps({"active_model_version_id": before}),
                       "a": json.dumps({"active_model_version_id": after})})
    db.upgrade()
    last = db.last_activation(1)
    assert (last.model_version_id, last.previous_version_id, last.user) == (2, 1, "tina")
    assert {v: db.model_version(v).status for v in (1, 2, 3, 4)} == {1: "retired", 2: "active", 3: "candidate", 4: "retired"}
    db.downgrade("0006")
    with db.engine.connect() as c:
        assert dict(c.execute(text("SELECT id, status FROM model_versions")).all()) == {
            1: "retired", 2: "active", 3: "candidate", 4: "retired"}
    db.close()
