"""The web review's Flask application: :func:`create_app` over one history database.

Every page but sign-in needs a signed-in user whose role holds ``view_history`` (a technician
or a quality engineer, :data:`inspector.roles.RIGHTS`); labels and exports are the station's
audited actions (:func:`station.actions.review_inspection`, :func:`~station.actions.export_inspections`),
which check the right again with the user's PIN and audit a refusal. Every form carries a CSRF
token (Flask-WTF); a request that is refused gets a page saying why, with a 4xx status, and
writes nothing but, where the action itself refuses, its ``*_denied`` audit event.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Flask, Response, abort, flash, g, redirect, render_template, request, send_file, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from inspector.errors import DatabaseError, InspectorError
from inspector.history import DECISIONS, LABELS, HistoryDB, InspectionRow
from inspector.history import queries
from inspector.roles import AccessDenied, AccountLocked, roles_with
from station import actions
from station.plant_images import ObjectStore, days, image_retention, images_received
from station.plant_status import ALARMS_SHOWN, STALE_AFTER, alarm_stations, alarms_forwarded, station_reports
from web import charts, pictures
from web.filters import BadRequestValue, Filters, key, parse_filters, parse_key, parse_station
from web.signin import SignIns

log = logging.getLogger(__name__)

LABEL_TEXT = {"none": "not labelled", "false_reject": "false reject", "confirmed_defect": "confirmed defect"}
BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
#: Pages open without signing in.
OPEN_ENDPOINTS = {"sign_in", "static"}
#: Every script, style sheet and picture from this server only; no inline script, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


@dataclass
class WebOptions:
    """How :func:`create_app` serves: ``image_folders`` (the image store's folders, the only
    place image files are read from; a row's image not there comes from the plant database's
    copy), ``objects`` (the object store where the plant keeps its images, if it does),
    ``secure_cookies`` (the session cookie only over HTTPS: behind
    a TLS proxy), ``behind_proxy`` (trust one proxy's X-Forwarded-For/-Proto/-Host),
    ``idle_minutes`` (signed out after this long without a request), ``page_size``."""

    image_folders: list[str] = field(default_factory=list)
    objects: ObjectStore | None = None
    secure_cookies: bool = False
    behind_proxy: bool = False
    idle_minutes: float = 60.0
    page_size: int = 50
    secret_key: bytes | None = None  # None: a new random key per start (a restart signs everyone out)
    cache_s: float = 60.0  # how long the station and product lists are kept


class _Cached:
    """A value recomputed at most every ``ttl_s`` seconds (the station list: a scan of the table)."""

    def __init__(self, ttl_s: float, compute: Any) -> None:
        self.ttl_s, self.compute = ttl_s, compute
        self._value: Any = None
        self._at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at > self.ttl_s:
                self._value, self._at = self.compute(), time.monotonic()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._at = -float("inf")


class _Recent:
    """The last values computed by key, each for ``ttl_s`` seconds (None: for ever), at most
    ``max_bytes`` of them (their ``len``) or ``max_items``: the rendered pictures of the parts
    looked at, the row counts of the filters in use."""

    def __init__(self, ttl_s: float | None = None, max_items: int = 1000, max_bytes: int | None = None) -> None:
        self.ttl_s, self.max_items, self.max_bytes = ttl_s, max_items, max_bytes
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (self.ttl_s is None or now - hit[0] <= self.ttl_s):
                self._items.move_to_end(key)
                return hit[1]
        value = compute()  # outside the lock: two threads may compute one key, neither waits
        self.put(key, value, now)
        return value

    def put(self, key: Any, value: Any, now: float | None = None) -> None:
        """Keep ``value`` for ``key`` from now (or ``now``): what :meth:`get` computes, or what a
        page learnt on its way."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= self._size(old[1]) if old else 0
            self._items[key] = (now, value)
            self._bytes += self._size(value)
            while self._items and (len(self._items) > self.max_items
                                   or (self.max_bytes is not None and self._bytes > self.max_bytes)):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= self._size(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _size(self, value: Any) -> int:
        return len(value) if self.max_bytes is not None else 0


def create_app(db: HistoryDB, options: WebOptions | None = None) -> Flask:
    options = options or WebOptions()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=options.secret_key or secrets.token_bytes(32),
        SESSION_COOKIE_NAME="inspector_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # Strict would sign a person out when they follow a link from the MES
        SESSION_COOKIE_SECURE=options.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as its session (sign-in makes a new one)
        WTF_CSRF_SSL_STRICT=options.secure_cookies,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if options.behind_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    folders = pictures.ImageStoreFolders.of(options.image_folders)
    source = pictures.ImageSource(folders, db, options.objects)
    signins = SignIns(options.idle_minutes * 60)
    stations = _Cached(options.cache_s, db.stations)
    product_list = _Cached(options.cache_s, db.products)
    received = _Cached(options.cache_s / 2, lambda: images_received(db))  # a count over every image the plant holds
    counts = _Recent(ttl_s=options.cache_s / 2, max_items=1000)  # a count of millions of rows costs
    rendered = _Recent(max_items=10_000, max_bytes=64 * 2**20)  # a stored row's pictures never change
    frames = _Recent(ttl_s=options.cache_s, max_items=10_000)  # where a row's frame is, checked once a minute
    # A row and the levels its map is drawn with, as its pictures need them (paths, map values, rule:
    # what never changes in a stored row), from its page: its frame and heat layer ask no query again.
    drawn = _Recent(ttl_s=options.cache_s, max_items=10_000)
    app.extensions["inspector"] = {"db": db, "signins": signins, "folders": folders, "source": source}

    # -- who asks -----------------------------------------------------------------------------

    @app.before_request
    def who() -> Any:
        g.user = signins.get(session.get("sid"))
        if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
            return None
        if g.user is None:
            if request.method == "GET":
                return redirect(url_for("sign_in", next=request.full_path))
            return page(401, "Not signed in", "Sign in first: this needs a signed-in quality engineer.")
        if not g.user.can("view_history"):
            return page(403, "Not for your role", f"{g.user.user} is {g.user.role}; the history is for "
                        f"{' and '.join(roles_with('view_history'))}.")
        return None

    CSRFProtect(app)  # after `who`: a request without a session is told to sign in first

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def queue_url(filters: dict[str, str] | None) -> str:
        # the desktop's recheck queue: within the page's filter (station, product, time ...), RECHECK not labelled
        kept = {k: v for k, v in (filters or {}).items() if k not in ("decision", "label", "errors")}
        return url_for("inspections", **kept, decision="RECHECK", label="none")

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"user": g.get("user"), "LABEL_TEXT": LABEL_TEXT, "station_name": db.station,
                "database": db.url, "recheck_queue": "RECHECK" in DECISIONS, "queue_url": queue_url}

    # -- refusals -------------------------------------------------------------------------------

    def page(status: int, title: str, message: str) -> tuple[str, int]:
        return render_template("error.html", status=status, title=title, message=message), status

    @app.errorhandler(BadRequestValue)
    def bad_value(exc: BadRequestValue) -> Any:
        return page(400, "Not a value this page takes", str(exc))

    @app.errorhandler(CSRFError)
    def bad_token(exc: CSRFError) -> Any:
        return page(400, "Form expired", f"This form was not sent from a page of this session ({exc.description}). "
                    "Reload the page and send it again.")

    @app.errorhandler(pictures.OutsideStore)
    def outside(exc: pictures.OutsideStore) -> Any:
        return page(403, "Refused: outside the image store", str(exc))

    @app.errorhandler(pictures.NotHere)
    def not_here(exc: pictures.NotHere) -> Any:
        return page(404, "Image not available here", str(exc))

    @app.errorhandler(AccessDenied)
    def denied(exc: AccessDenied) -> Any:
        return page(403, "Refused", str(exc))

    @app.errorhandler(DatabaseError)
    def database(exc: DatabaseError) -> Any:
        return page(503, "The database did not answer", str(exc))

    @app.errorhandler(HTTPException)
    def http(exc: HTTPException) -> Any:
        return page(exc.code or 500, exc.name, exc.description or "")

    # -- sign-in --------------------------------------------------------------------------------

    @app.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Any:
        nxt = _safe_next(request.values.get("next", ""))
        if request.method == "GET":
            return render_template("signin.html", next=nxt)
        name, pin = request.form.get("name", "").strip(), request.form.get("pin", "")
        if not name or not pin:
            return page(400, "Sign-in refused", "Give your name and your PIN.")
        try:
            actor = actions.sign_in(db, name, pin, before="", where="web")
        except AccessDenied as exc:
            if isinstance(exc.__cause__, AccountLocked):
                return page(429, "Account locked", str(exc))
            return page(401, "Sign-in refused", str(exc))
        signins.remove(session.get("sid"))
        session.clear()  # a new session: tokens of the old one no longer count
        session["sid"] = signins.add(actor.user, actor.role, pin)
        return redirect(nxt or url_for("inspections"), code=303)

    @app.post("/sign-out")
    def sign_out() -> Any:
        signed = signins.remove(session.get("sid"))
        if signed is not None:
            actions.sign_out(db, actions.Actor(signed.user, signed.role), after="", where="web")
        session.clear()
        return redirect(url_for("sign_in"), code=303)

    # -- the list -------------------------------------------------------------------------------

    @app.get("/")
    def home() -> Any:
        return redirect(url_for("inspections"))

    @app.get("/inspections")
    def inspections() -> Any:
        filters = parse_filters(request.args)
        f = filters.inspection_filter
        size = options.page_size
        with db.session() as s:
            if "after" in request.args:
                rows = queries.query_inspections_after(s, f, parse_key("after", request.args["after"]), size + 1)
                newer_exists = len(rows) > size
                rows = rows[-size:] if newer_exists else rows
                older_exists = True
            else:
                before = parse_key("before", request.args["before"]) if "before" in request.args else None
                rows = queries.query_inspections(s, f, size + 1, before=before)
                older_exists = len(rows) > size
                rows = rows[:size]
                newer_exists = before is not None
            total = counts.get(tuple(sorted(filters.values.items())), lambda: queries.count_inspections(s, f))
        qs = filters.values
        return render_template(
            "list.html", rows=rows, total=total, filters=qs, filter_qs=urlencode(qs),
            # a part's link, built once rather than by url_for in each row (a tenth of the page's time)
            part_prefix=url_for("part", inspection_id=0)[:-1], part_suffix=f"?{urlencode(qs)}" if qs else "",
            newer=url_for("inspections", **qs, after=key(rows[0])) if rows and newer_exists else None,
            older=url_for("inspections", **qs, before=key(rows[-1])) if rows and older_exists else None,
            first=url_for("inspections", **qs) if newer_exists else None,
            stations=stations.get(), products=product_list.get(), decisions=DECISIONS, labels=LABELS,
            can_export=g.user.can("export"))

    # -- one part -------------------------------------------------------------------------------

    def the_row(inspection_id: int) -> InspectionRow:
        with db.session() as s:
            row = queries.inspection_row(s, inspection_id)
        if row is None:
            abort(404, f"There is no inspection {inspection_id} in this database.")
        return row

    def drawing(inspection_id: int) -> tuple[InspectionRow, Any]:
        """The row and the levels its pictures are drawn with: from its page if it was just shown."""
        def look() -> tuple[InspectionRow, Any]:
            row = the_row(inspection_id)
            return row, levels_for(row)

        return drawn.get(inspection_id, look)

    @app.get("/inspections/<int:inspection_id>")
    def part(inspection_id: int) -> Any:
        filters = parse_filters(request.args)
        with db.session() as s:
            row = queries.inspection_row(s, inspection_id)
            if row is None:
                abort(404, f"There is no inspection {inspection_id} in this database.")
            # previous and next within the filter: one statement, ids only
            newer, older = queries.neighbours(s, filters.inspection_filter, (row.time, row.id))
            known = queries.decided_rule(s, row)
            trail = queries.inspection_trail(s, row.id)
            station_version = queries.station_version(s, row)
        levels = pictures.levels_of(row, known)
        drawn.put(row.id, (row, levels))  # the frame and heat layer the browser asks for next
        image_note = heat_note = ""
        try:
            frames.put(row.id, source.where(row, "image"))  # where the frame is: asked for next
        except InspectorError as exc:
            image_note = str(exc)
        try:
            source.where(row, "heatmap")
            if row.heatmap_low is None:
                heat_note = "a heatmap stored before its values were kept: not drawn here"
        except InspectorError as exc:
            heat_note = str(exc)
        qs = filters.values
        return render_template(
            "part.html", row=row, levels=levels, known=known, trail=trail, filters=qs, filter_qs=urlencode(qs),
            image_note=image_note, heat_note=heat_note, labels=LABELS, station_version=station_version,
            newer=url_for("part", inspection_id=newer, **qs) if newer is not None else None,
            older=url_for("part", inspection_id=older, **qs) if older is not None else None,
            back=url_for("inspections", **qs, before=f"{row.time.isoformat()}~{row.id + 1}"),
            can_label=g.user.can("label"), label_roles=" or ".join(roles_with("label")))

    def picture(data: bytes) -> Response:
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=3600"  # a stored row's pictures never change
        return response

    @app.get("/inspections/<int:inspection_id>/frame.png")
    def frame(inspection_id: int) -> Any:
        # OutsideStore, NotHere: 403, 404 (refusals are not kept: asked again, checked again)
        path = frames.get(inspection_id, lambda: source.where(drawing(inspection_id)[0], "image"))
        if path is None:  # the plant's copy: read each time (frames are too big to keep many of)
            return picture(source.from_plant(drawing(inspection_id)[0], "image"))
        try:
            response = send_file(path, mimetype="image/png", max_age=3600, conditional=True)
        except FileNotFoundError:  # gone since (the station's quota): said as for any file not here
            raise pictures.NotHere(f"image not available here: {path} is gone") from None
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    def levels_for(row: InspectionRow) -> Any:
        with db.session() as s:
            return pictures.levels_of(row, queries.decided_rule(s, row))

    @app.get("/inspections/<int:inspection_id>/heat.png")
    def heat(inspection_id: int) -> Any:
        def draw() -> bytes:
            row, levels = drawing(inspection_id)
            return pictures.png(pictures.heat_layer(source.heat_map(row), levels))

        return picture(rendered.get(("heat", inspection_id), draw))

    @app.get("/inspections/<int:inspection_id>/scale.png")
    def scale(inspection_id: int) -> Any:
        return picture(rendered.get(("scale", inspection_id),
                                    lambda: pictures.png(pictures.scale_picture(drawing(inspection_id)[1]))))

    @app.get("/inspections/<int:inspection_id>/overlay.png")
    def annotated(inspection_id: int) -> Any:
        row = the_row(inspection_id)
        response = picture(pictures.png(pictures.annotated(source, row, levels_for(row))))
        response.headers["Content-Disposition"] = f'inline; filename="inspection-{row.id}-overlay.png"'
        return response

    @app.post("/inspections/<int:inspection_id>/label")
    def label(inspection_id: int) -> Any:
        row = the_row(inspection_id)
        value = request.form.get("label", "")
        if value not in LABELS:
            raise BadRequestValue("label", f"{value!r} is not one of {', '.join(LABELS)}")
        note = request.form.get("note", "")
        if len(note.strip()) > actions.MAX_NOTE_CHARS:
            raise BadRequestValue("note", f"longer than {actions.MAX_NOTE_CHARS} characters")
        filters = parse_filters(dict(parse_qsl(request.form.get("filters", ""))))  # the list the part was opened from
        actions.review_inspection(db, g.user.caller(), row.id, value, note)  # AccessDenied: 403, audited
        counts.clear()  # a label moves a part between label filters (the recheck queue's count among them)
        flash(f"Inspection {row.id} labelled {LABEL_TEXT[value]}" + (" with a note" if note.strip() else "") + ".")
        f = filters.inspection_filter
        if f.decision == "RECHECK" and f.label == "none" and value != "none":
            # The recheck queue, as on the desktop: the part judged leaves it and the next one opens
            # (the older one, else the newer one; none left: the queue's list, which says it is empty).
            with db.session() as s:
                newer, older = queries.neighbours(s, f, (row.time, row.id))
            nxt = older if older is not None else newer
            if nxt is None:
                return redirect(url_for("inspections", **filters.values), code=303)
            return redirect(url_for("part", inspection_id=nxt, **filters.values), code=303)
        return redirect(url_for("part", inspection_id=row.id, **filters.values), code=303)

    # -- export ---------------------------------------------------------------------------------

    def exportable(row: InspectionRow, which: str) -> bytes | None:
        try:
            return source.read(row, which)
        except InspectorError:  # outside the store, not here, not in the plant: not exported
            return None

    @app.post("/export")
    def export() -> Any:
        filters = parse_filters(request.form)
        kind = request.form.get("format", "csv")
        if kind not in ("csv", "zip"):
            raise BadRequestValue("format", f"{kind!r} is not csv or zip")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        work = Path(tempfile.mkdtemp(prefix="inspector-export-"))
        try:
            csv_path = work / f"inspections-{stamp}.csv"
            images = work / "images" if kind == "zip" else None
            # images as the part page shows them: a file inside the image store, else the plant's copy
            done = actions.export_inspections(db, g.user.caller(), csv_path, filters.inspection_filter, images_dir=images,
                                              read_image=exportable)
            if kind == "csv":
                out, mimetype = csv_path, "text/csv"
            else:
                out, mimetype = work / f"inspections-{stamp}.zip", "application/zip"
                with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
                    z.write(csv_path, csv_path.name)
                    for file in sorted(images.iterdir()):
                        z.write(file, f"images/{file.name}")
            handle = out.open("rb")  # open before the folder goes: the file lives while it is sent
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("%s exported %d inspections (%d images) as %s", g.user.user, done.rows, done.images, kind)
        return send_file(handle, mimetype=mimetype, as_attachment=True, download_name=out.name)

    # -- charts ---------------------------------------------------------------------------------

    def bucket_of(args: Any, filters: Filters) -> tuple[str, timedelta]:
        name = args.get("bucket", "")
        if name and name not in BUCKETS:
            raise BadRequestValue("bucket", f"{name!r} is not one of {', '.join(BUCKETS)}")
        if not name:
            f = filters.inspection_filter
            span = (f.end or datetime.now(timezone.utc)) - (f.start or datetime.now(timezone.utc) - timedelta(days=30))
            name = "hour" if span <= timedelta(days=3) else "day"
        return name, BUCKETS[name]

    @app.get("/charts")
    def charts_page() -> Any:
        filters = parse_filters(request.args)
        name, _ = bucket_of(request.args, filters)
        qs = {**filters.values, "bucket": name}
        return render_template("charts.html", filters=filters.values, bucket=name, buckets=list(BUCKETS),
                               chart_qs=urlencode(qs), stations=stations.get(), products=product_list.get(),
                               decisions=DECISIONS, labels=LABELS)

    def svg(data: bytes) -> Response:
        response = Response(data, mimetype="image/svg+xml")
        response.headers["Cache-Control"] = "private, max-age=30"
        return response

    @app.get("/charts/yield-<by>.svg")
    def yield_svg(by: str) -> Any:
        if by not in ("station", "product"):
            abort(404)
        from dataclasses import replace

        filters = parse_filters(request.args)
        _, bucket = bucket_of(request.args, filters)
        f = filters.inspection_filter
        series: dict[str, list[Any]] = {}
        with db.session() as s:
            if by == "station":
                for name in ([f.station] if f.station else stations.get()):
                    series[name] = queries.yield_over_time(s, replace(f, station=name), bucket)
            else:
                for name, pid in product_list.get():
                    if f.product_id is None or f.product_id == pid:
                        series[name] = queries.yield_over_time(s, replace(f, product_id=pid), bucket)
        return svg(charts.yield_chart(f"Yield per {by}", series, bucket))

    @app.get("/charts/false-rejects.svg")
    def false_rejects_svg() -> Any:
        from dataclasses import replace

        filters = parse_filters(request.args)
        _, bucket = bucket_of(request.args, filters)
        f = filters.inspection_filter
        with db.session() as s:
            fails = queries.yield_over_time(s, f, bucket)
            fr = queries.yield_over_time(s, replace(f, label="false_reject"), bucket)
            cd = queries.yield_over_time(s, replace(f, label="confirmed_defect"), bucket)
        return svg(charts.false_reject_chart(fails, fr, cd, bucket))

    # -- stations -------------------------------------------------------------------------------

    @app.get("/stations")
    def stations_page() -> Any:
        alarm_station = parse_station("station", request.args.get("station", ""))  # whose alarms: all by default
        now = datetime.now(timezone.utc)
        stations.clear()
        reports = station_reports(db)  # what each station's plant link last reported here
        with_alarms = alarm_stations(db)
        names = sorted(set(stations.get()) | set(reports))  # a station may report before its first row
        with db.session() as s:
            summaries = [queries.station_summary(s, name, now - timedelta(hours=24)) for name in names]
            backlog = queries.forwarding_backlog(s)
        acknowledged = [e for e in db.audit_events(500) if e.action == "acknowledge_alarms"][:20]
        images = received.get()  # what the stations forwarded of their images (a plant database's)
        return render_template("stations.html", summaries=summaries, reports=reports, backlog=backlog,
                               acknowledged=acknowledged, now=now, stale_after=STALE_AFTER, images=images,
                               retention=image_retention(db), alarms=alarms_forwarded(db, alarm_station),
                               alarm_station=alarm_station, alarm_stations=sorted(set(names) | set(with_alarms)),
                               alarms_shown=ALARMS_SHOWN)

    @app.template_filter("utc")
    def utc(value: datetime | None) -> str:
        return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    app.template_filter("days")(days)

    @app.template_filter("defect_size")
    def defect_size(row: InspectionRow) -> str:
        # as the desktop's Defect column: mm² where the rule had a pixel size, else px; empty where not measured
        if row.defect_area_px is None:
            return ""
        mm2 = row.defect_area_mm2
        return f"{mm2:.3g} mm²" if mm2 is not None else f"{row.defect_area_px} px"

    @app.template_filter("size")
    def size(value: int) -> str:
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if value >= scale:
                return f"{value / scale:.1f} {unit}"
        return f"{value} B"

    @app.template_filter("ago")
    def ago(value: datetime | None) -> str:
        if value is None:
            return "never"
        seconds = (datetime.now(timezone.utc) - value).total_seconds()
        for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                n = int(seconds // size)
                return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''} ago"
        return f"{max(0, int(seconds))} s ago"

    return app


def _safe_next(target: str) -> str:
    """Where to go after sign-in: a path on this server only (not //elsewhere, not a URL)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and len(target) < 2000:
        return target
    return ""

