"""``inspector run`` (inline inspection from a camera) and ``inspector history export``.

Registered into the ``inspector`` command by :func:`register`. User-caused problems raise
:class:`~inspector.errors.InspectorError`, which the command prints as one line (exit 2).

``run`` inspects with a product's active recipe (model, threshold, pixel rule), as the desktop
does. Anything else -- another model file, a threshold or pixel rule given by hand -- changes
what the line decides, so it needs a technician (``--user`` with their PIN) and is audited as
``run_override``; every run is audited (``run_start``, ``run_stop``), and so is every export.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cli.common import DEVICE_OPTION, MAX_BATCH_OPTION, add_credential_options, quiet_migrations, shell_user, verified_user
from cli.run_links import RunLinks
from inspector import ENGINE_BACKENDS, recipes
from inspector.errors import DatabaseError, InspectorError
from inspector.line.batcher import DEFAULT_MAX_WAIT_MS
from inspector.line.build import DRIFT_WINDOW

log = logging.getLogger(__name__)

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
    p.add_argument("--camera", required=True, action="append",
                   help="camera URI, e.g. basler://SERIAL, basler://emulated, folder:///images?fps=5, file:///video.mp4, "
                   "opencv://0; give it again for more cameras on one engine (their frames are scored together)")
    p.add_argument("--product", default=None,
                   help="product whose active recipe (model, threshold, pixel rule) decides; with --model: the "
                   f"product to register the model under (default: the one it is registered for, else {recipes.DEFAULT_PRODUCT!r})")
    p.add_argument("--model", default=None, help="override: inspect with this model file instead of the product's "
                   "active one (a technician's; needs --user)")
    p.add_argument("--db", default=None, help="history database URL (default: history.db in the data folder)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (per camera)")
    p.add_argument("--threshold", type=float, default=None,
                   help="override: image-score threshold (default: the model's calibration; needs --user)")
    p.add_argument("--pixel-threshold", type=float, default=None,
                   help="override: also FAIL when map pixels above this form a large enough region (needs --user)")
    p.add_argument("--min-defect-area", type=int, default=None,
                   help="override: smallest region (camera pixels) above --pixel-threshold that FAILs (default 1)")
    add_credential_options(p, who="for overrides: the technician")
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
    p.add_argument("--summary-interval", type=float, default=DEFAULT_SUMMARY_S, help="seconds between summary lines")
    p.add_argument("--print-results", action="store_true",
                   help="print one line per durable verdict: result FRAME DECISION SCORE ID UID")
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto",
                   help="inference backend (auto: the fastest here)")
    p.add_argument("--device", **DEVICE_OPTION)
    p.add_argument("--max-batch", **MAX_BATCH_OPTION)
    p.add_argument("--batch-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS,
                   help="several cameras: how long a frame waits at most for the other cameras' to join its "
                   "forward pass (ms)")
    p.add_argument("--drift-window", type=int, default=DRIFT_WINDOW,
                   help="recent scores compared with the calibration's good scores for the drift alarm (0: off)")
    p.add_argument("--publish", default=None, metavar="URI",
                   help="also send every recorded verdict to the MES: mqtt://HOST:PORT/TOPIC[?station=NAME] "
                   "(JSON, QoS 1; kept in the history's outbox while the broker is away)")
    p.add_argument("--plant-db", default=None, metavar="URL",
                   help="also forward every recorded verdict to the plant's shared database: "
                   "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?station=NAME] (the station defaults to the host "
                   "name; --db stays the station's own history, which keeps recording while the plant database is away)")
    p.add_argument("--plc", default=None, metavar="URI", action="append",
                   help="also hand every recorded verdict to the PLC over Modbus TCP: "
                   "modbus://HOST[:PORT][?unit=1&map=FILE.toml&products=1:tile,2:disc] (part id, OK/NG, score, strobe; "
                   "the PLC acknowledges; with products=, the PLC's product number switches the product, audited); "
                   "several cameras: once per --camera, in the same order, each with a register block of its own")
    p.add_argument("--plc-down", choices=("ng", "stop"), default="ng",
                   help="while the PLC link is down: ng (go on; the parts reach the PLC as NG once it is back) "
                   "or stop (stop the line)")
    p.add_argument("--opcua", default=None, metavar="URI",
                   help="also serve the station's state to SCADA and PLC clients as an OPC UA server: "
                   "opcua://HOST[:PORT][?readonly=1&station=NAME], e.g. opcua://0.0.0.0:4840 (no security: an "
                   "isolated network only; readonly=1 leaves out the methods ChangeProduct and AcknowledgeAlarms)")
    p.set_defaults(func=cmd_run)

    h = subparsers.add_parser("history", help="inspection history: export")
    hsub = h.add_subparsers(dest="history_command", required=True, metavar="COMMAND")
    e = hsub.add_parser("export", help="write inspections to a CSV file, one row each, newest first")
    e.add_argument("--db", default=None, help="history database URL (default: history.db in the data folder); the "
                   "plant database's, postgresql://USER@HOST/DB, exports every station's")
    e.add_argument("--station", default=None, help="only this station's inspections (see the station column)")
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


#: The options of ``inspector run`` that override the product's active recipe: a technician's.
OVERRIDES = ("model", "threshold", "pixel_threshold", "min_defect_area")


def cmd_run(args: argparse.Namespace) -> int:
    quiet_migrations()
    if isinstance(args.camera, list):  # --camera is repeatable
        if len(args.camera) > 1:  # several cameras on one engine: cli/run_cameras.py
            from cli.run_cameras import cmd_run_cameras

            return cmd_run_cameras(args)
        args.camera = args.camera[0]
    from drivers import open_camera
    from inspector.history import HistoryDB, default_db_url
    from inspector.line import build_line

    _check_run_args(args)
    db = HistoryDB(args.db or default_db_url())
    db.upgrade()
    user, role = run_user(args, db)  # refused before the camera is opened or the model loaded
    active = product_recipe(args, db)
    overridden = overrides_given(args)
    links = RunLinks(args, db, 1, overridden)  # a bad URI or register map is reported before the camera opens
    camera = None
    try:
        camera = open_camera(args.camera)
        camera.open()  # a missing or busy device is reported before the model takes seconds to load
        recipe = load_run_recipe(args, db, active)
        engine = recipe.engine
        if overridden:
            before, after = override_audit(db, recipe, overridden)
            db.record_audit(user, role, "run_override", f"product:{recipe.product}", before, after)
        out = _Printer()
        line = build_line(
            camera, recipe, db,
            image_dir=args.image_dir or _default_image_dir(db),
            quota_bytes=int(args.image_quota_gb * 1e9),
            pass_sample_rate=args.pass_sample_rate,
            mode=args.mode, trigger=args.trigger, trigger_line=args.trigger_line,
            queue_size=args.queue_size, max_frames=args.max_frames,
            drift_window=args.drift_window,
            links=[*([out] if args.print_results else []), *links.shared(), *links.of_camera(0)],
        )
        links.start(db, line, recipe, out, product_loader(args, db))
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
        db.record_audit(user, role, "run_start", f"product:{recipe.product}", None, run_start_details(args, recipe))
        line.start()
        links.set_running(True)
        interrupted = threading.Event()  # Ctrl-C or SIGTERM: set by the signal handler
        try:
            with _stop_signals(interrupted):
                while not _wait_for_line(line, args.summary_interval, links.plc_down, interrupted):
                    if stopping_line(out, interrupted, links.plc_down):
                        break
                    out.line(summary_line(line.metrics()))
        finally:  # whatever ended the loop, what was acquired is inspected and recorded
            clean = line.stop(STOP_TIMEOUT_S)
            links.set_running(False)
        links.drain(out)
        metrics = line.metrics()
        why = stop_reason(args, line, metrics, interrupted, links.plc_down)
        out.line(f"stopped ({why}): {summary_line(metrics)}; acquired {metrics.acquired}, "
                 f"recorded {metrics.recorded}")
        _audit_run_stop(db, user, role, line.recipe, why, metrics)  # the product on the line at the end
        lost = metrics.unrecorded + metrics.writer.failed
        check_run_end(clean, lost, line, interrupted, links.plc_down)
        return 0
    finally:
        links.close()
        if camera is not None:
            camera.close()


def product_loader(args: argparse.Namespace, db: Any) -> Any:
    """``load(name)``: the product's active recipe with its engine, as this run loads its own."""
    return lambda name: load_run_recipe(args, db, recipes.active_recipe(db, name))


def stopping_line(out: Any, interrupted: threading.Event, plc_down: threading.Event) -> bool:
    """True, having said so, when the run is to stop: Ctrl-C, or a PLC link down under
    ``--plc-down stop``."""
    if interrupted.is_set():
        out.line("stopping: inspecting and recording the frames already acquired ...")
        return True
    if plc_down.is_set():
        out.line("stopping: the PLC link is down (--plc-down stop); inspecting and recording "
                 "the frames already acquired ...")
        return True
    return False


def stop_reason(args: argparse.Namespace, line: Any, metrics: Any, interrupted: threading.Event,
                plc_down: threading.Event) -> str:
    """Why one camera's line stopped, in words."""
    if interrupted.is_set():
        return "interrupted"
    if plc_down.is_set():
        return "the PLC link went down (--plc-down stop)"
    if not line.source_ended:
        return "acquisition failed"
    if args.max_frames is not None and metrics.acquired >= args.max_frames:
        return f"{args.max_frames} frames"
    return "the camera's source ended"


def check_run_end(clean: bool, lost: int, line: Any, interrupted: threading.Event, plc_down: threading.Event) -> None:
    """Raises what a run that did not end well ends with: verdicts not recorded, the PLC link
    down under ``--plc-down stop``, acquisition that failed."""
    if not clean or lost:
        raise DatabaseError(f"{lost} verdicts were not recorded in the history; see the alarms above")
    if plc_down.is_set() and not interrupted.is_set():
        raise InspectorError("the line stopped because the PLC link went down (--plc-down stop); "
                             "see the alarms above")
    if not interrupted.is_set() and not line.source_ended:
        raise InspectorError("acquisition stopped by an internal error; see the alarms above")


def _wait_for_line(line: Any, seconds: float, *stops: threading.Event) -> bool:
    """``line.wait(seconds)``, but False as soon as one of ``stops`` is set: a signal or a link
    asks for the stop from another thread, and the stop itself (drain, print, audit) is the
    run's, on this one."""
    deadline = time.monotonic() + seconds
    while not any(stop.is_set() for stop in stops):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if line.wait(min(left, 0.2)):
            return True
    return False


def _check_run_args(args: argparse.Namespace) -> None:
    if args.product is None and args.model is None:
        raise InspectorError("give --product NAME (inspect with its active recipe), or --model FILE with --user "
                             "(a technician's override)")
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
    if args.pixel_threshold is not None and args.threshold is None:
        raise InspectorError("--pixel-threshold needs --threshold as well (or neither, to use the calibration)")


def overrides_given(args: argparse.Namespace) -> list[str]:
    """The options given that override the active recipe, as written: ``["--model", "--threshold"]``."""
    return [f"--{name.replace('_', '-')}" for name in OVERRIDES if getattr(args, name) is not None]


def run_user(args: argparse.Namespace, db: Any) -> tuple[str, str]:
    """Who runs the line, for the audit: ``--user`` once their PIN is verified -- a technician's
    when an override is given (refusals audited as ``run_override_denied``), anyone's otherwise
    -- else the shell account, which may only run the active recipe."""
    from inspector.roles import ROLES

    target = f"product:{args.product}" if args.product else f"model:{args.model}"
    if overrides_given(args):
        return verified_user(db, args.user, args.pin_file, "run_override", target)
    if args.user:
        return verified_user(db, args.user, args.pin_file, "run", target, ROLES)
    return shell_user(), "system"


def product_recipe(args: argparse.Namespace, db: Any) -> Any:
    """``--product``'s active :class:`~inspector.recipes.Recipe` (its threshold overridden by
    ``--threshold``); None with ``--model``, whose recipe needs the file loaded (:func:`run_recipe`).
    Cheap: read before the camera is opened, so a product with no active model says so at once."""
    if args.model is not None:
        return None
    recipe = recipes.active_recipe(db, args.product)
    rule = _override_rule(args)
    if rule is not None:
        recipe = recipes.version_recipe(db, recipe.model_version_id, rule=rule, rule_source="--threshold")
    return recipe


def load_run_recipe(args: argparse.Namespace, db: Any, recipe: Any) -> Any:
    """The :class:`~inspector.recipes.LoadedRecipe` the run decides with: ``recipe`` (from
    :func:`product_recipe`) with its engine, or ``--model``'s (:func:`run_recipe`). Slow: seconds."""
    from inspector.engine import Engine

    if recipe is None:
        return run_recipe(args, db, Engine(args.model, device=args.device, backend=args.backend))
    return recipes.LoadedRecipe.of(recipe, Engine(recipe.model_path, device=args.device, backend=args.backend))


def _override_rule(args: argparse.Namespace) -> Any:
    from inspector.line import DecisionRule

    if args.threshold is not None:
        return DecisionRule(args.threshold, args.pixel_threshold, args.min_defect_area)
    if args.pixel_threshold is not None:
        raise InspectorError("--pixel-threshold needs --threshold as well (or neither, to use the calibration)")
    return None


def run_recipe(args: argparse.Namespace, db: Any, engine: Any):
    """The :class:`~inspector.recipes.LoadedRecipe` of ``--model``: the model file registered for
    ``--product`` and its rule from :func:`inspector.recipes.model_file_recipe` (latest
    calibration in the database, else the model file's), unless ``--threshold`` (with
    ``--pixel-threshold``/``--min-defect-area``) overrides it."""
    override = _override_rule(args)
    try:
        recipe = recipes.model_file_recipe(db, engine.model_path, engine.model_sha256, engine.metadata, args.product,
                                           rule=override, rule_source="--threshold")
    except recipes.NotCalibrated as exc:
        raise recipes.NotCalibrated(f"{exc}, or pass --threshold") from None
    return recipes.LoadedRecipe.of(recipe, engine)


def _decision(recipe: Any) -> dict[str, Any]:
    """What decides, as the audit records it: model version and file, rule, where the rule came from."""
    from inspector.line.product_change import decision_details

    return decision_details(recipe)


def override_audit(db: Any, recipe: Any, overridden: list[str]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``run_override``'s before (the product's active recipe; None when it has none) and after
    (what the run decides with, and which options overrode it)."""
    try:
        active = recipes.active_recipe(db, recipe.product, verify_file=False)
    except InspectorError:
        active = None
    before = None if active is None else _decision(active)
    return before, {**_decision(recipe), "overridden": overridden}


def run_start_details(args: argparse.Namespace, recipe: Any) -> dict[str, Any]:
    return {"camera": args.camera, "product": recipe.product, **_decision(recipe), "overridden": overrides_given(args),
            "mode": args.mode, "max_frames": args.max_frames}


def _audit_run_stop(db: Any, user: str, role: str, recipe: Any, why: str, m: Any) -> None:
    """``run_stop`` with why and the counts. A database that is down must not turn a clean stop
    into a crash: the verdicts themselves are journaled, and the failure is logged."""
    counts = {"why": why, "acquired": m.acquired, "recorded": m.recorded, "passed": m.passed, "failed": m.failed,
              "errors": m.errors, "dropped": m.dropped, "unrecorded": m.unrecorded + m.writer.failed}
    try:
        db.record_audit(user, role, "run_stop", f"product:{recipe.product}", None, counts)
    except DatabaseError as exc:
        log.warning("the run's stop could not be audited: %s", exc)


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
def _stop_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM (systemd, docker stop) set ``stop``: the run then stops gracefully,
    inspecting and recording what was acquired. Why not KeyboardInterrupt: raised wherever the main
    thread happens to be, it can leave a lock or a queue half-updated under the threads the stop
    then waits for. A second signal, while the first is being served, still interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
        station=args.station,
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
        # What left the database, by whom, with which filters: exported images and verdicts are
        # quality records, and the desktop's export is audited the same way. A read-only archive
        # cannot take the entry; reading it is still allowed.
        if db.read_only:
            print(f"{url} is read-only (an archive): this export is not recorded in its audit trail")
        else:
            db.record_audit(shell_user(), "system", "export_history", "inspections", None,
                            {"out": str(args.out.resolve()), "rows": n, "filters": _filter_options(args)})
    finally:
        db.close()
    print(f"{n} inspections written to {args.out} ({time.perf_counter() - started:.1f} s)")
    return 0


def _filter_options(args: argparse.Namespace) -> dict[str, Any]:
    """The export's filters as given (None: not given), for the audit."""
    names = ("since", "until", "decision", "errors_only", "min_score", "max_score", "model_version", "station")
    return {name: getattr(args, name) for name in names}


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
