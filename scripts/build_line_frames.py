#!/usr/bin/env python
"""Builds line-camera frames from MVTec-layout data: each part placed on a belt, moved and turned.

../shared/data has no frames like a line camera's: its images are parts cropped to fill the
picture. This script makes them (issue 30, part 6). Every image of the source (``train/good``,
``test/<kind>``) becomes one ``--frame`` frame (default 1280×1024) in the same layout under OUT:

- the part, resized to ``--part-px`` square, turned by up to ``--max-turn`` degrees and moved by up
  to ``--max-shift`` pixels from the frame's centre;
- on a belt whose look changes from frame to frame: a natural photograph (BSDS500) made grey,
  blurred and brightened behind the dark tiles, with specks of dirt;
- the defect masks (``ground_truth/<kind>/<stem>_mask.png``) carried into frame coordinates.

The first training frame is the reference: its part is not moved or turned, and
``reference.json`` gives its region (x, y, w, h). ``placements.json`` gives every frame's true
turn and shift, to check the alignment against. Deterministic: the same source and seed give the
same frames, byte for byte.

    python scripts/build_line_frames.py ../shared/data/magnetic_tile runs/line_frames [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from inspector.framing.align import turn_about

NATURAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "natural" / "bsds500"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="an MVTec-layout folder (train/good, test/<kind>, ground_truth)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--frame", default="1280x1024", help="frame size WxH")
    parser.add_argument("--part-px", type=int, default=256)
    parser.add_argument("--max-shift", type=int, default=300, help="largest move of the part, pixels")
    parser.add_argument("--max-turn", type=float, default=12.0, help="largest turn of the part, degrees")
    parser.add_argument("--belts", type=Path, default=NATURAL, help="photographs the belts are made from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.frame.lower().split("x"))
    belts = sorted(args.belts.glob("*.jpg"))
    if not belts:
        raise SystemExit(f"no photographs for the belts in {args.belts}")
    region = ((width - args.part_px) // 2, (height - args.part_px) // 2, args.part_px, args.part_px)
    placements: dict[str, dict[str, float]] = {}
    sources = [args.source / "train" / "good"] + sorted(p for p in (args.source / "test").iterdir() if p.is_dir())
    for folder in sources:
        split_kind = folder.relative_to(args.source)
        for i, path in enumerate(sorted(folder.glob("*.*"))):
            key = f"{split_kind}/{path.stem}"
            rng = np.random.default_rng([args.seed, _stable(key)])
            reference = split_kind.as_posix() == "train/good" and i == 0
            turn = 0.0 if reference else float(rng.uniform(-args.max_turn, args.max_turn))
            dx, dy = (0.0, 0.0) if reference else tuple(float(v) for v in rng.uniform(-args.max_shift, args.max_shift, 2))
            part = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            mask_path = args.source / "ground_truth" / split_kind.name / f"{path.stem}_mask.png"
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
            frame, frame_mask = _place(part, mask, _belt(rng, belts, width, height), region, turn, (dx, dy))
            out = args.out / split_kind / f"{path.stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), frame)
            if frame_mask is not None:
                mask_out = args.out / "ground_truth" / split_kind.name / f"{path.stem}_mask.png"
                mask_out.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(mask_out), frame_mask)
            placements[key] = {"turn_deg": turn, "dx": dx, "dy": dy}
            if reference:
                (args.out / "reference.json").write_text(json.dumps(
                    {"image": f"train/good/{path.stem}.png", "region": list(region)}, indent=2) + "\n")
    (args.out / "placements.json").write_text(json.dumps(placements, indent=1, sort_keys=True) + "\n")
    print(f"{len(placements)} frames of {width}x{height} in {args.out}")


def _stable(key: str) -> int:
    """A seed from a name that does not change between runs (Python's hash() does)."""
    return int.from_bytes(key.encode("utf-8")[-16:].rjust(16, b"\0"), "big") % (2**63)


def _belt(rng: np.random.Generator, belts: list[Path], width: int, height: int) -> np.ndarray:
    photo = cv2.imread(str(belts[int(rng.integers(len(belts)))]), cv2.IMREAD_GRAYSCALE)
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)
    photo = cv2.GaussianBlur(photo, (0, 0), 6)
    # A light belt behind the dark tiles, its look varying with the photograph.
    belt = 150.0 + 0.35 * (photo.astype(np.float32) - float(photo.mean()))
    for _ in range(int(rng.integers(20, 60))):  # dirt
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(belt, centre, int(rng.integers(1, 6)), float(rng.uniform(40, 110)), -1)
    belt += rng.normal(0.0, 3.0, belt.shape).astype(np.float32)
    return np.clip(belt, 0, 255).astype(np.uint8)


def _place(part: np.ndarray, mask: np.ndarray | None, belt: np.ndarray, region: tuple[int, int, int, int],
           turn: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray | None]:
    x, y, w, h = region
    square = cv2.resize(part, (w, h), interpolation=cv2.INTER_AREA)
    moved = turn_about(turn, (x + w / 2, y + h / 2), (x + w / 2 + shift[0], y + h / 2 + shift[1]))
    at_region = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
    to_frame = (np.vstack([moved, [0, 0, 1]]) @ np.vstack([at_region, [0, 0, 1]]))[:2]
    size = (belt.shape[1], belt.shape[0])
    placed = cv2.warpAffine(square, to_frame, size, flags=cv2.INTER_LINEAR)
    # Soft edges, as a lens gives them: the part blends into the belt over a pixel or two.
    alpha = cv2.warpAffine(np.ones((h, w), np.float32), to_frame, size, flags=cv2.INTER_LINEAR)
    frame = (alpha * placed + (1 - alpha) * belt).astype(np.uint8)
    if mask is None:
        return frame, None
    square_mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    frame_mask = cv2.warpAffine(square_mask, to_frame, size, flags=cv2.INTER_NEAREST)
    return frame, np.where(frame_mask > 127, 255, 0).astype(np.uint8)


if __name__ == "__main__":
    main()
