"""Quality gates on good samples, and collecting samples from a folder and a (replayed) camera."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.quality import QualityGates, SampleScreen, measure, screen_files, summarise
from calibration.teach import TeachSession
from inspector.errors import CameraError, DataError
from inspector.history import HistoryDB


def texture(seed: int, shape=(120, 160), level=0.5, dtype=np.uint8) -> np.ndarray:
    """A textured grey part: smoothed noise around ``level`` of full scale."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.5)
    full = 255 if dtype == np.uint8 else 65535
    img = np.clip(level + 0.15 * noise / noise.std(), 0, 1) * full
    return img.astype(dtype)


def write(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), image)
    return path


def test_each_gate_names_its_reason():
    screen = SampleScreen(QualityGates())
    for i in range(6):
        assert screen.judge(f"good{i}", texture(i)).accepted
    cases = {
        "dark": ((texture(10) * 0.05).astype(np.uint8), "too dark"),
        "bright": (255 - (texture(11) * 0.05).astype(np.uint8), "too bright"),
        "blank": (np.full((120, 160), 128, np.uint8), "no detail"),
        "blurred": (cv2.GaussianBlur(texture(12), (0, 0), 4), "blurred"),
        "duplicate": (np.clip(texture(3).astype(int) + 1, 0, 255).astype(np.uint8), "duplicate of good3"),
        "size": (texture(13, shape=(100, 160)), "size 160x100 differs from the samples' 160x120"),
    }
    white = texture(14)
    white[:30] = 255  # a quarter of the frame blown out
    cases["clipped"] = (white, "overexposed")
    for name, (image, reason) in cases.items():
        d = screen.judge(name, image)
        assert not d.accepted, name
        assert any(reason in r for r in d.reasons), (name, d.reasons)
    assert screen.accepted_count == 6


def test_uint16_and_colour_samples_are_judged_on_the_same_scale():
    a, b = measure(texture(1)), measure(texture(1, dtype=np.uint16))
    assert b.mean == pytest.approx(a.mean, abs=0.01)
    rgb = np.repeat(texture(1)[:, :, None], 3, axis=2)
    assert measure(rgb).sharpness == pytest.approx(a.sharpness, rel=0.05)


def test_gates_can_be_switched_off():
    screen = SampleScreen(QualityGates(same_size=False, duplicate_mad=None))
    assert screen.judge("a", texture(1)).accepted
    assert screen.judge("b", texture(2, shape=(90, 90))).accepted
    assert screen.judge("c", texture(1)).accepted


def test_screen_files_reports_unreadable_files(tmp_path):
    good = write(tmp_path / "good.png", texture(1))
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    decisions = screen_files([good, bad])
    assert decisions[0].accepted
    assert not decisions[1].accepted and "not a readable image" in decisions[1].reasons[0]
    assert "corrupt.png: unreadable" in summarise([decisions[1]])


def test_collect_from_folder_copies_accepted_and_lists_rejected(tmp_path, db):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        write(src / f"part{i}.png", texture(i))
    write(src / "part5.png", texture(2))  # the same part again
    write(src / "part6.png", (texture(6) * 0.05).astype(np.uint8))
    (src / "part7.png").write_bytes(b"garbage")
    session = TeachSession(db, "bracket", tmp_path / "teach")
    result = session.collect_from_folder(src)
    assert [p.name for p in result.accepted] == [f"part{i}.png" for i in range(5)]
    assert (session.samples_dir / "part0.png").read_bytes() == (src / "part0.png").read_bytes()
    reasons = {Path(d.name).name: d.reasons[0] for d in result.rejected}
    assert reasons["part5.png"].startswith("duplicate of part2.png")
    assert reasons["part6.png"].startswith("too dark")
    assert reasons["part7.png"].startswith("unreadable")
    assert result.total_samples == 5
    listed = json.loads((session.samples_dir / "rejections.json").read_text())
    assert {Path(e["name"]).name for e in listed} == {"part5.png", "part6.png", "part7.png"}
    # A second collection judges against the samples already there.
    again = session.collect_from_folder(src)
    assert not again.accepted and all("duplicate" in d.reasons[0] or "too dark" in d.reasons[0] or "unreadable" in d.reasons[0] for d in again.rejected)


def test_all_identical_images_leave_too_few_samples_to_train(tmp_path, db):
    src = tmp_path / "same"
    src.mkdir()
    for i in range(14):
        write(src / f"img{i:02d}.png", texture(0))
    session = TeachSession(db, "same", tmp_path / "teach")
    result = session.collect_from_folder(src)
    assert len(result.accepted) == 1 and len(result.rejected) == 13
    with pytest.raises(DataError, match=r"1 usable good samples; teaching needs at least 13"):
        session.train(iterations=1, teacher="random")


def test_too_few_images_and_unreachable_targets_fail_before_training(tmp_path, db):
    src = tmp_path / "few"
    src.mkdir()
    for i in range(16):
        write(src / f"p{i:02d}.png", texture(100 + i))
    session = TeachSession(db, "few", tmp_path / "teach")
    session.collect_from_folder(src, limit=5)
    with pytest.raises(DataError, match="5 usable good samples; teaching needs at least 13"):
        session.train(iterations=1, teacher="random")
    session.collect_from_folder(src)
    # 16 samples -> 4 calibration images cannot show 0.5 % (nor fit a tail): refused in advance.
    with pytest.raises(DataError, match=r"4 good calibration images cannot resolve .*\(calibration uses 20 % of the 16 samples\)"):
        session.train(iterations=1, teacher="random", target_frr=0.005)
    assert not session.models_dir.exists()  # refused before any training started
    with pytest.raises(DataError, match="no such folder"):
        session.train(iterations=1, teacher="random", target_frr=0.25, defects=tmp_path / "missing")


def test_teach_collect_command(tmp_path, capsys, monkeypatch):
    from cli.main import main

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write(src / f"part{i}.png", texture(300 + i))
    write(src / "dup.png", texture(300))
    url = f"sqlite:///{tmp_path / 'h.db'}"
    history = HistoryDB(url)
    history.upgrade()
    history.add_user("tina", "technician", "471108")
    history.add_user("otto", "operator", "620814")
    args = ["teach", "collect", "--product", "p", "--db", url, "--workdir", str(tmp_path / "w")]
    # Collecting is a technician's: an operator is refused, once, before any sample is copied.
    monkeypatch.setenv("INSPECTOR_PIN", "620814")
    assert main([*args, "--folder", str(src), "--user", "otto"]) == 2
    assert "only technician may import_samples" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    monkeypatch.setenv("INSPECTOR_PIN", "471108")
    assert main([*args, "--folder", str(src), "--user", "tina"]) == 0
    out = capsys.readouterr().out
    assert "3 accepted, 1 rejected" in out and "part0.png: duplicate of dup.png" in out  # name order: dup.png came first
    assert main([*args, "--camera", f"folder://{src}?fps=0"]) == 2
    assert "--camera needs --count" in capsys.readouterr().err
    actions = [(e.user, e.action) for e in history.audit_events()]
    assert actions[:2] == [("tina", "import_samples"), ("otto", "import_samples_denied")]
    history.close()


def test_collect_from_a_replayed_camera(tmp_path, db):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        write(frames / f"f{i}.png", texture(200 + i))
    write(frames / "f4.png", texture(201))  # the camera saw the same part twice
    write(frames / "f5.png", texture(205))
    session = TeachSession(db, "cam", tmp_path / "teach")
    seen = []
    result = session.collect_from_camera(f"folder://{frames}?fps=0", count=10, timeout_s=0.5, on_sample=seen.append)
    assert len(result.accepted) == 5 and len(result.rejected) == 1 and len(seen) == 6
    assert "duplicate" in result.rejected[0].reasons[0]
    assert len(session.sample_paths()) == 5
    assert len(list(session.folders.rejected.glob("*.png"))) == 1  # kept for a person to look at
    stored = cv2.imread(str(result.accepted[0]), cv2.IMREAD_UNCHANGED)
    assert stored.shape == (120, 160) and stored.dtype == np.uint8
    with pytest.raises(CameraError):
        session.collect_from_camera("nonsense", count=1)
