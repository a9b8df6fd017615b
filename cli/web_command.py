"""``inspector serve``: the quality engineer's review in a browser (:mod:`web`).

Flask and waitress are imported only when it runs, so ``inspector --help`` works without the
``[web]`` extra. Beside the pages, a thread removes the plant's images older than its retention
(``inspector plant retention``) at the start and every hour (:class:`station.plant_images.RetentionPruner`).
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from cli.common import quiet_migrations
from inspector.errors import InspectorError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="the review in a browser: inspections, heatmaps, labels, charts, export",
        description="Serve the quality engineer's review as web pages over a history database: the plant's "
        "PostgreSQL (every station's rows) or a station's SQLite. People sign in with their station name and PIN.",
    )
    p.add_argument("--db", default=None, help="history database URL, e.g. postgresql://USER@HOST/DB or "
                   "sqlite:////path/history.db (default: history.db in the data folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this computer only; "
                   "0.0.0.0 for every network, or put a TLS proxy in front: see docs/review-in-a-browser.md)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--images", action="append", type=Path, metavar="FOLDER",
                   help="a folder of the image store whose files may be shown (give it once per folder; default: the "
                   "images folder beside a SQLite database, else the data folder's); no file outside is ever opened")
    p.add_argument("--secure-cookies", action="store_true",
                   help="send the session cookie over HTTPS only (set it behind a TLS proxy)")
    p.add_argument("--behind-proxy", action="store_true",
                   help="trust one reverse proxy's X-Forwarded-For/-Proto/-Host headers")
    p.add_argument("--idle-minutes", type=float, default=60.0, help="sign a user out after this long without a "
                   "request (default: 60)")
    p.add_argument("--threads", type=int, default=8, help="requests served at once (default: 8)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    quiet_migrations()
    # waitress warns at each request queued behind busy threads: noise for whoever runs it
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        from web import WebOptions, create_app
        from web.server import make_server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("flask", "flask_wtf", "waitress", "wtforms", "werkzeug"):
            raise
        raise InspectorError("inspector serve needs Flask, Flask-WTF and waitress: pip install 'inspector[web]'") from None
    from inspector.history import HistoryDB, data_dir, default_db_url
    from station.actions import require_existing_db
    from station.plant_images import RetentionPruner, object_reader

    if not 0 <= args.port <= 65535:
        raise InspectorError(f"--port must be within 0..65535, got {args.port}")
    if args.threads < 1 or args.idle_minutes <= 0:
        raise InspectorError("--threads and --idle-minutes must be positive")
    url = args.db or default_db_url()
    require_existing_db(url)
    db = HistoryDB(url)
    db.upgrade()
    folders = args.images or [db.sqlite_path.parent / "images" if db.sqlite_path is not None else data_dir() / "images"]
    objects = object_reader()  # rows naming s3:// objects: read (and pruned) there, with boto3's configuration
    app = create_app(db, WebOptions(image_folders=[str(f) for f in folders], secure_cookies=args.secure_cookies,
                                    behind_proxy=args.behind_proxy, idle_minutes=args.idle_minutes, objects=objects))
    try:
        server = make_server(app, args.host, args.port, threads=args.threads)
    except OSError as exc:
        raise InspectorError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"review of {db.url} at http://{host}:{server.effective_port}/ (images from "
          f"{', '.join(map(str, folders))}); Ctrl+C stops", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # out of the serving loop, which open keep-alive connections would keep going

    signal.signal(signal.SIGTERM, stop)
    # the plant's image retention (inspector plant retention) kept by whoever serves: now, then hourly
    pruner = RetentionPruner(db, objects).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        pruner.stop()
        db.close()
    print("stopped", flush=True)
    return 0
