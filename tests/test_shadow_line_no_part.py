"""The line's shadow model (``Pipeline(shadow=...)``, ``set_shadow``) on framed frames: a
candidate that does not find the part in a frame (another region, another reference) never
scored it, so the frame has no shadow score. It had 0.0, the score of a perfect part, as the CSV
and MQTT once had for the line's own NO PART frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from drivers import FolderCamera
from inspector.engine import Prediction
from inspector.history import HistoryDB, HistoryWriter, ImageStore
from inspector.inspection import DecisionRule, InspectionResult
from inspector.line import Pipeline
from pipeline_support import wait_until


class Brightest:
    """Scores a frame by its brightest pixel; with ``finds_below``, a frame at least that bright
    has no part it recognises (NO PART)."""

    def __init__(self, finds_below: float | None = None) -> None:
        self.finds_below = finds_below

    def predict(self, image: np.ndarray) -> Prediction:
        gray = image.astype(np.float32) / 255.0
        if self.finds_below is not None and gray.mean() >= self.finds_below:
            return Prediction(0.0, np.zeros_like(gray), no_part=True)
        return Prediction(float(gray.max()), gray)


def test_a_shadow_model_that_finds_no_part_gives_the_frame_no_shadow_score(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    levels = [60, 200, 90]
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((32, 32), level, np.uint8))
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    writer = HistoryWriter(db, ImageStore(tmp_path / "images", pass_sample_rate=0.0))
    pipeline = Pipeline(FolderCamera(folder, fps=0), Brightest(), DecisionRule(0.9), writer, shadow=Brightest(finds_below=0.5))
    results: list[InspectionResult] = []
    pipeline.subscribe(results.append)
    pipeline.start()
    wait_until(lambda: len(results) == len(levels), what="every frame recorded")
    assert pipeline.stop(30.0)
    by_level = {round(r.score * 255): r for r in results}
    assert by_level[200].decision == "PASS" and by_level[200].shadow_score is None
    assert by_level[60].shadow_score == by_level[60].score and by_level[90].shadow_score == by_level[90].score
