"""An export with images (``inspector history export --images``, the desktop's and the browser's
"CSV + images") reads back: each exported heatmap is the image store's 16-bit map of the values,
whose 0 and 65535 stand for the row's ``heatmap_low`` and ``heatmap_high``. The CSV left those two
out, so the exported maps could not be read back as values (nor their scale known): a heatmap
file without its range is a grey picture of unknown units."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from inspector.history import HistoryDB, ImageStore, InspectionFilter, InspectionResult
from inspector.history.image_store import read_heatmap
from inspector.inspection import DecisionRule
from inspector.roles import Caller
from station.actions import export_inspections

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_exported_heatmaps_read_back_as_the_reviews_maps(tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    db.add_user("quinn", "quality", "567800", by="test")
    rng = np.random.default_rng(3)
    heat = rng.normal(0.1, 0.05, (48, 64)).astype(np.float32)
    heat[10:14, 20:26] = 0.62  # a defect
    rule = DecisionRule(0.5, 0.3, 4, recheck_threshold=0.4, mm_per_px=0.1)
    store = ImageStore(tmp_path / "images")
    image = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    db.write_inspections([store.save(InspectionResult(T0, "cam", 1, float(heat.max()), "FAIL", 0.5, rule=rule,
                                                      defect_area_px=24, image=image, heatmap=heat))])
    done = export_inspections(db, Caller("quinn", "567800"), tmp_path / "out.csv", InspectionFilter(),
                              images_dir=tmp_path / "exported")
    assert (done.rows, done.images) == (1, 2)
    with open(tmp_path / "out.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    [stored] = db.query_inspections()
    assert float(row["heatmap_low"]) == stored.heatmap_low and float(row["heatmap_high"]) == stored.heatmap_high
    exported = tmp_path / "exported" / f"{row['id']}_{Path(row['heatmap_path']).name}"
    values = read_heatmap(exported, float(row["heatmap_low"]), float(row["heatmap_high"]))
    assert np.abs(values - heat).max() <= (heat.max() - heat.min()) / 65535 + 1e-6
    assert float(values.max()) == float(row["score"]) == float(heat.max())
    db.close()
