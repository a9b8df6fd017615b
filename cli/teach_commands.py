"""``inspector calibrate`` and ``inspector teach ...``: the calibration and teach commands.

The main command (``cli/main.py``) calls :func:`register` with its sub-parsers. Every
command prints what it did in a few lines; ``--json FILE`` writes the details where useful.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from cli.common import (DEVICE_OPTION, add_credential_options, add_framing_options, open_history, output_file, output_folder, pin_or_denied,
                        positive_int, verified_user)
from inspector import ENGINE_BACKENDS
from inspector.errors import DataError, InspectorError

# Kept light: heavy modules (torch, the engine, matplotlib) are imported inside the commands, so
# `inspector --help` stays fast.


def rate(text: str) -> float:
    """A fraction, '0.005', or a percentage, '0.5%'."""
    try:
        value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (write 0.005 or 0.5%)") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate must lie strictly between 0 and 1 (0 % and 100 %)")
    return value


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):  # inf: refused later, in words that named no option
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value



def _write_json(path: str | None, data: Any) -> None:
    if path:
        from calibration.report import write_json_atomic

        write_json_atomic(Path(path), data)


def format_calibration(result) -> str:
    """A few lines for the terminal: the threshold, its FRR interval, defects, pixel rule, warnings."""
    from calibration.thresholds import pct

    im = result.image
    lines = [
        f"threshold {im.threshold:.6g} ({im.method.replace('_', ' ')}, {im.n_good} good images): expected "
        f"false-reject rate {pct(im.expected_frr)} (target {pct(im.target_frr)}), {im.confidence:.0%} interval "
        f"{pct(im.frr_ci_low)} .. {pct(im.frr_ci_high)}"
    ]
    if result.defects is not None:
        d = result.defects
        lines.append(
            f"defects: {d.n_defective} images, AUROC {d.auroc:.3f}; escapes at the threshold {d.escapes} "
            f"({pct(d.escape_rate)}, interval {pct(d.escape_ci_low)} .. {pct(d.escape_ci_high)}); "
            f"F1-optimal threshold {d.f1_threshold:.6g} (F1 {d.f1:.3f}, escapes {pct(d.f1_escape_rate)}, "
            f"false rejects {pct(d.f1_frr)})"
        )
    if result.pixel is not None:
        p = result.pixel
        area = f"{p.min_defect_area_px} px" + (f" = {p.min_defect_area_mm2:.4g} mm²" if p.mm_per_px else "")
        lines.append(
            f"pixel rule: map > {p.pixel_threshold:.6g} (pixel FPR {p.observed_pixel_fpr:.2g}) over at least {area}; "
            f"alone it rejects about {pct(p.expected_frr)} of good parts"
        )
    band = getattr(result, "recheck", None)
    if band is not None:
        lines.append(
            f"recheck band: scores above {band.recheck_threshold:.6g} up to the threshold are RECHECK: expected recheck "
            f"rate {pct(band.expected_rate)} of good parts (target {pct(band.target_rate)}), {band.confidence:.0%} "
            f"interval {pct(band.ci_low)} .. {pct(band.ci_high)}"
        )
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


# --- inspector calibrate -------------------------------------------------------------------------


def calibration_images(folder: str | Path) -> list[Path]:
    """Good images for calibration: a plain folder, or an MVTec-layout folder's ``test/good``
    (never ``train/good``: those trained the model)."""
    from inspector.image_io import list_images

    folder = Path(folder)
    mvtec = folder / "test" / "good"
    paths = list_images(mvtec if mvtec.is_dir() else folder)
    if not paths:
        raise DataError(f"{folder}: no good images found")
    return paths


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.calibrate import calibrate_model, defect_images, write_thresholds
    from calibration.report import write_report
    from calibration.teach.files import FileCalibration

    model = Path(args.model).resolve()
    good = calibration_images(args.good_dir)
    defects = defect_images(args.defects) if args.defects else None
    out = _calibrated_path(model, args.out)
    db = open_history(args.db) if args.db else None
    # Refused before the slow part, not after: a calibration stored in the database sets the
    # threshold the line decides with, a technician's right (as on the desktop).
    plan = FileCalibration.plan(db, _caller(db, args, "calibrate", f"model:{model}"), model, args.product) if db else None

    result = calibrate_model(
        model, good, defects, device=args.device, backend=args.backend, target_frr=args.target_frr, confidence=args.confidence,
        tail=args.tail, pixel_fpr=None if args.no_pixel_rule else args.pixel_fpr, mm_per_px=args.mm_per_px,
        show_progress=True, recheck_rate=args.recheck_rate, min_defect_area_mm2=args.min_defect_area_mm2,
    )
    report = write_report(args.report, result)
    write_thresholds(model, result, out)
    print(format_calibration(result))
    print(f"report: {report}")
    print(f"thresholds written into {out} ({model} is unchanged)")
    if plan is not None:
        version_id = plan.store(result, report, out)
        print(f"calibration stored in {db.url}: {out} is candidate version {version_id}")
    return 0


def _caller(db, args: argparse.Namespace, action: str, target: str):
    """The :class:`~inspector.roles.Caller` of ``--user`` with their PIN (from the environment, a
    file or the terminal). No user named, or no PIN to be had, is refused and audited here as
    ``<action>_denied``; the role is checked by the teach action itself, once."""
    from inspector.roles import Caller

    if not args.user:
        verified_user(db, args.user, args.pin_file, action, target)  # the usual audited refusal
    return Caller(args.user, pin_or_denied(db, args.user, args.pin_file, action, target))


def _calibrated_path(model: Path, out: str | None) -> Path:
    """Where the calibrated model goes: a new file, never the model file nor any file that exists.
    A model file may be registered by the history database of any line, not only one calibrate
    can look in, and a registered file that changes stops its line; so nothing is rewritten:
    ``--out`` (a new file), else a new file beside the model, named by the time."""
    from inspector.model_file import check_destination

    if out is not None:
        path = Path(out).resolve()
        if path.exists():
            raise DataError(f"--out {out} exists; calibrate never overwrites a file (a line may have registered it): "
                            "give a new name")
    else:
        stem = re.sub(r"\.calibrated-\d{8}-\d{6}(-\d+)?$", "", model.stem)  # a recalibration: one stamp, not two
        when = time.strftime("%Y%m%d-%H%M%S")
        path, n = model.with_name(f"{stem}.calibrated-{when}{model.suffix}"), 1
        while path.exists():
            n += 1
            path = model.with_name(f"{stem}.calibrated-{when}-{n}{model.suffix}")
    check_destination(path)  # before minutes of scoring
    return path


# --- inspector teach -----------------------------------------------------------------------------


def _session(args: argparse.Namespace):
    from calibration.quality import QualityGates
    from calibration.teach import TeachSession

    gates = QualityGates(same_size=False) if getattr(args, "allow_mixed_sizes", False) else None
    create = args.teach_step in ("collect", "train")  # the other steps need a product that exists
    if not create:  # ... and so a history: a new file would be made empty, then said to hold no such product
        from inspector.history import default_db_url
        from station.actions import require_existing_db

        require_existing_db(args.db or default_db_url())
    return TeachSession(open_history(args.db), args.product, args.workdir, gates=gates, device=args.device,
                        backend=args.backend, create=create)


def cmd_teach_collect(args: argparse.Namespace) -> int:
    if args.camera and not args.count:
        raise InspectorError("--camera needs --count N (how many good samples to take)")
    session = _session(args)
    if args.folder:
        caller = _caller(session.db, args, "import_samples", session.target)
        result = session.import_samples(caller, args.folder, limit=args.count)
    else:
        def show(d) -> None:
            print(f"{'accepted' if d.accepted else 'rejected'} {d.name}" + ("" if d.accepted else f": {'; '.join(d.reasons)}"))

        caller = _caller(session.db, args, "collect_samples", session.target)
        result = session.collect_samples(caller, args.camera, args.count, max_frames=args.max_frames,
                                         interval_s=args.interval, on_sample=show)
    for d in result.rejected:
        print(f"rejected {d.name}: {'; '.join(d.reasons)}")
    print(f"{len(result.accepted)} accepted, {len(result.rejected)} rejected; {result.total_samples} samples in {session.samples_dir}")
    return 0


def _calibration_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        target_frr=args.target_frr, confidence=args.confidence, tail=args.tail,
        pixel_fpr=None if args.no_pixel_rule else args.pixel_fpr, mm_per_px=args.mm_per_px,
        defects=args.defects,
    )


def cmd_teach_train(args: argparse.Namespace) -> int:
    """A candidate (``--kind efficientad|instant``) recording the verified technician who taught
    it, or the staged teach, which activates as it goes: the PIN is checked up front either way,
    not after half an hour of training."""
    session = _session(args)
    caller = _caller(session.db, args, "teach_train", session.target)
    options = dict(features=args.features, size=args.size, teacher=args.teacher, penalty_dir=args.penalty_dir,
                   resize_mode=args.resize_mode, seed=args.seed, iterations=args.iterations, mode=args.mode,
                   show_progress=True, framing=_teach_framing(args, session), **_calibration_kwargs(args))
    if args.recheck_rate is not None:
        options["recheck_rate"] = args.recheck_rate
    if args.kind == "staged":
        session.teach(caller, kind="staged", on_stage=_print_stage(args.mode), **options)
        return 0
    result = session.teach(caller, kind=args.kind, **options)
    _print_candidate(result)
    print(f"activate it with: inspector teach activate --product {args.product!r} --version {result.version_id} --user NAME")
    return 0


def _teach_framing(args: argparse.Namespace, session) -> Any:
    """The framing ``--region``/``--ignore``/``--align``/``--tiles``/... ask for, checked on the
    reference (``--reference``, else the product's first sample) before any training, as
    ``inspector train`` does: a bad one is one line and exit 2, and nothing is written. None where
    the options change nothing (and the samples need one tile)."""
    from cli.common import framing_from_options
    from inspector.framing.recipe import describe

    paths = session.sample_paths()
    if args.reference is None and not paths:
        if args.region is not None or args.ignore is not None or args.align:
            raise DataError(f"{session.samples_dir}: no samples to draw the region on; collect good samples first "
                            "or give --reference")
        return None  # the training says there are no samples
    framing = framing_from_options(args, paths, 256)  # the teach trains at the models' 256-px input
    if framing is not None:
        print(f"inspects {describe(framing)}", flush=True)
    return framing


def _print_candidate(result) -> None:
    print(format_calibration(result.calibration))
    missing = (f", {result.frames_without_part} of them without the part, left out" if result.frames_without_part else "")
    print(f"candidate version {result.version_id}: {result.model_path} ({len(result.train_images)} training{missing}, "
          f"{len(result.calibration_images)} calibration images, {result.seconds:.0f} s); report {result.report_path}")
    engine = result.engine
    if engine.get("prepared"):
        print(f"engine on this machine: {engine['reason']} (measured and built in {engine['seconds']:.0f} s; the line reuses it)")
    elif engine:
        print(f"engine not prepared ({engine['error']}); the line's first start measures the backends instead")


def _print_stage(mode: str):
    """What the staged teach prints as each of its steps ends."""
    def stage(name: str, result: Any) -> None:
        if name == "instant":
            _print_candidate(result)
            print(f"instant model: version {result.version_id} is now active; training EfficientAD ({mode} mode) ...", flush=True)
        elif name == "efficientad":
            _print_candidate(result)
        else:
            active = "takes over" if result.switch else "does NOT take over; the instant model stays active"
            left_out = (f"; {result.no_part} held-out image(s) without the part (NO PART) left out"
                        if result.no_part else "")
            print(f"handover: EfficientAD {active}: {result.reason} ({result.good_images} good, "
                  f"{result.synthetic_defects} synthetic and {result.real_defects} real defects{left_out})")

    return stage


def cmd_teach_calibrate(args: argparse.Namespace) -> int:
    session = _session(args)
    caller = _caller(session.db, args, "teach_calibrate", session.target)
    result = session.recalibrate(caller, args.version, good=args.good, show_progress=True, recheck_rate=args.recheck_rate,
                                 **_calibration_kwargs(args))
    print(format_calibration(result.calibration))
    print(f"candidate version {result.version_id} (recalibration of {args.version}): {result.model_path}; report {result.report_path}")
    return 0


def cmd_teach_activate(args: argparse.Namespace) -> int:
    session = _session(args)
    product = session.db.product_by_name(args.product)
    already = product is not None and product.active_model_version_id == args.version
    session.activate(_caller(session.db, args, "activate", session.target), args.version)
    if already:  # audited all the same; a rollback still returns to the version before it
        print(f"version {args.version} was already the active model of {args.product!r}; nothing changed on the line")
    else:
        print(f"version {args.version} is now the active model of {args.product!r}")
    return 0


def cmd_teach_rollback(args: argparse.Namespace) -> int:
    session = _session(args)
    version = session.rollback(_caller(session.db, args, "rollback", session.target))
    print(f"rolled back: version {version} is again the active model of {args.product!r}")
    return 0


def cmd_teach_shadow(args: argparse.Namespace) -> int:
    session = _session(args)
    report = session.shadow(args.version, args.images, recent=args.recent)
    print(report.summary())
    for d in report.differences:
        print(f"  {d.name}: active {d.active_decision} ({d.active_score:.4g}) -> candidate {d.candidate_decision} ({d.candidate_score:.4g})")
    _write_json(args.json, report.as_dict())
    return 0


def cmd_teach_status(args: argparse.Namespace) -> int:
    session = _session(args)
    status = session.status()
    if args.json:
        _write_json(args.json, status)
    print(f"product {status['product']}: {status['samples']} samples ({status['rejected_samples']} rejected so far) in {status['workdir']}")
    print(f"camera settings: {json.dumps(status['camera_settings'])}")
    if not status["versions"]:
        print("no model versions yet")
    for v in status["versions"]:
        mark = "*" if v["id"] == status["active_version"] else " "
        thr = "not calibrated" if v["threshold"] is None else f"threshold {v['threshold']:.6g}, expected FRR {v['expected_frr']:.3%}"
        if v["recheck_threshold"] is not None:
            thr += f", RECHECK above {v['recheck_threshold']:.6g}"
        if v["mm_per_px"] is not None:
            thr += f", {v['mm_per_px']:g} mm/px"
        if v["framing"] is not None:
            thr += f", inspects {v['framing']}"
        print(f"{mark} version {v['id']:>4}  {v['status']:<9}  {v['created'][:19]}  {thr}  {v['note']}")
    return 0


# --- parser --------------------------------------------------------------------------------------


def _calibration_options(p: argparse.ArgumentParser, keeps: str | None = None) -> None:
    p.add_argument("--target-frr", type=rate, default=0.005, help="false-reject rate to aim for (default 0.5%%)")
    p.add_argument("--confidence", type=rate, default=0.95, help="level of the FRR interval (default 0.95)")
    p.add_argument("--tail", choices=("auto", "never", "always"), default="auto",
                   help="generalised Pareto tail fit: when the images cannot resolve the target (auto), never, or always")
    p.add_argument("--pixel-fpr", type=rate, default=1e-3, help="share of good map pixels above the pixel threshold (default 0.001)")
    p.add_argument("--no-pixel-rule", action="store_true", help="image threshold only")
    p.add_argument("--mm-per-px", type=positive, help="pixel size in mm: the recipe keeps it, and defect areas are given in mm² (review, CSV, MQTT)"
                   + (f" (default: {keeps}, if it has one)" if keeps else ""))
    p.add_argument("--defects", help="defective images: an MVTec-layout folder (test/<type>/) or a plain folder")


def register(sub: argparse._SubParsersAction) -> None:
    backend = dict(choices=ENGINE_BACKENDS, default="auto",
                   help="inference backend for scoring (default: the fastest here)")

    p = sub.add_parser("calibrate", help="thresholds for a target false-reject rate, with a report")
    p.add_argument("model", help="model file (.safetensors); left unchanged: the calibrated model is a new file")
    p.add_argument("good_dir", help="good images NOT used for training (a folder, or an MVTec folder's test/good)")
    _calibration_options(p, keeps="the model file's")
    p.add_argument("--recheck-rate", type=rate, default=None, metavar="R",
                   help="also a recheck band: the share of good parts the line can afford to send to RECHECK (e.g. "
                   "0.03); a lower threshold is set for it under the FAIL threshold (default: the model file's "
                   "band, if it has one; else off)")
    p.add_argument("--min-defect-area-mm2", type=positive, default=None, metavar="A",
                   help="with --mm-per-px and the pixel rule: the smallest defect region that FAILs, in mm² "
                   "(never below what the good parts' maps reach)")
    p.add_argument("--report", required=True, type=output_folder, help="folder for report.json and the plots")
    p.add_argument("--out", help="the calibrated model's file, which must not exist yet (default: "
                   "MODEL.calibrated-YYYYMMDD-HHMMSS.safetensors beside the model)")
    p.add_argument("--db", help="history database URL: also register the calibrated model there, as a new candidate "
                   "version of the model's product")
    p.add_argument("--product", help="with --db: the product, for a model not registered there")
    add_credential_options(p, who="the calibrating technician (with --db)")
    p.add_argument("--device", **DEVICE_OPTION)
    p.add_argument("--backend", **backend)
    p.set_defaults(func=cmd_calibrate)

    t = sub.add_parser("teach", help="teach a product: collect samples, train, calibrate, activate, roll back")
    steps = t.add_subparsers(dest="teach_step", required=True, metavar="STEP")

    def step(name: str, help_: str, func) -> argparse.ArgumentParser:
        s = steps.add_parser(name, help=help_)
        s.add_argument("--product", required=True, help="product (recipe) name")
        s.add_argument("--db", help="history database URL (default: history.db in the data folder)")
        s.add_argument("--workdir", type=Path, help="teach folder (default: teach/ in the data folder)")
        s.add_argument("--device", **DEVICE_OPTION)
        s.add_argument("--backend", **backend)
        s.set_defaults(func=func)
        return s

    s = step("collect", "add good samples from a folder or a camera, through the quality gates", cmd_teach_collect)
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", help="folder of good images")
    src.add_argument("--camera", help="camera URI, e.g. basler://SERIAL or folder:///path")
    s.add_argument("--count", type=int, help="samples to accept (camera: required; folder: at most)")
    s.add_argument("--max-frames", type=int, help="camera: give up after this many frames (default 3 x count)")
    s.add_argument("--interval", type=float, default=0.0, help="camera: seconds between frames")
    s.add_argument("--allow-mixed-sizes", action="store_true", help="accept samples of different sizes")
    add_credential_options(s, who="the technician who collects")

    s = step("train", "train on the samples, calibrate on a held-out 20%%, register a candidate", cmd_teach_train)
    s.add_argument("--kind", choices=("efficientad", "instant", "staged"), default="efficientad",
                   help="efficientad: train EfficientAD (default); instant: build the memory-bank model in about a minute; "
                        "staged: the instant model, activated at once, then EfficientAD, which takes over only when at "
                        "least as good on the held-out images (needs the technician's PIN for the activations)")
    s.add_argument("--features", choices=("lite2", "pdn", "lite0"), default="lite2",
                   help="the instant model's features: EfficientNet-Lite2's (lite2, default: more accurate and faster) "
                        "or the shipped teacher's (pdn)")
    s.add_argument("--mode", choices=("quick", "full"), default="quick", help="quick (as many iterations as fit in 24 minutes, at most 10000) or full (the paper's 70000)")
    s.add_argument("--iterations", type=positive_int, help="override the mode's iteration count (at least 1)")
    s.add_argument("--size", choices=("s", "m"), default="s")
    s.add_argument("--teacher", help="teacher file, or 'random' (default: the shipped teacher)")
    s.add_argument("--penalty-dir", type=Path, help="natural images for the penalty loss (default: shipped)")
    s.add_argument("--resize-mode", choices=("resize", "letterbox"), default="resize")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--allow-mixed-sizes", action="store_true", help="the samples may differ in size")
    add_credential_options(s, who="the technician who teaches (recorded on the candidate)")
    _calibration_options(s)
    s.add_argument("--recheck-rate", type=rate, default=None, metavar="R",
                   help="also a recheck band: the share of good parts the line can afford to send to RECHECK (e.g. "
                   "0.03), set on the held-out samples under the FAIL threshold (needs about 1/R of them). Off unless given")
    add_framing_options(s)  # --reference defaults to the product's first sample

    s = step("calibrate", "calibrate a version again; registers the result as a new candidate", cmd_teach_calibrate)
    s.add_argument("--version", type=int, required=True)
    s.add_argument("--good", help="good images held out from training (default: the version's calibration images)")
    add_credential_options(s, who="the technician who calibrates (recorded on the candidate)")
    _calibration_options(s, keeps="the version's")
    s.add_argument("--recheck-rate", type=rate, default=None, metavar="R",
                   help="a recheck band: the share of good parts the line can afford to send to RECHECK (e.g. 0.03), "
                   "set under the FAIL threshold (default: the version's band, if it has one)")

    for name, func, help_ in (
        ("activate", cmd_teach_activate, "make a calibrated version the active model (technician)"),
        ("rollback", cmd_teach_rollback, "re-activate the previously active version (technician)"),
    ):
        s = step(name, help_, func)
        if name == "activate":
            s.add_argument("--version", type=int, required=True)
        add_credential_options(s, required=True)

    s = step("shadow", "compare a candidate with the active model on recent parts", cmd_teach_shadow)
    s.add_argument("--version", type=int, required=True, help="candidate version")
    s.add_argument("--images", help="folder of images (default: the product's recent stored inspections)")
    s.add_argument("--recent", type=int, default=50, help="without --images: how many recent inspections")
    s.add_argument("--json", type=output_file, help="also write the comparison as JSON")

    s = step("status", "samples, versions, thresholds and the active model of a product", cmd_teach_status)
    s.add_argument("--json", type=output_file, help="also write the status as JSON")
