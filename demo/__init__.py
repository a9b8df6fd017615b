"""The demo: real solar-cell images (ELPV) replayed through an emulated Basler camera.

No Qt here: ``scripts/make_demo_model.sh`` uses the same split to train the shipped demo model, so
the replayed cells are never ones the model was trained or calibrated on.

Data: the ELPV dataset (PyPI ``elpv-dataset``), 2,624 electroluminescence images of solar cells,
300x300 8-bit grey, each labelled with a defect probability (0, 1/3, 2/3, 1) by experts.
Licence CC BY-NC-SA 4.0 -- see :data:`ATTRIBUTION`. Only monocrystalline cells are used: the
demo model is one "product", and mono and poly cells look entirely different.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector import ASSETS_DIR
from inspector.data_folder import make_folders
from inspector.errors import DataError, ModelFileError

log = logging.getLogger(__name__)

ASSETS = ASSETS_DIR / "demo"
DEMO_MODEL = ASSETS / "demo_model.safetensors"
DEMO_CARD = ASSETS / "demo_model.json"
#: Replay folder inside the user's data folder; holds a marker naming the split, so a changed
#: split (new demo model) refreshes it, the attribution, and the cells in :data:`CELLS_DIRNAME`.
REPLAY_DIRNAME = "demo_cells"
#: The images alone: pylon's emulator replays every file of its folder, and would lose a frame
#: on each marker or text file found among them.
CELLS_DIRNAME = "cells"
#: The product the demo model is registered under.
DEMO_PRODUCT = "demo solar cells"
SPLIT_VERSION = "elpv-mono-v1"

ATTRIBUTION = (
    "Demo images: ELPV dataset — Buerhop-Lutz, C.; Deitsch, S.; Maier, A.; Gallwitz, F.; Berger, S.; "
    "Doll, B.; Hauch, J.; Camus, C.; Brabec, C. J.: “A Benchmark for Visual Identification of Defective "
    "Solar Cells in Electroluminescence Imagery”, EU PVSEC 2018 (doi:10.4229/35thEUPVSEC20182018-5CV.3.15); "
    "Deitsch, S. et al., Solar Energy 185 (2019) 455–468 (doi:10.1016/j.solener.2019.02.067). "
    "https://github.com/zae-bayern/elpv-dataset — licensed CC BY-NC-SA 4.0 "
    "(https://creativecommons.org/licenses/by-nc-sa/4.0/); images copied unchanged. "
    "The demo model was trained on these images and is shared under the same licence."
)

#: How many cells of each kind; the seeds fix which (see :func:`elpv_split`).
N_REPLAY_GOOD = 32
N_REPLAY_DEFECT = 8
N_CALIBRATION_GOOD = 200
N_CALIBRATION_DEFECT = 60
N_TRAIN = 300


@dataclass(frozen=True)
class ElpvSplit:
    """Disjoint lists of image paths inside the installed elpv_dataset package."""

    train: list[Path]
    calibration_good: list[Path]
    calibration_defect: list[Path]
    replay: list[tuple[Path, bool]]  # (path, defective) in replay order

    def gate_images(self):
        """The accuracy gate's images for an ELPV model: int8 calibrates on the training cells, the
        gate compares on the held-out good and defective ones (the benchmark scripts' choice)."""
        from inspector.precision_gate import GateImages

        return GateImages(good=tuple(self.calibration_good), defects=tuple(self.calibration_defect), train=tuple(self.train),
                          source=f"demo ELPV split: int8 calibrated on training cells, gate on {len(self.calibration_good)} "
                                 f"held-out good + {len(self.calibration_defect)} defective cells")


def elpv_root() -> Path:
    """The installed dataset's data folder (holding labels.csv and images/)."""
    try:
        import elpv_dataset
    except ModuleNotFoundError:
        raise DataError(
            "the demo needs the ELPV images: pip install 'inspector[demo]' (or: pip install elpv-dataset), "
            "or give a camera with --camera"
        ) from None
    root = Path(elpv_dataset.__file__).parent / "data"
    if not (root / "labels.csv").is_file():
        raise DataError(f"{root}: the elpv-dataset package has no labels.csv (damaged install?)")
    return root


def read_labels(root: Path) -> list[tuple[Path, float, str]]:
    """(image path, defect probability, 'mono'|'poly') for every cell, in file order."""
    rows = []
    for line in (root / "labels.csv").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((root / parts[0], float(parts[1]), parts[2]))
    return rows


def mono_cells(root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """All monocrystalline cells, sorted: (good: defect probability 0, defective: probability 1).
    The uncertain ones (1/3, 2/3) are in neither."""
    rows = read_labels(root or elpv_root())
    good = sorted(p for p, prob, kind in rows if kind == "mono" and prob == 0.0)
    bad = sorted(p for p, prob, kind in rows if kind == "mono" and prob == 1.0)
    return good, bad


def elpv_split(root: Path | None = None) -> ElpvSplit:
    """The fixed split of monocrystalline cells into training, calibration and replay sets."""
    root = root or elpv_root()
    good, bad = mono_cells(root)
    need_good = N_REPLAY_GOOD + N_CALIBRATION_GOOD + N_TRAIN
    if len(good) < need_good or len(bad) < N_REPLAY_DEFECT + N_CALIBRATION_DEFECT:
        raise DataError(f"{root}: too few mono cells ({len(good)} good, {len(bad)} defective) for the demo split")
    rng = np.random.default_rng(20240613)
    good = [good[i] for i in rng.permutation(len(good))]
    bad = [bad[i] for i in rng.permutation(len(bad))]
    replay_good, cal_good, train = (
        good[:N_REPLAY_GOOD],
        good[N_REPLAY_GOOD : N_REPLAY_GOOD + N_CALIBRATION_GOOD],
        good[N_REPLAY_GOOD + N_CALIBRATION_GOOD : need_good],
    )
    replay_bad, cal_bad = bad[:N_REPLAY_DEFECT], bad[N_REPLAY_DEFECT : N_REPLAY_DEFECT + N_CALIBRATION_DEFECT]
    replay = [(p, False) for p in replay_good] + [(p, True) for p in replay_bad]
    # Defects spread through the replay, not bunched at the end; the first part is a good one.
    order = rng.permutation(len(replay) - 1) + 1
    replay = [replay[0]] + [replay[i] for i in order]
    return ElpvSplit(train, cal_good, cal_bad, replay)


def copy_split(paths: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy2(p, folder / p.name)
    return folder


def ensure_replay_folder(data_dir: Path, root: Path | None = None) -> Path:
    """Copies the replay cells (once) into ``data_dir/demo_cells/cells`` and returns that folder,
    which holds the images and nothing else (the marker and attribution sit one level up).

    Files are named ``NNN_<good|defect>_cellXXXX.png`` so that name order is the replay order and
    the label is visible to whoever looks. A folder of an older split or layout is replaced.
    """
    folder = Path(data_dir) / REPLAY_DIRNAME
    cells = folder / CELLS_DIRNAME
    marker = folder / "SPLIT"
    if marker.is_file() and marker.read_text().strip() == SPLIT_VERSION and _only_images(cells):
        return cells
    split = elpv_split(root)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    make_folders(tmp / CELLS_DIRNAME)  # the data folder, if this makes it, 0700
    for i, (p, defective) in enumerate(split.replay):
        shutil.copy2(p, tmp / CELLS_DIRNAME / f"{i:03d}_{'defect' if defective else 'good'}_{p.name}")
    (tmp / "SPLIT").write_text(SPLIT_VERSION + "\n")
    (tmp / "ATTRIBUTION.txt").write_text(ATTRIBUTION + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log.info("copied %d ELPV demo cells to %s", len(split.replay), cells)
    return cells


def _only_images(folder: Path) -> bool:
    """True for a folder of PNGs and nothing else (what the emulator can replay without a loss)."""
    if not folder.is_dir():
        return False
    names = [p.suffix.lower() for p in folder.iterdir()]
    return bool(names) and all(suffix == ".png" for suffix in names)


def demo_camera_uri(cells: Path) -> str:
    """The emulated Basler camera replaying ``cells`` (:func:`ensure_replay_folder`'s folder) in a
    loop: pylon's emulator starts over after the last image by itself."""
    return f"basler://emulated?images={cells}"


#: Calibration report keys copied into the card.
CARD_CALIBRATION_KEYS = (
    "threshold", "target_frr", "expected_frr", "frr_ci_low", "frr_ci_high", "confidence", "n_good", "method",
    "n_defective", "auroc", "escape_rate", "escape_ci_low", "escape_ci_high", "f1_threshold", "f1",
    "pixel_threshold", "min_defect_area_px", "pixel_rule_escape_rate", "combined_escape_rate", "warnings",
)


def write_card(model: Path, report: Path, out: Path, iterations: int) -> dict:
    """The demo model's card: what it is, how it was made and calibrated, the calibration's
    scores (the GUI's calibration view and drift reference), and the data's attribution."""
    import json

    from inspector.file_digest import file_sha256
    from inspector.model_file import load_model_tensors

    _, meta = load_model_tensors(model)
    rep = json.loads(Path(report).read_text())
    instant = meta.get("kind") == "instant"
    if instant:
        made = {
            "kind": "instant",
            "bank_size": meta.get("bank_size"),
            "features": meta.get("features", "pdn"),
            "build_seconds": meta.get("build_seconds"),
            "tensor_dtype": "float32",
            "training_data": f"{meta.get('train_images')} good monocrystalline ELPV cells (defect probability 0) for the "
                             f"memory bank, {meta.get('validation_images')} more for the map quantiles; split "
                             f"{SPLIT_VERSION} of demo/__init__.py",
        }
        source = "the shipped teacher's" if meta.get("features", "pdn") == "pdn" else f"EfficientNet-{str(meta.get('features')).capitalize()}'s"
        note = (f"the instant model (no training): nearest-neighbour distance of {source} patch features to "
                "a memory bank of good cells; threshold for a 1 % false-reject rate on the held-out good cells")
        reproduce = "scripts/make_demo_model.sh instant"
    else:
        made = {
            "kind": "efficientad",
            "iterations": iterations,
            "tensor_dtype": "float16",
            "training_data": f"{meta.get('train_images')} good monocrystalline ELPV cells (defect probability 0) for the "
                             f"student and autoencoder, {meta.get('validation_images')} more for the map quantiles; "
                             f"split {SPLIT_VERSION} of demo/__init__.py",
        }
        note = ("a few hundred CPU training iterations make a weak detector, so the threshold is set for a "
                "2 % false-reject rate rather than 0.5 %, at which every defect would pass and the demo "
                "would never show a reject")
        reproduce = f"scripts/make_demo_model.sh {iterations}"
    card = {
        "name": "demo_model",
        "purpose": "the `inspector gui` demo only; not a production model",
        "architecture": meta.get("architecture"),
        **made,
        "teacher": meta.get("teacher"),
        "sha256": file_sha256(model),
        "calibration_data": f"{rep.get('n_good')} held-out good mono cells and {rep.get('n_defective')} defective mono "
                            "cells (defect probability 1), scored by `inspector calibrate`; none of them is replayed by the demo",
        "calibration": {k: rep[k] for k in CARD_CALIBRATION_KEYS if k in rep},
        "calibration_note": note,
        "good_scores": rep.get("good_scores", []),
        "defect_scores": rep.get("defect_scores"),
        "reproduce": reproduce,
        "attribution": ATTRIBUTION,
        "license": "CC BY-NC-SA 4.0 (derived from the ELPV dataset)",
    }
    Path(out).write_text(json.dumps(card, indent=2) + "\n")
    return card


def register_demo_model(db: Any) -> int:
    """Registers the shipped demo model under :data:`DEMO_PRODUCT` with its calibration (from
    its metadata and card) and makes it the product's active model if it has none; returns its
    version id. Idempotent."""
    import json

    from inspector.file_digest import file_sha256
    from inspector.model_file import load_model_tensors
    from inspector.recipes import register_model

    if not DEMO_MODEL.is_file() or not DEMO_CARD.is_file():
        raise ModelFileError(f"the demo model is missing from {ASSETS} (damaged install?); give --model")
    product_id, version_id = register_model(db, DEMO_MODEL, file_sha256(DEMO_MODEL), DEMO_PRODUCT)
    if db.latest_calibration(version_id) is None:
        _, meta = load_model_tensors(DEMO_MODEL)
        card = json.loads(DEMO_CARD.read_text())
        c = card["calibration"]
        db.add_calibration(
            version_id, image_threshold=meta["threshold"], target_frr=c["target_frr"], expected_frr=c["expected_frr"],
            expected_frr_ci=(c["frr_ci_low"], c["frr_ci_high"]), pixel_threshold=meta.get("pixel_threshold"),
            min_defect_area_px=meta.get("min_defect_area_px"),
            report={"good_scores": card.get("good_scores", []), "defect_scores": card.get("defect_scores"), "source": str(DEMO_CARD.name)},
            created_by="system", role="system",
        )
    product = db.product_by_name(DEMO_PRODUCT)
    if product.active_model_version_id is None:
        db.set_active_model(product_id, version_id, user="system", role="system")
    return version_id
