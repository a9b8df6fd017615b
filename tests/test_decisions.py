"""The four decisions (issue 30, parts 2, 4 and 5): NO PART past the rule, the RECHECK band, sizes
in mm; through a real pipeline (folder camera, SQLite history), its rows, counts, alarm and CSV;
and revision 0010 on a history that already holds sealed rows."""

from __future__ import annotations

import csv
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers import FolderCamera
from inspector.engine import Prediction
from inspector.errors import InspectorError
from inspector.history import Alarm, HistoryDB, HistoryWriter, ImageStore, InspectionFilter
from inspector.inspection import (DECISION_LABELS, DECISIONS, Decision, DecisionRule, InspectionResult, area_px_from_mm2,
                                  decision_label)
from inspector.line import NO_PART_RUN, Counts, Pipeline
from inspector.line.rule import rule_from_metadata, rule_metadata
from pipeline_support import wait_until

OUTLINE = np.array([[2, 2], [29, 2], [29, 29], [2, 29]], np.float32)


class FramedStub:
    """A small real scorer with a framing's answers: a dark frame is NO PART (the part was not
    found; match quality 0.1), any other scores its brightest pixel / 255 on a map of its own
    brightness, found with quality 0.9 inside :data:`OUTLINE`."""

    def predict(self, image: np.ndarray) -> Prediction:
        gray = (image if image.ndim == 2 else image.mean(axis=2)).astype(np.float32) / 255.0
        if gray.mean() < 0.04:
            return Prediction(0.0, np.zeros_like(gray), no_part=True, match_quality=0.1, outline=None)
        return Prediction(float(gray.max()), gray, match_quality=0.9, outline=OUTLINE)


def _frames(folder: Path, levels: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, level in enumerate(levels):
        frame = np.full((32, 32), level, np.uint8)
        if level:
            frame[10:14, 10:15] = min(255, level + 10)  # a 20-pixel spot a little brighter
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    return folder


def _run(tmp_path: Path, levels: list[int], rule: DecisionRule, **kwargs) -> tuple[Pipeline, list, list[Alarm], HistoryDB]:
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    writer = HistoryWriter(db, ImageStore(tmp_path / "images", pass_sample_rate=0.0))
    camera = FolderCamera(_frames(tmp_path / "frames", levels), fps=0)
    pipeline = Pipeline(camera, FramedStub(), rule, writer, **kwargs)
    results: list[InspectionResult] = []
    decided: list[InspectionResult] = []
    alarms: list[Alarm] = []
    pipeline.subscribe(results.append)
    pipeline.on_decision(decided.append)
    pipeline.on_alarm(alarms.append)
    pipeline.start()
    wait_until(lambda: len(results) == len(levels), what="every frame recorded")
    assert pipeline.stop(30.0)
    assert [r.frame_id for r in decided] == [r.frame_id for r in results]
    return pipeline, results, alarms, db


# -- the rule -----------------------------------------------------------------------------------------


def test_the_decisions_and_what_people_read() -> None:
    assert DECISIONS == ("PASS", "FAIL", "RECHECK", "NO_PART")
    assert DECISION_LABELS["NO_PART"] == decision_label("NO_PART") == "NO PART"
    assert [decision_label(d) for d in ("PASS", "FAIL", "RECHECK")] == ["PASS", "FAIL", "RECHECK"]


def test_recheck_band_between_the_thresholds() -> None:
    flat = np.zeros((8, 8), np.float32)
    rule = DecisionRule(0.7, recheck_threshold=0.5)
    assert [rule.decide(s, flat).decision for s in (0.2, 0.5, 0.5001, 0.7, 0.7001)] == [
        "PASS", "PASS", "RECHECK", "RECHECK", "FAIL"]
    # The pixel rule still FAILs a part whose score lies in the band.
    spot = flat.copy()
    spot[2:5, 2:5] = 1.0
    with_pixels = DecisionRule(0.7, 0.5, 9, recheck_threshold=0.5)
    assert with_pixels.decide(0.6, spot) == Decision("FAIL", 9)
    assert with_pixels.decide(0.6, flat).decision == "RECHECK"
    # Without a band nothing is ever RECHECK.
    assert {DecisionRule(0.7).decide(s, flat).decision for s in np.linspace(0, 1, 101)} == {"PASS", "FAIL"}


@pytest.mark.parametrize("recheck", [0.7, 0.9, float("nan"), float("inf")])
def test_a_recheck_threshold_not_below_the_threshold_is_refused(recheck: float) -> None:
    with pytest.raises(InspectorError):
        DecisionRule(0.7, recheck_threshold=recheck)


def test_sizes_in_mm() -> None:
    assert area_px_from_mm2(1.0, 0.1) == 100  # 1 mm² of 0.1 mm pixels
    assert area_px_from_mm2(1.005, 0.1) == 101  # rounded up: never a smaller defect than asked
    assert area_px_from_mm2(1e-6, 0.1) == 1
    rule = DecisionRule(0.7, 0.5, 1, mm_per_px=0.05).with_min_area_mm2(0.25)
    assert rule.min_defect_area_px == 100 and rule.min_defect_area_mm2 == pytest.approx(0.25)
    assert rule.area_mm2(40) == pytest.approx(0.1) and DecisionRule(0.7).area_mm2(40) is None
    with pytest.raises(InspectorError):
        DecisionRule(0.7, 0.5, 1).with_min_area_mm2(0.25)  # no pixel size
    with pytest.raises(InspectorError):
        DecisionRule(0.7, mm_per_px=0.0)
    # Stored in the model file's metadata with the band; an old model's metadata has neither.
    full = DecisionRule(0.7, 0.5, 100, recheck_threshold=0.4, mm_per_px=0.05)
    assert rule_from_metadata(rule_metadata(full)) == full
    assert rule_from_metadata({"threshold": 0.7}) == DecisionRule(0.7)
    result = InspectionResult(time=datetime.now(timezone.utc), camera_id="c", frame_id=1, score=0.9, decision="FAIL",
                              threshold=0.7, rule=full, defect_area_px=40)
    assert result.defect_area_mm2 == pytest.approx(0.1)


def test_counts_leave_no_part_out_of_the_yield() -> None:
    counts = Counts()
    for decision in ("PASS", "PASS", "FAIL", "RECHECK", "NO_PART", "NO_PART"):
        counts.add(InspectionResult(time=datetime.now(timezone.utc), camera_id="c", frame_id=1, score=0.0,
                                    decision=decision, threshold=0.5))
    assert (counts.passed, counts.failed, counts.rechecked, counts.no_part, counts.errors) == (2, 1, 1, 2, 0)
    assert counts.total == 4 and counts.frames == 6 and counts.yield_fraction == 0.5
    assert counts.plus(counts).no_part == 4


# -- a real pipeline ----------------------------------------------------------------------------------


def test_no_part_and_recheck_through_a_real_pipeline(tmp_path: Path) -> None:
    """Seven dark frames among parts: NO PART each (score 0, no map, past the rule, not scored as
    a pass nor a defect), one alarm after five in a row; the band sends the middle part to
    RECHECK; rows, counts, match quality and outline as the framing said."""
    levels = [100, 0, 0, 0, 0, 0, 0, 140, 200, 0]
    rule = DecisionRule(0.7, recheck_threshold=0.5)
    pipeline, results, alarms, db = _run(tmp_path, levels, rule)
    decisions = [r.decision for r in results]
    assert decisions == ["PASS", *["NO_PART"] * 6, "RECHECK", "FAIL", "NO_PART"]
    no_part = results[1]
    assert (no_part.score, no_part.heatmap, no_part.error, no_part.match_quality, no_part.outline) == (
        0.0, None, None, 0.1, None)
    assert results[0].match_quality == pytest.approx(0.9) and np.array_equal(results[0].outline, OUTLINE)
    assert [a.kind for a in alarms].count(NO_PART_RUN) == 1  # once per run of them, not per frame
    m = pipeline.metrics()
    assert (m.passed, m.failed, m.rechecked, m.no_part, m.errors, m.recorded) == (1, 1, 1, 7, 0, 10)
    assert m.yield_fraction == pytest.approx(1 / 3)
    with sqlite3.connect(tmp_path / "history.db") as c:
        stored = c.execute("SELECT decision, score, heatmap_path, match_quality, recheck_threshold FROM inspections "
                           "ORDER BY id").fetchall()
    assert [row[0] for row in stored] == decisions
    assert stored[1] == ("NO_PART", 0.0, None, 0.1, 0.5)
    assert stored[7][0] == "RECHECK" and stored[7][2] is not None  # a recheck's images are kept for review
    rows = db.query_inspections(InspectionFilter(decision="NO_PART"))
    assert len(rows) == 7 and rows[0].decision_label == "NO PART"
    assert db.query_inspections(InspectionFilter(decision="RECHECK"))[0].rule == rule
    assert db.decision_counts() == {"PASS": 1, "FAIL": 1, "RECHECK": 1, "NO_PART": 7}
    [bucket] = db.yield_over_time(bucket=timedelta(days=1))
    assert (bucket.passed, bucket.failed, bucket.rechecked, bucket.no_part, bucket.total) == (1, 1, 1, 7, 3)
    chain, problems, verdicts = db.verify_history()
    assert chain.ok and not problems and verdicts.problem == "" and verdicts.rows == 10
    db.close()


def test_the_no_part_alarm_comes_after_n_in_a_row_or_never(tmp_path: Path) -> None:
    levels = [0, 0, 0, 100, 0, 0, 0]
    _, _, alarms, db = _run(tmp_path / "three", levels, DecisionRule(0.7), no_part_alarm_after=3)
    assert [a.kind for a in alarms].count(NO_PART_RUN) == 2  # two runs of three
    db.close()
    _, results, alarms, db = _run(tmp_path / "never", levels, DecisionRule(0.7), no_part_alarm_after=None)
    assert NO_PART_RUN not in [a.kind for a in alarms] and [r.decision for r in results].count("NO_PART") == 6
    db.close()
    with pytest.raises(InspectorError):
        Pipeline(FolderCamera(tmp_path, fps=0), FramedStub(), DecisionRule(0.7), None, no_part_alarm_after=0)  # type: ignore[arg-type]


def test_csv_export_carries_the_decisions_sizes_and_match_quality(tmp_path: Path) -> None:
    """A pixel rule with a pixel size: the defect's area in px and mm² in the CSV; NO PART rows
    carry their decision and match quality, no size and no score (never scored)."""
    rule = DecisionRule(0.99, pixel_threshold=0.5, min_defect_area_px=30, recheck_threshold=0.8, mm_per_px=0.1)
    _, results, _, db = _run(tmp_path, [100, 0, 160], rule)
    out = tmp_path / "export.csv"
    assert db.export_csv(out) == 3
    with out.open(encoding="utf-8", newline="") as f:
        rows = {row["frame_id"]: row for row in csv.DictReader(f)}
    header = list(next(iter(rows.values())))
    assert header[-8:] == ["defect_area_px", "defect_area_mm2", "match_quality", "recheck_threshold", "pixel_threshold",
                           "min_defect_area_px", "mm_per_px", "error"]
    # the rule each row was decided with: a RECHECK, or a pixel rule's FAIL under the image
    # threshold, explained from the CSV alone (it had neither the band nor the pixel rule)
    assert {(r["recheck_threshold"], r["pixel_threshold"], r["min_defect_area_px"], r["mm_per_px"]) for r in rows.values()} \
        == {("0.8", "0.5", "30", "0.1")}
    part, no_part, spot = rows["0"], rows["1"], rows["2"]
    assert (no_part["decision"], no_part["defect_area_px"], no_part["defect_area_mm2"], no_part["score"]) == (
        "NO_PART", "", "", "")
    assert float(no_part["match_quality"]) == pytest.approx(0.1)
    # The whole 32x32 frame of level 160 (0.63) is above the pixel threshold 0.5: one region of
    # 1024 px, which FAILs; level 100 (0.39, its spot 0.43) has none.
    assert spot["decision"] == "FAIL" and int(spot["defect_area_px"]) == 1024
    assert float(spot["defect_area_mm2"]) == pytest.approx(10.24)
    assert part["decision"] == "PASS" and int(part["defect_area_px"]) == 0 and float(part["defect_area_mm2"]) == 0.0
    [row] = db.query_inspections(InspectionFilter(decision="FAIL"))
    assert row.defect_area_px == 1024 and row.defect_area_mm2 == pytest.approx(10.24)
    db.close()


# -- revision 0010 ------------------------------------------------------------------------------------


def test_revision_0010_keeps_old_rows_and_their_seals(tmp_path: Path) -> None:
    """A history at 0009 with sealed PASS/FAIL rows upgrades in place: the rows stay as they were
    (no band, no size, no match quality recorded), their seals still fit, and new decisions go in."""
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade("0008")
    with db.engine.begin() as connection:  # the 0008 schema, so plain SQL rather than the models
        for i, decision in enumerate(("PASS", "FAIL")):
            connection.exec_driver_sql(
                "INSERT INTO inspections (station, uid, time, camera_id, frame_id, score, decision, threshold, label, "
                f"rule_recorded) VALUES ('s1', 'u{i}', '2026-03-01 12:00:0{i}.000000', 'cam0', {i}, 0.{i + 3}, "
                f"'{decision}', 0.35, 'none', 1)")
    db.upgrade("0009")  # seals them
    db.upgrade()
    old = sorted(db.query_inspections(), key=lambda r: r.frame_id)
    assert [(r.uid, r.decision, r.recheck_threshold, r.mm_per_px, r.defect_area_px, r.match_quality) for r in old] == [
        ("u0", "PASS", None, None, None, None), ("u1", "FAIL", None, None, None, None)]
    assert old[1].rule == DecisionRule(0.35)
    now = datetime.now(timezone.utc)
    db.write_inspections([
        InspectionResult(time=now, camera_id="cam0", frame_id=5, score=0.0, decision="NO_PART", threshold=0.35,
                         rule=DecisionRule(0.35, recheck_threshold=0.2), match_quality=0.05),
        InspectionResult(time=now, camera_id="cam0", frame_id=6, score=0.3, decision="RECHECK", threshold=0.35,
                         rule=DecisionRule(0.35, recheck_threshold=0.2)),
    ])
    assert db.decision_counts() == {"PASS": 1, "FAIL": 1, "RECHECK": 1, "NO_PART": 1}
    chain, problems, verdicts = db.verify_history()
    assert chain.ok and not problems and verdicts.problem == "" and verdicts.rows == 4
    with db.engine.begin() as connection:  # an edit of a later column is an edited verdict too
        connection.exec_driver_sql("UPDATE inspections SET match_quality = 0.9 WHERE frame_id = 5")
    assert "changed" in db.verify_history()[2].problem
    db.close()


def test_a_journal_line_keeps_the_new_fields_and_an_old_line_still_reads() -> None:
    from inspector.history.records import from_json, to_json

    rule = DecisionRule(0.7, 0.5, 20, recheck_threshold=0.4, mm_per_px=0.1)
    record = InspectionResult(time=datetime.now(timezone.utc), camera_id="c", frame_id=3, score=0.6, decision="RECHECK",
                              threshold=0.7, rule=rule, defect_area_px=12, match_quality=0.8, outline=OUTLINE)
    back = from_json(to_json(record))
    assert (back.rule, back.defect_area_px, back.match_quality, back.decision) == (rule, 12, 0.8, "RECHECK")
    assert back.outline is None  # drawn live, never stored
    old = {k: v for k, v in to_json(record).items()
           if k not in ("recheck_threshold", "mm_per_px", "defect_area_px", "match_quality")}
    old["decision"] = "FAIL"
    back = from_json(old)
    assert back.rule == DecisionRule(0.7, 0.5, 20) and back.defect_area_px is None and back.match_quality is None


def test_the_run_summary_names_rechecks_and_no_part_frames() -> None:
    from dataclasses import replace

    from cli.line_commands import summary_line
    from inspector.history import WriterStats
    from inspector.line import PipelineMetrics

    nan = float("nan")
    m = PipelineMetrics("triggered", False, 10, 10, 10, 5, 1, 0, 0, 0, 0, 8, 0, 0.0, 1.0, nan, nan, nan, nan, 0, 0, 0, 0,
                        WriterStats(0, 0, 0, 0, 0), rechecked=2, no_part=2)
    line = summary_line(m)
    assert "pass 5, fail 1, recheck 2, errors 0, no part 2" in line and m.yield_fraction == 5 / 8
    assert "recheck" not in summary_line(replace(m, rechecked=0, no_part=0))  # as before where there are none


def test_the_run_start_line_names_the_recheck_band() -> None:
    """inspector run said "threshold 0.7 from calibration 3" and then printed RECHECK verdicts with
    no word of the lower threshold they came from."""
    from types import SimpleNamespace

    from cli.line_commands import _start_line

    engine = SimpleNamespace(model_path=Path("tile.safetensors"), info={"device": "cpu"}, backend="eager")
    args = SimpleNamespace(camera=["folder:///frames"], mode="triggered", drift_window=0)
    station = SimpleNamespace(lines=SimpleNamespace(lines=[]))
    db = SimpleNamespace(url="sqlite:///h.db")
    for rule, said in ((DecisionRule(0.7, recheck_threshold=0.5), "threshold 0.7 from calibration 3; RECHECK above 0.5; "),
                       (DecisionRule(0.7), "threshold 0.7 from calibration 3; triggered mode")):
        recipe = SimpleNamespace(engine=engine, model_version_id=1, rule=rule, source="calibration 3")
        assert said in _start_line(args, station, recipe, db)
