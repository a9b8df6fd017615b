"""The ``inspector`` command.

Each sub-command is one small function; user-caused problems surface as one ``error:`` line and a
non-zero exit status, never a traceback (set INSPECTOR_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli import (audit_commands, gui_command, line_commands, model_commands, opcua_commands, plant_commands,
                 teach_commands, users_commands, web_command)
from cli.common import DEVICE_OPTION, add_framing_options, framing_from_options, output_file, output_folder, positive_int, refuse_passwords_in_urls, unique_stems
from inspector import ENGINE_BACKENDS, __version__
from inspector.errors import InspectorError
from inspector.method.modes import PAPER_ITERATIONS, QUICK_MAX_ITERATIONS, QUICK_TRAIN_S, SHORT_RECIPE_BELOW, TRAIN_MODES

if TYPE_CHECKING:
    from inspector.method.training import TrainPlan

log = logging.getLogger("inspector")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
BACKEND_HELP = ("inference backend (default: auto: on a CPU the fastest, measured once per machine and model "
                "and remembered; INSPECTOR_REMEASURE_BACKEND=1 measures again)")


def write_json(path: str | Path, data: dict) -> None:
    from inspector.model_file import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=float) + "\n"))


# --- engine commands -----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from inspector.errors import ModelFileError
    from calibration.teach.sample_fit import frame_shape
    from inspector.framing.recipe import check_training_memory
    from inspector.image_io import good_training_images
    from inspector.model_file import check_destination, save_model
    from inspector.method.training import TrainingCancelled, default_mode, mode_config, train

    check_destination(args.out)  # before any work: a folder or an unwritable place fails in seconds
    paths = good_training_images(args.data_dir)
    framing = framing_from_options(args, paths, args.image_size)
    # Every image given is trained on (a teach checks its own training share, Models.train).
    check_training_memory(framing, frame_shape(args.reference or paths[0]), len(paths), args.image_size)
    if args.kind == "instant":
        return _build_instant(args, paths, framing)
    if args.features is not None:
        raise InspectorError("--features is for --kind instant; EfficientAD learns from its teacher (--teacher)")
    mode = args.mode or default_mode(args.device)
    config = mode_config(mode, args.iterations, recipe=args.recipe, size=args.size, seed=args.seed, resize_mode=args.resize_mode, image_size=args.image_size)
    checkpoint = Path(str(args.out) + ".ckpt")
    if args.no_resume:
        checkpoint.unlink(missing_ok=True)
    asker = LongRunQuestion() if not args.yes and interactive() else None
    stop = StopOnCtrlC()
    try:
        with stop.installed():
            result = train(paths, config, teacher=args.teacher, penalty_dir=args.penalty_dir, device=args.device,
                           checkpoint=checkpoint, on_progress=stop.on_progress, cancel=stop.event,
                           confirm=asker.confirm if asker else None, keep_checkpoint=True, framing=framing)
    except TrainingCancelled:
        if asker is not None and asker.declined:
            return 1
        print(f"training stopped. {what_was_kept(checkpoint, args.argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"training interrupted. {what_was_kept(checkpoint, args.argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        save_model(args.out, result.model, result.metadata, framing)
    except ModelFileError as e:
        if checkpoint.is_file():
            raise ModelFileError(f"{e}; the training is kept in {checkpoint}: run the same command again to "
                                 "write the model from it") from None
        raise
    # Only now, with the model written, synced and renamed into place, is the checkpoint spare.
    checkpoint.unlink(missing_ok=True)
    how = "as set by --iterations" if args.iterations is not None else f"{mode} mode"
    print(f"model written to {args.out} ({result.metadata['train_images']} training images, "
          f"{result.metadata['validation_images']} held out, {result.metadata['iterations']} iterations of the "
          f"{config.recipe} recipe, {how})" + _framed_text(framing, result.metadata))
    return 0


def _framed_text(framing: Any, metadata: dict) -> str:
    from inspector.framing.recipe import describe

    if framing is None:
        return ""
    missing = metadata.get("frames_without_part", 0)
    return (f"; inspects {describe(framing)}: {metadata['train_pieces']} training pieces"
            + (f", {missing} frame{'s' if missing != 1 else ''} without the part left out" if missing else ""))


def _build_instant(args: argparse.Namespace, paths: list[Path], framing: Any = None) -> int:
    """``train --kind instant``: the memory-bank model, built in about a minute (no iterations)."""
    from inspector.method.instant_build import InstantConfig, build_instant
    from inspector.model_file import save_model

    if args.mode is not None or args.iterations is not None:
        raise InspectorError("--kind instant is built, not trained: --mode and --iterations do not apply")
    features = args.features or ("pdn" if args.teacher is not None else "lite2")  # a teacher given: its features
    if args.teacher is not None and features != "pdn":
        raise InspectorError(f"--teacher applies to --features pdn, not {features}")
    config = InstantConfig(size=args.size, seed=args.seed, resize_mode=args.resize_mode, image_size=args.image_size, features=features)
    result = build_instant(paths, config, teacher=args.teacher, device=args.device, framing=framing)
    save_model(args.out, result.model, result.metadata, framing)
    print(f"instant model written to {args.out} ({result.metadata['train_images']} training images, "
          f"{result.metadata['validation_images']} held out, {result.metadata['bank_size']}-patch memory bank, "
          f"{result.metadata['build_seconds']:.0f} s)" + _framed_text(framing, result.metadata))
    return 0


def image_size(text: str) -> int:
    """An --image-size: a multiple of 4 from 64 to 1024 (the PDN's map needs at least 8 cells)."""
    size = positive_int(text)
    if size % 4 or not 64 <= size <= 1024:
        raise argparse.ArgumentTypeError(f"{text}: the image size must be a multiple of 4 from 64 to 1024")
    return size


#: Training estimated to take longer than this asks before it starts -- at a terminal only.
CONFIRM_OVER_S = 3600


def interactive() -> bool:
    """Whether someone is at a terminal to answer a question: never in scripts, pipes or tests."""
    return sys.stdin.isatty() and sys.stdout.isatty()


class LongRunQuestion:
    """Asks before a run estimated over CONFIRM_OVER_S starts (``--yes`` skips the question)."""

    def __init__(self, ask: Callable[[str], str] | None = None) -> None:
        self.ask = ask or (lambda question: input(question))
        self.declined = False

    def confirm(self, plan: TrainPlan) -> bool:
        from inspector.method.training import format_duration

        if plan.eta_s <= CONFIRM_OVER_S:
            return True
        try:
            answer = self.ask(f"{plan.iterations - plan.start} iterations on {plan.device} take about "
                              f"{format_duration(plan.eta_s)} ({plan.seconds_per_iteration:.2f} s each). Start? [y/N] ")
        except EOFError:
            answer = ""
        self.declined = answer.strip().lower() not in ("y", "yes")
        if self.declined:
            print(f"training not started; --mode quick trains for at most {QUICK_TRAIN_S // 60} min, "
                  "--yes starts without asking", file=sys.stderr)
        return not self.declined


class StopOnCtrlC:
    """The first Ctrl-C (or SIGTERM) during training stops it after the current iteration, which keeps a
    checkpoint of everything done; a second Ctrl-C, or one before the first iteration ends,
    interrupts at once (the last periodic checkpoint is what is kept then)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.running = False

    def on_progress(self, progress: object) -> None:
        self.running = True

    def handle(self, signum: int, frame: object) -> None:
        if not self.running or self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        print("\nstopping after this iteration to keep a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        # SIGTERM (systemd, docker stop, a shutdown) stops as gracefully as Ctrl-C.
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def what_was_kept(checkpoint: Path, argv: Sequence[str]) -> str:
    """What an interrupted training run leaves, and the command that continues it."""
    from inspector.errors import ModelFileError
    from inspector.method.training import TrainConfig
    from inspector.model_file import load_tensors

    try:
        meta = load_tensors(checkpoint, "checkpoint")[1]
    except ModelFileError:
        return f"No model file was written and no checkpoint was kept (one is saved every {TrainConfig().checkpoint_every} iterations)."
    resume = "inspector " + shlex.join(a for a in argv if a != "--no-resume")
    return (f"No model file was written; the checkpoint {checkpoint} keeps iteration {meta.get('iteration')} "
            f"of {meta.get('total_iterations')}. Continue with the same command:\n  {resume}")


def cmd_eval(args: argparse.Namespace) -> int:
    from inspector.engine import Engine
    from inspector.evaluate import evaluate, format_table

    engine = Engine(args.model, device=args.device)
    result = evaluate(engine, args.data_dir)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from inspector.engine import Engine
    from inspector.errors import ModelFileError
    from inspector.framing.framed import region_shape_in_frame
    from inspector.image_io import read_image
    from inspector.line.rule import rule_from_metadata
    from dataclasses import replace

    from inspector.inspection import DECISIONS, decision_label
    from inspector.overlay import annotated_overlay, heatmap_view, write_png

    images = [(Path(p), read_image(p)) for p in args.images]  # all readable before anything is written
    engine = Engine(args.model, device=args.device, backend=args.backend)
    if args.vmax is not None and not args.vmax > 0:
        raise InspectorError(f"--vmax must be a positive map value, not {args.vmax:g}")
    try:
        rule = rule_from_metadata(engine.metadata, where="its calibration")
        rule_text = f"threshold {rule.threshold:.4g}: a score above it FAILs"
        if rule.pixel_threshold is not None:
            rule_text += f", as does a region of {rule.min_defect_area_px} px above {rule.pixel_threshold:.4g}"
        if rule.recheck_threshold is not None:
            rule_text += f"; one above {rule.recheck_threshold:.4g} that does not FAIL is RECHECK"
    except ModelFileError as e:
        rule = None
        why = "not calibrated" if engine.metadata.get("threshold") is None else str(e)
        rule_text = f"{why}: scores only, no PASS/FAIL (`inspector calibrate` sets a threshold)"
    # Drawn as the desktop draws a frame this rule decided: same colour scale, same contour level.
    levels = heatmap_view(rule)
    if args.vmax:
        levels = replace(levels, vmax=args.vmax)
    if engine.framing is not None:  # every frame checked before anything is written
        for path, image in images:
            engine.framing.check_frame(image.shape, path)
    out = Path(args.out)
    print(f"model {args.model} ({engine.metadata.get('architecture', 'EfficientAD')}), {rule_text}")
    print(f"overlays in {out}/, colours 0 .. {levels.vmax:.4g}" + (" (threshold mid-scale)" if rule and not args.vmax else "")
          + (f", defects outlined above {levels.contour_level:.4g}" if levels.contour_level is not None else ""))
    print(f"{'score':<9} {'verdict':<7}  image")
    counts = dict.fromkeys(DECISIONS, 0)
    for (path, image), name in zip(images, unique_stems([p for p, _ in images])):
        pred = engine.predict(image)
        # A part the framing did not find is NO PART whatever the rule: it was never scored.
        verdict = "NO_PART" if pred.no_part else rule.decide(pred.score, pred.anomaly_map).decision if rule else None
        # A polygon region is outlined as the polygon, as the operator page draws it.
        outline = None if pred.outline is None else region_shape_in_frame(engine.framing, pred.outline)
        write_png(out / f"{name}_heatmap.png", annotated_overlay(image, pred.anomaly_map, pred.score, levels, verdict, outline))
        shown = decision_label(verdict) if verdict else "-"
        print(f"{'-' if pred.no_part else format(pred.score, '.4f'):<9} {shown:<7}  {path}")
        if verdict:
            counts[verdict] += 1
    if rule:
        print(f"{len(images)} image{'s' if len(images) != 1 else ''}: "
              + ", ".join(f"{n} {decision_label(d)}" for d, n in counts.items() if n or d in ("PASS", "FAIL")))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from inspector.engine_bench import bench
    from inspector.engine import Engine
    from inspector.precision_gate import images_from_folder

    images = images_from_folder(args.images) if args.images else None
    engine = Engine(args.model, device=args.device, backend=args.backend, gate_images=images)
    result = bench(engine, batch=args.batch, runs=args.runs, repeats=args.repeats)
    print(
        f"{result['architecture']} on {result['machine']} ({result['device']}, {result['backend']}, "
        f"{result['precision']}), batch {args.batch} of {result['frame']} frames: latency p50 {result['latency_ms_p50']:.2f} ms, "
        f"p99 {result['latency_ms_p99']:.2f} ms, repeat medians "
        f"{', '.join(f'{m:.2f}' for m in result['latency_ms_repeat_medians'])} ms; "
        f"{result['throughput_img_s']:.1f} images/s"
    )
    print(f"backend: {result['backend_reason']}")
    for name, gate in result["gates"].items():
        print(f"  accuracy gate, {name} ({gate['precision']}): {gate['reason']}")
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from inspector.onnx_export import export_and_check

    worst = export_and_check(args.model, args.out, tolerance=args.tolerance)
    print(f"ONNX model written to {args.out}; onnxruntime reproduces the map within {worst:.2e} (tolerance {args.tolerance:g})")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from inspector.method.distill import CPU_RECIPE, DistillConfig, distill

    base = CPU_RECIPE if args.recipe == "cpu" else DistillConfig()
    overrides = {k: v for k, v in {"iterations": args.iterations, "batch": args.batch, "crop": args.crop, "norm_images": args.norm_images}.items() if v is not None}
    config = replace(base, size=args.size, backbone=args.backbone, seed=args.seed, time_budget_s=args.time_budget_min * 60 if args.time_budget_min else base.time_budget_s, **overrides)
    command = "inspector " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = distill([Path(d) for d in args.image_dirs], Path(args.out), config, device=args.device, command=command)
    print(f"teacher written to {args.out} after {card['iterations_done']} iterations "
          f"(loss {card['distillation_loss_first']:.4f} -> {card['distillation_loss_final']:.4f})")
    return 0


# --- parser --------------------------------------------------------------------------------------


class _ExactParser(argparse.ArgumentParser):
    """An ArgumentParser that takes options only as spelt in full. With abbreviations, the old
    release's ``--pin 246810`` became ``--pin-file 246810``: a PIN read as a file name, echoed in
    the refusal and kept in the audit trail. ``add_subparsers`` makes its sub-parsers of the
    parser's own class, so every command and sub-command below inherits this."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _ExactParser(prog="inspector", description="Inline visual inspection with EfficientAD.")
    parser.add_argument("--version", action="version", version=f"inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on good images")
    p.add_argument("data_dir", help="MVTec-layout folder (train/good) or a folder of good images")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--kind", choices=("efficientad", "instant"), default="efficientad",
                   help="efficientad: train EfficientAD (default); instant: build the memory-bank model on the "
                        "teacher's features in about a minute, no training")
    p.add_argument("--features", choices=("lite2", "pdn", "lite0"), default=None,
                   help="--kind instant: whose features the memory bank holds: EfficientNet-Lite2's (lite2, default: "
                        "more accurate and faster), the shipped teacher's (pdn) or Lite0's (lite0, the [distill] extra)")
    p.add_argument("--mode", choices=TRAIN_MODES, default=None,
                   help=f"quick: as many iterations as fit in {QUICK_TRAIN_S // 60} min, at most {QUICK_MAX_ITERATIONS}; "
                        f"full: the paper's {PAPER_ITERATIONS} (days on a CPU) (default: quick on a CPU, full on a CUDA GPU)")
    p.add_argument("--iterations", type=positive_int, default=None, help="train exactly this many iterations (default: as --mode says)")
    p.add_argument("--recipe", choices=("short", "paper"), default=None,
                   help=f"short: student-teacher only, cached teacher outputs, batches, cosine schedule (for minutes "
                        f"on a CPU); paper: Algorithm 1 as published (default: short for the quick mode or fewer than "
                        f"{SHORT_RECIPE_BELOW} iterations, else paper)")
    p.add_argument("--size", choices=("s", "m"), default="s", help="EfficientAD-S or -M (default: s)")
    p.add_argument("--teacher", default=None, help="teacher file, or 'random' (default: the shipped teacher)")
    p.add_argument("--resize-mode", choices=("resize", "letterbox"), default="resize",
                   help="how parts become square: stretched, or fitted whole with a grey border (default: resize)")
    p.add_argument("--image-size", type=image_size, default=256, help="side of the square the network sees (default: 256, the paper's)")
    p.add_argument("--penalty-dir", type=Path, default=None, help="natural images for the penalty loss (default: shipped)")
    p.add_argument("--seed", type=int, default=42, help="random seed: the same seed and data train the same model (default: 42)")
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by an interrupted run (default: resume from it)")
    p.add_argument("--yes", action="store_true", help="start a run estimated over an hour without asking (default: ask, at a terminal only)")
    p.add_argument("--device", **DEVICE_OPTION)
    add_framing_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="image/pixel AUROC, AU-PRO and the defects passing at 1 %% / 5 %% false rejects, on an MVTec-layout test set")
    p.add_argument("model")
    p.add_argument("data_dir")
    p.add_argument("--json", type=output_file, help="also write the metrics as JSON")
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="score images, say PASS/FAIL and write heatmap overlays")
    p.add_argument("model", help="model file (.safetensors); its calibrated threshold gives the verdicts")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--out", required=True, type=output_folder, help="folder for the overlay PNGs (made if missing)")
    p.add_argument("--vmax", type=float, default=None,
                   help="map value at the top of the colour scale (default: twice the model's threshold, which puts it "
                        "mid-scale; 0.5 for an uncalibrated model)")
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto", help=BACKEND_HELP)
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="latency and throughput of the engine")
    p.add_argument("model")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--runs", type=positive_int, default=30, help="timed calls per repeat")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto", help=BACKEND_HELP)
    p.add_argument("--images", help="the model's own images for the accuracy gate of reduced precision (int8, bf16, fp16) "
                                    "and int8 calibration: a folder of good images, or an MVTec-layout folder (calibrates on "
                                    "train/good, compares on the test set) (default: those the model file names, if any)")
    p.add_argument("--json", type=output_file, help="also write the figures as JSON")
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export-onnx", help="export to ONNX and check onnxruntime against PyTorch")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed map difference")
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("distill", help="distil a PDN teacher from a pretrained backbone")
    p.add_argument("image_dirs", nargs="+", help="folders of natural images")
    p.add_argument("--out", required=True, help="teacher file to write (.safetensors; a .json card is written beside it)")
    p.add_argument("--size", choices=("s", "m"), default="s")
    p.add_argument("--recipe", choices=("paper", "cpu"), default="paper", help="paper: 60000 x 16 at 256 px; cpu: a 2-hour CPU budget")
    p.add_argument("--backbone", default="lite0", help="lite0, lite1, lite2 or wrn101:PATH")
    p.add_argument("--iterations", type=positive_int)
    p.add_argument("--batch", type=positive_int)
    p.add_argument("--crop", type=int, help="PDN crop size in pixels (multiple of 4)")
    p.add_argument("--norm-images", type=int, help="images for the target mean/std")
    p.add_argument("--time-budget-min", type=float, help="stop after this many minutes, keeping the result")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_distill)

    for register in (line_commands.register, teach_commands.register, gui_command.register, users_commands.register,
                     audit_commands.register, model_commands.register, opcua_commands.register, web_command.register,
                     plant_commands.register):
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to print the command that resumes
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        refuse_passwords_in_urls(args)
        return args.func(args)
    except InspectorError as e:
        print(f"error: {e}", file=sys.stderr)
        if os.environ.get("INSPECTOR_DEBUG"):
            raise
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `inspector predict ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
