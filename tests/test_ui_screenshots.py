"""Desktop: ``inspector gui --screenshots`` runs the built-in demo (ELPV solar cells replayed by
the emulated Basler camera, the shipped demo model) and saves one picture per page; and the
``inspector users`` command that creates the accounts people sign in with."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

PAGES = ("operator", "teach", "review", "settings")


def hex_bgr(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (5, 3, 1)], dtype=np.float64)


def test_screenshot_run_writes_every_page_with_the_right_banner(qapp, tmp_path, monkeypatch):
    pytest.importorskip("elpv_dataset", reason="the demo images come from the elpv-dataset package ('demo' extra)")
    pytest.importorskip("pypylon", reason="the demo camera is pylon's emulator ('basler' extra)")
    from sqlalchemy import select

    from cli.main import main
    from inspector.history import HistoryDB, default_db_url
    from inspector.history.tables import Inspection
    from ui.widgets import FAIL_COLOR, PASS_COLOR

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "shots"
    assert main(["gui", "--screenshots", str(out), "--screenshot-seconds", "1", "--device", "cpu", "--backend", "eager"]) == 0

    info = json.loads((out / "screenshots.json").read_text())
    assert set(info["pages"]) == set(PAGES) and info["recorded"] >= 1
    for page in PAGES:
        image = cv2.imread(str(out / f"{page}.png"))
        assert image is not None and image.shape[0] > 400 and image.shape[1] > 600
        assert image.std() > 20, f"{page}.png is blank"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 200, f"{page}.png has almost no content"

    # The banner's colour is the verdict of the part shown, as the history recorded it.
    op = info["pages"]["operator"]
    x, y, w, h = op["banner_rect"]
    shot = cv2.imread(str(out / "operator.png")).astype(np.float64)
    patch = shot[y + 8 : y + 18, x + 8 : x + 18].reshape(-1, 3).mean(axis=0)
    expected = hex_bgr(PASS_COLOR if op["decision"] == "PASS" else FAIL_COLOR)
    other = hex_bgr(FAIL_COLOR if op["decision"] == "PASS" else PASS_COLOR)
    assert np.abs(patch - expected).max() < 12 and np.abs(patch - other).max() > 60
    db = HistoryDB(default_db_url())
    with db.session() as s:
        row = s.execute(select(Inspection.decision, Inspection.score).where(Inspection.id == op["inspection_id"])).one()
    assert row.decision == op["decision"] and row.score == pytest.approx(op["score"])
    if row.decision == "PASS":
        assert row.score <= op["threshold"]
    # The demo sample is attributed where it was copied to.
    assert "CC BY-NC-SA 4.0" in (tmp_path / "data" / "demo_cells" / "ATTRIBUTION.txt").read_text()


def test_users_command_adds_accounts_that_sign_in(tmp_path, capsys, monkeypatch):
    """The first technician adds themselves; later accounts are added by them (``--by`` with
    their PIN in ``$INSPECTOR_PIN``); the new PIN comes from ``$INSPECTOR_NEW_PIN``."""
    from cli.main import main
    from inspector.history import HistoryDB

    url = f"sqlite:///{tmp_path / 'h.db'}"
    monkeypatch.setenv("INSPECTOR_NEW_PIN", "432100")
    assert main(["users", "add", "tina", "--role", "technician", "--db", url]) == 0
    monkeypatch.setenv("INSPECTOR_PIN", "432100")
    assert main(["users", "add", "tina", "--role", "quality", "--db", url, "--by", "tina"]) == 2  # one line, no traceback
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "list", "--db", url]) == 0
    assert "tina\ttechnician" in capsys.readouterr().out
    assert HistoryDB(url).verify_pin("tina", "432100") == "technician"
    monkeypatch.setenv("INSPECTOR_NEW_PIN", "123400")
    assert main(["users", "add", "olaf", "--role", "operator", "--db", url, "--by", "tina"]) == 0
    monkeypatch.setenv("INSPECTOR_NEW_PIN", "567800")
    assert main(["users", "pin", "olaf", "--db", url, "--by", "tina"]) == 0
    assert HistoryDB(url).verify_pin("olaf", "567800") == "operator"
    assert main(["users", "remove", "tina", "--db", url, "--by", "tina"]) == 2
    assert "last technician" in capsys.readouterr().err
    assert main(["users", "remove", "olaf", "--db", url, "--by", "tina"]) == 0
    assert HistoryDB(url).list_users() == [("tina", "technician")]


def test_the_desktop_collects_cyclic_garbage_on_the_gui_thread_only(qapp):
    """Garbage made by a camera or pipeline thread is freed by the GUI thread's timer, never by the
    thread that happened to allocate (a Qt object freed there crashes the GUI's painter)."""
    import gc
    import threading
    import time
    import weakref

    from launcher.desktop import garbage_collected_in_the_gui_thread

    freed_in: list[str] = []
    kept: list = []

    class Node:
        pass

    def worker() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the cycle collector frees it
        weakref.finalize(a, lambda: freed_in.append(threading.current_thread().name))
        del a, b
        kept.append([[i] for i in range(5000)])  # far past the collector's allocation threshold

    with garbage_collected_in_the_gui_thread(interval_s=0.05):
        assert not gc.isenabled()
        t = threading.Thread(target=worker, name="camera")
        t.start()
        t.join()
        assert freed_in == []
        deadline = time.monotonic() + 10
        while not freed_in and time.monotonic() < deadline:
            qapp.processEvents()
            time.sleep(0.01)
    assert freed_in == [threading.main_thread().name]
