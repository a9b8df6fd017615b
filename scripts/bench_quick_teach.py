"""Quick-teach benchmark: from good images to an activated, calibrated model, timed, then the image
AUROC and the measured false-reject and escape rates on an MVTec-layout test set.

    python scripts/bench_quick_teach.py --data ../shared/data/magnetic_tile --images 100

Everything is written under a temporary folder (or ``--workdir``) with its own SQLite history
database and a technician made for the run; nothing else is touched. Prints figures, asserts
nothing: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(args: argparse.Namespace) -> dict:
    from calibration.calibrate import score_paths
    from calibration.quality import QualityGates
    from calibration.teach import CALIBRATION_FRACTION, MIN_CALIBRATION_IMAGES, TeachSession
    from inspector.engine import Engine
    from inspector.history import HistoryDB
    from inspector.roles import Caller
    from inspector.image_io import list_images, mvtec_test_set
    from inspector.ad_metrics import image_auroc

    data = Path(args.data)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_quick_teach_"))
    db = HistoryDB(f"sqlite:///{work / 'history.db'}")
    db.upgrade()
    db.add_user("bench", "technician", "730519")
    session = TeachSession(db, "bench", work, gates=QualityGates(same_size=args.same_size), device=args.device)

    source = data / "train" / "good"
    if args.pick == "random":
        # A seeded random draw: MVTec-style folders are often sorted by session (magnetic_tile's
        # exp0..exp6 are lighting sessions), so the first N would teach one session and then
        # reject the others' good parts. A technician likewise collects across shifts and batches.
        paths = list_images(source)
        chosen = np.random.default_rng(args.seed).choice(len(paths), size=min(args.images, len(paths)), replace=False)
        source = work / "offered"
        source.mkdir(parents=True, exist_ok=True)
        for i in sorted(chosen):
            shutil.copyfile(paths[i], source / paths[i].name)
    t0 = time.perf_counter()
    collected = session.collect_from_folder(source, limit=args.images)
    t_collect = time.perf_counter() - t0
    # Default target: the lowest rate the calibration share can measure without a tail fit.
    n_cal = max(MIN_CALIBRATION_IMAGES, math.ceil(CALIBRATION_FRACTION * len(collected.accepted)))
    target = args.target_frr or max(0.01, 1.0001 / (n_cal + 1))
    taught = session.train(
        kind=args.kind, features=args.features, mode="quick", iterations=args.iterations, teacher=args.teacher, target_frr=target,
        pixel_fpr=None, show_progress=True, user="bench", resize_mode=args.resize_mode,
    )
    session.activate(Caller("bench", "730519"), taught.version_id)
    t_active = time.perf_counter() - t0
    metrics = db.model_version(taught.version_id).metrics

    items = mvtec_test_set(data)
    if args.test_per_type:
        by_type: dict[str, list] = {}
        for it in items:
            by_type.setdefault(it.defect_type, []).append(it)
        items = [it for group in by_type.values() for it in group[: args.test_per_type]]
    engine = Engine(taught.model_path, device=args.device)
    scores = score_paths(engine, [it.path for it in items], batch=8, show_progress=True, desc="test set")
    labels = np.array([it.defect_type != "good" for it in items], dtype=int)
    thr = taught.calibration.image.threshold
    result = {
        "device": str(engine.device),
        "backend": engine.backend_reason,  # the test set is scored as the line would score it
        "engine_prepared": metrics.get("engine"),  # measured, gated and built during the teach
        "images_offered": args.images,
        "samples_accepted": len(collected.accepted),
        "samples_rejected": len(collected.rejected),
        "train_images": len(taught.train_images),
        "calibration_images": len(taught.calibration_images),
        "kind": args.kind,
        "resize_mode": args.resize_mode,
        "iterations": metrics.get("iterations"),
        "pick": args.pick,
        "teacher": metrics.get("teacher"),
        "seconds_collect": round(t_collect, 1),
        "seconds_train": metrics.get("train_seconds"),
        "seconds_to_active": round(t_active, 1),
        "threshold": thr,
        "expected_frr": taught.calibration.image.expected_frr,
        "frr_ci": [taught.calibration.image.frr_ci_low, taught.calibration.image.frr_ci_high],
        "test_images": len(items),
        "image_auroc": image_auroc(labels, scores),
        "test_frr": float(np.mean(scores[labels == 0] > thr)),
        "test_escape_rate": float(np.mean(scores[labels == 1] <= thr)),
        "workdir": str(work),
    }
    db.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/bench_quick_teach.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/magnetic_tile", help="MVTec-layout category folder")
    p.add_argument("--images", type=int, default=100, help="good images to teach from (50-200)")
    p.add_argument("--kind", choices=("efficientad", "instant"), default="efficientad",
                   help="what the teach makes: EfficientAD (quick mode) or the instant memory-bank model")
    p.add_argument("--features", choices=("lite2", "pdn", "lite0"), default="lite2",
                   help="--kind instant: whose features the memory bank holds (default: lite2)")
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations (default: the quick mode's, as many as fit in its time budget)")
    p.add_argument("--pick", choices=("random", "first"), default="random",
                   help="which good images of train/good to offer: a seeded random draw, or the first by name")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draw")
    p.add_argument("--target-frr", type=float, default=None,
                   help="false-reject rate to calibrate for (default: the lowest the calibration images can measure, at least 0.01)")
    p.add_argument("--teacher", default=None, help="teacher file or 'random' (default: the shipped one)")
    p.add_argument("--test-per-type", type=int, default=0, help="score at most this many test images per type (0: all)")
    p.add_argument("--resize-mode", choices=("resize", "letterbox"), default="resize",
                   help="how parts become squares (as `inspector teach train --resize-mode`)")
    p.add_argument("--same-size", action="store_true", help="refuse samples of another size (off by default: magnetic_tile's sizes vary)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workdir", help="keep the run's files here (default: a new temporary folder)")
    p.add_argument("--json", help="also write the figures as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from inspector.errors import InspectorError

    try:
        r = run(args)
    except InspectorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{'quick teach' if r['kind'] == 'efficientad' else 'instant teach'} on {r['device']}: {r['samples_accepted']} of {r['images_offered']} images accepted, "
        f"{r['train_images']} trained / {r['calibration_images']} calibrated, {r['iterations']} iterations "
        f"(teacher {r['teacher']}): activated after {r['seconds_to_active']:.0f} s "
        f"(training {r['seconds_train']:.0f} s)\n"
        f"image AUROC {r['image_auroc']:.3f} on {r['test_images']} test images; at the threshold: false rejects "
        f"{r['test_frr']:.1%} (expected {r['expected_frr']:.1%}, interval {r['frr_ci'][0]:.1%}..{r['frr_ci'][1]:.1%}), "
        f"escapes {r['test_escape_rate']:.1%}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
