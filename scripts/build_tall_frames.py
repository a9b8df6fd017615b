#!/usr/bin/env python
"""Builds tall images (1:2.5) of a textured surface with thin defects at native resolution.

../shared/data has no images like a line camera's view of a long part: its images are square-ish
crops of one tile each. This script makes them (issue 30, part 6) from MVTec-layout data such as
../shared/data/magnetic_tile. Every image of the source becomes one tall frame (default 300×750,
width:height 1:2.5) in the same layout under OUT, so ``inspector train`` and ``inspector eval``
read it as they read the source:

- the frame is ``--slots`` (default 3) slots stacked vertically, each ``--width`` wide;
- the source image fills one slot, chosen at random, **at native resolution**: it is only
  enlarged where it is smaller than the slot (never shrunk), then a slot-sized window is cut from
  it: around the defect (its largest piece) for a defective image, the middle for a good one;
- the other slots are filled the same way from other good images of the same split: training
  frames from ``train/good``, test frames (good and defective alike) from ``test/good``, so no
  test frame holds a training image;
- the defect mask (``ground_truth/<kind>/<stem>_mask.png``) is carried into frame coordinates, zero
  in every other slot. A source without a ``ground_truth`` folder (ELPV cells, laid out by
  scripts/elpv_layout.py) gives frames without masks: a defective image then fills its slot as a
  good one does (whole where it is the slot's size, else its middle: there is no defect to centre
  on), and eval_framing.py reports no AU-PRO for them. ELPV's 300×300 cells fill the slots of a
  300×900 frame (``--height 900``, 1:3) whole, a strip of a module's column; at the default 300×750
  each slot holds a cell's middle 250 rows.

So a thin crack a few pixels wide in a 300-px slot stays a few pixels wide in the frame, and
squeezing the whole 300×750 frame into a model's 256² input shrinks it about three times along
the frame's length. ``frames.json`` records, for each frame, the source image of every slot.

Deterministic: the same source, options and seed give the same frames, byte for byte (each frame's
draws come from the seed and the frame's name, not from the order of the folders).

    python scripts/build_tall_frames.py ../shared/data/magnetic_tile runs/tall_frames [--seed 0]
    python scripts/elpv_layout.py runs/elpv_cells
    python scripts/build_tall_frames.py runs/elpv_cells runs/elpv_tall --height 900 --seed 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="an MVTec-layout folder (train/good, test/<kind>, ground_truth if it has masks)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=300, help="frame width, pixels")
    parser.add_argument("--height", type=int, default=750, help="frame height, pixels")
    parser.add_argument("--slots", type=int, default=3, help="images stacked along the frame's height")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="at most this many frames per folder (for tests)")
    args = parser.parse_args(argv)
    if args.slots < 1 or args.width < 16 or args.height < 16 * args.slots:
        raise SystemExit("the frame must be at least 16 px wide and 16 px high per slot")
    built = build(args.source, args.out, args.width, args.height, args.slots, args.seed, args.limit)
    print(f"{built} frames of {args.width}x{args.height} ({args.slots} slots) in {args.out}")


def build(source: Path, out: Path, width: int, height: int, slots: int, seed: int, limit: int | None = None) -> int:
    """Writes the tall frames under ``out``; returns how many."""
    bounds = [round(i * height / slots) for i in range(slots + 1)]
    folders = [source / "train" / "good"] + sorted(p for p in (source / "test").iterdir() if p.is_dir())
    pools = {"train": _images(source / "train" / "good"), "test": _images(source / "test" / "good")}
    masked = (source / "ground_truth").is_dir()  # none (ELPV): frames without masks
    if len(pools["train"]) < 2 or len(pools["test"]) < 2:
        raise SystemExit(f"{source} needs at least two good images in train/good and in test/good")
    record: dict[str, dict] = {}
    for folder in folders:
        split_kind = folder.relative_to(source)
        split, kind = split_kind.parts[0], split_kind.name
        for path in _images(folder)[:limit]:
            key = f"{split_kind.as_posix()}/{path.stem}"
            rng = np.random.default_rng([seed, _stable(key)])
            own_slot = int(rng.integers(slots))
            pool = [p for p in pools[split] if p != path]
            fillers = [pool[int(i)] for i in rng.choice(len(pool), size=slots - 1, replace=False)]
            mask_path = source / "ground_truth" / kind / f"{path.stem}_mask.png"
            defective = kind != "good" and masked
            if defective and not mask_path.is_file():
                raise SystemExit(f"{mask_path} is missing: a source with ground_truth needs every defect's mask")
            frame = np.zeros((height, width), np.uint8)
            frame_mask = np.zeros((height, width), np.uint8) if defective else None
            names = []
            for slot in range(slots):
                top, bottom = bounds[slot], bounds[slot + 1]
                image_path = path if slot == own_slot else fillers.pop()
                image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
                mask = None
                if slot == own_slot and defective:
                    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                piece, piece_mask = _fill(image, mask, width, bottom - top)
                frame[top:bottom] = piece
                if piece_mask is not None and frame_mask is not None:
                    frame_mask[top:bottom] = piece_mask
                names.append(image_path.relative_to(source).as_posix())
            target = out / split_kind / f"{path.stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), frame)
            if frame_mask is not None:
                mask_target = out / "ground_truth" / kind / f"{path.stem}_mask.png"
                mask_target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(mask_target), frame_mask)
            record[key] = {"slot": own_slot, "slots": names}
    (out / "frames.json").write_text(json.dumps(
        {"width": width, "height": height, "slots": slots, "seed": seed, "bounds": bounds, "frames": record},
        indent=1, sort_keys=True) + "\n")
    return len(record)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _stable(key: str) -> int:
    """A seed from a name that does not change between runs (Python's hash() does)."""
    return int.from_bytes(key.encode("utf-8")[-16:].rjust(16, b"\0"), "big") % (2**63)


def _fill(image: np.ndarray, mask: np.ndarray | None, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``width``×``height`` window of ``image`` at native resolution (enlarged only where the image
    is smaller than the window): around the defect's centre where there is a mask, else the middle."""
    h, w = image.shape[:2]
    scale = max(1.0, width / w, height / h)
    if scale > 1.0:
        size = (max(width, round(w * scale)), max(height, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if mask is not None:
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    h, w = image.shape[:2]
    cx, cy = w / 2, h / 2
    if mask is not None and (mask > 127).any():
        # The defect's largest piece, at its pixel nearest its centre (a mask may hold pieces
        # far apart, at both ends of a tile, whose common centre is on neither).
        count, labels, stats, centroids = cv2.connectedComponentsWithStats((mask > 127).astype(np.uint8))
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        ys, xs = np.nonzero(labels == largest)
        nearest = int(np.argmin((xs - centroids[largest][0]) ** 2 + (ys - centroids[largest][1]) ** 2))
        cx, cy = float(xs[nearest]), float(ys[nearest])
    x0 = int(np.clip(round(cx - width / 2), 0, w - width))
    y0 = int(np.clip(round(cy - height / 2), 0, h - height))
    piece = image[y0 : y0 + height, x0 : x0 + width]
    if mask is None:
        return piece, None
    return piece, np.where(mask[y0 : y0 + height, x0 : x0 + width] > 127, 255, 0).astype(np.uint8)


if __name__ == "__main__":
    main()
