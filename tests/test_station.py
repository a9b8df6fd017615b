"""The station: one class runs N >= 1 cameras for both faces, counts once, audits the run, and
the audited actions check one right and write one event.

Real folder cameras, pipelines, history writers and SQLite; the engine is a stub scoring each
frame by its mean brightness (the station's wiring is under test, not the model).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.history import HistoryDB, InspectionFilter
from inspector.line import Counts
from inspector.roles import AccessDenied, Actor, Caller
from station import LINK_ERROR, CameraStartError, Station, StationConfig
from station.actions import export_inspections
from test_line_build import recipe

QUALITY, QUALITY_PIN = "quinn", "582219"
TECH, TECH_PIN = "tina", "471108"


@pytest.fixture
def db(tmp_path: Path):
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    db.add_user(QUALITY, "quality", QUALITY_PIN)
    db.add_user(TECH, "technician", TECH_PIN)
    yield db
    db.close()


def gray_frames(folder: Path, levels: list[int]) -> str:
    folder.mkdir(parents=True)
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((40, 56, 3), level, np.uint8))
    return f"folder://{folder}?fps=0"


def run_once(station: Station, loaded) -> object:
    station.open_cameras()
    station.build(loaded)
    station.start()
    assert station.wait(60.0), "the cameras' sources did not end"
    report = station.stop(30.0)
    station.close()
    return report


@pytest.mark.parametrize("cameras", [1, 2])
def test_one_class_runs_one_camera_or_several_counts_once_and_audits_the_run(db, tmp_path: Path, cameras: int) -> None:
    levels = [[30, 220, 40], [200, 210]]  # brightness > 0.5 FAILs
    uris = [gray_frames(tmp_path / f"cam{i}", levels[i]) for i in range(cameras)]
    config = StationConfig(cameras=tuple(uris), image_dir=tmp_path / "images", pass_sample_rate=1.0, max_batch=1)
    station = Station(config, db, actor=Actor("cli:test", "system"))
    report = run_once(station, recipe(db, tmp_path))

    assert report.clean and report.lost == 0 and report.source_ended and not report.plc_down
    assert report.whys == {uri: "the camera's source ended" for uri in uris}
    expected = [Counts(2, 1, 0), Counts(0, 2, 0)][:cameras]
    assert list(station.counts().values()) == expected
    # The station's counts and each pipeline's metrics follow the one rule.
    for uri, counts in station.counts().items():
        m = report.metrics[uri]
        assert (m.passed, m.failed, m.errors) == (counts.passed, counts.failed, counts.errors)
    total = station.total_counts()
    assert (total.total, total.rejected) == (sum(map(len, levels[:cameras])), 1 + 2 * (cameras - 1))

    events = [e for e in reversed(db.audit_events(limit=50)) if e.action in ("run_start", "run_stop")]
    assert [e.action for e in events] == ["run_start", "run_stop"]
    start, stop = events
    assert start.user == "cli:test" and start.after["cameras"] == uris and start.after["product"] == "tile"
    assert stop.after["recorded"] == total.total and set(stop.after["cameras"]) == set(uris)
    assert len(db.query_inspections(InspectionFilter(), 100)) == total.total

    station.reset_counts()
    assert station.total_counts() == Counts()


def test_counts_keep_an_engine_error_apart_from_a_failed_part() -> None:
    counts = Counts()
    for decision, error in (("PASS", None), ("FAIL", None), ("FAIL", "cannot score"), ("PASS", None)):
        counts.add(SimpleNamespace(decision=decision, error=error))
    assert (counts.passed, counts.failed, counts.errors, counts.rejected, counts.total) == (2, 1, 1, 2, 4)
    assert counts.yield_fraction == 0.5


def test_a_link_that_cannot_be_made_is_alarmed_on_the_desktop_and_refused_on_the_command_line(db, tmp_path: Path) -> None:
    uri = gray_frames(tmp_path / "cam", [30, 40])
    # A well-formed URI whose register map cannot be read: refused when the link is made, not parsed.
    config = StationConfig(cameras=(uri,), image_dir=tmp_path / "images",
                           plc=(f"modbus://127.0.0.1:1502?map={tmp_path / 'absent.toml'}",))
    with pytest.raises(InspectorError):
        Station(config, db, actor=Actor("cli:test", "system"), strict_links=True).make_links()

    alarms: list[tuple[str, str]] = []
    station = Station(config, db, actor=Actor("gui:test", "system"), strict_links=False)
    station.on_alarm = lambda kind, message: alarms.append((kind, message))
    report = run_once(station, recipe(db, tmp_path))
    assert report.clean and sum(m.recorded for m in report.metrics.values()) == 2
    assert [kind for kind, _ in alarms] == [LINK_ERROR] and alarms[0][1].startswith("PLC link not started")


def test_a_missing_camera_is_named_and_nothing_stays_open(db, tmp_path: Path) -> None:
    good = gray_frames(tmp_path / "cam", [30])
    missing = f"folder://{tmp_path / 'nowhere'}?fps=0"
    station = Station(StationConfig(cameras=(good, missing), image_dir=tmp_path / "images"), db,
                      actor=Actor("cli:test", "system"))
    with pytest.raises(CameraStartError) as err:
        station.open_cameras()
    assert err.value.camera_id == missing and station.cameras == []
    assert not [e for e in db.audit_events(limit=10) if e.action == "run_start"]


def test_the_configuration_refuses_what_could_not_run(tmp_path: Path) -> None:
    for options, fragment in [({"cameras": ()}, "no camera"), ({"cameras": ("folder:///a", "folder:///a")}, "given twice"),
                              ({"trigger": "sometimes"}, "trigger must be one of"), ({"quota_gb": 0}, "quota"),
                              ({"pass_sample_rate": 2.0}, "within 0..1"), ({"max_frames": 0}, "max frames"),
                              ({"no_part_alarm_after": 0}, "NO PART alarm"),
                              ({"plc": ("modbus://a", "modbus://b")}, "2 PLC links for 1 cameras")]:
        with pytest.raises(InspectorError, match=fragment):
            StationConfig(**{"cameras": ("folder:///a",), "image_dir": tmp_path, **options})
    config = StationConfig(cameras=["folder:///a"], image_dir=str(tmp_path), plc=["modbus://a"], publish="mqtt://b/t")
    assert config.cameras == ("folder:///a",) and config.image_dir == tmp_path
    assert config.links() == {"mqtt": ("mqtt://b/t",), "plc": ("modbus://a",)}


def test_the_no_part_alarm_count_reaches_every_line(db, tmp_path: Path) -> None:
    """``no_part_alarm_after`` (``inspector run --no-part-alarm N``) is each pipeline's: two frames
    in a row without the part alarm at 2, none at the default of five."""
    from dataclasses import replace

    from inspector.line import NO_PART_RUN
    from test_decisions import FramedStub, _frames

    levels = [0, 0, 0, 100, 0, 0]  # dark: NO PART
    for count, alarms_expected in ((2, 2), (None, 0)):
        folder = _frames(tmp_path / f"cam{count}", levels)
        options = {} if count is None else {"no_part_alarm_after": count}
        config = StationConfig(cameras=(f"folder://{folder}?fps=0",), image_dir=tmp_path / "images", **options)
        station = Station(config, db, actor=Actor("cli:test", "system"))
        alarms: list[str] = []
        station.open_cameras()
        lines = station.build(replace(recipe(db, tmp_path), engine=FramedStub()),
                              extra_links=[SimpleNamespace(on_alarm=lambda a: alarms.append(a.kind))])
        assert [line.pipeline.no_part_alarm_after for line in lines.lines] == [count or 5]
        station.start()
        assert station.wait(60.0)
        assert station.stop(30.0).clean
        station.close()
        assert alarms.count(NO_PART_RUN) == alarms_expected


def test_export_is_one_action_with_one_right_and_one_audit_name(db, tmp_path: Path) -> None:
    uri = gray_frames(tmp_path / "cam", [30, 220])
    run_once(Station(StationConfig(cameras=(uri,), image_dir=tmp_path / "images", pass_sample_rate=1.0), db,
                     actor=Actor("cli:test", "system")), recipe(db, tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    for caller, fragment in [(Caller("operator"), "sign in as quality"), (Caller(TECH, TECH_PIN), "only quality"),
                             (Caller(QUALITY, "000000"), "wrong PIN")]:
        with pytest.raises(AccessDenied, match=fragment):
            export_inspections(db, caller, out / "x.csv", InspectionFilter())
    assert not (out / "x.csv").exists()
    assert [e.action for e in db.audit_events(limit=3)] == ["export_denied"] * 3

    done = export_inspections(db, Caller(QUALITY, QUALITY_PIN), out / "x.csv", InspectionFilter(decision="FAIL"),
                              images_dir=out / "images")
    assert (done.rows, done.audited) == (1, True) and done.images == len(list((out / "images").iterdir())) >= 1
    (entry,) = [e for e in db.audit_events(limit=10) if e.action == "export"]
    assert (entry.user, entry.role) == (QUALITY, "quality")
    assert entry.after["rows"] == 1 and entry.after["filters"] == {"decision": "FAIL"}
