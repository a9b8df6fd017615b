"""Shared fixtures. Tests run headless: Qt's offscreen platform, pypylon's camera emulator."""

import gc
import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYLON_CAMEMU", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's real data (../shared/data); tests that need it skip where it is absent."""
    if not (SHARED_DATA / "magnetic_tile").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (a fresh clone has none)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tile_train_paths(shared_data) -> list[Path]:
    """Twelve real good magnetic-tile images, spread over the training set."""
    paths = sorted((shared_data / "magnetic_tile" / "train" / "good").glob("*.jpg"))
    return paths[:: max(1, len(paths) // 12)][:12]


@pytest.fixture(scope="session")
def natural_dir(tmp_path_factory) -> Path:
    """A few of the product's shipped natural images, for the penalty loss."""
    src = REPO / "inspector" / "assets" / "natural"
    dst = tmp_path_factory.mktemp("natural")
    for p in sorted(src.glob("*.jpg"))[:6]:
        shutil.copy(p, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_model(request, tmp_path_factory, shared_data) -> Path:
    """A real model file: two training iterations on real images (fast; not a good detector).

    The same file the pipeline tests use, trained once per run (see pipeline_support).
    """
    from pipeline_support import trained_model

    return trained_model(request.config, tmp_path_factory)


@pytest.fixture
def db(tmp_path):
    """A new, migrated SQLite history database of the test's own (a module may define its own)."""
    from inspector.history import HistoryDB

    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    yield db
    db.close()


@pytest.fixture(autouse=True)
def _collect_garbage_in_the_gui_thread(request):
    """Desktop tests collect Python's cyclic garbage only here, in the GUI thread.

    Left automatic, the collector runs in whatever thread allocates (the line's camera and
    pipeline threads, tqdm's monitor) and may free a widget of an earlier test there, while the
    GUI thread paints: a rare segfault in pyqtgraph's paint. The desktop does the same with a
    GUI-thread timer (launcher.desktop.garbage_collected_in_the_gui_thread)."""
    if not {"qtbot", "qapp"} & set(request.fixturenames):
        yield
        return
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        if was_enabled:
            gc.enable()
