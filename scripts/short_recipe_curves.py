"""Accuracy against CPU time for training recipes (issue 16): which recipe buys the most image
AUROC and AU-PRO per CPU-second at a quick teach's budget.

    python scripts/short_recipe_curves.py --data ../shared/data/magnetic_tile --images 100 \\
        --budget 480 --variants paper short short-crop --json docs/evidence/short_recipe_magnetic_tile.json \\
        --plot docs/evidence/short_recipe_magnetic_tile.png

Each variant trains on the same good images (a seeded draw, as ``bench_quick_teach.py`` makes) for
as many steps as fit in ``--budget`` CPU seconds. Time here is the process's CPU time (all its
threads), measured around the training alone: unlike wall-clock it barely changes when other jobs
share the machine, and on a quiet 2-core machine training's wall-clock is about half of it. The
step count is fixed from a CPU-time measurement of each variant's step made first (interleaved),
so each schedule ends where its recipe says; the curve's time axis is the CPU time actually
spent, setup (image loading, the short recipe's teacher pass) included. Snapshots are scored on a
fixed stratified subset of the test set (``--snapshot-images``), the end of each run on the whole
test set; scoring runs under bf16 autocast where the CPU has it, as the engine does, and its CPU
time is not counted. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

VARIANTS = {
    # The paper's Algorithm 1 (batch 1, autoencoder, Adam 1e-4, x0.1 at 95 %).
    "paper": {},
    # The short recipe as shipped (inspector.method.training.SHORT_RECIPE).
    "short": {"recipe": "short"},
    # ... with 8 whole images a step (as shipped), or 16 stride-aligned crops of 128 px.
    "short-whole": {"recipe": "short", "crop_size": 0, "batch_size": 8},
    "short-crop": {"recipe": "short", "crop_size": 128, "batch_size": 16},
    "short-b1": {"recipe": "short", "crop_size": 0, "batch_size": 1, "penalty_batch_size": 1},
    "short-lr1e-4": {"recipe": "short", "learning_rate": 1e-4},
    "short-ae": {"recipe": "short", "autoencoder": True},
    # The short recipe's components one at a time on top of the paper's.
    "paper-cosine": {"schedule": "cosine"},
}


def config_for(name: str, iterations: int):
    from inspector.method.training import TrainConfig, short_recipe

    settings = dict(VARIANTS[name])
    if settings.pop("recipe", "paper") == "short":
        return short_recipe(iterations, **settings)
    return TrainConfig(iterations=iterations, **settings)


def measure_steps(names: list[str], rounds: int) -> dict[str, float]:
    """Median step seconds of each variant, measured in alternation."""
    from inspector.devices import bf16_supported
    from inspector.method.efficientad import EfficientAD
    from inspector.method.training import estimate_step_seconds

    dev = torch.device("cpu")
    models = {n: EfficientAD("s", autoencoder=config_for(n, 1).autoencoder) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n in names:
            times[n].append(estimate_step_seconds(models[n], dev, steps=2, amp=bf16_supported(dev), config=config_for(n, 1),
                                                  clock=time.process_time))
    return {n: float(np.median(t)) for n, t in times.items()}


def test_subset(items, per_type: int, seed: int):
    rng = np.random.default_rng(seed)
    by_type: dict[str, list] = {}
    for it in items:
        by_type.setdefault(it.defect_type, []).append(it)
    chosen = []
    for group in by_type.values():
        k = min(len(group), per_type * (2 if group[0].defect_type == "good" else 1))
        chosen += [group[i] for i in sorted(rng.choice(len(group), k, replace=False))]
    return chosen


class Scorer:
    """Scores a model in training on preloaded test images, as the engine would (fp32, eval mode)."""

    def __init__(self, items, image_size: int, resize_mode: str) -> None:
        from inspector.image_io import read_image, read_mask, to_square

        self.items = items
        self.squares, self.places, self.masks = [], [], []
        for it in items:
            image = read_image(it.path)
            square, place = to_square(image, image_size, resize_mode)
            self.squares.append(square)
            self.places.append(place)
            shape = image.shape[:2]
            self.masks.append(read_mask(it.mask_path, shape) if it.mask_path else np.zeros(shape, bool))
        self.image_size = image_size

    @torch.no_grad()
    def __call__(self, model, val_images) -> dict[str, float]:
        from inspector.devices import bf16_supported

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_supported(torch.device("cpu"))):
            return self._score(model, val_images)

    def _score(self, model, val_images) -> dict[str, float]:
        from inspector.evaluate import Scored, metrics_for
        from inspector.image_io import map_to_image
        from inspector.method.efficientad import map_to_input_grid, normalize_input
        from inspector.method.training import validation_quantiles

        was_training = model.student.training
        model.eval()
        model.set_map_quantiles(validation_quantiles(model, val_images, torch.device("cpu")))
        scored = []
        for i in range(0, len(self.squares), 16):
            x = torch.from_numpy(np.stack(self.squares[i : i + 16])).permute(0, 3, 1, 2)
            maps = map_to_input_grid(model(normalize_input(x)), (self.image_size, self.image_size))[:, 0].numpy()
            for j, m in enumerate(maps):
                full = map_to_image(m, self.places[i + j])
                scored.append(Scored(self.items[i + j].defect_type, float(full.max()), full, self.masks[i + j]))
        if was_training:
            model.student.train()
            if model.has_autoencoder:
                model.autoencoder.train()
        return {k: None if np.isnan(v) else round(float(v), 4) for k, v in metrics_for(scored).items()}  # no masks: None


def run_variant(name, step_s, args, paths, snap_scorer, full_scorer) -> dict:
    from inspector.method import training

    iterations = max(1, int(args.budget / step_s[name]))
    config = config_for(name, iterations)
    snapshots = sorted({max(1, int(iterations * f)) for f in (0.25, 0.5)})
    curve = []
    # The held-out images the recipe calibrates on, exactly as train() splits them.
    _, val_idx = training.split_holdout(len(paths), config.validation_fraction, config.seed)
    val_images = training.load_squares([paths[i] for i in val_idx], config.image_size, config.resize_mode)
    scoring = {"cpu_s": 0.0}

    def on_snapshot(it, model):
        if it in snapshots:
            t = time.process_time()
            m = snap_scorer(model, val_images)
            scoring["cpu_s"] += time.process_time() - t
            curve.append({"iterations": it, "cpu_s": round(time.process_time() - cpu0 - scoring["cpu_s"], 1), "test": "subset", **m})
            logging.info("%s: %d/%d iterations: %s", name, it, iterations, m)

    cpu0, wall = time.process_time(), time.perf_counter()
    result = training.train(paths, config, device="cpu", show_progress=False, on_snapshot=on_snapshot, snapshot_every=1)
    cpu_s = time.process_time() - cpu0 - scoring["cpu_s"]
    wall = time.perf_counter() - wall
    for scorer, test in ((snap_scorer, "subset"), (full_scorer, "full")):
        final = scorer(result.model, val_images)
        curve.append({"iterations": iterations, "cpu_s": round(cpu_s, 1), "test": test, **final})
    logging.info("%s: done, %d iterations in %.0f CPU s, full test set: %s", name, iterations, cpu_s, final)
    return {"variant": name, "config": asdict(config), "step_cpu_s": round(step_s[name], 3), "iterations": iterations,
            "train_cpu_s": round(cpu_s, 1), "train_wall_s_shared_machine": round(wall, 1), "curve": curve, "final": final}


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        points = [p for p in r["curve"] if p["test"] == "subset"]
        full = r["curve"][-1]
        for ax, key in zip(axes, ("image_auroc", "aupro")):
            line = ax.plot([p["cpu_s"] / 60 for p in points], [np.nan if p[key] is None else p[key] for p in points], marker="o", label=r["variant"])[0]
            ax.plot([full["cpu_s"] / 60], [np.nan if full[key] is None else full[key]], marker="*", markersize=14, color=line.get_color())
    for ax, key in zip(axes, ("image AUROC", "AU-PRO (0.3)")):
        ax.set_xlabel("training CPU minutes (2 threads; quiet wall-clock is about half)")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title + " (dots: test subset; stars: whole test set at the end)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/magnetic_tile", help="MVTec-layout category folder")
    p.add_argument("--elpv", help="instead of --data: a folder made by `python -m demo split` (the ELPV mono cells)")
    p.add_argument("--images", type=int, default=100, help="good images to train on (a seeded draw from train/good)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=720, help="CPU seconds (all threads) of training steps per variant")
    p.add_argument("--variants", nargs="+", default=["paper", "short-crop", "short-whole"], choices=sorted(VARIANTS))
    p.add_argument("--snapshot-images", type=int, default=12, help="test images per defect type for the snapshots (twice for good)")
    p.add_argument("--final-images", type=int, default=0, help="score the final models on this many test images per type (0: all; for dry runs)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--plot", help="write a PNG of the curves here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from inspector.devices import cpu_description
    from inspector.image_io import list_images, mvtec_test_set

    if args.elpv:
        # The demo's split (python -m demo split): its training cells, and its 200 good + 60
        # defective calibration cells as the test set (ELPV has no defect masks: image metrics only).
        from inspector.image_io import TestImage

        data = Path(args.elpv)
        good = list_images(data / "train")
        items = [TestImage(p, "good", None) for p in list_images(data / "calibration_good")]
        items += [TestImage(p, "defect", None) for p in list_images(data / "calibration_defect")]
    else:
        data = Path(args.data)
        good = list_images(data / "train" / "good")
        items = mvtec_test_set(data)
    chosen = np.random.default_rng(args.seed).choice(len(good), size=min(args.images, len(good)), replace=False)
    paths = [good[i] for i in sorted(chosen)]
    snap_scorer = Scorer(test_subset(items, args.snapshot_images, args.seed), 256, "resize")
    full_scorer = Scorer(test_subset(items, args.final_images, args.seed) if args.final_images else items, 256, "resize")

    step_s = measure_steps(args.variants, rounds=3)
    logging.info("step CPU seconds (interleaved): %s", step_s)
    results = [run_variant(n, step_s, args, paths, snap_scorer, full_scorer) for n in args.variants]
    out = {
        "what": "image AUROC and AU-PRO against training CPU time (process time, 2 threads, scoring excluded) for "
                "training recipes; the last two points of each curve are the final model on the subset and on the whole test set",
        "command": "python scripts/short_recipe_curves.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": cpu_description(),
        "data": f"{data} ({len(paths)} good images drawn with seed {args.seed}; 10 % held out for the map quantiles)",
        "budget_s": args.budget,
        "step_seconds": step_s,
        "runs": results,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        plot(results, Path(args.plot), f"{data.name}, {len(paths)} good images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
