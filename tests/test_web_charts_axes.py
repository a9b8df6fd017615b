"""The browser's charts (yield per product and per station, rejects by review label) on the time
axis. One hour of inspections -- one bucket -- was drawn on an axis from 2025 to 2029 (matplotlib's
span for a lone date), the hour not to be read; and each reject bar was centred on its bucket's
start, so an hour's rejects stood half in the hour before (a day's half in the day before)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("flask", reason="the web review needs the [web] extra: pip install -e '.[web]'")

from matplotlib.dates import date2num  # noqa: E402

from inspector.history import YieldBucket  # noqa: E402

HOUR = timedelta(hours=1)
START = datetime(2026, 12, 8, 1, tzinfo=timezone.utc)


@pytest.fixture
def drawn(monkeypatch):
    from web import charts

    figures = []
    monkeypatch.setattr(charts, "_svg", lambda fig: figures.append(fig) or b"<svg/>")
    return charts, figures


def test_one_buckets_yield_is_drawn_on_that_bucket(drawn) -> None:
    charts, figures = drawn
    charts.yield_chart("Yield per product", {"tile": [YieldBucket(START, 37, 22, 9, 7)]}, HOUR)
    low, high = figures[0].axes[0].get_xlim()
    assert (low, high) == pytest.approx((date2num(START - HOUR), date2num(START + HOUR)))


def test_a_reject_bar_stands_on_its_own_bucket(drawn) -> None:
    charts, figures = drawn
    bucket = [YieldBucket(START, 37, 22, 9, 7)]
    charts.false_reject_chart(bucket, [YieldBucket(START, 0, 3, 2)], [YieldBucket(START, 0, 5, 1)], HOUR)
    bars = [p for p in figures[0].axes[0].patches if p.get_height() > 0]
    assert bars and all(p.get_x() == pytest.approx(date2num(START)) for p in bars)
    assert all(date2num(START) < p.get_x() + p.get_width() <= date2num(START + HOUR) for p in bars)


def test_the_chart_pages_give_the_bucket(drawn, tmp_path) -> None:
    """The routes pass their bucket on: a day's chart of one day spans the days beside it."""
    import re

    from inspector.history import HistoryDB, InspectionResult
    from web import WebOptions, create_app

    charts, figures = drawn
    db = HistoryDB(f"sqlite:///{tmp_path / 'history.db'}")
    db.upgrade()
    db.add_user("quinn", "quality", "567800", by="test")
    db.add_product("tile")
    db.write_inspections([InspectionResult(START + timedelta(minutes=i), "cam", i, 0.1, "FAIL", 0.05, product_id=1)
                          for i in range(3)])
    client = create_app(db, WebOptions(image_folders=[str(tmp_path)])).test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").get_data(as_text=True)).group(1)
    assert client.post("/sign-in", data={"csrf_token": csrf, "name": "quinn", "pin": "567800"}).status_code == 303
    day = datetime(2026, 12, 8, tzinfo=timezone.utc)
    assert client.get("/charts/yield-product.svg?bucket=day").status_code == 200
    assert figures[-1].axes[0].get_xlim() == pytest.approx((date2num(day - timedelta(days=1)), date2num(day + timedelta(days=1))))
    assert client.get("/charts/false-rejects.svg?bucket=day").status_code == 200
    bars = [p for p in figures[-1].axes[0].patches if p.get_height() > 0]
    assert bars and all(p.get_x() == pytest.approx(date2num(day)) for p in bars)
    db.close()
