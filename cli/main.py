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
import sys
from pathlib import Path

from cli import gui_command, line_commands, teach_commands, users_commands
from cli.common import DEVICE_OPTION
from inspector import ENGINE_BACKENDS, __version__
from inspector.errors import InspectorError

log = logging.getLogger("inspector")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def write_json(path: str | Path, data: dict) -> None:
    from inspector.model_file import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=float) + "\n"))


# --- engine commands -----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from inspector.image_io import good_training_images
    from inspector.model_file import save_model
    from inspector.method.training import TrainConfig, train

    paths = good_training_images(args.data_dir)
    config = TrainConfig(size=args.size, iterations=args.iterations, seed=args.seed, resize_mode=args.resize_mode)
    checkpoint = Path(str(args.out) + ".ckpt")
    if args.no_resume:
        checkpoint.unlink(missing_ok=True)
    result = train(paths, config, teacher=args.teacher, penalty_dir=args.penalty_dir, device=args.device, checkpoint=checkpoint)
    save_model(args.out, result.model, result.metadata)
    print(f"model written to {args.out} ({result.metadata['train_images']} training images, "
          f"{result.metadata['validation_images']} held out, {config.iterations} iterations)")
    return 0


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
    from inspector.image_io import read_image
    from inspector.overlay import overlay, write_png

    images = [(Path(p), read_image(p)) for p in args.images]  # all readable before anything is written
    engine = Engine(args.model, device=args.device)
    out = Path(args.out)
    for path, image in images:
        pred = engine.predict(image)
        write_png(out / f"{path.stem}_heatmap.png", overlay(image, pred.anomaly_map, vmax=args.vmax))
        print(f"{path}\t{pred.score:.4f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from inspector.engine_bench import bench
    from inspector.engine import Engine

    engine = Engine(args.model, device=args.device, backend=args.backend)
    result = bench(engine, batch=args.batch, runs=args.runs, repeats=args.repeats)
    print(
        f"{result['architecture']} on {result['machine']} ({result['device']}, {result['backend']}, "
        f"{result['precision']}), batch {args.batch}: latency p50 {result['latency_ms_p50']:.2f} ms, "
        f"p99 {result['latency_ms_p99']:.2f} ms, repeat medians "
        f"{', '.join(f'{m:.2f}' for m in result['latency_ms_repeat_medians'])} ms; "
        f"{result['throughput_img_s']:.1f} images/s"
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspector", description="Inline visual inspection with EfficientAD.")
    parser.add_argument("--version", action="version", version=f"inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on good images")
    p.add_argument("data_dir", help="MVTec-layout folder (train/good) or a folder of good images")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--size", choices=("s", "m"), default="s", help="EfficientAD-S or -M")
    p.add_argument("--iterations", type=int, default=70_000, help="training iterations (paper: 70000)")
    p.add_argument("--teacher", default=None, help="teacher file, or 'random' (default: the shipped teacher)")
    p.add_argument("--resize-mode", choices=("resize", "letterbox"), default="resize", help="how parts become 256x256")
    p.add_argument("--penalty-dir", type=Path, default=None, help="natural images for the penalty loss (default: shipped)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by an interrupted run")
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="image/pixel AUROC and AU-PRO on an MVTec-layout test set")
    p.add_argument("model")
    p.add_argument("data_dir")
    p.add_argument("--json", help="also write the metrics as JSON")
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="score images and write heatmap overlays")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", required=True, help="folder for the overlay PNGs")
    p.add_argument("--vmax", type=float, default=0.5, help="map value shown in full colour")
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="latency and throughput of the engine")
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=30, help="timed calls per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", choices=ENGINE_BACKENDS, default="auto")
    p.add_argument("--json", help="also write the figures as JSON")
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
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--crop", type=int, help="PDN crop size in pixels (multiple of 4)")
    p.add_argument("--norm-images", type=int, help="images for the target mean/std")
    p.add_argument("--time-budget-min", type=float, help="stop after this many minutes, keeping the result")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", **DEVICE_OPTION)
    p.set_defaults(func=cmd_distill)

    for register in (line_commands.register, teach_commands.register, gui_command.register, users_commands.register):
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
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
