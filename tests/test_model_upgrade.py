"""Issue 29, item 14: a model file without its metadata digest is read nowhere -- not by
``predict``, ``run --model``, the engine every face loads through, nor the teach paths -- until a
technician converts it with ``inspector model upgrade``, which is audited."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from cli.main import main
from inspector.errors import ModelFileError
from inspector.file_digest import file_sha256
from inspector.history import HistoryDB
from inspector.model_file import METADATA_KEY, load_model, load_model_tensors, load_teacher
from inspector.recipes import register_model, verify_model_file
from pipeline_support import copy_images, good_images

TECH, TECH_PIN = "tina", "471108"
OPERATOR, OPERATOR_PIN = "otto", "620814"
SHIPPED_TEACHER = Path(__file__).resolve().parents[1] / "inspector" / "weights" / "teacher_small.safetensors"


def stripped(src: Path, dst: Path, **edits) -> Path:
    """A copy of ``src`` without its metadata digest, and with ``edits`` to its metadata: the
    attack of the issue (threshold 1e30), or an older release's file."""
    with safe_open(str(src), framework="pt", device="cpu") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.pop("metadata_sha256")
    meta.update(edits)
    save_file(tensors, str(dst), metadata={METADATA_KEY: json.dumps(meta)})
    return dst


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def refused_in_one_line(argv: list[str], *fragments: str) -> None:
    """``inspector ARGV`` ends with one line, exit status 2, holding ``fragments``."""
    status, _, err = run_main(argv)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def staffed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'history.db'}"
    db = HistoryDB(url)
    db.upgrade()
    db.add_user(TECH, "technician", TECH_PIN)
    db.add_user(OPERATOR, "operator", OPERATOR_PIN)
    db.close()
    return url


def test_a_file_without_its_metadata_digest_is_read_nowhere(tiny_model: Path, tmp_path: Path, staffed: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bad = stripped(tiny_model, tmp_path / "passes-all.safetensors", threshold=1e30)
    for load in (load_model, load_model_tensors):
        with pytest.raises(ModelFileError, match=r"no digest.*inspector model upgrade .*passes-all.safetensors --user NAME"):
            load(bad)
    from inspector.engine import Engine  # what run, predict, the desktop and the teach's shadow load through

    with pytest.raises(ModelFileError, match="no digest"):
        Engine(bad, device="cpu", backend="eager")
    with pytest.raises(ModelFileError, match="no digest"):  # training and the instant model's teacher
        load_teacher(stripped(SHIPPED_TEACHER, tmp_path / "teacher.safetensors"))

    frames = copy_images(good_images(2, skip=200), tmp_path / "frames")
    refused_in_one_line(["predict", str(bad), *map(str, sorted(frames.iterdir())), "--out", str(tmp_path / "o")],
                        "no digest", "inspector model upgrade")
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    refused_in_one_line(["run", "--camera", f"folder://{frames}?fps=0", "--model", str(bad), "--db", staffed,
                         "--user", TECH, "--backend", "eager", "--device", "cpu", "--max-frames", "2"],
                        "no digest", "inspector model upgrade")


def test_the_conversion_is_a_technicians_audited_and_follows_a_registration(tiny_model: Path, tmp_path: Path,
                                                                            staffed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = stripped(tiny_model, tmp_path / "old.safetensors", threshold=0.25)  # as an older release wrote it
    db = HistoryDB(staffed)
    _, version_id = register_model(db, old, file_sha256(old), "tile")
    before = old.read_bytes()
    upgrade = ["model", "upgrade", str(old), "--db", staffed]

    refused_in_one_line(upgrade, "upgrade_model refused", "--user")
    monkeypatch.setenv("INSPECTOR_PIN", OPERATOR_PIN)
    refused_in_one_line([*upgrade, "--user", OPERATOR], "only technician may upgrade_model")
    assert old.read_bytes() == before

    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    status, out, _ = run_main([*upgrade, "--user", TECH])
    assert status == 0 and "threshold 0.25" in out
    _, meta = load_model(old)
    assert meta["threshold"] == 0.25 and meta["metadata_sha256"]
    version = db.model_version(version_id)
    verify_model_file(Path(version.path), version.sha256)  # the line takes the converted file
    event = db.audit_events(1)[0]
    assert (event.user, event.role, event.action) == (TECH, "technician", "upgrade_model")
    assert event.after["threshold"] == 0.25 and event.after["versions"] == [version_id]
    assert event.before["sha256"] != event.after["sha256"] == file_sha256(old)
    db.close()

    refused_in_one_line([*upgrade, "--user", TECH], "nothing to convert")


def test_an_edited_file_is_not_converted(tiny_model: Path, tmp_path: Path, staffed: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a file without a digest is converted: one whose metadata no longer match their digest,
    or whose tensors were changed, stays refused."""
    with safe_open(str(tiny_model), framework="pt", device="cpu") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata={METADATA_KEY: json.dumps({**meta, "threshold": 1e30})})
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    refused_in_one_line(["model", "upgrade", str(edited), "--db", staffed, "--user", TECH], "already carries")
    meta.pop("metadata_sha256")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(edited), metadata={METADATA_KEY: json.dumps(meta)})
    refused_in_one_line(["model", "upgrade", str(edited), "--db", staffed, "--user", TECH],
                        "tensor contents do not match")


def test_a_file_every_command_would_refuse_is_not_converted(tiny_model: Path, tmp_path: Path, staffed: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversion vouches for a file the line can use: one whose calibration (a recheck band
    above the FAIL threshold, a pixel size of 0) or framing every command refuses as it reads
    the file was converted and audited, then refused at the next predict, run or activation."""
    monkeypatch.setenv("INSPECTOR_PIN", TECH_PIN)
    for edits, fragment in (({"threshold": 0.25, "recheck_threshold": 0.5}, "recheck threshold 0.5 must be below"),
                            ({"threshold": 0.25, "mm_per_px": 0}, "pixel size must be a positive number"),
                            ({"framing": {"region": [0, 0, 8, 8], "tiles": "auto"}}, "its framing is unusable")):
        bad = stripped(tiny_model, tmp_path / "bad.safetensors", **edits)
        before = bad.read_bytes()
        refused_in_one_line(["model", "upgrade", str(bad), "--db", staffed, "--user", TECH], fragment, "not converted")
        assert bad.read_bytes() == before
    db = HistoryDB(staffed)
    assert "upgrade_model" not in [e.action for e in db.audit_events(10)]
    db.close()


def test_every_shipped_model_file_carries_its_metadata_digest() -> None:
    from demo import DEMO_MODEL

    assert load_model(DEMO_MODEL)[1]["metadata_sha256"]
    assert load_teacher(SHIPPED_TEACHER, "s")[1]["metadata_sha256"]
