"""Issue 28's done-when, as ``scripts/two_stations.py`` runs it, shortened: two ``inspector run``
stations on pylon's emulated camera forward to a real PostgreSQL, which goes away for a while; one
station is killed in that outage, holding rows and images not yet sent, and started again;
``inspector serve`` shows both stations' rejects with their heatmaps in Chromium from the plant
database alone, and a label set there is in the plant database with its user's name. Nothing
recorded on either station is missing from the plant, row or image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pg_support import postgres_bin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("pypylon", reason="the stations run on pylon's emulated camera: pip install -e '.[basler]'")
pytest.importorskip("elpv_dataset", reason="the emulated camera replays the demo's cells: pip install -e '.[demo]'")
pytest.importorskip("psycopg", reason="the plant link needs psycopg: pip install -e '.[plant]'")
pytest.importorskip("selenium", reason="the browser check needs Selenium: pip install -e '.[dev]'")
pytest.importorskip("flask_wtf", reason="inspector serve needs the [web] extra")
pytestmark = pytest.mark.skipif(
    postgres_bin() is None or shutil.which("chromedriver") is None
    or not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="needs PostgreSQL server binaries and Chromium with chromium-driver (.ci/run installs them)")


def test_two_stations_one_restarted_lose_nothing_and_the_browser_shows_both(tmp_path: Path) -> None:
    figures_path = tmp_path / "two_stations.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "two_stations.py"), "--stop-s", "5", "--run-s", "8", "--outage-s", "6",
                           "--json", str(figures_path)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    figures = json.loads(figures_path.read_text())
    assert figures["ok"]
    for name in ("line-1", "line-2"):
        station = figures["stations"][name]
        assert station["rows"] > 0 and station["rows_in_plant"] == station["rows"]
        assert station["rows_missing"] == station["rows_twice"] == 0
        assert station["images_kept"] > 0 and station["images_missing"] == station["images_differing"] == 0
        assert figures["browser"]["parts"][name]["frame_px"] > 0
    assert figures["stations"]["line-2"]["runs"] == 2 and figures["exit_codes"]["line-2"][0] == -9
    line1 = figures["stations"]["line-1"]  # the outage's alarms reached the plant, and what waits there
    assert "plant_db_down" in line1["alarms_in_plant"] and "plant_db_recovered" in line1["alarms_in_plant"]
    assert line1["last_status"] == {"rows_waiting": 0, "images_waiting": 0, "images_gone": 0}
    at_kill = figures["line2_at_kill"]  # killed in the plant's outage: it died holding rows not yet sent
    assert at_kill["recorded"] > at_kill["in_plant"]
    assert (figures["browser"]["label"]["label"], figures["browser"]["label"]["by"]) == ("confirmed_defect", "quinn")
