"""An activation, a rollback and a handover say in the audit trail what of each frame the line
inspects from then on (issue 30): a rollback to a version taught on another region changes what
the line inspects, and the audit said only which version ran (``active_model_version_id``).
Stand-in model files, as tests/test_teach_actions.py."""

from __future__ import annotations

import numpy as np

from calibration.teach import TeachSession
from inspector.roles import Caller

TECH, TECH_PIN = "tina", "471108"


def test_activation_and_rollback_audit_the_framing_the_line_then_uses(tmp_path, db):
    db.add_user(TECH, "technician", TECH_PIN)
    teach = TeachSession(db, "tile", tmp_path / "work")
    framings = ["the whole frame", "region 512,384,256,256, part found first (NO PART under match 0.35)"]
    ids = []
    for i, framing in enumerate(framings + [None]):  # the last: a version registered before framings
        path = tmp_path / f"model-{i}.safetensors"
        path.write_bytes(f"stand-in {i}".encode())
        version = db.add_model_version(teach.product_id, path, metrics={} if framing is None else {"framing": framing})
        db.add_calibration(version, image_threshold=1.0, target_frr=0.1, expected_frr=0.1,
                           report={"good_scores": list(np.linspace(0.2, 1.2, 40))}, created_by="test")
        ids.append(version)
    tech = Caller(TECH, TECH_PIN)
    teach.activate(tech, ids[0])
    teach.activate(tech, ids[1])
    assert teach.rollback(tech) == ids[0]
    teach.activate(tech, ids[2])
    events = [e for e in reversed(db.audit_events(100)) if e.action in ("set_active_model", "rollback")]
    assert [(e.action, e.after["active_model_version_id"], e.after.get("framing")) for e in events] == [
        ("set_active_model", ids[0], framings[0]), ("set_active_model", ids[1], framings[1]),
        ("rollback", ids[0], framings[0]), ("set_active_model", ids[2], None)]
