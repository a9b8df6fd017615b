"""The web review in a real browser: the distribution's Chromium, driven by Selenium through its
chromium-driver, against ``inspector serve`` started as a command, over SQLite and over a real
PostgreSQL server (``tests/pg_support.py``, as the plant-link tests start one). A quality
engineer signs in, filters, opens a part, sees its heatmap, moves on by keyboard, labels it and
exports; the label is in the database with their name.

``INSPECTOR_WEB_SCREENSHOTS=DIR`` also saves a screenshot of each page there (the SQLite run);
``docs/images/web-*.png`` were made that way.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need Selenium: pip install -e '.[dev]'")
pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra: pip install -e '.[web]'")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from inspector.history import HistoryDB  # noqa: E402
from inspector.history import queries  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from pg_support import database_url, free_port  # noqa: E402
from web_support import (HTML_ALARM, HTML_PRODUCT, QUALITY, QUALITY_PIN, add_station_reports,  # noqa: E402
                         forward_station, make_history)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no Chromium or chromium-driver here: apt-get install chromium chromium-driver (.ci/run does)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


class Serve:
    """``inspector serve`` as a process of its own, on a free loopback port."""

    def __init__(self, url: str, images: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--db", url, "--port", str(self.port), "--images", str(images)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if "review of" not in line:
            self.process.kill()
            raise RuntimeError(f"inspector serve did not start: {line}{self.process.stdout.read()}")
        self.base = f"http://127.0.0.1:{self.port}"
        self.said: list[str] = []
        # Read what it says from here on, or a full pipe would stop it.
        self.reader = threading.Thread(target=lambda: self.said.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def close(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)
        self.reader.join(5)
        return "".join(self.said)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"served-{request.param}")
    with database_url(request.param, root) as url:
        history = make_history(url, root / "images")
        add_station_reports(url)
        serve = Serve(url, root / "images")
        try:
            yield request.param, url, history, serve
        finally:
            log = serve.close()
            assert "Traceback" not in log, log


def shot(browser, name: str, backend: str, tmp_path: Path) -> None:
    browser.save_screenshot(str(tmp_path / f"{name}.png"))
    folder = os.environ.get("INSPECTOR_WEB_SCREENSHOTS")
    if folder and backend == "sqlite":
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"web-{name}.png"))


def wait_for(browser, condition, timeout: float = 10.0):
    return WebDriverWait(browser, timeout).until(condition)


def test_sign_in_filter_open_a_part_see_its_heatmap_label_it_and_export(browser, served, tmp_path: Path) -> None:
    backend, url, history, serve = served
    browser.delete_all_cookies()
    browser.get(f"{serve.base}/inspections")
    assert "/sign-in" in browser.current_url
    shot(browser, "sign-in", backend, tmp_path)
    browser.find_element(By.ID, "name").send_keys(QUALITY)
    browser.find_element(By.ID, "pin").send_keys(QUALITY_PIN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "rows"))
    assert browser.find_element(By.ID, "who").text == "quinn (quality)"

    # HTML in a product name is text: shown as typed, nothing run.
    assert HTML_PRODUCT in browser.find_element(By.ID, "rows").text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018

    # Filter: line-2's rejects.
    Select(browser.find_element(By.ID, "f-station")).select_by_visible_text("line-2")
    Select(browser.find_element(By.ID, "f-decision")).select_by_visible_text("FAIL")
    browser.find_element(By.ID, "apply").click()
    wait_for(browser, lambda b: "decision=FAIL" in b.current_url)
    assert browser.find_element(By.ID, "total").text == "4 match"
    links = browser.find_elements(By.CSS_SELECTOR, "#rows a.open")
    assert len(links) == 4
    shot(browser, "inspections", backend, tmp_path)

    # Open the newest; its heatmap is drawn over the frame at the slider's opacity.
    links[0].click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "heat"))
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    frame, heat = browser.find_element(By.ID, "frame"), browser.find_element(By.ID, "heat")
    wait_for(browser, lambda b: b.execute_script(loaded, heat) and b.execute_script(loaded, frame))
    assert browser.execute_script("return arguments[0].naturalWidth", heat) == 160
    assert browser.execute_script("return getComputedStyle(arguments[0]).opacity", heat) == "0.5"
    assert frame.size == heat.size  # the map lies exactly over the frame
    assert browser.find_element(By.ID, "decision").text == "FAIL"
    slider = browser.find_element(By.ID, "opacity")
    browser.execute_script("arguments[0].value = 80; arguments[0].dispatchEvent(new Event('input'))", slider)
    assert browser.execute_script("return getComputedStyle(arguments[0]).opacity", heat) == "0.8"
    shot(browser, "part", backend, tmp_path)
    first = int(browser.current_url.split("/inspections/")[1].split("?")[0])

    # The next older reject of the same filter, by keyboard.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    wait_for(browser, lambda b: f"/inspections/{first}?" not in b.current_url)
    part = int(browser.current_url.split("/inspections/")[1].split("?")[0])
    assert part != first and "decision=FAIL" in browser.current_url

    # Label it, with a note.
    browser.find_element(By.ID, "label-false_reject").click()
    browser.find_element(By.ID, "note").send_keys("dust on the lens, part is good")
    browser.find_element(By.ID, "save-label").click()
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "p.flash"))
    assert browser.find_element(By.ID, "label").text.startswith("false reject by quinn")
    assert "dust on the lens" in browser.find_element(By.ID, "trail").text
    db = HistoryDB(url)
    try:
        with db.session() as s:
            row = queries.inspection_row(s, part)
        assert (row.label, row.labelled_by) == ("false_reject", QUALITY) and row.labelled_at is not None
        assert [e.action for e in db.audit_events(2)] == ["label_note", "label"]
    finally:
        db.close()

    # Back to the list and export what is filtered.
    browser.find_element(By.CSS_SELECTOR, ".pager a").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "export-csv"))
    before = set(browser.downloads.iterdir())
    browser.find_element(By.ID, "export-csv").click()

    def downloaded(b) -> list[Path]:
        # Chromium puts an empty file of the final name beside NAME.crdownload while it downloads,
        # and renames the one onto the other at the end: a .csv alone may still be that placeholder.
        new = set(b.downloads.iterdir()) - before
        if any(p.suffix == ".crdownload" for p in new):
            return []
        return [p for p in new if p.suffix == ".csv" and p.stat().st_size > 0]

    wait_for(browser, downloaded, 20)
    (exported,) = downloaded(browser)
    rows = list(csv.DictReader(exported.open()))
    assert len(rows) == 4 and {r["station"] for r in rows} == {"line-2"}
    assert {r["label"] for r in rows if int(r["id"]) == part} == {"false_reject"}

    browser.get(f"{serve.base}/charts?bucket=hour")
    charts = [browser.find_element(By.ID, name) for name in ("yield-station", "yield-product", "false-rejects")]
    wait_for(browser, lambda b: all(b.execute_script(loaded, c) for c in charts))
    shot(browser, "charts", backend, tmp_path)
    browser.get(f"{serve.base}/stations")
    stations = browser.find_element(By.ID, "stations")
    assert "line-1" in stations.text
    assert [c.text for c in stations.find_elements(By.CSS_SELECTOR, "td.waiting")] == ["17", "8", "42", "12"]
    assert len(stations.find_elements(By.CSS_SELECTOR, "td.waiting.stale")) == 2  # line-2's, six minutes old
    alarms = browser.find_element(By.ID, "alarms-list")
    assert HTML_ALARM in alarms.text and not alarms.find_elements(By.TAG_NAME, "img")  # the HTML is text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    shot(browser, "stations", backend, tmp_path)
    Select(browser.find_element(By.ID, "a-station")).select_by_visible_text("line-1")
    browser.find_element(By.ID, "alarms-apply").click()
    wait_for(browser, lambda b: "station=line-1" in b.current_url)
    kinds = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#alarms-list td.kind")]
    assert kinds == ["drift", "no_part_run"]

    # A refusal is a page that says why.
    browser.get(f"{serve.base}/inspections?min_score=abc")
    assert "min_score: 'abc' is not a number" in browser.find_element(By.ID, "reason").text
    browser.get(f"{serve.base}/inspections/{history.outside}")
    assert "outside the image store" in browser.find_element(By.ID, "image-note").text
    shot(browser, "refused-image", backend, tmp_path)
    browser.find_element(By.CSS_SELECTOR, "form.who button").click()
    wait_for(browser, lambda b: "/sign-in" in b.current_url)
    time.sleep(0)  # signed out: the next page asks again
    browser.get(f"{serve.base}/inspections")
    assert "/sign-in" in browser.current_url


def test_a_part_whose_image_files_are_gone_shows_them_from_the_plant(browser, served, tmp_path: Path) -> None:
    backend, url, _, serve = served
    # Station line-3 forwards a reject through its plant link; its own files are then deleted,
    # and the review was never given its folder: the plant's copies are all there is.
    forwarded = forward_station(url, tmp_path / "line-3", "line-3", datetime(2026, 12, 3, 6, tzinfo=timezone.utc), 1)
    browser.delete_all_cookies()
    browser.get(f"{serve.base}/inspections/{forwarded.fails[0]}")
    browser.find_element(By.ID, "name").send_keys(QUALITY)
    browser.find_element(By.ID, "pin").send_keys(QUALITY_PIN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "heat"))
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    frame, heat = browser.find_element(By.ID, "frame"), browser.find_element(By.ID, "heat")
    wait_for(browser, lambda b: b.execute_script(loaded, heat) and b.execute_script(loaded, frame))
    assert browser.execute_script("return arguments[0].naturalWidth", frame) == 160
    assert browser.execute_script("return arguments[0].naturalWidth", heat) == 160
    assert frame.size == heat.size
    shot(browser, "part-from-plant", backend, tmp_path)
