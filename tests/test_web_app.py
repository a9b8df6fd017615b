"""The web review (``inspector serve``) through Flask's test client, over a SQLite history with
real stored frames and maps: what each page shows, what labels and exports write (with who and
when, audited), and every refusal -- a clear 4xx page, nothing written."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra: pip install -e '.[web]'")

from inspector.history import HistoryDB, InspectionFilter  # noqa: E402
from inspector.history import queries  # noqa: E402
from web import WebOptions, create_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from web_support import (HTML_PRODUCT, OPERATOR, OPERATOR_PIN, QUALITY, QUALITY_PIN, TECH, TECH_PIN,  # noqa: E402
                         make_history)

REPO = Path(__file__).resolve().parents[1]
T0_RECHECK = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    url = f"sqlite:///{root / 'history.db'}"
    history = make_history(url, root / "images")
    db = HistoryDB(url)
    yield db, history, root
    db.close()


@pytest.fixture
def app(site):
    db, _, root = site
    return create_app(db, WebOptions(image_folders=[str(root / "images")], page_size=5))


def token(response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def reason(response) -> str:
    return re.search(r'id="reason">([^<]*)', response.get_data(as_text=True)).group(1)


def signed_in(app, name: str = QUALITY, pin: str = QUALITY_PIN):
    client = app.test_client()
    page = client.get("/sign-in")
    answer = client.post("/sign-in", data={"csrf_token": token(page), "name": name, "pin": pin})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client


def trail(db: HistoryDB, n: int = 1000) -> list[tuple[str, str, str]]:
    return [(e.user, e.role, e.action) for e in reversed(db.audit_events(n))]


def row_state(db: HistoryDB, inspection_id: int):
    with db.session() as s:
        row = queries.inspection_row(s, inspection_id)
    return row.label, row.labelled_by, row.labelled_at


# -- the queries the pages add ---------------------------------------------------------------------


def test_neighbours_pages_and_station_figures_come_from_the_history(site) -> None:
    db, history, _ = site
    with db.session() as s:
        newest = queries.query_inspections(s, InspectionFilter(), 100)
        ids = [r.id for r in newest]
        middle = newest[5]
        assert [r.id for r in queries.query_inspections_after(s, InspectionFilter(), (middle.time, middle.id), 3)] == ids[2:5]
        assert [r.id for r in queries.query_inspections(s, InspectionFilter(), 3, before=(middle.time, middle.id))] == ids[6:9]
        assert queries.inspection_row(s, middle.id) == middle and queries.inspection_row(s, 10**9) is None
        # a part page's previous and next, within its filter; None past either end
        assert queries.neighbours(s, InspectionFilter(), (middle.time, middle.id)) == (ids[4], ids[6])
        assert queries.neighbours(s, InspectionFilter(), (newest[0].time, newest[0].id)) == (None, ids[1])
        fails = [r.id for r in newest if r.decision == "FAIL"]
        last = next(r for r in newest if r.id == fails[-1])
        assert queries.neighbours(s, InspectionFilter(decision="FAIL"), (middle.time, middle.id)) == (
            next(i for i in reversed(ids[:5]) if i in fails), next(i for i in ids[6:] if i in fails))
        assert queries.neighbours(s, InspectionFilter(decision="FAIL"), (last.time, last.id)) == (fails[-2], None)
        summary = queries.station_summary(s, "line-2", newest[-1].time)
        assert summary.rows == 12 and summary.not_passed == 4 and summary.last_time == max(
            r.time for r in newest if r.station == "line-2")
        assert queries.forwarding_backlog(s) == []


# -- sign-in ---------------------------------------------------------------------------------------


def test_pages_need_a_signed_in_reviewer_and_the_cookie_is_guarded(app, site) -> None:
    client = app.test_client()
    answer = client.get("/inspections?decision=FAIL")
    assert answer.status_code == 302 and "/sign-in?next=" in answer.headers["Location"]
    client = signed_in(app)
    cookie = next(c for c in client._cookies.values() if c.key == "inspector_session")
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    page = client.get("/inspections")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert QUALITY in page.get_data(as_text=True)
    secure = create_app(site[0], WebOptions(image_folders=[], secure_cookies=True))
    assert secure.config["SESSION_COOKIE_SECURE"] is True


def test_a_wrong_pin_is_refused_and_guessing_locks_the_account(site) -> None:
    db, _, root = site
    db.add_user("gus", "quality", "357913", by=TECH)
    app = create_app(db, WebOptions(image_folders=[str(root / "images")]))
    client = app.test_client()
    tok = token(client.get("/sign-in"))
    statuses = [client.post("/sign-in", data={"csrf_token": tok, "name": "gus", "pin": f"00000{i}"}).status_code
                for i in range(5)]
    assert statuses == [401] * 5
    locked = client.post("/sign-in", data={"csrf_token": tok, "name": "gus", "pin": "357913"})  # the right PIN, too late
    assert locked.status_code == 429 and "locked until" in reason(locked)
    assert client.get("/inspections").status_code == 302  # still nobody signed in
    actions_ = [a for u, _, a in trail(db) if u == "gus"]
    assert actions_.count("sign_in_denied") == 6 and "pin_locked" in actions_ and "sign_in" not in actions_


def test_an_operator_may_sign_in_but_neither_see_the_history_nor_label(app, site) -> None:
    db, history, _ = site
    client = signed_in(app, OPERATOR, OPERATOR_PIN)
    page = client.get("/inspections")
    assert page.status_code == 403 and "otto is operator" in reason(page)
    before = row_state(db, history.fails[0])
    tok = token(client.get("/sign-in"))
    answer = client.post(f"/inspections/{history.fails[0]}/label", data={"csrf_token": tok, "label": "false_reject"})
    assert answer.status_code == 403
    assert row_state(db, history.fails[0]) == before


def test_a_technician_sees_the_history_but_labels_are_the_quality_engineers(app, site) -> None:
    db, history, _ = site
    client = signed_in(app, TECH, TECH_PIN)
    page = client.get(f"/inspections/{history.fails[0]}")
    assert page.status_code == 200 and 'id="save-label"' not in page.get_data(as_text=True)
    before = row_state(db, history.fails[0])
    answer = client.post(f"/inspections/{history.fails[0]}/label", data={"csrf_token": token(page), "label": "false_reject"})
    assert answer.status_code == 403 and "only quality may label" in reason(answer)
    assert row_state(db, history.fails[0]) == before
    assert trail(db)[-1] == (TECH, "technician", "label_denied")


def test_sign_out_ends_the_session_on_the_server(app, site) -> None:
    db = site[0]
    client = signed_in(app)
    page = client.get("/inspections")
    assert client.post("/sign-out", data={"csrf_token": token(page)}).status_code == 303
    assert client.get("/inspections").status_code == 302
    assert trail(db)[-1] == (QUALITY, "quality", "sign_out")


# -- the list --------------------------------------------------------------------------------------


def test_the_list_filters_and_pages_by_key_across_stations(app, site) -> None:
    db, history, _ = site
    client = signed_in(app)
    text = client.get("/inspections?decision=FAIL&station=line-2").get_data(as_text=True)
    assert re.search(r'id="total">4 match', text)
    assert text.count('class="fail"') == 4 and "line-1" not in re.search(r"<tbody>.*</tbody>", text, re.S).group(0)
    seen: list[str] = []
    url = "/inspections?decision=FAIL"
    while url:
        text = client.get(url.replace("&amp;", "&")).get_data(as_text=True)
        seen += re.findall(r'href="/inspections/(\d+)\?', text)
        more = re.search(r'id="older" rel="next" href="([^"]+)"', text)
        url = more.group(1) if more else None
    assert len(seen) == len(set(seen)) == len(history.fails) + 2  # + the two rows without images here
    product = history.products[HTML_PRODUCT]
    scored = client.get(f"/inspections?product={product}&min_score=0.5&max_score=2").get_data(as_text=True)
    assert re.search(r'id="total">\d+ match', scored)


def test_html_in_a_product_name_is_shown_as_text(app) -> None:
    client = signed_in(app)
    text = client.get("/inspections").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;bold" in text
    assert "<img src=x" not in text and "<b>bold" not in text


@pytest.mark.parametrize("query, field", [
    ("min_score=abc", "min_score"), ("max_score=nan", "max_score"), ("since=yesterday", "since"),
    ("until=2026-13-45", "until"), ("product=tile", "product"), ("model=1.5", "model"), ("decision=MAYBE", "decision"),
    ("label=great", "label"), ("since=2026-12-01&until=2026-11-01", "until"), ("before=garbage", "before"),
])
def test_a_filter_value_that_is_not_a_number_or_a_date_is_a_400(app, query: str, field: str) -> None:
    answer = signed_in(app).get(f"/inspections?{query}")
    assert answer.status_code == 400 and reason(answer).startswith(f"{field}:")


# -- a part ----------------------------------------------------------------------------------------


def test_a_parts_page_shows_its_facts_neighbours_and_heatmap_from_the_rule(app, site) -> None:
    db, history, root = site
    client = signed_in(app)
    part = history.fails[1]
    text = client.get(f"/inspections/{part}?decision=FAIL").get_data(as_text=True)
    assert 'id="decision">FAIL' in text and "defect outlined above 0.4" in text and "(threshold 0.5 mid-scale)" in text
    newer = re.search(r'id="newer" rel="prev" href="/inspections/(\d+)', text).group(1)
    older = re.search(r'id="older" rel="next" href="/inspections/(\d+)', text).group(1)
    with db.session() as s:
        fails = [r.id for r in queries.query_inspections(s, InspectionFilter(decision="FAIL"), 100)]
    i = fails.index(part)
    assert (int(newer), int(older)) == (fails[i - 1], fails[i + 1])
    frame = client.get(f"/inspections/{part}/frame.png")
    with db.session() as s:
        row = queries.inspection_row(s, part)
    assert frame.status_code == 200 and frame.data == Path(row.image_path).read_bytes()
    heat = cv2.imdecode(np.frombuffer(client.get(f"/inspections/{part}/heat.png").data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert heat.shape == (120, 160, 4)
    assert (heat[..., 3] == 255).sum() > 20 and (heat[..., 3] == 0).mean() > 0.5  # the defect in, the rest clear
    assert client.get(f"/inspections/{part}/scale.png").status_code == 200
    annotated = cv2.imdecode(np.frombuffer(client.get(f"/inspections/{part}/overlay.png").data, np.uint8), cv2.IMREAD_COLOR)
    assert annotated.shape[0] > 120 and annotated.shape[1] > 160  # banner and colour bar around the frame
    assert client.get("/inspections/999999").status_code == 404


def test_an_image_path_outside_the_store_is_refused_and_a_missing_one_is_said(app, site) -> None:
    _, history, _ = site
    client = signed_in(app)
    for picture in ("frame", "heat", "overlay"):
        answer = client.get(f"/inspections/{history.outside}/{picture}.png")
        assert answer.status_code == 403 and "outside the image store" in reason(answer), picture
        assert b"root:" not in answer.data
    page = client.get(f"/inspections/{history.outside}").get_data(as_text=True)
    assert "outside the image store" in page and 'id="frame"' not in page
    gone = client.get(f"/inspections/{history.elsewhere}").get_data(as_text=True)
    assert "image not available here" in gone
    assert client.get(f"/inspections/{history.elsewhere}/frame.png").status_code == 404


# -- labels ----------------------------------------------------------------------------------------


def test_a_label_and_its_note_are_written_with_who_and_when_and_audited(app, site) -> None:
    db, history, _ = site
    client = signed_in(app)
    part = history.fails[2]
    page = client.get(f"/inspections/{part}?decision=FAIL")
    answer = client.post(f"/inspections/{part}/label", data={
        "csrf_token": token(page), "label": "confirmed_defect", "note": "crack <b>at</b> the edge", "filters": "decision=FAIL"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/inspections/{part}?decision=FAIL")
    label, by, at = row_state(db, part)
    assert (label, by) == ("confirmed_defect", QUALITY) and at is not None
    assert trail(db)[-2:] == [(QUALITY, "quality", "label"), (QUALITY, "quality", "label_note")]
    text = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "confirmed defect by quinn" in text and "crack &lt;b&gt;at&lt;/b&gt; the edge" in text


def test_a_label_without_a_session_or_with_a_stale_token_writes_nothing(app, site) -> None:
    db, history, _ = site
    part = history.fails[3]
    before, events = row_state(db, part), len(db.audit_events(10_000))
    anonymous = app.test_client()
    tok = token(anonymous.get("/sign-in"))
    answer = anonymous.post(f"/inspections/{part}/label", data={"csrf_token": tok, "label": "false_reject"})
    assert answer.status_code == 401 and "Sign in first" in reason(answer)
    client = signed_in(app)
    stale = token(client.get("/inspections"))
    client.post("/sign-out", data={"csrf_token": stale})
    client = signed_in(app)  # a new session: the old token is no longer its own
    events = len(db.audit_events(10_000))
    for data in ({"csrf_token": stale, "label": "false_reject"}, {"label": "false_reject"},
                 {"csrf_token": "forged", "label": "false_reject"}):
        answer = client.post(f"/inspections/{part}/label", data=data)
        assert answer.status_code == 400 and "Reload the page" in reason(answer)
    assert row_state(db, part) == before and len(db.audit_events(10_000)) == events


def test_a_label_value_or_note_the_history_does_not_take_is_a_400(app, site) -> None:
    db, history, _ = site
    part = history.fails[4]
    client = signed_in(app)
    tok = token(client.get(f"/inspections/{part}"))
    before, events = row_state(db, part), len(db.audit_events(10_000))
    assert client.post(f"/inspections/{part}/label", data={"csrf_token": tok, "label": "great"}).status_code == 400
    assert client.post(f"/inspections/{part}/label", data={"csrf_token": tok, "label": "none", "note": "x" * 2001}).status_code == 400
    assert client.post("/inspections/999999/label", data={"csrf_token": tok, "label": "none"}).status_code == 404
    assert row_state(db, part) == before and len(db.audit_events(10_000)) == events


# -- export, charts, stations ----------------------------------------------------------------------


def test_export_gives_the_filtered_rows_as_csv_or_zip_and_is_audited(app, site) -> None:
    db, history, _ = site
    client = signed_in(app)
    tok = token(client.get("/inspections"))
    answer = client.post("/export", data={"csrf_token": tok, "format": "csv", "decision": "FAIL", "station": "line-1"})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) == 6 and {r["station"] for r in rows} == {"line-1"} and {r["decision"] for r in rows} == {"FAIL"}
    event = db.audit_events(1)[0]
    assert (event.user, event.action, event.after["rows"], event.after["filters"]) == (
        QUALITY, "export", 6, {"decision": "FAIL", "station": "line-1"})
    answer = client.post("/export", data={"csrf_token": tok, "format": "zip", "decision": "FAIL", "station": "line-2"})
    names = zipfile.ZipFile(io.BytesIO(answer.data)).namelist()
    assert answer.mimetype == "application/zip" and len([n for n in names if n.endswith(".png")]) == 8
    assert db.audit_events(1)[0].after["images"] == 8
    assert client.post("/export", data={"csrf_token": tok, "format": "pdf"}).status_code == 400
    tech = signed_in(app, TECH, TECH_PIN)
    refused = tech.post("/export", data={"csrf_token": token(tech.get("/inspections")), "format": "csv"})
    assert refused.status_code == 403 and db.audit_events(1)[0].action == "export_denied"


def test_charts_and_the_station_page(app, site) -> None:
    client = signed_in(app)
    text = client.get("/charts?bucket=hour").get_data(as_text=True)
    assert 'id="yield-station"' in text and 'id="false-rejects"' in text
    for chart in ("yield-station", "yield-product", "false-rejects"):
        answer = client.get(f"/charts/{chart}.svg?bucket=hour")
        assert answer.status_code == 200 and answer.mimetype == "image/svg+xml" and b"<svg" in answer.data
    assert b"<script" not in client.get("/charts/yield-product.svg?bucket=day").data
    assert client.get("/charts?bucket=fortnight").status_code == 400
    stations = client.get("/stations").get_data(as_text=True)
    assert "line-1" in stations and "line-2" in stations and "Last row received" in stations


def test_serve_refuses_a_database_that_does_not_exist(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "cli", "serve", "--db", f"sqlite:///{tmp_path / 'none.db'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == f"error: no history database at {tmp_path / 'none.db'}"
    assert not (tmp_path / "none.db").exists()


def test_a_recheck_and_its_measurements_show_on_the_part_page_and_in_the_queue(site) -> None:
    from inspector.history import DECISIONS
    from inspector.inspection import DecisionRule, InspectionResult

    if "RECHECK" not in DECISIONS:
        pytest.skip("this history has no RECHECK decision")
    db, _, root = site
    rule = DecisionRule(0.5, 0.4, 12, recheck_threshold=0.3, mm_per_px=0.1)
    writer = HistoryDB(str(db.engine.url), station="line-1")
    try:
        [row] = writer.write_inspections([InspectionResult(
            T0_RECHECK, "cam0", 7000, 0.45, "RECHECK", 0.5, rule=rule, defect_area_px=40)])
    finally:
        writer.close()
    app = create_app(db, WebOptions(image_folders=[str(root / "images")]))
    client = signed_in(app)
    queue = client.get("/inspections?decision=RECHECK&label=none").get_data(as_text=True)
    assert 'id="recheck-queue"' in queue and f"/inspections/{row.inspection_id}" in queue and ">RECHECK<" in queue
    text = client.get(f"/inspections/{row.inspection_id}").get_data(as_text=True)
    assert "score above 0.3, up to the threshold" in text and "40 px (0.4 mm²)" in text


def test_idle_sessions_end_and_a_proxy_is_trusted_only_when_asked(site) -> None:
    from web.signin import SignIns

    now = [0.0]
    signins = SignIns(60, clock=lambda: now[0])
    sid = signins.add("quinn", "quality", "314159")
    now[0] = 59
    assert signins.get(sid).user == "quinn"
    now[0] = 59 + 61
    assert signins.get(sid) is None
    db, _, root = site
    behind = create_app(db, WebOptions(image_folders=[], secure_cookies=True, behind_proxy=True)).test_client()
    page = behind.get("/sign-in", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "review.plant"})
    assert 'action="/sign-in"' in page.get_data(as_text=True)
    assert "Secure" in page.headers["Set-Cookie"] and "HttpOnly" in page.headers["Set-Cookie"]


def test_the_station_page_over_a_database_without_reports_or_alarms_says_so(app) -> None:
    text = signed_in(app).get("/stations").get_data(as_text=True)
    line1 = re.search(r"<tr><td><a [^>]*>line-1</a>.*?</tr>", text, re.S).group(0)
    assert "not reported" in line1 and "Alarms forwarded" in text and "No alarms recorded in this database" in text
    assert "Alarms acknowledged" in text and "Rows waiting to be forwarded" in text


# -- images from the plant -------------------------------------------------------------------------

T_OLD = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)  # station line-3's first batch
T_NEW = datetime(2026, 12, 2, 6, 0, tzinfo=timezone.utc)  # and its second


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def plant(request, tmp_path_factory):
    """A plant database (SQLite, or the real PostgreSQL the plant-link tests start) with the web
    history's two stations, and a third, line-3, whose images reached it only through its plant
    link: two batches, then gone from line-3's disk. The review is given line-1 and line-2's folder."""
    from pg_support import database_url
    from web_support import forward_station

    root = tmp_path_factory.mktemp(f"plant-{request.param}")
    with database_url(request.param, root) as url:
        make_history(url, root / "images", per_station=3)
        old = forward_station(url, root / "line-3-old", "line-3", T_OLD, 2)
        new = forward_station(url, root / "line-3-new", "line-3", T_NEW, 3)
        db = HistoryDB(url)
        yield db, old, new, root
        db.close()


def plant_app(plant, folders: list[str] | None = None):
    db, _, _, root = plant
    return create_app(db, WebOptions(image_folders=[str(root / "images")] if folders is None else folders))


def test_a_row_whose_file_is_gone_shows_its_frame_and_heat_layer_from_the_plant(plant) -> None:
    db, _, new, root = plant
    part = new.fails[0]
    for folders in (None, []):  # beside the image store's folders, and with none given
        client = signed_in(plant_app(plant, folders))
        text = client.get(f"/inspections/{part}").get_data(as_text=True)
        assert 'id="frame"' in text and 'id="heat"' in text and "not available" not in text
        frame = client.get(f"/inspections/{part}/frame.png")
        assert frame.status_code == 200 and frame.mimetype == "image/png" and frame.data == new.frames[part]
        heat = cv2.imdecode(np.frombuffer(client.get(f"/inspections/{part}/heat.png").data, np.uint8),
                            cv2.IMREAD_UNCHANGED)
        assert heat.shape == (120, 160, 4) and (heat[..., 3] == 255).sum() > 20  # the map decoded, the defect outlined
        assert client.get(f"/inspections/{part}/scale.png").status_code == 200
        annotated = cv2.imdecode(np.frombuffer(client.get(f"/inspections/{part}/overlay.png").data, np.uint8),
                                 cv2.IMREAD_COLOR)
        assert annotated.shape[0] > 120 and annotated.shape[1] > 160
    with db.session() as s:
        row = queries.inspection_row(s, part)
    assert not Path(row.image_path).exists() and str(root / "images") not in row.image_path


def test_the_zip_export_takes_the_plants_copies_and_the_station_page_counts_them(plant) -> None:
    db, old, new, _ = plant
    client = signed_in(plant_app(plant))
    tok = token(client.get("/inspections"))
    answer = client.post("/export", data={"csrf_token": tok, "format": "zip", "station": "line-3",
                                          "since": "2026-12-02"})
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    pngs = {n: archive.read(n) for n in archive.namelist() if n.endswith(".png")}
    assert len(pngs) == 2 * len(new.ids) and db.audit_events(1)[0].after["images"] == len(pngs)
    assert set(pngs.values()) == set(new.frames.values()) | set(new.maps.values())  # byte for byte
    stations = client.get("/stations").get_data(as_text=True)
    line3 = re.search(r"<tr><td><a [^>]*>line-3</a>.*?</tr>", stations, re.S).group(0)
    from station.plant_images import images_received

    held = images_received(db)["line-3"]  # all of line-3's, unless the retention test ran first
    assert held.images in (2 * len(new.ids), 2 * (len(new.ids) + len(old.ids)))
    assert "Images received" in stations and "Newest image" in stations
    assert f'<td class="num images">{held.images}</td>' in line3 and f"{held.newest:%Y-%m-%d %H:%M:%S}" in line3
    line1 = re.search(r"<tr><td><a [^>]*>line-1</a>.*?</tr>", stations, re.S).group(0)
    assert '<td class="num images">0</td>' in line1 and "none" in line1  # written here directly, nothing forwarded


def test_the_station_page_shows_each_stations_last_report_and_the_alarms_forwarded(plant) -> None:
    import uuid

    from sqlalchemy import delete

    from inspector.history.tables import StationAlarm, StationStatus

    db = plant[0]
    now = datetime.now(timezone.utc)
    html = '<script>alert("x")</script><b>belt</b> & co'
    with db.session() as s:  # as the stations' plant links write them (line-3's link has reported already)
        s.execute(delete(StationAlarm))
        s.execute(delete(StationStatus).where(StationStatus.station == "line-2"))  # line-2 never reported
        s.merge(StationStatus(station="line-1", seen=now - timedelta(seconds=5), rows_waiting=17, images_waiting=8,
                              images_gone=2))
        s.merge(StationStatus(station="line-3", seen=now - timedelta(minutes=10), rows_waiting=4, images_waiting=3,
                              images_gone=0))
        s.merge(StationStatus(station="line-9", seen=now - timedelta(seconds=20), rows_waiting=0, images_waiting=0,
                              images_gone=5))  # reported before its first row arrived
        s.add_all([StationAlarm(station="line-3", uid=uuid.uuid4().hex, time=now - timedelta(days=1, minutes=i),
                                kind="no_part_run", message=f"no part in {i} frames") for i in range(55)])
        s.add_all([StationAlarm(station="line-1", uid=uuid.uuid4().hex, time=now - timedelta(hours=1),
                                kind="plant_db_down", message="plant database unreachable"),
                   StationAlarm(station="line-2", uid=uuid.uuid4().hex, time=now - timedelta(minutes=30),
                                kind="line_stalled", message=html),
                   StationAlarm(station="line-1", uid=uuid.uuid4().hex, time=now - timedelta(minutes=10),
                                kind="drift", message="scores drifting up")])
    client = signed_in(plant_app(plant))
    answer = client.get("/stations")
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)

    def row(name: str) -> str:
        return re.search(rf"<tr><td><a [^>]*>{name}</a>.*?</tr>", text, re.S).group(0)

    fresh, stale, missing, early = row("line-1"), row("line-3"), row("line-2"), row("line-9")
    assert re.findall(r'<td class="num waiting">(\d+)</td>', fresh) == ["17", "8"]
    assert '<td class="num gone">2</td>' in fresh and "s ago" in fresh and "stale" not in fresh
    assert re.findall(r'<td class="num waiting stale">(\d+)</td>', stale) == ["4", "3"]
    assert "10 min ago · stale" in stale
    assert "not reported" in missing and "waiting" not in missing
    assert "never" in early and '<td class="num gone">5</td>' in early

    listed = re.search(r'<table class="rows" id="alarms-list">.*?</table>', text, re.S).group(0)
    rows = re.findall(r"<tr><td>.*?</tr>", listed, re.S)
    assert len(rows) == 50  # the latest 50, newest first
    assert ">drift<" in rows[0] and ">line_stalled<" in rows[1] and ">plant_db_down<" in rows[2]
    assert all(">no_part_run<" in r for r in rows[3:]) and "no part in 0 frames" in rows[3]
    assert "no part in 46 frames" in rows[-1] and "no part in 47 frames" not in listed
    # a message with HTML in it is text, never markup
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;belt&lt;/b&gt; &amp; co" in rows[1]
    assert "<script>" not in text and "<b>belt" not in text

    mine = client.get("/stations?station=line-1").get_data(as_text=True)
    listed = re.search(r'<table class="rows" id="alarms-list">.*?</table>', mine, re.S).group(0)
    assert re.findall(r'<td class="kind">([^<]*)</td>', listed) == ["drift", "plant_db_down"]
    assert '<option value="line-1" selected>' in mine
    none = client.get("/stations?station=line-7").get_data(as_text=True)
    assert 'id="alarms-list"' not in none and "No alarms of station line-7 recorded" in none

    for bad, said in (("x" * 65, "station: longer than 64 characters"), ("line\x001", "holds control characters")):
        refused = client.get("/stations", query_string={"station": bad})
        assert refused.status_code == 400 and said in reason(refused), reason(refused)


def test_an_image_neither_here_nor_in_the_plant_says_why(plant) -> None:
    db = plant[0]
    client = signed_in(plant_app(plant))
    with db.session() as s:
        rows = queries.query_inspections(s, InspectionFilter(station="line-1"), 100)
    gone = next(r for r in rows if (r.image_path or "").endswith("gone.png"))  # not on this disk, never forwarded
    text = client.get(f"/inspections/{gone.id}").get_data(as_text=True)
    assert "image not available here" in text and "not forwarded to the plant yet" in text
    assert client.get(f"/inspections/{gone.id}/frame.png").status_code == 404
    outside = next(r for r in rows if r.image_path == "/etc/passwd")  # and a path outside the store: still refused
    assert client.get(f"/inspections/{outside.id}/frame.png").status_code == 403


def test_retention_is_set_by_quality_audited_and_prunes_old_images_but_keeps_rows(plant) -> None:
    from sqlalchemy import func, select, update

    from inspector.history.tables import Inspection, PlantImage
    from inspector.roles import AccessDenied, Caller
    from station import actions
    from station.plant_images import RetentionPruner, image_retention, prune

    db, old, new, _ = plant
    with pytest.raises(AccessDenied, match="otto is operator"):
        actions.set_image_retention(db, Caller(OPERATOR, OPERATOR_PIN), 7)
    assert image_retention(db) is None and db.audit_events(1)[0].action == "set_image_retention_denied"
    assert actions.set_image_retention(db, Caller(QUALITY, QUALITY_PIN), 7) == (None, 7)
    event = db.audit_events(1)[0]
    assert (event.user, event.role, event.action, event.before, event.after) == (
        QUALITY, "quality", "set_image_retention", {"image_retention_days": None}, {"image_retention_days": 7})
    assert actions.set_image_retention(db, Caller(TECH, TECH_PIN), 3) == (7, 3)
    with db.session() as s:  # line-3's first batch reached the plant ten days ago
        s.execute(update(PlantImage).where(PlantImage.station == "line-3", PlantImage.uid.in_(
            select(Inspection.uid).where(Inspection.id.in_(old.ids)))).values(
            received=datetime.now(timezone.utc) - timedelta(days=10)))
        rows_before = s.scalar(select(func.count()).select_from(Inspection))
        old_bytes = s.scalar(select(func.sum(PlantImage.size)).where(
            PlantImage.received < datetime.now(timezone.utc) - timedelta(days=3)))
    pruner = RetentionPruner(db, every_s=3600).start()  # as inspector serve runs it: at once, then hourly
    deadline = time.monotonic() + 20
    while pruner.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    pruner.stop()
    assert (pruner.last.images, pruner.last.bytes) == (2 * len(old.ids), old_bytes)
    assert prune(db).images == 0  # nothing older left
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Inspection)) == rows_before  # the rows stay
        assert s.scalar(select(func.count()).select_from(PlantImage).where(PlantImage.station == "line-3")) == 2 * len(new.ids)
    client = signed_in(plant_app(plant))
    text = client.get(f"/inspections/{old.fails[0]}").get_data(as_text=True)
    note = re.search(r'id="image-note">([^<]*)', text).group(1)
    assert "removed by the plant&#39;s image retention of 3 days" in note and 'id="frame"' not in text
    gone = client.get(f"/inspections/{old.fails[0]}/frame.png")  # its path is line-3's: refused, saying why
    assert gone.status_code == 403 and "image retention of 3 days" in reason(gone)
    assert client.get(f"/inspections/{new.fails[0]}/frame.png").data == new.frames[new.fails[0]]  # the new ones stay
    assert "keeps them 3 days after they arrive" in client.get("/stations").get_data(as_text=True)
    actions.set_image_retention(db, Caller(QUALITY, QUALITY_PIN), None)
    assert image_retention(db) is None and db.audit_events(1)[0].after == {"image_retention_days": None}


def test_the_plant_commands_refuse_bad_input_in_one_line_and_prune(tmp_path: Path) -> None:
    from sqlalchemy import func, select, update

    from inspector.history.tables import PlantImage
    from web_support import forward_station

    url = f"sqlite:///{tmp_path / 'plant.db'}"
    make_history(url, tmp_path / "images", per_station=1)
    forward_station(url, tmp_path / "line-3", "line-3", T_OLD, 2)

    def inspector(*args: str, pin: str | None = None):
        env = {**__import__("os").environ, **({"INSPECTOR_PIN": pin} if pin else {})}
        env.pop("INSPECTOR_PIN", None) if pin is None else None
        return subprocess.run([sys.executable, "-m", "cli", "plant", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env=env)

    for days, said in (("0", "--days must be a positive number of days, got 0"), ("-3", "got -3"),
                       ("abc", "--days takes a number of days, got 'abc'"), ("nan", "got nan")):
        done = inspector("retention", "--db", url, "--days", days, "--user", QUALITY, pin=QUALITY_PIN)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    missing = inspector("prune", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2 and missing.stderr == f"error: no history database at {tmp_path / 'none.db'}\n"
    assert not (tmp_path / "none.db").exists()
    refused = inspector("retention", "--db", url, "--days", "5", "--user", OPERATOR, pin=OPERATOR_PIN)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "otto is operator" in refused.stderr
    nobody = inspector("retention", "--db", url, "--days", "5")
    assert nobody.returncode == 2 and "give --user NAME" in nobody.stderr
    assert "nothing removed" in inspector("prune", "--db", url).stdout  # no retention yet
    done = inspector("retention", "--db", url, "--days", "5", "--user", QUALITY, pin=QUALITY_PIN)
    assert done.returncode == 0 and "off -> 5 days" in done.stdout, done.stderr
    db = HistoryDB(url)
    try:
        with db.session() as s:  # the first row's images reached the plant six days ago
            first = s.scalars(select(PlantImage.uid).order_by(PlantImage.id)).first()
            s.execute(update(PlantImage).where(PlantImage.uid == first).values(
                received=datetime.now(timezone.utc) - timedelta(days=6)))
            size = s.scalar(select(func.sum(PlantImage.size)).where(PlantImage.uid == first))
        pruned = inspector("prune", "--db", url)
        assert pruned.returncode == 0 and pruned.stdout.startswith(f"removed 2 images ({size} bytes)"), pruned.stderr
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(PlantImage)) == 2
            s.execute(update(PlantImage).values(received=datetime.now(timezone.utc) - timedelta(days=6)))
        assert [e.action for e in db.audit_events(3)][:1] == ["set_image_retention"]
        # inspector serve alone keeps the retention: it prunes at its start (then hourly)
        serve = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--db", url, "--port", "0", "--images",
                                  str(tmp_path / "images")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        try:
            assert "review of" in serve.stdout.readline()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with db.session() as s:
                    if s.scalar(select(func.count()).select_from(PlantImage)) == 0:
                        break
                time.sleep(0.2)
            else:
                pytest.fail("inspector serve did not prune the images older than the retention")
        finally:
            serve.terminate()
            serve.wait(20)
    finally:
        db.close()
    off = inspector("retention", "--db", url, "--off", "--user", TECH, pin=TECH_PIN)
    assert off.returncode == 0 and "5 days -> off" in off.stdout
