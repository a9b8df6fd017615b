"""``inspector gui --db STATION.db`` with no product chosen starts with the station's own product.

Found reviewing a station's history on the desktop: with no ``--product`` and no saved product
(or a saved one another history does not hold), the desktop registered the demo's solar-cell
model into the station's history, activated it, and judged the station's tiles with it (FAIL
at 1.27): a product and a model version that were never the station's, in its history for good.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PyQt6")

import demo  # noqa: E402
import launcher.desktop as desktop  # noqa: E402
from inspector.errors import DataError  # noqa: E402
from inspector.history import HistoryDB  # noqa: E402
from ui.settings_model import GuiSettings  # noqa: E402


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The products whose active recipe the desktop loads (the engine is not built)."""
    names: list[str] = []

    def load(db: HistoryDB, product: str, **_: object) -> str:
        row = db.product_by_name(product)
        if row is None or row.active_model_version_id is None:
            raise DataError(f"no product named {product!r}")  # as load_active_recipe says
        names.append(product)
        return product

    monkeypatch.setattr(desktop, "load_active_recipe", load)
    return names


def station(tmp_path: Path, *products: str) -> HistoryDB:
    db = HistoryDB(f"sqlite:///{tmp_path / 'station.db'}")
    db.upgrade()
    for i, name in enumerate(products):
        product_id = db.add_product(name)
        model = tmp_path / f"{name}.safetensors"
        model.write_bytes(name.encode())
        version = db.add_model_version(product_id, model, sha256=f"{i:064x}")
        db.set_active_model(product_id, version, user="tina", role="technician")
    return db


def test_a_stations_history_starts_with_the_product_activated_last_and_the_demo_stays_out(tmp_path, loaded) -> None:
    db = station(tmp_path, "washer", "tile")  # tile activated last
    assert desktop.resolve_recipe(db, desktop.GuiOptions(), GuiSettings()) == "tile"
    # a saved product another history holds: as if none were saved
    assert desktop.resolve_recipe(db, desktop.GuiOptions(), GuiSettings(product="solar")) == "tile"
    assert desktop.resolve_recipe(db, desktop.GuiOptions(), GuiSettings(product="washer")) == "washer"
    assert loaded == ["tile", "tile", "washer"]
    assert db.product_by_name(demo.DEMO_PRODUCT) is None
    assert [name for name, _ in db.products()] == ["tile", "washer"]


def test_a_new_history_starts_with_the_demo(tmp_path, loaded) -> None:
    db = station(tmp_path)
    assert desktop.resolve_recipe(db, desktop.GuiOptions(), GuiSettings()) == demo.DEMO_PRODUCT
    assert db.product_by_name(demo.DEMO_PRODUCT).active_model_version_id is not None
    # and once the demo is there, it is the demo's product that starts, not a product of its own
    assert desktop.resolve_recipe(db, desktop.GuiOptions(), GuiSettings()) == demo.DEMO_PRODUCT
