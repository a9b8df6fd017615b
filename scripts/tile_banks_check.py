#!/usr/bin/env python
"""The instant model on tiles: one memory bank for all tile positions against one bank per
position (issue 30, part 3). An experiment: removed once its decision is recorded.

On frames without a region (build_tall_frames.py's), every frame is tiled alike (``--defect-px``
decides the scale, :func:`inspector.framing.tiles.plan_tiles`), so a tile's position is the same in
every frame. ``shared``: one instant model built from every training tile (what the framing does);
``per_position``: one instant model per position, built from that position's tiles only, each
tile scored by its position's model. Both are scored through the same FramedScorer (blending,
frame coordinates) by scripts/eval_framing.py's ``score``: image AUROC, AU-PRO, the share of
defects passing at 1 % and 5 % false rejects (thresholds from the good test frames' scores).

    python scripts/tile_banks_check.py runs/tall_frames --train 100 --defect-px 8 --json FILE
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from eval_framing import build_model, head_commit, load, score, write_cuts

from inspector.devices import cpu_description
from inspector.engine import Engine
from inspector.framing import FramedScorer, Framing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder made by scripts/build_tall_frames.py")
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--test-every", type=int, default=1)
    parser.add_argument("--defect-px", type=float, default=8.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = load(args.data, args.train, args.test_every)
    if data.region is not None:
        raise SystemExit("frames with a region move with the part: use build_tall_frames.py's frames")
    framing = Framing(tiles="auto", defect_px=args.defect_px)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_cuts("tiles", framing, data.train, Path(tmp))
        cuts = sorted(folder.glob("*.png"))
        positions = sorted({p.stem.rsplit("_", 1)[1] for p in cuts})
        started = time.perf_counter()
        shared = Engine(build_model(cuts, Path(tmp) / "shared.safetensors"), device="cpu")
        shared_s = time.perf_counter() - started
        figures["shared"] = {**score(FramedScorer(shared, framing), data.tests), "models": 1,
                             "build_s": round(shared_s, 1), "backend": shared.backend}
        print("shared       " + _line(figures["shared"]), flush=True)
        started = time.perf_counter()
        engines = [Engine(build_model([p for p in cuts if p.stem.endswith(f"_{position}")],
                                      Path(tmp) / f"position_{position}.safetensors"), device="cpu")
                   for position in positions]
        per_s = time.perf_counter() - started
        figures["per_position"] = {**score(FramedScorer(_PerPosition(engines), framing), data.tests),
                                   "models": len(engines), "build_s": round(per_s, 1), "backend": engines[0].backend}
        print("per_position " + _line(figures["per_position"]), flush=True)
    result = {"data": str(args.data), "command": "python " + " ".join(sys.argv), "commit": head_commit(),
              "train_frames": len(data.train), "test_frames": len(data.tests), "defect_px": args.defect_px,
              "tile_positions": len(positions), "cpu": cpu_description(), "variants": figures}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _line(figures: dict) -> str:
    return "  ".join(f"{k} {v}" for k, v in figures.items() if k != "by_kind")


class _PerPosition:
    """Engines, one per tile position: the i-th tile of a frame goes to the i-th engine."""

    def __init__(self, engines: list[Engine]) -> None:
        self.engines, self.image_size = engines, engines[0].image_size

    def predict_batch(self, images):
        if len(images) != len(self.engines):
            raise ValueError(f"{len(images)} tiles for {len(self.engines)} positions")
        return [engine.predict_batch([image])[0] for engine, image in zip(self.engines, images)]


if __name__ == "__main__":
    main()
