"""``inspector run`` on line frames with a framed model (region, part found first), a recheck band
and a pixel size: every decision (PASS, RECHECK, FAIL, NO PART) as the history, the audit and the
export keep it.

The frames are the framing tests' synthetic line scene (tests/framing_support.py): a textured
part moved and turned on a belt whose look changes from frame to frame. The model is real: the
instant model taught on them with ``--region`` and ``--align`` (seconds on a CPU); its
calibration is stored in the history with thresholds set between the scores the model gives
these frames, so each decision is met.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.main import main
from framing_support import REGION, belt, frame_with_part, make_scene
from inspector.history import HistoryDB, file_sha256
from inspector.recipes import register_model

TECH, TECH_PIN = "tina", "471108"
QUALITY, QUALITY_PIN = "quinn", "582219"
FAST = ["--backend", "eager", "--device", "cpu"]
MM_PER_PX = 0.1
PRODUCT = "disc"


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def framed_model(scene, tmp_path_factory) -> Path:
    """The instant model taught on good line frames with the part's region, found first."""
    rng, reference, _ = scene
    root = tmp_path_factory.mktemp("teach")
    cv2.imwrite(str(root / "000.png"), reference)
    for i in range(1, 10):
        frame, _ = frame_with_part(rng, reference, float(rng.uniform(-8, 8)), float(rng.uniform(-120, 120)),
                                   float(rng.uniform(-90, 90)))
        cv2.imwrite(str(root / f"{i:03d}.png"), frame)
    model = root / "framed.safetensors"
    status, _, err = run_main(["train", str(root), "--out", str(model), "--kind", "instant", "--features", "pdn",
                               "--image-size", "128", "--region", ",".join(map(str, REGION)), "--align",
                               "--device", "cpu"])
    assert status == 0, err
    return model


@pytest.fixture(scope="module")
def line_frames(scene, tmp_path_factory) -> Path:
    """What the camera delivers, in name order: a good part, the part turned by 10 degrees, the
    belt without the part, a scratched part."""
    rng, reference, _ = scene
    rng = np.random.default_rng(99)
    folder = tmp_path_factory.mktemp("camera")
    good, _ = frame_with_part(rng, reference, 2.0, 30.0, -20.0)
    turned, _ = frame_with_part(rng, reference, 10.0, 60.0, -40.0)
    scratched, truth = frame_with_part(rng, reference, -5.0, -80.0, 50.0)
    x, y, _, _ = REGION
    ends = cv2.transform(np.array([[[x + 120, y + 100], [x + 260, y + 220]]], np.float32), truth)[0].astype(int)
    cv2.line(scratched, tuple(map(int, ends[0])), tuple(map(int, ends[1])), 255, 7)
    for name, frame in (("a_good", good), ("b_turned", turned), ("c_empty", belt(rng)), ("d_scratched", scratched)):
        cv2.imwrite(str(folder / f"{name}.png"), frame)
    return folder


@pytest.fixture(scope="module")
def scores(framed_model, line_frames) -> dict[str, float]:
    """The model's score of each camera frame (None: the part was not found)."""
    from inspector.engine import Engine

    engine = Engine(framed_model, device="cpu", backend="eager")
    found = {}
    for path in sorted(line_frames.glob("*.png")):
        prediction = engine.predict(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
        found[path.stem] = None if prediction.no_part else float(prediction.score)
    assert found["c_empty"] is None, found
    assert found["a_good"] < found["b_turned"] < found["d_scratched"], found
    return found


def make_station(folder: Path, framed_model: Path, scores: dict[str, float]) -> dict:
    """A history in ``folder`` with the staff and the framed model active for PRODUCT, calibrated
    so that the good part PASSes, the turned one is RECHECK and the scratched one FAILs; pixels
    0.1 mm, areas measured above the recheck threshold (never large enough to FAIL alone)."""
    db_path = folder / "history.db"
    db = HistoryDB(f"sqlite:///{db_path}")
    db.upgrade()
    db.add_user(TECH, "technician", TECH_PIN)
    db.add_user(QUALITY, "quality", QUALITY_PIN)
    product_id, version_id = register_model(db, framed_model, file_sha256(framed_model), PRODUCT)
    recheck = (scores["a_good"] + scores["b_turned"]) / 2
    threshold = (scores["b_turned"] + scores["d_scratched"]) / 2
    db.add_calibration(version_id, image_threshold=threshold, recheck_threshold=recheck, target_recheck_rate=0.03,
                       expected_recheck_rate=0.03, pixel_threshold=recheck, min_defect_area_px=10**7,
                       mm_per_px=MM_PER_PX, target_frr=0.01, expected_frr=0.01, created_by=TECH, role="technician")
    db.set_active_model(product_id, version_id, user=TECH, role="technician")
    db.close()
    return dict(db_path=db_path, url=f"sqlite:///{db_path}", version_id=version_id, threshold=threshold,
                recheck=recheck, images=folder / "images")


@pytest.fixture(autouse=True)
def pin(monkeypatch) -> None:
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)


@pytest.fixture
def station(tmp_path, framed_model, scores) -> dict:
    return make_station(tmp_path, framed_model, scores)


@pytest.fixture(scope="module")
def ran(tmp_path_factory, framed_model, scores, line_frames) -> dict:
    """One run over every camera frame into a station's history: (station, the run's output)."""
    station = make_station(tmp_path_factory.mktemp("ran"), framed_model, scores)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("INSPECTOR_PIN", TECH_PIN)
        out = run_line(station, line_frames)
    return dict(station, out=out)


def run_line(station: dict, line_frames: Path, *options: str) -> str:
    status, out, err = run_main(["run", "--camera", f"folder://{line_frames}?fps=0", "--product", PRODUCT,
                                 "--db", station["url"], "--image-dir", str(station["images"]), "--print-results",
                                 *FAST, *options])
    assert status == 0, err
    return out


def audit(db_path: Path, *actions: str) -> list:
    db = HistoryDB(f"sqlite:///{db_path}")
    try:
        return [e for e in reversed(db.audit_events(1000)) if e.action in actions]
    finally:
        db.close()


def rows(db_path: Path, columns: str, where: str = "1") -> list[tuple]:
    with sqlite3.connect(db_path) as connection:
        return connection.execute(f"SELECT {columns} FROM inspections WHERE {where} ORDER BY id").fetchall()


def test_each_decision_of_a_framed_line_lands_in_the_history(ran) -> None:
    assert "pass 1, fail 1, recheck 1, errors 0, no part 1" in ran["out"]
    printed = {line.split()[2]: line.split()[3] for line in ran["out"].splitlines() if line.startswith("result ")}
    assert printed["NO_PART"] == "-" and float(printed["RECHECK"]) > ran["recheck"]  # never scored: no score
    assert rows(ran["db_path"], "frame_id, decision") == [(0, "PASS"), (1, "RECHECK"), (2, "NO_PART"), (3, "FAIL")]
    recorded = rows(ran["db_path"], "decision, recheck_threshold, mm_per_px, defect_area_px, match_quality")
    for decision, recheck, mm, area, quality in recorded:
        assert (recheck, mm) == (pytest.approx(ran["recheck"]), MM_PER_PX)
        assert (area is None) == (decision == "NO_PART")
        assert quality is not None


def export(station: dict, out: Path, *options: str) -> list[dict]:
    env = pytest.MonkeyPatch()
    env.setenv("INSPECTOR_PIN", QUALITY_PIN)
    try:
        status, _, err = run_main(["history", "export", "--db", station["url"], "--out", str(out), "--user", QUALITY,
                                   *options])
    finally:
        env.undo()
    assert status == 0, err
    with out.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_score_filter_leaves_out_the_frames_without_the_part(ran, tmp_path) -> None:
    """A NO PART frame was never scored: its stored 0.0 is no score, so no score bound takes it."""
    everything = export(ran, tmp_path / "all.csv")
    assert sorted(r["decision"] for r in everything) == ["FAIL", "NO_PART", "PASS", "RECHECK"]
    low = export(ran, tmp_path / "low.csv", "--max-score", str(ran["recheck"]))
    assert [r["decision"] for r in low] == ["PASS"]
    scored = export(ran, tmp_path / "scored.csv", "--min-score", "0")
    assert sorted(r["decision"] for r in scored) == ["FAIL", "PASS", "RECHECK"]


def test_the_audit_of_a_run_names_the_recheck_band_and_the_pixel_size(station, line_frames) -> None:
    """What decides is audited whole: a run with a recheck band says so, and a technician's
    ``--threshold`` that drops the band shows it gone (before: the band; after: none)."""
    run_line(station, line_frames, "--max-frames", "1")
    (start,) = audit(station["db_path"], "run_start")
    assert start.after["recheck_threshold"] == pytest.approx(station["recheck"])
    assert start.after["mm_per_px"] == MM_PER_PX

    run_line(station, line_frames, "--max-frames", "1", "--threshold", str(station["threshold"]), "--user", TECH)
    (override,) = audit(station["db_path"], "run_override")
    assert override.before["recheck_threshold"] == pytest.approx(station["recheck"])
    assert override.after["recheck_threshold"] is None and override.after["mm_per_px"] == MM_PER_PX


def test_the_csv_gives_a_no_part_frame_no_score_and_areas_in_mm2(ran, tmp_path) -> None:
    """The quality engineer's CSV: an empty score for the frame without the part (never scored,
    so a spreadsheet's mean leaves it out), the decision in its own words, areas in px and mm²."""
    by_decision = {r["decision"]: r for r in export(ran, tmp_path / "all.csv")}
    assert by_decision["NO_PART"]["score"] == "" and by_decision["NO_PART"]["defect_area_px"] == ""
    for decision in ("PASS", "RECHECK", "FAIL"):
        row = by_decision[decision]
        assert float(row["score"]) > 0 and float(row["match_quality"]) > 0
        assert float(row["defect_area_mm2"]) == pytest.approx(int(row["defect_area_px"]) * MM_PER_PX**2)
    assert float(by_decision["RECHECK"]["score"]) > ran["recheck"]


def test_two_cameras_on_one_framed_model_measure_batching_and_run(station, line_frames) -> None:
    """Without --max-batch, a run of several cameras first times a batch against a frame alone;
    with a framed model it timed a 256x256 random frame, which the framing refuses as smaller than
    the part's region, so the run would not start. Both cameras' frames are decided."""
    status, out, err = run_main(["run", "--camera", f"folder://{line_frames}?fps=0", "--camera",
                                 f"folder://{line_frames}", "--product", PRODUCT, "--db", station["url"],
                                 "--image-dir", str(station["images"]), "--max-frames", "2", *FAST])
    assert status == 0, err
    assert "measured: a frame costs" in out
    assert sorted(rows(station["db_path"], "frame_id, decision")) == [(0, "PASS"), (0, "PASS"), (1, "RECHECK"),
                                                                       (1, "RECHECK")]


def test_the_stored_heatmap_is_in_frame_pixels_and_zero_outside_the_part_found(ran) -> None:
    """The RECHECK part (turned by 10 degrees, moved by 60, -40): its heatmap kept for review has
    the frame's size, and nothing outside the region where the part was found."""
    from inspector.framing.align import turn_about
    from inspector.history.image_store import read_heatmap

    ((path, low, high),) = rows(ran["db_path"], "heatmap_path, heatmap_low, heatmap_high", "decision = 'RECHECK'")
    heatmap = read_heatmap(path, low, high)
    assert heatmap.shape == (1024, 1280)
    x, y, w, h = REGION
    to_frame = turn_about(10.0, (x + w / 2, y + h / 2), (x + w / 2 + 60.0, y + h / 2 - 40.0))
    corners = cv2.transform(np.array([[[x, y], [x + w, y], [x + w, y + h], [x, y + h]]], np.float32), to_frame)[0]
    inside = np.zeros(heatmap.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
    near = cv2.dilate(inside, np.ones((9, 9), np.uint8)) > 0  # the warp's soft edge
    step = (high - low) / 65535
    assert np.abs(heatmap[~near]).max() <= step
    assert np.abs(heatmap[inside > 0]).max() > 10 * step


def test_inspector_bench_times_a_framed_model_on_its_reference(framed_model) -> None:
    """``inspector bench`` timed random 256x256 images, which a framed model refuses as smaller
    than the part's region: the benchmark failed on every framed model. It now times the
    framing's reference, where the part is found and its region inspected."""
    status, out, err = run_main(["bench", str(framed_model), "--device", "cpu", "--backend", "eager",
                                 "--runs", "2", "--repeats", "1"])
    assert status == 0, err
    assert "latency p50" in out
