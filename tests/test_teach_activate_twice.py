"""Activating the version that is already active (the technician's second `inspector teach
activate --version 3`, or Activate pressed again) changes nothing, and a rollback still returns to
the version before it. It recorded an activation of version 3 with version 3 before it, so every
rollback after that 'rolled back' to version 3 itself and version 2 could no longer be reached.
Stand-in model files, as tests/test_teach_actions.py."""

from __future__ import annotations

import numpy as np

from calibration.teach import TeachSession
from inspector.roles import Caller

TECH, TECH_PIN = "tina", "471108"


def two_versions(tmp_path, db) -> tuple[TeachSession, int, int]:
    """A technician, a product and two registered stand-in versions with a calibration each."""
    db.add_user(TECH, "technician", TECH_PIN)
    teach = TeachSession(db, "tile", tmp_path / "work")
    ids = []
    for i in range(2):
        path = tmp_path / f"model-{i}.safetensors"
        path.write_bytes(f"stand-in {i}".encode())
        version = db.add_model_version(teach.product_id, path)
        db.add_calibration(version, image_threshold=1.0, target_frr=0.1, expected_frr=0.1,
                           report={"good_scores": list(np.linspace(0.2, 1.2, 40))}, created_by="test")
        ids.append(version)
    return teach, ids[0], ids[1]


def test_activating_the_active_version_again_keeps_the_rollback(tmp_path, db):
    teach, v1, v2 = two_versions(tmp_path, db)
    tech = Caller(TECH, TECH_PIN)
    teach.activate(tech, v1)
    teach.activate(tech, v2)
    teach.activate(tech, v2)  # again: no change
    assert teach.recipe().model_version_id == v2
    assert teach.rollback(tech) == v1
    assert teach.recipe().model_version_id == v1
    assert teach.rollback(tech) == v2  # a second rollback undoes the first, as ever
    # Each activation asked for is audited, the repeated one as no change.
    events = [(e.before["active_model_version_id"], e.after["active_model_version_id"])
              for e in reversed(db.audit_events(100)) if e.action == "set_active_model"]
    assert events == [(None, v1), (v1, v2), (v2, v2)]


def test_a_database_with_such_an_activation_rolls_back_past_it(tmp_path, db):
    """A database an older release wrote (or upgraded from its audit trail) holds the repeated
    activation as a row with the version as its own previous one: the rollback passes over it."""
    from inspector.history.tables import Activation

    teach, v1, v2 = two_versions(tmp_path, db)
    tech = Caller(TECH, TECH_PIN)
    teach.activate(tech, v1)
    teach.activate(tech, v2)
    with db.session() as s:
        s.add(Activation(product_id=teach.product_id, model_version_id=v2, previous_version_id=v2, user=TECH,
                         role="technician"))
    assert teach.rollback(tech) == v1 and teach.recipe().model_version_id == v1
