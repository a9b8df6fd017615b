#!/usr/bin/env python
"""Two stations and the plant, run as a plant runs them (issue 28's done-when), with figures.

What it starts, all on this computer, each a real process:

- a PostgreSQL server on loopback (``tests/pg_support.py``), the plant database, with the plant's
  users (a quality engineer);
- two stations, ``inspector run --camera basler://emulated?images=CELLS --product "demo solar
  cells" --plant-db postgresql://…?station=line-N``, each with its own SQLite history and image
  folder, on pylon's emulated camera replaying the shipped demo's cells (the demo model, rejects
  kept, 10 % of passes sampled);
- ``inspector serve --db postgresql://…`` over the plant database, and the distribution's Chromium
  driven by Selenium.

What it does: both stations run; the plant database goes away for ``--outage-s`` seconds, so both
stations keep rows and images waiting; line-2 is killed in the outage (SIGKILL, as a power cut
looks) and the plant comes back; line-2 stays off for ``--stop-s`` seconds (60 by default) while
line-1 catches up and goes on; line-2 is started again and sends what it held; both run
``--run-s`` more and are stopped (SIGTERM, the operator's stop). Rows or images that the stop's
few seconds of forwarding left behind wait for the station's next run; the script forwards them
as that next run would (a ``PlantLink`` on the station's history) and says how many there were.
Then it checks, station by station, that every row of the station's history is in the plant once
and every image kept on its disk is in the plant byte for byte; and in the browser, a quality
engineer signs in, finds both stations' rejects, opens one of each with its heatmap (the images
come from the plant database: ``serve`` is given no image folder), and labels one, which the
plant database then holds with their name.

    python scripts/two_stations.py [--stop-s 60] [--run-s 20] [--outage-s 10] [--json docs/evidence/two_stations.json]
        [--screenshots docs/images]

Exit 0 when nothing was lost and the browser saw everything, else 1 with what failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's packages, whatever else is installed
sys.path.insert(0, str(REPO / "tests"))
from pg_support import PostgresServer, free_port  # noqa: E402

QUALITY, QUALITY_PIN = "quinn", "314159"
TECH, TECH_PIN = "tara", "271828"
STATIONS = ("line-1", "line-2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-s", type=float, default=60.0, help="how long line-2 stays off")
    parser.add_argument("--run-s", type=float, default=20.0, help="how long the stations run before and after")
    parser.add_argument("--outage-s", type=float, default=10.0,
                        help="how long the plant database is away just before line-2 is killed")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--screenshots", type=Path, help="save the browser's pages here (two-stations-*.png)")
    parser.add_argument("--no-browser", action="store_true", help="check the plant database only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="two-stations-"))
    server = PostgresServer(durable=True)
    figures: dict[str, Any] = {"command": " ".join(["python", "scripts/two_stations.py", *sys.argv[1:]]),
                               "machine": _machine(), "stop_s": args.stop_s, "run_s": args.run_s,
                               "outage_s": args.outage_s}
    try:
        server.start()
        server.create_database("plant")
        plant_url = server.url("plant")
        _staff_plant(plant_url)
        cells = _demo_cells(work)
        stations = {name: Station(name, work / name, plant_url, cells) for name in STATIONS}
        for station in stations.values():
            station.start()
        _wait_for_rows(plant_url, STATIONS, timeout=180)
        time.sleep(args.run_s)
        # The plant away for a while first, so line-2 dies holding rows and images not yet sent.
        server.stop("fast")
        time.sleep(args.outage_s)
        off = stations["line-2"]
        off.kill()
        server.start()
        figures["line2_at_kill"] = {"recorded": off.recorded(), "in_plant": _plant_rows(plant_url, "line-2"),
                                    "images_kept": off.images_kept(),
                                    "images_in_plant": _plant_image_count(plant_url, "line-2")}
        print(f"line-2 killed: {figures['line2_at_kill']}; off for {args.stop_s:.0f} s", flush=True)
        time.sleep(args.stop_s)
        off.start()
        time.sleep(args.run_s)
        for station in stations.values():
            station.stop()
        figures["left_for_next_run"] = {name: s.forward_rest() for name, s in stations.items()}
        figures["stations"] = {name: _check(plant_url, s) for name, s in stations.items()}
        figures["exit_codes"] = {name: s.exit_codes for name, s in stations.items()}
        lost = {name: f for name, f in figures["stations"].items() if f["rows_missing"] or f["images_missing"]
                or f["images_differing"]}
        failures = [f"{name} lost {f}" for name, f in lost.items()]
        failures += [f"{name} ended with {codes}" for name, codes in figures["exit_codes"].items()
                     if any(c not in (0, -signal.SIGKILL) for c in codes)]
        if not args.no_browser:
            figures["browser"] = _browse(plant_url, work, args.screenshots)
            failures += figures["browser"].pop("failures")
        figures["ok"] = not failures
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        for failure in failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        return 0 if not failures else 1
    finally:
        for station in locals().get("stations", {}).values():
            station.kill()
        server.close()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


class Station:
    """One ``inspector run`` process at a time, with its own history, images and data folder."""

    def __init__(self, name: str, root: Path, plant_url: str, cells: Path) -> None:
        from demo import register_demo_model
        from inspector.history import HistoryDB

        self.name, self.root = name, root
        root.mkdir(parents=True)
        self.db_url = f"sqlite:///{root / 'history.db'}"
        self.plant_url = f"{plant_url}?station={name}"
        db = HistoryDB(self.db_url, station=name)
        db.upgrade()
        register_demo_model(db)
        db.close()
        self.argv = [sys.executable, "-m", "cli", "run", "--camera", f"basler://emulated?images={cells}",
                     "--product", "demo solar cells", "--db", self.db_url, "--plant-db", self.plant_url,
                     "--pass-sample-rate", "0.1", "--summary-interval", "5"]
        self.env = {**os.environ, "PYLON_CAMEMU": "1", "INSPECTOR_DATA_DIR": str(root / "data"),
                    "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        self.process: subprocess.Popen | None = None
        self.exit_codes: list[int] = []
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.root / f"run{self.runs}.log").open("w")
        self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.exit_codes.append(self.process.wait(30))
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.exit_codes.append(self.process.wait(120))
        self.process = None

    def recorded(self) -> int:
        from sqlalchemy import func, select

        from inspector.history import HistoryDB
        from inspector.history.tables import Inspection

        db = HistoryDB(self.db_url, station=self.name)
        try:
            with db.session() as s:
                return int(s.scalar(select(func.count()).select_from(Inspection)))
        finally:
            db.close()

    def images_kept(self) -> int:
        return sum(1 for _ in (self.root / "images").glob("*/*.png"))

    def forward_rest(self) -> dict[str, int]:
        """What the stop left for the next run, then forwarded as the next run would."""
        from inspector.history import HistoryDB
        from inspector.links.plant import PlantLink

        db = HistoryDB(self.db_url, station=self.name)
        try:
            link = PlantLink(db, self.plant_url)
            rest = {"rows": link.pending(), "inspections_with_images": link.pending_images()}
            link.start()
            link.stop(120)
            return rest
        finally:
            db.close()

    def rows(self) -> list[Any]:
        from sqlalchemy import select

        from inspector.history import HistoryDB
        from inspector.history.tables import Inspection

        db = HistoryDB(self.db_url, station=self.name)
        try:
            with db.session() as s:
                return s.execute(select(Inspection.uid, Inspection.decision, Inspection.image_path,
                                        Inspection.heatmap_path)).all()
        finally:
            db.close()


def _check(plant_url: str, station: Station) -> dict[str, Any]:
    """Every row of the station once in the plant; every image on its disk there byte for byte."""
    from sqlalchemy import func, select

    from inspector.history import HistoryDB
    from inspector.history.tables import Inspection, PlantImage, StationAlarm, StationStatus

    rows = station.rows()
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            uids = s.scalars(select(Inspection.uid).where(Inspection.station == station.name)).all()
            images = {(uid, kind): digest for uid, kind, digest in s.execute(
                select(PlantImage.uid, PlantImage.kind, PlantImage.sha256).where(PlantImage.station == station.name))}
            image_bytes = int(s.scalar(select(func.coalesce(func.sum(PlantImage.size), 0))
                                       .where(PlantImage.station == station.name)))
            alarms = [kind for kind, in s.execute(select(StationAlarm.kind).where(StationAlarm.station == station.name)
                                                  .order_by(StationAlarm.time))]
            status = s.get(StationStatus, station.name)
            reported = None if status is None else {"rows_waiting": status.rows_waiting,
                                                    "images_waiting": status.images_waiting,
                                                    "images_gone": status.images_gone}
    finally:
        plant.close()
    kept = missing = differing = 0
    for row in rows:
        for kind, path in (("image", row.image_path), ("heatmap", row.heatmap_path)):
            if path is None or not Path(path).is_file():
                continue
            kept += 1
            digest = images.get((row.uid, kind))
            if digest is None:
                missing += 1
            elif digest != hashlib.sha256(Path(path).read_bytes()).hexdigest():
                differing += 1
    decisions: dict[str, int] = {}
    for row in rows:
        decisions[row.decision] = decisions.get(row.decision, 0) + 1
    return {"rows": len(rows), "decisions": decisions, "rows_in_plant": len(uids),
            "rows_missing": len({r.uid for r in rows} - set(uids)), "rows_twice": len(uids) - len(set(uids)),
            "images_kept": kept, "images_in_plant": len(images), "image_bytes_in_plant": image_bytes,
            "images_missing": missing, "images_differing": differing, "runs": station.runs,
            "alarms_in_plant": alarms, "last_status": reported}


def _staff_plant(plant_url: str) -> None:
    """The plant's users: the same names and PINs as the stations' (they are not forwarded)."""
    from inspector.history import HistoryDB

    plant = HistoryDB(plant_url)
    try:
        plant.upgrade()
        plant.add_user(TECH, "technician", TECH_PIN)
        plant.add_user(QUALITY, "quality", QUALITY_PIN, by=TECH)
    finally:
        plant.close()


def _demo_cells(work: Path) -> Path:
    from demo import ensure_replay_folder

    return ensure_replay_folder(work / "demo")


def _wait_for_rows(plant_url: str, names: tuple[str, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(_plant_rows(plant_url, name) for name in names):
        if time.monotonic() > deadline:
            raise SystemExit(f"the stations forwarded nothing within {timeout:.0f} s")
        time.sleep(1)


def _plant_rows(plant_url: str, station: str) -> int:
    from inspector.history import HistoryDB, InspectionFilter

    plant = HistoryDB(plant_url)
    try:
        return plant.count_inspections(InspectionFilter(station=station))
    except Exception:  # the first station has not made the schema yet
        return 0
    finally:
        plant.close()


def _plant_image_count(plant_url: str, station: str) -> int:
    from sqlalchemy import func, select

    from inspector.history import HistoryDB
    from inspector.history.tables import PlantImage

    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            return int(s.scalar(select(func.count()).select_from(PlantImage).where(PlantImage.station == station)))
    finally:
        plant.close()


def _browse(plant_url: str, work: Path, screenshots: Path | None) -> dict[str, Any]:
    """A quality engineer at a desk: both stations' rejects, each with its heatmap; a label."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    from inspector.history import HistoryDB
    from inspector.history import queries

    failures: list[str] = []
    out: dict[str, Any] = {"failures": failures, "parts": {}}
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--db", plant_url, "--port", str(port)],
                             cwd=REPO, stdout=(work / "serve.log").open("w"), stderr=subprocess.STDOUT)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-gpu"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    base = f"http://127.0.0.1:{port}"
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"

    def shot(name: str) -> None:
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(screenshots / f"two-stations-{name}.png"))

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                browser.get(f"{base}/sign-in")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        browser.find_element(By.ID, "name").send_keys(QUALITY)
        browser.find_element(By.ID, "pin").send_keys(QUALITY_PIN)
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "rows"))
        labelled = None
        for name in STATIONS:
            browser.get(f"{base}/inspections")
            Select(browser.find_element(By.ID, "f-station")).select_by_visible_text(name)
            Select(browser.find_element(By.ID, "f-decision")).select_by_visible_text("FAIL")
            browser.find_element(By.ID, "apply").click()
            WebDriverWait(browser, 20).until(lambda b: "decision=FAIL" in b.current_url)
            links = browser.find_elements(By.CSS_SELECTOR, "#rows a.open")
            if not links:
                failures.append(f"the browser shows no reject of {name}")
                continue
            shot(f"{name}-rejects")
            links[0].click()
            WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "frame"))
            heat = browser.find_elements(By.ID, "heat")
            frame = browser.find_element(By.ID, "frame")
            try:
                WebDriverWait(browser, 20).until(lambda b: heat and b.execute_script(loaded, heat[0])
                                                 and b.execute_script(loaded, frame))
            except Exception:
                note = browser.find_elements(By.ID, "image-note")
                failures.append(f"{name}'s reject has no heatmap in the browser"
                                + (f": {note[0].text}" if note else ""))
                continue
            part = int(browser.current_url.split("/inspections/")[1].split("?")[0])
            out["parts"][name] = {"id": part, "frame_px": browser.execute_script("return arguments[0].naturalWidth",
                                                                                 frame)}
            shot(f"{name}-part")
            if labelled is None:
                browser.find_element(By.ID, "label-confirmed_defect").click()
                browser.find_element(By.ID, "save-label").click()
                WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "p.flash"))
                labelled = part
        if labelled is not None:
            plant = HistoryDB(plant_url)
            try:
                with plant.session() as s:
                    row = queries.inspection_row(s, labelled)
                out["label"] = {"id": labelled, "label": row.label, "by": row.labelled_by,
                                "at": row.labelled_at.isoformat() if row.labelled_at else None}
                if (row.label, row.labelled_by) != ("confirmed_defect", QUALITY):
                    failures.append(f"the label is not in the plant database with its user: {out['label']}")
            finally:
                plant.close()
        else:
            failures.append("nothing was labelled")
    finally:
        browser.quit()
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    return out


def _machine() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16") if f in have)
                break
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {flags}"


if __name__ == "__main__":
    sys.exit(main())
