"""A history for the web review's tests: two stations' inspections with real stored frames and
16-bit maps (written by the image store, as the line writes them), the rule each was decided
with, a product whose name holds HTML, and a technician, a quality engineer and an operator.

``python tests/web_support.py URL IMAGES`` fills the database at URL (SQLite or PostgreSQL) and
prints the ids as JSON; the browser tests and the benchmark use the functions directly.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

TECH, TECH_PIN = "tara", "271828"
QUALITY, QUALITY_PIN = "quinn", "314159"
OPERATOR, OPERATOR_PIN = "otto", "161803"
HTML_PRODUCT = "<img src=x onerror=alert(1)><b>bold"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
THRESHOLD, PIXEL_THRESHOLD, MIN_AREA = 0.5, 0.4, 12


@dataclass
class History:
    """What :func:`make_history` wrote: row ids by kind."""

    fails: list[int] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)
    outside: int = 0  # a row whose image path is outside the store
    elsewhere: int = 0  # a row whose image is on another station's disk (not here)
    products: dict[str, int] = field(default_factory=dict)


def frame(i: int, fail: bool, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic part (a grey tile with a gradient) and its anomaly map (a blob on a FAIL)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.dstack([80 + 60 * x / w, 90 + 50 * y / h, np.full_like(x, 110 + i % 40)]).astype(np.uint8)
    heat = 0.05 + 0.05 * np.sin(x / 9 + i) ** 2
    if fail:
        cy, cx = 30 + (i * 7) % 60, 40 + (i * 13) % 80
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 7.0**2))
        heat = heat + 0.8 * blob
        image[(np.abs(x - cx) < 6) & (np.abs(y - cy) < 3)] = (40, 30, 30)
    return image, heat.astype(np.float32)


def make_history(url: str, images: Path, *, per_station: int = 12, stations: tuple[str, ...] = ("line-1", "line-2"),
                 station: str | None = None) -> History:
    """Users, two products (one with HTML in its name), and ``per_station`` inspections of each
    station an hour apart from :data:`T0` (every third a FAIL, images kept for all), recorded
    through the image store and ``write_inspections`` as the line records them."""
    from inspector.history import HistoryDB, ImageStore
    from inspector.inspection import DecisionRule, InspectionResult

    out = History()
    db = HistoryDB(url, station=station or stations[0])
    try:
        db.upgrade()
        db.add_user(TECH, "technician", TECH_PIN)
        db.add_user(QUALITY, "quality", QUALITY_PIN, by=TECH)
        db.add_user(OPERATOR, "operator", OPERATOR_PIN, by=TECH)
        for name in ("tile", HTML_PRODUCT):
            pid = db.add_product(name)
            out.products[name] = pid
        tile = out.products["tile"]
        version = db.add_model_version(tile, images / "model.safetensors", sha256="ab" * 32)
        rule = DecisionRule(THRESHOLD, PIXEL_THRESHOLD, MIN_AREA)
        store = ImageStore(images, pass_sample_rate=1.0)
        for s_index, name in enumerate(stations):
            writer_db = HistoryDB(url, station=name)
            try:
                records = []
                for i in range(per_station):
                    fail = i % 3 == 2
                    image, heat = frame(i + 100 * s_index, fail)
                    score = float(heat.max())
                    product = tile if i % 4 else out.products[HTML_PRODUCT]
                    records.append(store.save(InspectionResult(
                        T0 + timedelta(hours=i, minutes=s_index), "cam0", i, score, "FAIL" if fail else "PASS",
                        THRESHOLD, version if product == tile else None, product, part_id=f"P{s_index}{i:03d}",
                        image=image, heatmap=heat, rule=rule, latency_total_ms=20.0)))
                for r in writer_db.write_inspections(records):
                    (out.fails if r.decision == "FAIL" else out.passes).append(r.inspection_id)
                if s_index == 0:
                    odd = [InspectionResult(T0 + timedelta(hours=per_station, minutes=1), "cam0", 900, 0.9, "FAIL",
                                            THRESHOLD, rule=rule, image_path="/etc/passwd", heatmap_path="/etc/hostname",
                                            heatmap_low=0.0, heatmap_high=1.0),
                           InspectionResult(T0 + timedelta(hours=per_station, minutes=2), "cam0", 901, 0.9, "FAIL",
                                            THRESHOLD, rule=rule, image_path=str(images / "2026-11-30" / "gone.png"))]
                    out.outside, out.elsewhere = [r.inspection_id for r in writer_db.write_inspections(odd)]
            finally:
                writer_db.close()
    finally:
        db.close()
    return out


#: An alarm message with HTML in it: the station page shows it as text.
HTML_ALARM = "operator note: <b>belt</b> <img src=x onerror=alert(2)> slipping"


def add_station_reports(url: str) -> None:
    """What two stations' plant links would have told this database: line-1 reported a few
    seconds ago (rows and images still waiting), line-2 six minutes ago (stale: off, or cut off),
    and a few alarms of both, one with HTML in its message. Times are relative to now."""
    import uuid

    from inspector.history import HistoryDB
    from inspector.history.tables import StationAlarm, StationStatus

    now = datetime.now(timezone.utc)
    db = HistoryDB(url)
    try:
        with db.session() as s:
            s.merge(StationStatus(station="line-1", seen=now - timedelta(seconds=3), rows_waiting=17,
                                  images_waiting=8, images_gone=0))
            s.merge(StationStatus(station="line-2", seen=now - timedelta(minutes=6), rows_waiting=42,
                                  images_waiting=12, images_gone=3))
            for station, ago, kind, message in (
                    ("line-2", timedelta(minutes=7), "plant_db_down",
                     "plant database unreachable (connection refused); inspections wait in the local history"),
                    ("line-1", timedelta(minutes=25), "drift", "scores drifting up: median 0.31 over the last 200 "
                     "parts against 0.18 at calibration"),
                    ("line-2", timedelta(minutes=48), "line_stalled", "no part inspected for 120 s although camera "
                     "cam0 is connected: the line is stalled (check the camera, its trigger and the part feed)"),
                    ("line-1", timedelta(hours=2), "no_part_run", "5 frames in a row without the part (NO PART), "
                     "the last frame 4711 of camera cam0: check the part feed, the fixture and the light"),
                    ("line-2", timedelta(hours=3), "no_part_run", HTML_ALARM)):
                s.add(StationAlarm(station=station, uid=uuid.uuid4().hex, time=now - ago, kind=kind, message=message))
    finally:
        db.close()


@dataclass
class Forwarded:
    """What :func:`forward_station` put in the plant: the plant's row ids, and the station's own
    files' bytes by id (the files themselves are gone from the station's disk)."""

    ids: list[int] = field(default_factory=list)
    fails: list[int] = field(default_factory=list)
    frames: dict[int, bytes] = field(default_factory=dict)
    maps: dict[int, bytes] = field(default_factory=dict)


def forward_station(plant_url: str, folder: Path, name: str, start: datetime, n: int) -> Forwarded:
    """Station ``name`` records ``n`` inspections an hour apart from ``start`` (every other one a
    FAIL, images kept for all) into its own SQLite history under ``folder``, its plant link
    forwards rows and images to ``plant_url`` as on the line, and then its image files are
    deleted: the plant's copies are all that is left of them."""
    from sqlalchemy import select

    from inspector.history import HistoryDB, ImageStore
    from inspector.history.tables import Inspection
    from inspector.inspection import DecisionRule, InspectionResult
    from inspector.links.plant import PlantLink

    folder.mkdir(parents=True, exist_ok=True)
    station = HistoryDB(f"sqlite:///{folder / 'history.db'}", station=name)
    out = Forwarded()
    try:
        station.upgrade()
        store = ImageStore(folder / "images", pass_sample_rate=1.0)
        rule = DecisionRule(THRESHOLD, PIXEL_THRESHOLD, MIN_AREA)
        records = []
        for i in range(n):
            fail = i % 2 == 0
            image, heat = frame(i + 300, fail)
            records.append(store.save(InspectionResult(
                start + timedelta(hours=i), "cam0", i, float(heat.max()), "FAIL" if fail else "PASS", THRESHOLD,
                image=image, heatmap=heat, rule=rule, latency_total_ms=20.0)))
        station.write_inspections(records)
        link = PlantLink(station, plant_url)
        link.start()
        if link.stop(30) != 0 or link.pending_images():
            raise RuntimeError(f"station {name} did not forward everything to {plant_url}")
    finally:
        station.close()
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            ids = dict(s.execute(select(Inspection.uid, Inspection.id).where(Inspection.station == name)).all())
    finally:
        plant.close()
    for r in records:
        row_id = ids[r.uid]
        out.ids.append(row_id)
        if r.decision == "FAIL":
            out.fails.append(row_id)
        out.frames[row_id] = Path(r.image_path).read_bytes()
        out.maps[row_id] = Path(r.heatmap_path).read_bytes()
        Path(r.image_path).unlink()
        Path(r.heatmap_path).unlink()
    return out


class ServerThread:
    """The web app served by waitress in a thread of this process, on a free loopback port."""

    def __init__(self, app) -> None:
        from web.server import make_server

        self.server = make_server(app, "127.0.0.1", 0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


if __name__ == "__main__":
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    history = make_history(sys.argv[1], Path(sys.argv[2]))
    print(json.dumps(history.__dict__))
