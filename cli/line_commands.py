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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cli.common import (DEVICE_OPTION, MAX_BATCH_OPTION, add_credential_options, caller, output_file, output_folder, quiet_migrations, shell_user,
                        verified_user)
from inspector import ENGINE_BACKENDS, recipes
from inspector.errors import DatabaseError, InspectorError
from inspector.inspection import DECISIONS
from inspector.line.batcher import DEFAULT_MAX_WAIT_MS
from inspector.line.build import DRIFT_WINDOW
from inspector.line.pipeline import MAX_QUEUE_SIZE, NO_PART_ALARM_AFTER
from inspector.roles import Actor
from station.config import DISK_RESERVE_MB, LINKS, PLC_DOWN_POLICIES
from station.running import STOP_TIMEOUT_S

log = logging.getLogger(__name__)

DEFAULT_SUMMARY_S = 5.0
DEFAULT_IMAGE_QUOTA_GB = 20.0


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
    p.add_argument("--no-part-alarm", type=_count_or_off, default=NO_PART_ALARM_AFTER, metavar="N|off",
                   help="a model trained with --align: raise the no_part_run alarm after N frames in a row without "
                   f"the part (NO PART), N >= 1, or off: never (default {NO_PART_ALARM_AFTER})")
    p.add_argument("--threshold", type=float, default=None,
                   help="override: image-score threshold (default: the model's calibration; needs --user)")
    p.add_argument("--pixel-threshold", type=float, default=None,
                   help="override: also FAIL when map pixels above this form a large enough region (needs --user)")
    p.add_argument("--min-defect-area", type=int, default=None,
                   help="override: smallest region (camera pixels) above --pixel-threshold that FAILs (default 1)")
    add_credential_options(p, who="the technician, for overrides")
    p.add_argument("--mode", choices=("triggered", "live"), default="triggered",
                   help="triggered: every frame inspected; live: newest frames, older ones dropped")
    p.add_argument("--trigger", choices=("free_run", "hardware"), default="free_run",
                   help="camera trigger (hardware: an edge on --trigger-line)")
    p.add_argument("--trigger-line", default="Line1", help="camera input line for --trigger hardware")
    p.add_argument("--queue-size", type=int, default=None,
                   help=f"frames waiting for the engine at most, 1..{MAX_QUEUE_SIZE} (default: 8 triggered, 1 live); "
                   "a frame a stop cannot inspect in time is recorded as FAIL, not inspected")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="folder for frames and heatmaps (default: images/ beside a SQLite database, "
                   "else in the data folder)")
    p.add_argument("--image-quota-gb", type=float, default=DEFAULT_IMAGE_QUOTA_GB,
                   help="oldest images are deleted beyond this size")
    p.add_argument("--pass-sample-rate", type=float, default=0.01,
                   help="fraction of PASS frames whose images are kept, and of NO PART frames (each its own "
                   "count); FAIL and RECHECK: always")
    p.add_argument("--disk-reserve-mb", type=float, default=DISK_RESERVE_MB,
                   help="free disk space images never use, kept for the verdicts; the run stops cleanly when a "
                   "quarter of it is left")
    p.add_argument("--summary-interval", type=float, default=DEFAULT_SUMMARY_S, help="seconds between summary lines")
    p.add_argument("--print-results", action="store_true",
                   help="print one line per durable verdict: result FRAME DECISION SCORE ID UID (SCORE - for "
                   "NO_PART: never scored)")
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto",
                   help="inference backend (auto: the fastest here)")
    p.add_argument("--device", **DEVICE_OPTION)
    p.add_argument("--max-batch", **MAX_BATCH_OPTION)
    p.add_argument("--batch-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS,
                   help="several cameras: how long a frame waits at most for the other cameras' to join its "
                   "forward pass (ms)")
    p.add_argument("--drift-window", type=int, default=DRIFT_WINDOW,
                   help="recent scores compared with the calibration's good scores for the drift alarm (0: off)")
    for spec in LINKS:  # one declaration per link, shared with the desktop's settings page
        if spec.per_camera:
            p.add_argument(spec.option, dest=spec.field, default=None, metavar=spec.metavar, action="append",
                           help=spec.help)
        else:
            p.add_argument(spec.option, dest=spec.field, default=None, metavar=spec.metavar, help=spec.help)
        if spec.name == "plc":
            p.add_argument("--plc-down", choices=PLC_DOWN_POLICIES, default="ng",
                           help="while the PLC link is down: ng (go on; the parts reach the PLC as NG once it is back) "
                           "or stop (stop the line)")
    p.set_defaults(func=cmd_run)

    h = subparsers.add_parser("history", help="inspection history: export, backup")
    hsub = h.add_subparsers(dest="history_command", required=True, metavar="COMMAND")
    e = hsub.add_parser("export", help="write inspections to a CSV file, one row each, newest first")
    e.add_argument("--db", default=None, help="history database URL (default: history.db in the data folder); the "
                   "plant database's, postgresql://USER@HOST/DB, exports every station's")
    e.add_argument("--station", default=None, help="only this station's inspections (see the station column)")
    e.add_argument("--out", required=True, type=output_file, help="CSV file to write")
    e.add_argument("--since", default=None, help="from this time on (ISO 8601; without a zone: local time)")
    e.add_argument("--until", default=None, help="before this time (ISO 8601; without a zone: local time)")
    e.add_argument("--decision", choices=DECISIONS, default=None,
                   help="only this decision (NO_PART: frames the part was not found in)")
    e.add_argument("--errors-only", action="store_true", help="only frames the engine could not score (see the error column)")
    e.add_argument("--min-score", type=float, default=None,
                   help="only scores at least this (NO PART frames and engine errors, never scored, are left out)")
    e.add_argument("--max-score", type=float, default=None,
                   help="only scores at most this (NO PART frames and engine errors, never scored, are left out)")
    e.add_argument("--model-version", type=int, default=None, help="model version id")
    e.add_argument("--product", default=None, help="only this product's inspections (by name)")
    e.add_argument("--label", default=None, metavar="LABEL",
                   help="only inspections with this label: false_reject, confirmed_defect or none (not labelled)")
    e.add_argument("--images", type=output_folder, default=None, metavar="FOLDER",
                   help="also copy the exported inspections' stored frames and heatmaps into this folder")
    add_credential_options(e, who="the quality engineer who exports")
    e.set_defaults(func=cmd_history_export)
    b = hsub.add_parser("backup", help="a consistent copy of a SQLite history, safe beside a running line")
    b.add_argument("--db", default=None, help="history database URL (default: history.db in the data folder)")
    b.add_argument("--out", required=True, type=output_file,
                   help="the backup file to write (a new file; its audit heads go beside it as FILE.heads.json)")
    b.set_defaults(func=cmd_history_backup)


# --- inspector run -------------------------------------------------------------------------------


#: The options of ``inspector run`` that override the product's active recipe: a technician's.
OVERRIDES = ("model", "threshold", "pixel_threshold", "min_defect_area")


def cmd_run(args: argparse.Namespace) -> int:
    """Arguments -> configuration -> station -> printer."""
    quiet_migrations()
    from inspector.history import HistoryDB, default_db_url
    from station import Station
    from station.running import check_storage

    _check_run_args(args)
    if args.model is None:  # the product's recipe must be in it: a new file would be made empty, then refused
        from station.actions import require_existing_db

        require_existing_db(args.db or default_db_url())
    db = HistoryDB(args.db or default_db_url())
    db.upgrade()
    config = run_config(args, db)
    check_storage(config, db)  # a run that could record nothing is refused before anything opens
    user, role = run_user(args, db)  # refused before a camera is opened or the model loaded
    active = product_recipe(args, db)
    overridden = overrides_given(args)
    out = _Printer()
    station = Station(config, db, actor=Actor(user, role), strict_links=True,
                      load_product=product_loader(args, db), overridden=overridden, on_message=out.line)
    try:
        station.make_links()  # a bad URI or register map is reported before the cameras open
        station.open_cameras()  # a missing or busy device is reported before the model takes seconds to load
        recipe = load_run_recipe(args, db, active)
        several = len(args.camera) > 1
        lines = station.build(recipe, extra_links=[_ResultPrinter(out, several)] if args.print_results else [])
        out.line(_start_line(args, station, recipe, db))
        station.start()
        interrupted = threading.Event()  # Ctrl-C or SIGTERM: set by the signal handler
        # The handlers stay through the stop: a second signal shortens it, never skips the summary.
        with _stop_signals(interrupted, station.hurry):
            try:
                while not station.wait(args.summary_interval, interrupted):
                    if stopping_line(out, interrupted, station.plc_down, station.disk_full):
                        break
                    _print_summaries(out, station)
            finally:  # whatever ended the loop, what was acquired is inspected and recorded
                why = "interrupted" if interrupted.is_set() else (
                    "the PLC link went down (--plc-down stop)" if station.plc_down else None)
                report = station.stop(STOP_TIMEOUT_S, why=why)
            for camera_id, m in report.metrics.items():
                name = f"{camera_id}: " if several else ""
                out.line(f"stopped ({report.whys[camera_id]}): {name}{summary_line(m)}; acquired {m.acquired}, "
                         f"recorded {m.recorded}")
            if several:
                out.line(f"all {len(args.camera)} cameras: acquired {report.acquired}, recorded {report.recorded}; "
                         f"{_engine_line(lines)}")
            check_run_end(report, interrupted, station.hurried)
        return 0
    finally:
        station.close()


def run_config(args: argparse.Namespace, db: Any) -> Any:
    """``inspector run``'s arguments as a :class:`~station.StationConfig`."""
    from station import LINKS, StationConfig

    twice = sorted({uri for uri in args.camera if args.camera.count(uri) > 1})
    if twice:
        raise InspectorError(f"--camera {twice[0]} given twice; each camera may run once")
    if args.max_batch is not None and args.max_batch < 1:
        raise InspectorError(f"--max-batch must be >= 1, got {args.max_batch}")
    if not 0.0 <= args.batch_wait_ms <= 1000.0:
        raise InspectorError(f"--batch-wait-ms must be within 0..1000, got {args.batch_wait_ms:g}")
    if args.plc and len(args.plc) != len(args.camera):
        raise InspectorError(f"--plc given {len(args.plc)} times for {len(args.camera)} cameras: each camera's line "
                             "needs a PLC register block of its own, so give --plc once per --camera, in the same order")
    links = {spec.field: (tuple(getattr(args, spec.field) or ()) if spec.per_camera else getattr(args, spec.field))
             for spec in LINKS}
    return StationConfig(
        cameras=tuple(args.camera), image_dir=args.image_dir or _default_image_dir(db), product=args.product,
        mode=args.mode, trigger=args.trigger, trigger_line=args.trigger_line, queue_size=args.queue_size,
        max_frames=args.max_frames, quota_gb=args.image_quota_gb, pass_sample_rate=args.pass_sample_rate,
        disk_reserve_mb=args.disk_reserve_mb,
        drift_window=args.drift_window, no_part_alarm_after=args.no_part_alarm, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        plc_down=args.plc_down, **links,
    )


def _start_line(args: argparse.Namespace, station: Any, recipe: Any, db: Any) -> str:
    engine = recipe.engine
    lines = station.lines
    if len(args.camera) == 1:
        what = f"inspecting {args.camera[0]} with {engine.model_path.name} (model version {recipe.model_version_id}, " \
               f"{engine.info['device']}, {engine.backend})"
    else:
        what = (f"inspecting {len(args.camera)} cameras ({', '.join(args.camera)}) on one engine: "
                f"{engine.model_path.name} (model version {recipe.model_version_id}, {engine.info['device']}, "
                f"{engine.backend}), {_batching(args, lines)}")
    recheck = recipe.rule.recheck_threshold
    band = "" if recheck is None else f"; RECHECK above {recheck:g}"
    if recheck is None and getattr(args, "threshold", None) is not None:  # a recipe's band went with its rule: say so
        band = "; no RECHECK band (--threshold replaces the recipe's whole rule)"
    return (f"{what}; threshold {recipe.rule.threshold:g} from {recipe.source}{band}; {args.mode} mode; history {db.url}; "
            f"drift {_drift(args, lines, recipe)}; Ctrl-C stops")


def _batching(args: argparse.Namespace, lines: Any) -> str:
    n = lines.batcher.max_batch
    how = (f"up to {n} frames per forward pass, a frame waiting at most {args.batch_wait_ms:g} ms for the others"
           if n > 1 else "one frame per forward pass")
    return how if lines.batching is None else f"{how} (measured: {lines.batching})"


def _drift(args: argparse.Namespace, lines: Any, recipe: Any) -> str:
    if args.drift_window <= 0:
        return "alarm off (--drift-window 0)"
    if lines.lines[0].drift is None:
        return "alarm off (the calibration has no good-part scores; recalibrate to turn it on)"
    per = " per camera" if len(lines.lines) > 1 else ""
    return f"checked{per} against {len(recipe.reference_scores)} calibration scores"


def _print_summaries(out: Any, station: Any) -> None:
    metrics = station.metrics()
    if len(metrics) == 1:
        out.line(summary_line(next(iter(metrics.values()))))
        return
    for camera_id, m in metrics.items():
        out.line(f"{camera_id}: {summary_line(m)}")
    out.line(_engine_line(station.lines))


def _engine_line(lines: Any) -> str:
    s = lines.batcher.stats
    failed = f", {s.failed_passes} failed" if s.failed_passes else ""
    return f"engine: {s.frames} frames in {s.passes} forward passes ({s.mean_batch:.2f} frames per pass{failed})"


def product_loader(args: argparse.Namespace, db: Any) -> Any:
    """``load(name)``: the product's active recipe with its engine, as this run loads its own."""
    return lambda name: load_run_recipe(args, db, recipes.active_recipe(db, name))


def stopping_line(out: Any, interrupted: threading.Event, plc_down: bool, disk_full: bool = False) -> bool:
    """True, having said so, when the run is to stop: Ctrl-C, a PLC link down under
    ``--plc-down stop``, or the history's disk down to its reserve."""
    if interrupted.is_set():
        out.line("stopping: inspecting and recording the frames already acquired ...")
        return True
    if plc_down:
        out.line("stopping: the PLC link is down (--plc-down stop); inspecting and recording "
                 "the frames already acquired ...")
        return True
    if disk_full:
        out.line("stopping: the history's disk is nearly full; recording the frames already acquired "
                 "into its reserve ...")
        return True
    return False


def check_run_end(report: Any, interrupted: threading.Event, hurried: bool = False) -> None:
    """Raises what a run that did not end well ends with: verdicts not recorded, frames not
    inspected, the PLC link down under ``--plc-down stop``, a full disk, acquisition that failed."""
    if report.lost:
        raise DatabaseError(f"{report.lost} verdicts were not recorded in the history; see the alarms above")
    not_inspected = sum(m.not_inspected for m in report.metrics.values())
    if not_inspected:
        cause = "a second signal shortened the stop" if hurried else "the stop ran out of time"
        raise InspectorError(f"{not_inspected} acquired frames were not inspected: {cause}; each is recorded as "
                             "FAIL with the error 'not inspected' (and counted in the run_stop audit)")
    if not report.clean:
        raise DatabaseError("the stop ran out of time; what was not stored in the database is in its spill journal "
                            "and goes in at the next start; see the alarms above")
    if report.disk_full:
        raise InspectorError("the line stopped because the history's disk is nearly full (every verdict is "
                             "recorded); free space on it, or move images with --image-dir, then start again")
    if report.plc_down and not interrupted.is_set():
        raise InspectorError("the line stopped because the PLC link went down (--plc-down stop); "
                             "see the alarms above")
    if not interrupted.is_set() and not report.source_ended:
        raise InspectorError("acquisition stopped by an internal error; see the alarms above")


def _count_or_off(text: str) -> int | None:
    """A count, or ``off`` (None): the desktop's Settings page offers the same choice."""
    if text.strip().lower() == "off":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number or off, got {text!r}") from None


def _check_run_args(args: argparse.Namespace) -> None:
    if args.product is None and args.model is None:
        raise InspectorError("give --product NAME (inspect with its active recipe), or --model FILE with --user "
                             "(a technician's override)")
    if args.max_frames is not None and args.max_frames < 1:
        raise InspectorError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.no_part_alarm is not None and args.no_part_alarm < 1:
        raise InspectorError(f"--no-part-alarm must be >= 1, got {args.no_part_alarm}")
    if not args.disk_reserve_mb >= 0:
        raise InspectorError(f"--disk-reserve-mb must be >= 0, got {args.disk_reserve_mb:g}")
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
    rule = _override_rule(args, recipe.rule.mm_per_px)
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


def _override_rule(args: argparse.Namespace, mm_per_px: float | None = None) -> Any:
    """The rule ``--threshold`` (with ``--pixel-threshold``/``--min-defect-area``) gives, or None.
    It replaces the recipe's whole rule, recheck band included (none: a technician's override
    never says RECHECK); only the recipe's pixel size ``mm_per_px`` stays, a fact of the camera."""
    from inspector.line import DecisionRule

    if args.threshold is not None:
        return DecisionRule(args.threshold, args.pixel_threshold, args.min_defect_area, mm_per_px=mm_per_px)
    if args.pixel_threshold is not None:
        raise InspectorError("--pixel-threshold needs --threshold as well (or neither, to use the calibration)")
    return None


def run_recipe(args: argparse.Namespace, db: Any, engine: Any):
    """The :class:`~inspector.recipes.LoadedRecipe` of ``--model``: the model file registered for
    ``--product`` and its rule from :func:`inspector.recipes.model_file_recipe` (latest
    calibration in the database, else the model file's), unless ``--threshold`` (with
    ``--pixel-threshold``/``--min-defect-area``) overrides it."""
    mm = engine.metadata.get("mm_per_px") if isinstance(getattr(engine, "metadata", None), dict) else None
    override = _override_rule(args, mm if isinstance(mm, (int, float)) and not isinstance(mm, bool) and mm > 0 else None)
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
        *([f"recheck {m.rechecked}"] if m.rechecked else []),
        f"errors {m.errors}",
        *([f"no part {m.no_part}"] if m.no_part else []),
        f"latency p50 {ms(m.latency_p50_ms)} ms p99 {ms(m.latency_p99_ms)} ms",
        f"model p50 {ms(m.model_p50_ms)} ms",
        f"queue {m.queue_depth}/{m.queue_size}",
        f"drops {m.dropped}",
        f"camera lost {m.camera_lost} skipped {m.camera_skipped}",
    ]
    if m.writer.journal_pending:
        parts.append(f"journaled {m.writer.journal_pending} (database unavailable)")
    if m.writer.images_dropped:
        parts.append(f"images not kept {m.writer.images_dropped}")
    if m.not_inspected:
        parts.append(f"NOT INSPECTED {m.not_inspected}")
    if m.unrecorded or m.writer.failed:
        parts.append(f"UNRECORDED {m.unrecorded + m.writer.failed}")
    return ", ".join(parts)


class _Printer:
    """Whole lines to stdout from any thread (results come from the writers'). Alarms reach the
    console through logging: the pipeline and the history writer log each one as a warning."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)


class _ResultPrinter:
    """``--print-results``: ``result FRAME DECISION SCORE ID UID`` per durable verdict (SCORE
    ``-`` for NO_PART, never scored); beside other cameras ``result CAMERA FRAME ...`` (a line
    link, on every camera's writer thread)."""

    def __init__(self, out: _Printer, name_camera: bool) -> None:
        self.out, self.name_camera = out, name_camera

    def on_result(self, r: Any) -> None:
        row = "journal" if r.inspection_id is None else str(r.inspection_id)
        error = f" error: {r.error}" if r.error else ""
        camera = f"{r.camera_id} " if self.name_camera else ""
        score = "-" if r.decision == "NO_PART" else f"{r.score:.6f}"  # never scored, as inspector predict says
        self.out.line(f"result {camera}{r.frame_id} {r.decision} {score} {row} {r.uid}{error}")


@contextmanager
def _stop_signals(stop: threading.Event, hurry: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C and SIGTERM (systemd, docker stop) set ``stop``: the run then stops gracefully,
    inspecting and recording what was acquired. Why not KeyboardInterrupt: raised wherever the main
    thread happens to be, it can leave a lock or a queue half-updated under the threads the stop
    then waits for. A second signal (the grace before SIGKILL is running out) calls ``hurry``: the
    frames still waiting are counted as not inspected, and the summary and the audit are still
    written; only a third interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = 0

    def ask(signum: int, frame: Any) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            stop.set()
        elif signals == 2:
            hurry()
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- inspector history export --------------------------------------------------------------------


def cmd_history_export(args: argparse.Namespace) -> int:
    """One audited action with one right, as the desktop's export: a quality engineer's
    (``--user`` with their PIN), audited as ``export``."""
    quiet_migrations()
    from inspector.history import HistoryDB, InspectionFilter, default_db_url
    from station.actions import export_inspections, require_existing_db

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
    if filters.start is not None and filters.end is not None and filters.start >= filters.end:
        raise InspectorError(f"--since {args.since} is not before --until {args.until}: no inspection can match; "
                             "swap them?")
    for option, value in (("--min-score", args.min_score), ("--max-score", args.max_score)):
        if value is not None and not math.isfinite(value):  # nan matched nothing, without a word
            raise InspectorError(f"{option} must be a finite number, got {value}")
    if args.min_score is not None and args.max_score is not None and args.min_score > args.max_score:
        raise InspectorError(f"--min-score {args.min_score:g} is above --max-score {args.max_score:g}: no inspection "
                             "can match; swap them?")
    if not args.out.parent.is_dir():
        raise InspectorError(f"cannot write {args.out}: folder {args.out.parent} does not exist")
    if args.images is not None and args.images.is_dir() and any(args.images.iterdir()):
        # as the desktop's export: images of another export's rows would lie among this CSV's
        raise InspectorError(f"--images {args.images} is not empty: choose an empty folder, so that it holds the "
                             "images of this CSV's rows only")
    url = args.db or default_db_url()
    require_existing_db(url)
    db = HistoryDB(url)
    try:
        # A name or number the history does not hold matched nothing: an empty CSV, audited, exit 0.
        filters = _known_filters(db, args, filters)
        started = time.perf_counter()
        done = export_inspections(db, caller(db, args, "export", "inspections"), args.out, filters,
                                  images_dir=args.images)
        if not done.audited:
            print(f"{url} is read-only (an archive): this export is not recorded in its audit trail")
    finally:
        db.close()
    images = f" and {done.images} image files to {args.images}" if args.images else ""
    print(f"{done.rows} inspections written to {args.out}{images} ({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_history_backup(args: argparse.Namespace) -> int:
    """The history copied with SQLite's online backup (:meth:`~inspector.history.HistoryDB.backup`),
    audited in the original as ``backup`` by whoever runs it."""
    quiet_migrations()
    from inspector.history import HistoryDB, default_db_url
    from station.actions import require_existing_db

    url = args.db or default_db_url()
    require_existing_db(url)
    db = HistoryDB(url)
    try:
        started = time.perf_counter()
        db.backup(args.out)
        db.record_audit(shell_user(), "system", "backup", "history", None, {"out": str(args.out.resolve())})
    finally:
        db.close()
    print(f"{url} backed up into {args.out} and {args.out.name}.heads.json beside it ({time.perf_counter() - started:.1f} s); "
          "the images are files: copy their folder apart")
    return 0


def _known_filters(db: Any, args: argparse.Namespace, filters: Any) -> Any:
    """``filters`` with ``--product`` resolved to its id and ``--label``; InspectorError for a
    station, product or model version the history does not know (a typing error, not a filter)."""
    from dataclasses import replace

    from inspector.history import LABELS

    if args.label is not None and args.label not in LABELS:
        raise InspectorError(f"--label {args.label!r}: give one of {', '.join(LABELS)}")
    if args.station is not None and args.station not in db.stations():
        known = ", ".join(db.stations()) or "none"
        raise InspectorError(f"--station {args.station!r}: no inspections of such a station in this history "
                             f"(stations: {known})")
    if args.model_version is not None and db.model_version(args.model_version) is None:
        raise InspectorError(f"--model-version {args.model_version}: no such model version in this history")
    product_id = None
    if args.product is not None:
        product = db.product_by_name(args.product)
        if product is None:
            raise InspectorError(f"--product {args.product!r}: no product of that name in this history")
        product_id = product.id
    return replace(filters, product_id=product_id, label=args.label)


def _iso_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InspectorError(f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-03-01T08:00 or "
                             "2026-03-01T08:00+01:00") from None
    return value if value.tzinfo is not None else value.astimezone()  # naive: the local time zone
