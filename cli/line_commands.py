"""``inspector run`` (inline inspection from a camera) and ``inspector history export``.

Registered into the ``inspector`` command by :func:`register`. User-caused problems raise
:class:`~inspector.errors.InspectorError`, which the command prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cli.common import DEVICE_OPTION, quiet_migrations
from inspector import ENGINE_BACKENDS, recipes
from inspector.errors import DatabaseError, InspectorError
from inspector.line.build import DRIFT_WINDOW

DEFAULT_SUMMARY_S = 5.0
DEFAULT_IMAGE_QUOTA_GB = 20.0
STOP_TIMEOUT_S = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run`` and ``history`` to the ``inspector`` command's sub-commands."""

    p = subparsers.add_parser(
        "run",
        help="inspect frames from a camera until Ctrl-C or --max-frames",
        description="Inspect every frame of a camera, record each verdict in the history database and "
        "print a summary line periodically. Ctrl-C (or SIGTERM) stops gracefully: every frame "
        "acquired so far is inspected and recorded first.",
    )
    p.add_argument("--camera", required=True, help="camera URI, e.g. basler://SERIAL, basler://emulated, "
                   "folder:///images?fps=5, file:///video.mp4, opencv://0")
    p.add_argument("--model", required=True, help="model file (.safetensors) from `inspector train`")
    p.add_argument("--db", default=None, help="history database URL (default: history.db in the data folder)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--threshold", type=float, default=None,
                   help="image-score threshold (default: the model's calibration)")
    p.add_argument("--pixel-threshold", type=float, default=None,
                   help="also FAIL when map pixels above this form a large enough region")
    p.add_argument("--min-defect-area", type=int, default=None,
                   help="smallest region (camera pixels) above --pixel-threshold that FAILs (default 1)")
    p.add_argument("--mode", choices=("triggered", "live"), default="triggered",
                   help="triggered: every frame inspected; live: newest frames, older ones dropped")
    p.add_argument("--trigger", choices=("free_run", "hardware"), default="free_run",
                   help="camera trigger (hardware: an edge on --trigger-line)")
    p.add_argument("--trigger-line", default="Line1", help="camera input line for --trigger hardware")
    p.add_argument("--queue-size", type=int, default=None,
                   help="frames waiting for the engine at most (default: 8 triggered, 1 live)")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="folder for frames and heatmaps (default: images/ beside a SQLite database, "
                   "else in the data folder)")
    p.add_argument("--image-quota-gb", type=float, default=DEFAULT_IMAGE_QUOTA_GB,
                   help="oldest images are deleted beyond this size")
    p.add_argument("--pass-sample-rate", type=float, default=0.01,
                   help="fraction of PASS frames whose images are kept (rejects: always)")
    p.add_argument("--product", default=None,
                   help=f"product the model belongs to (default: the one it is registered for, else {recipes.DEFAULT_PRODUCT!r})")
    p.add_argument("--summary-interval", type=float, default=DEFAULT_SUMMARY_S, help="seconds between summary lines")
    p.add_argument("--print-results", action="store_true",
                   help="print one line per durable verdict: result FRAME DECISION SCORE ID UID")
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto",
                   help="inference backend (auto: the fastest here)")
    p.add_argument("--device", **DEVICE_OPTION)
    p.add_argument("--drift-window", type=int, default=DRIFT_WINDOW,
                   help="recent scores compared with the calibration's good scores for the drift alarm (0: off)")
    p.set_defaults(func=cmd_run)

    h = subparsers.add_parser("history", help="inspection history: export")
    hsub = h.add_subparsers(dest="history_command", required=True, metavar="COMMAND")
    e = hsub.add_parser("export", help="write inspections to a CSV file, one row each, newest first")
    e.add_argument("--db", default=None, help="history database URL (default: history.db in the data folder)")
    e.add_argument("--out", required=True, type=Path, help="CSV file to write")
    e.add_argument("--since", default=None, help="from this time on (ISO 8601; without a zone: local time)")
    e.add_argument("--until", default=None, help="before this time (ISO 8601; without a zone: local time)")
    e.add_argument("--decision", choices=("PASS", "FAIL"), default=None)
    e.add_argument("--errors-only", action="store_true", help="only frames the engine could not score (see the error column)")
    e.add_argument("--min-score", type=float, default=None)
    e.add_argument("--max-score", type=float, default=None)
    e.add_argument("--model-version", type=int, default=None, help="model version id")
    e.set_defaults(func=cmd_history_export)


# --- inspector run -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    quiet_migrations()
    from drivers import open_camera
    from inspector.engine import Engine
    from inspector.history import HistoryDB, default_db_url
    from inspector.line import build_line

    _check_run_args(args)
    camera = open_camera(args.camera)
    camera.open()  # a missing or busy device is reported before the model takes seconds to load
    try:
        engine = Engine(args.model, device=args.device, backend=args.backend)
        db = HistoryDB(args.db or default_db_url())
        db.upgrade()
        recipe = run_recipe(args, db, engine)
        out = _Printer()
        line = build_line(
            camera, recipe, db,
            image_dir=args.image_dir or _default_image_dir(db),
            quota_bytes=int(args.image_quota_gb * 1e9),
            pass_sample_rate=args.pass_sample_rate,
            mode=args.mode, trigger=args.trigger, trigger_line=args.trigger_line,
            queue_size=args.queue_size, max_frames=args.max_frames,
            drift_window=args.drift_window,
            links=[out] if args.print_results else (),
        )
        if args.drift_window <= 0:
            drift = "alarm off (--drift-window 0)"
        elif line.drift is None:
            drift = "alarm off (the calibration has no good-part scores; recalibrate to turn it on)"
        else:
            drift = f"checked against {len(recipe.reference_scores)} calibration scores"
        out.line(
            f"inspecting {args.camera} with {engine.model_path.name} (model version {recipe.model_version_id}, "
            f"{engine.info['device']}, {engine.backend}); threshold {recipe.rule.threshold:g} from {recipe.source}; "
            f"{args.mode} mode; history {db.url}; drift {drift}; Ctrl-C stops"
        )
        line.start()
        interrupted = False
        try:
            with _sigterm_as_interrupt():
                while not line.wait(args.summary_interval):
                    out.line(summary_line(line.metrics()))
        except KeyboardInterrupt:
            interrupted = True
            out.line("stopping: inspecting and recording the frames already acquired ...")
        finally:  # whatever ended the loop, what was acquired is inspected and recorded
            clean = line.stop(STOP_TIMEOUT_S)
        metrics = line.metrics()
        if interrupted:
            why = "interrupted"
        elif not line.source_ended:
            why = "acquisition failed"
        elif args.max_frames is not None and metrics.acquired >= args.max_frames:
            why = f"{args.max_frames} frames"
        else:
            why = "the camera's source ended"
        out.line(f"stopped ({why}): {summary_line(metrics)}; acquired {metrics.acquired}, "
                 f"recorded {metrics.recorded}")
        lost = metrics.unrecorded + metrics.writer.failed
        if not clean or lost:
            raise DatabaseError(f"{lost} verdicts were not recorded in the history; see the alarms above")
        if not interrupted and not line.source_ended:
            raise InspectorError("acquisition stopped by an internal error; see the alarms above")
        return 0
    finally:
        camera.close()


def _check_run_args(args: argparse.Namespace) -> None:
    if args.max_frames is not None and args.max_frames < 1:
        raise InspectorError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.queue_size is not None and args.queue_size < 1:
        raise InspectorError(f"--queue-size must be >= 1, got {args.queue_size}")
    if not 0.0 <= args.pass_sample_rate <= 1.0:
        raise InspectorError(f"--pass-sample-rate must be within 0..1, got {args.pass_sample_rate:g}")
    if not args.image_quota_gb > 0:
        raise InspectorError(f"--image-quota-gb must be positive, got {args.image_quota_gb:g}")
    if not args.summary_interval > 0:
        raise InspectorError(f"--summary-interval must be positive, got {args.summary_interval:g}")
    for name in ("threshold", "pixel_threshold"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise InspectorError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    if args.min_defect_area is not None and args.pixel_threshold is None:
        raise InspectorError("--min-defect-area needs --pixel-threshold")


def run_recipe(args: argparse.Namespace, db: Any, engine: Any):
    """The :class:`~inspector.recipes.LoadedRecipe` ``inspector run`` inspects with: the model
    file registered for ``--product`` and its rule from :func:`inspector.recipes.model_file_recipe`
    (latest calibration in the database, else the model file's), unless ``--threshold`` (with
    ``--pixel-threshold``/``--min-defect-area``) overrides it."""
    from inspector.line import DecisionRule

    override = None
    if args.threshold is not None:
        override = DecisionRule(args.threshold, args.pixel_threshold, args.min_defect_area)
    elif args.pixel_threshold is not None:
        raise InspectorError("--pixel-threshold needs --threshold as well (or neither, to use the calibration)")
    try:
        recipe = recipes.model_file_recipe(db, engine.model_path, engine.model_sha256, engine.metadata, args.product,
                                           rule=override, rule_source="--threshold")
    except recipes.NotCalibrated as exc:
        raise recipes.NotCalibrated(f"{exc}, or pass --threshold") from None
    return recipes.LoadedRecipe.of(recipe, engine)


def _default_image_dir(db: Any) -> Path:
    from inspector.history import data_dir

    if db.sqlite_path is not None:
        return db.sqlite_path.parent / "images"
    return data_dir() / "images"


def summary_line(m: Any) -> str:
    """One line of figures from a :class:`~inspector.line.PipelineMetrics`."""
    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.0f}"

    parts = [
        f"{m.rate_fps:.2f} frames/s inspected" + (f" of {m.acquisition_fps:.2f} acquired" if m.mode == "live" else ""),
        f"pass {m.passed}",
        f"fail {m.failed}",
        f"errors {m.errors}",
        f"latency p50 {ms(m.latency_p50_ms)} ms p99 {ms(m.latency_p99_ms)} ms",
        f"model p50 {ms(m.model_p50_ms)} ms",
        f"queue {m.queue_depth}/{m.queue_size}",
        f"drops {m.dropped}",
        f"camera lost {m.camera_lost} skipped {m.camera_skipped}",
    ]
    if m.writer.journal_pending:
        parts.append(f"journaled {m.writer.journal_pending} (database unavailable)")
    if m.unrecorded or m.writer.failed:
        parts.append(f"UNRECORDED {m.unrecorded + m.writer.failed}")
    return ", ".join(parts)


class _Printer:
    """Whole lines to stdout from any thread (results come from the writer's). Alarms reach the
    console through logging: the pipeline and the history writer log each one as a warning."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def on_result(self, r: Any) -> None:  # a line link (see inspector.line.LineLink)
        row = "journal" if r.inspection_id is None else str(r.inspection_id)
        error = f" error: {r.error}" if r.error else ""
        self.line(f"result {r.frame_id} {r.decision} {r.score:.6f} {row} {r.uid}{error}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemd, docker stop) stops as gracefully as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- inspector history export --------------------------------------------------------------------


def cmd_history_export(args: argparse.Namespace) -> int:
    quiet_migrations()
    from inspector.history import HistoryDB, InspectionFilter, default_db_url

    filters = InspectionFilter(
        start=_iso_time(args.since, "--since"),
        end=_iso_time(args.until, "--until"),
        decision=args.decision,
        min_score=args.min_score,
        max_score=args.max_score,
        model_version_id=args.model_version,
        errors_only=args.errors_only,
    )
    if not args.out.parent.is_dir():
        raise InspectorError(f"cannot write {args.out}: folder {args.out.parent} does not exist")
    url = args.db or default_db_url()
    _require_sqlite_file(url)
    db = HistoryDB(url)
    try:
        started = time.perf_counter()
        try:
            n = db.export_csv(args.out, filters)
        except OSError as exc:
            raise InspectorError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    finally:
        db.close()
    print(f"{n} inspections written to {args.out} ({time.perf_counter() - started:.1f} s)")
    return 0


def _require_sqlite_file(url: str) -> None:
    """Refuse a SQLite file that does not exist (opening it would create an empty one)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # HistoryDB says what is wrong with it
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not parsed.query.get("uri"):
        if not Path(database).is_file():
            raise DatabaseError(f"no history database at {database}")


def _iso_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InspectorError(f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-03-01T08:00 or "
                             "2026-03-01T08:00+01:00") from None
    return value if value.tzinfo is not None else value.astimezone()  # naive: the local time zone
