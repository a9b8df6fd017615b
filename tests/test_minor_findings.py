"""The minor findings of the second hardening round (issue 29, "Also"): each bad input ends with
one clear line, and the data folder is private whichever writer makes it first."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.common import read_pin_file
from cli.main import main
from inspector.errors import DatabaseError, ImageError, InspectorError
from inspector.history import HistoryDB, ImageStore, InspectionResult
from inspector.image_io import MAX_IMAGE_PIXELS, read_image

REPO = Path(__file__).resolve().parents[1]


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, err.getvalue()


def one_line(status: int, err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and fragment in lines[0], err


# -- the data folder ------------------------------------------------------------------------------


def _atomic_write(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.model_file import atomic_write

    atomic_write(root / "engine-backends.json", lambda tmp: Path(tmp).write_text("{}"))


def _image_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ImageStore(root / "images")


def _teach_samples(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calibration.teach.folders import TeachFolders
    from calibration.teach.samples import Samples

    Samples(TeachFolders.of("tile"))._save_gates()


def _demo_cells(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import demo

    cell = root.parent / "cell.png"
    cv2.imwrite(str(cell), np.zeros((16, 16), np.uint8))
    monkeypatch.setattr(demo, "elpv_split", lambda root=None: demo.ElpvSplit([], [], [], [(cell, False)]))
    demo.ensure_replay_folder(root)


@pytest.mark.parametrize("first_writer", [_atomic_write, _image_store, _teach_samples, _demo_cells])
def test_the_data_folder_is_0700_whichever_writer_makes_it(first_writer, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, only the history database made it 0700; the engine's backend cache, the image
    store, the teach folders or the demo's cells, run first, made it 0755, and the database then
    went into a folder every account could list."""
    root = tmp_path / "share" / "inspector"
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(root))
    root.parent.mkdir(parents=True)
    first_writer(root, monkeypatch)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_folder_outside_the_data_folder_keeps_the_usual_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    ImageStore(tmp_path / "elsewhere")
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o777 & ~_umask()
    assert not (tmp_path / "data").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- images ---------------------------------------------------------------------------------------


def _claiming(path: Path, width: int, height: int) -> Path:
    """A small real PNG whose header claims ``width`` x ``height`` pixels (as a bomb does)."""
    ok, png = cv2.imencode(".png", np.zeros((16, 16), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="claims 30000x30000 pixels, more than the 200 megapixels"):
        read_image(_claiming(tmp_path / "bomb.png", 30000, 30000))
    ok, bmp = cv2.imencode(".bmp", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(bmp.tobytes())
    data[18:26] = (40000).to_bytes(4, "little") + (-40000).to_bytes(4, "little", signed=True)
    (tmp_path / "bomb.bmp").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="claims 40000x40000 pixels"):
        read_image(tmp_path / "bomb.bmp")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_images_within_the_limit_read_as_before(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"ok{suffix}"
    cv2.imwrite(str(path), np.full((40, 50, 3), 128, np.uint8))
    assert read_image(path).shape == (40, 50, 3)
    assert 40 * 50 < MAX_IMAGE_PIXELS


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _record(camera_id: str) -> InspectionResult:
    return InspectionResult(time=T0, camera_id=camera_id, frame_id=1, score=0.9, decision="FAIL", threshold=0.5,
                            image=np.zeros((16, 16), np.uint8), heatmap=np.zeros((4, 4), np.float32))


def test_a_camera_path_too_long_for_a_file_name_is_stored_under_a_shortened_name(tmp_path: Path) -> None:
    """A replayed folder's path is the camera id; 300 characters of it made a file name the file
    system refused (ENAMETOOLONG) for every image of the line."""
    store = ImageStore(tmp_path)
    deep = "folder:///" + "/".join(["plant-archive"] * 25)
    saved = [store.save(_record(deep + suffix)) for suffix in ("/a/cells", "/b/cells")]
    names = [Path(s.image_path).name for s in saved]
    assert all(len(n.encode()) < 255 for n in names)
    assert names[0] != names[1]  # two long ids ending alike never share a name
    assert all(Path(s.image_path).is_file() and Path(s.heatmap_path).is_file() for s in saved)
    assert Path(store.save(_record("cam-1")).image_path).name == "120000_000000_cam-1_1_FAIL.png"  # short: as before


# -- names and PINs -------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path):
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    yield db
    db.close()


@pytest.mark.parametrize("pin,message", [
    ("000000", "one repeated character or a run"),
    ("123456", "one repeated character or a run"),
    ("987654321", "one repeated character or a run"),
    ("      ", "all spaces"),
])
def test_a_trivial_pin_is_refused_wherever_one_is_set(db: HistoryDB, pin: str, message: str) -> None:
    db.add_user("ann", "technician", "582219")
    for change in (lambda p: db.add_user("bob", "operator", p), lambda p: db.set_pin("ann", p),
                   lambda p: db.add_first_technician("cid", p)):
        with pytest.raises(DatabaseError, match=message):
            change(pin)
    assert db.verify_pin("ann", "582219") == "technician" and db.list_users() == [("ann", "technician")]


def test_a_pin_file_saved_with_a_byte_order_mark_gives_the_pin_alone(tmp_path: Path) -> None:
    path = tmp_path / "pin"
    path.write_bytes(b"\xef\xbb\xbf582219\r\n")
    path.chmod(0o600)
    assert read_pin_file(path) == "582219"


# -- history export -------------------------------------------------------------------------------


def test_since_after_until_is_refused_with_one_line(tmp_path: Path) -> None:
    status, err = run_main(["history", "export", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--since", "2026-03-02",
                            "--until", "2026-03-01", "--out", str(tmp_path / "x.csv")])
    one_line(status, err, "--since 2026-03-02 is not before --until 2026-03-01")
    assert not (tmp_path / "x.csv").exists()


# -- station names in link URIs -------------------------------------------------------------------


@pytest.mark.parametrize("name,uri", [
    ("mqtt", "mqtt://broker/results?station=line%2F1"),
    ("mqtt", "mqtt://broker/results?station=a%E2%80%AEb"),  # a right-to-left override
    ("plant_db", "postgresql://inspector@db/plant?station=.."),
])
def test_a_station_name_in_a_link_follows_the_rule_for_names(name: str, uri: str, tmp_path: Path) -> None:
    from station.config import StationConfig, check_link

    with pytest.raises(InspectorError, match=r"bad \?station= in the link"):
        check_link(name, uri)
    field = {"mqtt": "publish", "plant_db": "plant_db"}[name]
    with pytest.raises(InspectorError, match=r"bad \?station= in the link"):
        StationConfig(cameras=("folder:///x",), image_dir=tmp_path, **{field: uri})
    check_link(name, uri.split("?")[0] + "?station=line-1")  # a good name passes


# -- the desktop ----------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a display is an X11/Wayland matter")
def test_the_desktop_without_a_display_says_so_in_one_line(tmp_path: Path) -> None:
    """Qt aborted the process (core dump, a page about platform plugins) when neither X11 nor
    Wayland was there, as in an SSH session."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["INSPECTOR_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "cli", "gui"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "no display found" in lines[0] and "QT_QPA_PLATFORM=offscreen" in lines[0] and "inspector run" in lines[0]


@pytest.mark.parametrize("twin", ["OP1", "Op1", "ｏｐ１", "ＯＰ1"])
def test_a_user_name_that_looks_like_an_existing_one_is_refused(db: HistoryDB, twin: str) -> None:
    """``OP1`` beside ``op1`` (or in full-width letters): two people the audit trail shows as one."""
    db.add_first_technician("op1", "582219")
    for add in (lambda: db.add_user(twin, "operator", "471108", by="op1"), lambda: db.add_first_technician(twin, "471108")):
        with pytest.raises(DatabaseError, match=f"a user named 'op1' already exists and {twin!r} looks the same"):
            add()
    assert db.list_users() == [("op1", "technician")]
    db.add_user("op2", "operator", "471108", by="op1")  # a different name is not a look-alike
