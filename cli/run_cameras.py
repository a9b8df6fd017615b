"""``inspector run`` with several ``--camera`` s: one line per camera on one engine.

Each camera gets its own pipeline, rule, drift monitor and records (tagged with its camera id);
frames that arrive together are scored in one forward pass (:func:`inspector.line.build_lines`).
Everything else is ``inspector run``'s (:mod:`cli.line_commands`): the recipe and who may
override it, the audit (``run_start`` with the list of cameras, ``run_stop`` with each camera's
counts), Ctrl-C, the summaries -- one line per camera -- and the plant links (:mod:`cli.run_links`:
the MES, the plant database and the OPC UA server for the station; a PLC link per camera).
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from cli import line_commands as run
from cli.run_links import RunLinks
from inspector.errors import DatabaseError, InspectorError


def cmd_run_cameras(args: argparse.Namespace) -> int:
    from drivers import open_camera
    from inspector.history import HistoryDB, default_db_url
    from inspector.line import build_lines

    _check_camera_args(args)
    run._check_run_args(args)
    db = HistoryDB(args.db or default_db_url())
    db.upgrade()
    user, role = run.run_user(args, db)  # refused before a camera is opened or the model loaded
    active = run.product_recipe(args, db)
    # A bad URI or register map, or --plc not once per camera, is reported before the cameras open.
    overridden = run.overrides_given(args)
    links = RunLinks(args, db, len(args.camera), overridden)
    cameras: list[Any] = []
    try:
        for uri in args.camera:
            cameras.append(open_camera(uri))
            cameras[-1].open()  # a missing or busy device is reported before the model takes seconds to load
        recipe = run.load_run_recipe(args, db, active)
        engine = recipe.engine
        if overridden:
            before, after = run.override_audit(db, recipe, overridden)
            db.record_audit(user, role, "run_override", f"product:{recipe.product}", before, after)
        out = run._Printer()
        lines = build_lines(
            cameras, recipe, db,
            image_dir=args.image_dir or run._default_image_dir(db),
            quota_bytes=int(args.image_quota_gb * 1e9),
            pass_sample_rate=args.pass_sample_rate,
            mode=args.mode, trigger=args.trigger, trigger_line=args.trigger_line,
            queue_size=args.queue_size, max_frames=args.max_frames,
            drift_window=args.drift_window,
            max_batch=args.max_batch, max_wait_ms=args.batch_wait_ms,
            links=[*([_CameraPrinter(out)] if args.print_results else []), *links.shared()],
            camera_links=[links.of_camera(i) for i in range(len(cameras))],
        )
        links.start(db, lines, recipe, out, run.product_loader(args, db))
        out.line(
            f"inspecting {len(cameras)} cameras ({', '.join(args.camera)}) on one engine: {engine.model_path.name} "
            f"(model version {recipe.model_version_id}, {engine.info['device']}, {engine.backend}), {_batching(args, lines)}; "
            f"threshold {recipe.rule.threshold:g} from {recipe.source}; {args.mode} mode; history {db.url}; "
            f"drift {_drift(args, lines, recipe)}; Ctrl-C stops"
        )
        db.record_audit(user, role, "run_start", f"product:{recipe.product}", None, run.run_start_details(args, recipe))
        lines.start()
        links.set_running(True)
        interrupted = threading.Event()  # Ctrl-C or SIGTERM: set by the signal handler
        try:
            with run._stop_signals(interrupted):
                while not run._wait_for_line(lines, args.summary_interval, links.plc_down, interrupted):
                    if run.stopping_line(out, interrupted, links.plc_down):
                        break
                    for camera_id, m in lines.metrics().items():
                        out.line(f"{camera_id}: {run.summary_line(m)}")
                    out.line(_engine_line(lines))
        finally:  # whatever ended the loop, what was acquired is inspected and recorded
            clean = lines.stop(run.STOP_TIMEOUT_S)
            links.set_running(False)
        links.drain(out)
        metrics = lines.metrics()
        whys = {line.camera.camera_id: run.stop_reason(args, line, metrics[line.camera.camera_id], interrupted,
                                                       links.plc_down)
                for line in lines.lines}
        for camera_id, m in metrics.items():
            out.line(f"stopped ({whys[camera_id]}): {camera_id}: {run.summary_line(m)}; acquired {m.acquired}, "
                     f"recorded {m.recorded}")
        acquired = sum(m.acquired for m in metrics.values())
        recorded = sum(m.recorded for m in metrics.values())
        out.line(f"all {len(cameras)} cameras: acquired {acquired}, recorded {recorded}; {_engine_line(lines)}")
        _audit_run_stop(db, user, role, lines.recipe, whys, metrics)
        lost = sum(m.unrecorded + m.writer.failed for m in metrics.values())
        run.check_run_end(clean, lost, lines, interrupted, links.plc_down)
        return 0
    finally:
        links.close()
        for camera in cameras:
            camera.close()


def _check_camera_args(args: argparse.Namespace) -> None:
    twice = sorted({uri for uri in args.camera if args.camera.count(uri) > 1})
    if twice:
        raise InspectorError(f"--camera {twice[0]} given twice; each camera may run once")
    if args.max_batch is not None and args.max_batch < 1:
        raise InspectorError(f"--max-batch must be >= 1, got {args.max_batch}")
    if not 0.0 <= args.batch_wait_ms <= 1000.0:
        raise InspectorError(f"--batch-wait-ms must be within 0..1000, got {args.batch_wait_ms:g}")


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
    return f"checked per camera against {len(recipe.reference_scores)} calibration scores"


def _engine_line(lines: Any) -> str:
    s = lines.batcher.stats
    failed = f", {s.failed_passes} failed" if s.failed_passes else ""
    return f"engine: {s.frames} frames in {s.passes} forward passes ({s.mean_batch:.2f} frames per pass{failed})"


def _audit_run_stop(db: Any, user: str, role: str, recipe: Any, whys: dict[str, str], metrics: dict[str, Any]) -> None:
    """``run_stop`` with each camera's why and counts and their totals; a database that is down
    is logged, not raised (the verdicts themselves are journaled)."""
    cameras = {camera_id: {"why": whys[camera_id], **_counts(m)} for camera_id, m in metrics.items()}
    totals = {key: sum(c[key] for c in cameras.values()) for key in _counts(next(iter(metrics.values())))}
    why = "; ".join(sorted(set(whys.values())))
    try:
        db.record_audit(user, role, "run_stop", f"product:{recipe.product}", None,
                        {"why": why, **totals, "cameras": cameras})
    except DatabaseError as exc:
        run.log.warning("the run's stop could not be audited: %s", exc)


def _counts(m: Any) -> dict[str, int]:
    return {"acquired": m.acquired, "recorded": m.recorded, "passed": m.passed, "failed": m.failed,
            "errors": m.errors, "dropped": m.dropped, "unrecorded": m.unrecorded + m.writer.failed}


class _CameraPrinter:
    """``--print-results`` beside other cameras: ``result CAMERA FRAME DECISION SCORE ID UID``."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def on_result(self, r: Any) -> None:  # a line link, called from every camera's writer thread
        row = "journal" if r.inspection_id is None else str(r.inspection_id)
        error = f" error: {r.error}" if r.error else ""
        self.out.line(f"result {r.camera_id} {r.frame_id} {r.decision} {r.score:.6f} {row} {r.uid}{error}")
