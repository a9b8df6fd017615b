"""The web review with the four decisions and defect sizes in mm²: a RECHECK (in the recheck band,
its defect measured with a pixel size), a NO PART (the part not found: never scored, no map) and
a PASS and FAIL beside them, recorded through the image store and ``write_inspections`` as a line
records them. The browser must say of these rows what the desktop's review and ``inspector
history export`` say of them."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra: pip install -e '.[web]'")

from inspector.history import HistoryDB, ImageStore  # noqa: E402
from inspector.history import queries  # noqa: E402
from inspector.inspection import DecisionRule, InspectionResult  # noqa: E402
from web import WebOptions, create_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from web_support import QUALITY, QUALITY_PIN, frame, make_history  # noqa: E402

T1 = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
MM_RULE = DecisionRule(0.5, 0.4, 12, recheck_threshold=0.3, mm_per_px=0.1)
PX_RULE = DecisionRule(0.5, 0.4, 12)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """make_history's two stations, and line-3 with one row of each decision (newest first):
    PASS, NO PART, RECHECK (40 px, 0.4 mm²), FAIL without a pixel size (50 px), and a second
    RECHECK for the queue."""
    root = tmp_path_factory.mktemp("decisions")
    url = f"sqlite:///{root / 'history.db'}"
    make_history(url, root / "images", per_station=3)
    store = ImageStore(root / "images", pass_sample_rate=1.0)
    image, heat = frame(5, True)
    recheck_map = heat * (0.45 / float(heat.max()))
    at = [T1 + timedelta(minutes=m) for m in range(5)]
    records = [
        InspectionResult(at[0], "cam0", 1, 0.42, "RECHECK", 0.5, rule=MM_RULE, defect_area_px=30,
                         image=image, heatmap=recheck_map * (0.42 / 0.45), match_quality=0.93),
        InspectionResult(at[1], "cam0", 2, float(heat.max()), "FAIL", 0.5, rule=PX_RULE, defect_area_px=50,
                         image=image, heatmap=heat),
        InspectionResult(at[2], "cam0", 3, 0.45, "RECHECK", 0.5, rule=MM_RULE, defect_area_px=40,
                         image=image, heatmap=recheck_map, match_quality=0.9),
        InspectionResult(at[3], "cam0", 4, 0.0, "NO_PART", 0.5, rule=MM_RULE, image=image, match_quality=0.2),
        InspectionResult(at[4], "cam0", 5, 0.1, "PASS", 0.5, rule=MM_RULE, defect_area_px=0,
                         image=image, heatmap=heat * 0.1, match_quality=0.95),
    ]
    writer = HistoryDB(url, station="line-3")
    try:
        ids = [r.inspection_id for r in writer.write_inspections([store.save(r) for r in records])]
    finally:
        writer.close()
    db = HistoryDB(url)
    yield db, root, dict(zip(("recheck2", "fail", "recheck", "no_part", "pass"), ids))
    db.close()


@pytest.fixture
def client(site):
    db, root, _ = site
    app = create_app(db, WebOptions(image_folders=[str(root / "images")]))
    c = app.test_client()
    answer = c.post("/sign-in", data={"csrf_token": token(c.get("/sign-in")), "name": QUALITY, "pin": QUALITY_PIN})
    assert answer.status_code == 303
    return c


def token(response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def text(client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def list_cells(page: str) -> dict[int, list[str]]:
    """The list's cells by inspection id (tags stripped)."""
    rows = {}
    for body in re.findall(r"<tr class=\"[a-z_]+\">(.*?)</tr>", page, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
        rows[int(cells[-1])] = cells
    return rows


def head(page: str) -> list[str]:
    return re.findall(r"<th>([^<]*)</th>", re.search(r'<table class="rows" id="rows">.*?</thead>', page, re.S).group(0))


# -- NO PART: never scored -------------------------------------------------------------------------


def test_a_no_part_row_shows_no_score_in_the_list_nor_on_its_page(client, site) -> None:
    _, _, ids = site
    page = text(client, "/inspections?station=line-3")
    cells = list_cells(page)[ids["no_part"]]
    score = head(page).index("Score")
    assert cells[0] == "NO PART" and cells[score] == ""  # as the CSV: the stored 0.0 is no score
    assert list_cells(page)[ids["pass"]][score] == "0.1"
    part = text(client, f"/inspections/{ids['no_part']}")
    assert re.search(r'id="score">([^<]*)<', part).group(1) == "not scored: the part was not found"


def test_a_no_part_page_says_the_part_was_not_found(client, site) -> None:
    _, _, ids = site
    part = text(client, f"/inspections/{ids['no_part']}")
    assert "<tr><th>Part not found</th><td>match quality 0.200</td></tr>" in part  # the desktop: "part not found, match 0.20"
    assert "Part found" not in part
    assert "<tr><th>Part found</th><td>match quality 0.900</td></tr>" in text(client, f"/inspections/{ids['recheck']}")


def test_a_no_part_map_is_missing_because_nothing_was_scored_not_because_of_sampling(client, site) -> None:
    _, _, ids = site
    part = text(client, f"/inspections/{ids['no_part']}")
    why = "no heatmap: the part was not found in the frame, nothing was scored"
    assert re.search(r'id="heat-note">([^<]*)<', part).group(1) == f"Heatmap: inspection {ids['no_part']}: {why}"
    assert 'id="heat"' not in part and "defect outlined" not in part  # no contour claimed
    answer = client.get(f"/inspections/{ids['no_part']}/heat.png")
    assert answer.status_code == 404 and why in answer.get_data(as_text=True)


# -- the list's filters ------------------------------------------------------------------------------


def test_the_decision_filter_offers_no_part_as_people_read_it_and_keeps_only_those(client, site) -> None:
    _, _, ids = site
    page = text(client, "/inspections?station=line-3&decision=NO_PART")  # other tests add NO PART rows elsewhere
    options = re.findall(r'<option value="([^"]*)" ?(selected)?>([^<]*)</option>',
                         re.search(r'id="f-decision">(.*?)</select>', page, re.S).group(1))
    assert [(v, t) for v, _, t in options] == [("", "all"), ("PASS", "PASS"), ("FAIL", "FAIL"), ("RECHECK", "RECHECK"),
                                               ("NO_PART", "NO PART")]  # the desktop's "NO PART"
    assert [v for v, selected, _ in options if selected] == ["NO_PART"]
    assert list(list_cells(page)) == [ids["no_part"]]
    assert set(list_cells(text(client, "/inspections?decision=RECHECK&station=line-3"))) == {ids["recheck"], ids["recheck2"]}


def test_the_list_gives_each_defect_size_in_mm2_where_the_rule_has_a_pixel_size_else_in_px(client, site) -> None:
    _, _, ids = site
    page = text(client, "/inspections?station=line-3")
    columns = head(page)
    assert columns[:4] == ["Decision", "Score", "Threshold", "Defect"]  # the desktop's order
    size = {i: cells[columns.index("Defect")] for i, cells in list_cells(page).items()}
    assert size == {ids["recheck"]: "0.4 mm²", ids["recheck2"]: "0.3 mm²", ids["fail"]: "50 px",
                    ids["pass"]: "0 mm²", ids["no_part"]: ""}


# -- the recheck queue -------------------------------------------------------------------------------


def test_a_verdict_in_the_recheck_queue_becomes_the_label_and_opens_the_next_part_of_the_queue(client, site) -> None:
    db, _, ids = site
    queue = "station=line-3&decision=RECHECK&label=none"  # in the form's order, as links write it
    page = text(client, f"/inspections?{queue}")
    assert list(list_cells(page)) == [ids["recheck"], ids["recheck2"]]  # newest first
    part = client.get(f"/inspections/{ids['recheck']}?{queue}")
    answer = client.post(f"/inspections/{ids['recheck']}/label",
                         data={"csrf_token": token(part), "label": "confirmed_defect", "filters": queue})
    with db.session() as s:
        row = queries.inspection_row(s, ids["recheck"])
    assert (row.label, row.labelled_by) == ("confirmed_defect", QUALITY)  # the verdict is the label, with who
    # as the desktop: the part leaves the queue and the next one is opened
    assert answer.status_code == 303 and answer.headers["Location"] == f"/inspections/{ids['recheck2']}?{queue}"
    nxt = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert f"Inspection {ids['recheck']} labelled confirmed defect." in nxt
    answer = client.post(f"/inspections/{ids['recheck2']}/label",
                         data={"csrf_token": token(part), "label": "false_reject", "filters": queue})
    assert answer.headers["Location"] == f"/inspections?{queue}"  # the queue is empty: its list says so
    assert "No inspection matches this filter." in client.get(answer.headers["Location"]).get_data(as_text=True)
    # outside the queue a label keeps the part open
    answer = client.post(f"/inspections/{ids['recheck2']}/label",
                         data={"csrf_token": token(part), "label": "none", "filters": "station=line-3"})
    assert answer.headers["Location"] == f"/inspections/{ids['recheck2']}?station=line-3"
    client.post(f"/inspections/{ids['recheck']}/label", data={"csrf_token": token(part), "label": "none"})


# -- the stations page -------------------------------------------------------------------------------


def test_the_stations_page_counts_a_stations_no_part_frames_of_the_last_24_h_on_their_own(client, site) -> None:
    db, _, _ = site
    now = datetime.now(timezone.utc)
    writer = HistoryDB(str(db.engine.url), station="line-4")  # a feed gone empty: mostly NO PART
    try:
        writer.write_inspections(
            [InspectionResult(now - timedelta(minutes=m), "cam0", m, 0.0, "NO_PART", 0.5, rule=MM_RULE, match_quality=0.1)
             for m in range(1, 6)]
            + [InspectionResult(now - timedelta(minutes=7), "cam0", 7, 0.1, "PASS", 0.5, rule=MM_RULE),
               InspectionResult(now - timedelta(minutes=8), "cam0", 8, 0.45, "RECHECK", 0.5, rule=MM_RULE)])
    finally:
        writer.close()
    page = text(client, "/stations")
    columns = re.findall(r"<th>([^<]*)</th>", re.search(r'id="stations">.*?</thead>', page, re.S).group(0))
    line4 = re.search(r"<tr><td><a [^>]*>line-4</a>.*?</tr>", page, re.S).group(0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", line4)
    at = columns.index("Rows, last 24 h")
    # 7 rows: 1 not passed (the RECHECK), and the 5 NO PART frames said, not hidden among the rows
    assert columns[at:at + 3] == ["Rows, last 24 h", "Not passed, last 24 h", "NO PART, last 24 h"]
    assert cells[at - 1:at + 2] == ["7", "1", "5"]  # the name's cell holds a link: not in cells


# -- what was right already: score bounds, charts, export ----------------------------------------------


def test_score_bounds_leave_no_part_out_of_the_list_and_of_a_parts_neighbours(client, site) -> None:
    _, _, ids = site
    for bounds in ("min_score=0", "max_score=0.2", "min_score=0&max_score=1"):
        page = text(client, f"/inspections?station=line-3&{bounds}")
        assert ids["no_part"] not in list_cells(page), bounds  # never scored: no score lies in any range
    part = text(client, f"/inspections/{ids['pass']}?station=line-3&max_score=0.5")
    assert f'href="/inspections/{ids["recheck"]}?' in re.search(r'id="older"[^>]*', part).group(0)  # NO PART skipped


def test_charts_count_recheck_as_a_reject_and_leave_no_part_out_of_the_yield(client, site) -> None:
    db, _, ids = site

    def said(chart: str) -> list[str]:
        svg = text(client, f"/charts/{chart}.svg?station=line-3&bucket=day")
        return [c for c in re.findall(r"<!-- (.*?) -->", svg) if "line-3" in c or "Rejects" in c]

    assert said("yield-station") == ["line-3 (4 parts)"]  # PASS, FAIL, 2 RECHECK; the NO PART frame is no part
    with db.session() as s:
        [day] = queries.yield_over_time(s, queries.InspectionFilter(station="line-3"), timedelta(days=1))
    assert (day.passed, day.failed, day.rechecked, day.no_part, day.yield_fraction) == (1, 1, 2, 1, 0.25)
    part = client.get(f"/inspections/{ids['recheck']}")
    client.post(f"/inspections/{ids['recheck']}/label", data={"csrf_token": token(part), "label": "false_reject"})
    client.post(f"/inspections/{ids['fail']}/label", data={"csrf_token": token(part), "label": "confirmed_defect"})
    try:  # a RECHECK judged a false reject is one, as on the desktop
        assert said("false-rejects") == ["Rejects by review label: 50.0 % of 2 labelled rejects were false rejects"]
    finally:
        for which in ("recheck", "fail"):
            client.post(f"/inspections/{ids[which]}/label", data={"csrf_token": token(part), "label": "none"})


def test_the_browsers_csv_is_the_history_exports_no_part_score_empty_and_sizes_in_mm2(client, site, tmp_path) -> None:
    import csv
    import io

    db, _, ids = site
    answer = client.post("/export", data={"csrf_token": token(client.get("/inspections")), "format": "csv",
                                          "station": "line-3"})
    assert answer.status_code == 200
    with db.session() as s:  # what `inspector history export --station line-3` writes
        queries.export_csv(s, tmp_path / "desktop.csv", queries.InspectionFilter(station="line-3"))
    assert answer.data == (tmp_path / "desktop.csv").read_bytes()
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(answer.get_data(as_text=True)))}
    assert (rows[ids["no_part"]]["decision"], rows[ids["no_part"]]["score"]) == ("NO_PART", "")
    assert (rows[ids["recheck"]]["defect_area_px"], rows[ids["recheck"]]["defect_area_mm2"]) == ("40", "0.4")
    assert (rows[ids["fail"]]["defect_area_px"], rows[ids["fail"]]["defect_area_mm2"]) == ("50", "")


# -- the plant: the same rows forwarded by a station's plant link ----------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def plant(request, tmp_path_factory):
    """A plant database (SQLite, or the real PostgreSQL the plant-link tests start) holding what
    station line-5's plant link forwarded of a RECHECK (0.4 mm²), a NO PART frame and a PASS
    recorded a minute ago, and the review's users (make_history, one row per station)."""
    from pg_support import database_url

    from inspector.links.plant import PlantLink

    root = tmp_path_factory.mktemp(f"decisions-plant-{request.param}")
    with database_url(request.param, root) as url:
        make_history(url, root / "images", per_station=1)
        station = HistoryDB(f"sqlite:///{root / 'line-5.db'}", station="line-5")
        try:
            station.upgrade()
            store = ImageStore(root / "line-5-images", pass_sample_rate=1.0)
            image, heat = frame(7, True)
            now = datetime.now(timezone.utc)
            records = [store.save(r) for r in (
                InspectionResult(now - timedelta(minutes=3), "cam0", 1, 0.45, "RECHECK", 0.5, rule=MM_RULE,
                                 defect_area_px=40, image=image, heatmap=heat * (0.45 / float(heat.max())), match_quality=0.9),
                InspectionResult(now - timedelta(minutes=2), "cam0", 2, 0.0, "NO_PART", 0.5, rule=MM_RULE,
                                 image=image, match_quality=0.2),
                InspectionResult(now - timedelta(minutes=1), "cam0", 3, 0.1, "PASS", 0.5, rule=MM_RULE,
                                 defect_area_px=0, image=image, heatmap=heat * 0.1, match_quality=0.95))]
            station.write_inspections(records)
            link = PlantLink(station, url)
            link.start()
            assert link.stop(30) == 0 and not link.pending_images()
        finally:
            station.close()
        db = HistoryDB(url)
        with db.session() as s:
            rows = queries.query_inspections(s, queries.InspectionFilter(station="line-5"), 10)
        yield db, root, {r.decision: r.id for r in rows}
        db.close()


def test_the_plant_review_says_of_forwarded_rows_what_the_station_does(plant, tmp_path) -> None:
    db, root, ids = plant
    app = create_app(db, WebOptions(image_folders=[]))  # every picture from the plant's copies
    client = app.test_client()
    client.post("/sign-in", data={"csrf_token": token(client.get("/sign-in")), "name": QUALITY, "pin": QUALITY_PIN})
    page = text(client, "/inspections?station=line-5")
    columns, cells = head(page), list_cells(page)
    score, defect = columns.index("Score"), columns.index("Defect")
    assert [(cells[ids[d]][0], cells[ids[d]][score], cells[ids[d]][defect]) for d in ("PASS", "NO_PART", "RECHECK")] == [
        ("PASS", "0.1", "0 mm²"), ("NO PART", "", ""), ("RECHECK", "0.45", "0.4 mm²")]
    no_part = text(client, f"/inspections/{ids['NO_PART']}")
    assert 'id="frame"' in no_part and 'id="heat"' not in no_part and "Part not found" in no_part
    assert "not scored: the part was not found" in no_part and "nothing was scored" in no_part
    recheck = text(client, f"/inspections/{ids['RECHECK']}")
    assert 'id="heat"' in recheck and "40 px (0.4 mm²)" in recheck and "score above 0.3, up to the threshold" in recheck
    assert client.get(f"/inspections/{ids['RECHECK']}/heat.png").status_code == 200
    stations = text(client, "/stations")
    line5 = re.search(r"<tr><td><a [^>]*>line-5</a>.*?</tr>", stations, re.S).group(0)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', line5)[:3] == ["3", "1", "1"]  # rows, not passed, NO PART
    svg = text(client, "/charts/yield-station.svg?station=line-5&bucket=day")
    assert "line-5 (2 parts)" in svg
    answer = client.post("/export", data={"csrf_token": token(client.get("/inspections")), "format": "csv",
                                          "station": "line-5"})
    with db.session() as s:
        queries.export_csv(s, tmp_path / "history.csv", queries.InspectionFilter(station="line-5"))
    assert answer.data == (tmp_path / "history.csv").read_bytes() and b",NO_PART," in answer.data


def test_the_queues_count_follows_the_verdicts_given(client, site) -> None:
    _, _, ids = site
    queue = "station=line-3&decision=RECHECK&label=none"
    assert re.search(r'id="total">([^<]*)<', text(client, f"/inspections?{queue}")).group(1) == "2 match"
    part = client.get(f"/inspections/{ids['recheck']}?{queue}")
    try:
        client.post(f"/inspections/{ids['recheck']}/label",
                    data={"csrf_token": token(part), "label": "false_reject", "filters": queue})
        page = text(client, f"/inspections?{queue}")  # counts are kept 30 s, but not past a label
        assert re.search(r'id="total">([^<]*)<', page).group(1) == "1 match" and list(list_cells(page)) == [ids["recheck2"]]
    finally:
        client.post(f"/inspections/{ids['recheck']}/label", data={"csrf_token": token(part), "label": "none"})


def test_the_recheck_queue_link_keeps_the_lists_other_filters_as_the_desktop_does(client, site) -> None:
    _, _, ids = site
    page = text(client, "/inspections?station=line-3&decision=PASS&errors=1&since=2026-12-01")
    link = re.search(r'id="recheck-queue" href="([^"]*)"', page).group(1).replace("&amp;", "&")
    # the desktop's queue: within the filter's station, product, time ...; RECHECK, not labelled, errors or not
    assert link == "/inspections?station=line-3&since=2026-12-01&decision=RECHECK&label=none"
    assert set(list_cells(text(client, link))) == {ids["recheck"], ids["recheck2"]}
    assert re.search(r'id="recheck-queue" href="([^"]*)"', text(client, "/stations")).group(1) == \
        "/inspections?decision=RECHECK&amp;label=none"  # a page without a filter: every station's queue


def test_a_no_part_frame_not_kept_says_no_part_frames_are_sampled(client, site) -> None:
    db, _, _ = site
    writer = HistoryDB(str(db.engine.url), station="line-6")  # the image store kept none of it (its sample rate)
    try:
        [row] = writer.write_inspections([InspectionResult(T1, "cam0", 1, 0.0, "NO_PART", 0.5, rule=MM_RULE)])
    finally:
        writer.close()
    part = text(client, f"/inspections/{row.inspection_id}")
    assert re.search(r'id="image-note">([^<]*)<', part).group(1) == (
        f"inspection {row.inspection_id}: no image kept (NO PART frames are sampled as passes are)")
