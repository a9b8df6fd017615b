"""What a feature source allows: the instant model's nearest-neighbour check on a teacher's or a
backbone's features, scored on an MVTec-layout test set.

    python scripts/feature_ceiling.py --data ../shared/data/magnetic_tile shipped lite0 lite2 [--json FILE]

``shipped`` is the shipped PDN-S teacher (what every model here is trained on); ``lite0``,
``lite1``, ``lite2`` are the ImageNet EfficientNet-Lite backbones' PatchCore-aggregated
distillation targets (``inspector.method.distill.PatchCoreTargets``, the backbone at twice the
input size, as distillation sees them), i.e. what a teacher distilled from that backbone could at
best carry. Each source gets the same memory bank, map normalisation and scoring as the instant
model (``inspector.method.instant_build``), so the figures compare the features and nothing else.
A measurement, not a test; backbones need the ``[distill]`` extra and the backbone's weight package.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from inspector.devices import cpu_description
from inspector.evaluate import metrics_for, score_test_set
from inspector.image_io import good_training_images, map_to_image, to_square
from inspector.method.efficientad import IMAGENET_MEAN, IMAGENET_STD, map_to_input_grid, normalize_input
from inspector.method.instant_build import InstantConfig, build_instant


class BackboneTargets(nn.Module):
    """Normalised (N, 3, S, S) image -> the backbone's aggregated targets on the PDN's map grid
    ((N, 384, S/4 - 8, S/4 - 8): the 64x64 target grid of a 256 input without its 4-cell border,
    which is where the PDN's unpadded 56x56 map sits)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from inspector.method.distill import LiteBackbone, PatchCoreTargets

        self.targets = PatchCoreTargets(LiteBackbone(name))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x.float() * self.std + self.mean).clamp(0, 1)
        big = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.targets(big)
        return out[:, :, 4:-4, 4:-4]


@dataclass
class InMemoryScorer:
    """The engine's ``predict_batch`` for a model that exists only in memory."""

    model: nn.Module
    image_size: int
    resize_mode: str

    @torch.inference_mode()
    def predict_batch(self, images):
        from inspector.engine import Prediction

        squares, places = zip(*(to_square(im, self.image_size, self.resize_mode) for im in images))
        x = normalize_input(torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            maps = self.model(x.contiguous(memory_format=torch.channels_last)).float()
        grid = map_to_input_grid(maps, (self.image_size, self.image_size))[:, 0].numpy()
        out = []
        for square_map, place in zip(grid, places):
            full = map_to_image(square_map, place)
            out.append(Prediction(float(full.max()), full))
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="shipped, lite0, lite1 or lite2")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout folder")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--resize-mode", choices=("resize", "letterbox"), default="resize")
    parser.add_argument("--json", type=Path, help="append one JSON line per source here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    train = good_training_images(args.data)
    config = InstantConfig(image_size=args.image_size, resize_mode=args.resize_mode)
    for source in args.sources:
        t = time.perf_counter()
        net = None if source == "shipped" else BackboneTargets(source)
        built = build_instant(train, config, device="cpu", show_progress=False, feature_net=net)
        build_s = time.perf_counter() - t
        scorer = InMemoryScorer(built.model.eval(), args.image_size, args.resize_mode)
        metrics = metrics_for(score_test_set(scorer, args.data, show_progress=False))
        row = {"source": source, "data": str(args.data), "image_size": args.image_size, "resize_mode": args.resize_mode,
               "train_images": built.metadata["train_images"], "seconds": round(time.perf_counter() - t, 1),
               "build_seconds": round(build_s, 1),
               **{k: round(metrics[k], 4) for k in ("image_auroc", "pixel_auroc", "aupro")}, "machine": cpu_description()}
        print(json.dumps(row), flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
