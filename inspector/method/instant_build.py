"""Building the instant model (:mod:`inspector.method.instant`) from good images: no training.

One teacher pass over the training images samples patch features and the teacher's channel
statistics together; a greedy k-centre coreset of the samples becomes the memory bank; the held-out
good images give the map quantiles. About two minutes for 700 images on a 2-core CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from inspector import __version__
from inspector.devices import bf16_supported, pick_device
from inspector.errors import DataError
from inspector.method.efficientad import MAP_QUANTILE_END, MAP_QUANTILE_START, exact_quantile, normalize_input
from inspector.method.instant import BANK_SIZE, FEATURE_SOURCES, NEIGHBOURHOOD, InstantModel, neighbourhood_average
from inspector.method.training import (MIN_GOOD_IMAGES, content_hash, framed_counts, load_teacher_weights, load_training_squares,
                                       split_holdout, to_input)

if TYPE_CHECKING:
    from inspector.framing import Framing

log = logging.getLogger(__name__)

#: Patch features the coreset is chosen from: a random sample of the training images' positions,
#: so memory stays bounded (this many x 384 floats) however many images are taught.
CANDIDATES = 120_000
#: The coreset's greedy search runs on a random projection to this many dimensions (PatchCore:
#: the Johnson-Lindenstrauss lemma keeps the distances' order close enough to pick good centres).
PROJECTION_DIM = 64


#: The blocks an instant model aggregates by default, where not the backbone's own pair: Lite2's
#: stride-8 and stride-16 blocks (the distillation targets') plus its last stride-32 block, which
#: scored higher on magnetic tile and let fewer ELPV defects pass (docs/decisions.md, "Whose features the instant model uses").
INSTANT_LAYERS: dict[str, tuple[int, ...]] = {"lite2": (6, 13, 19)}


@dataclass(frozen=True)
class InstantConfig:
    size: str = "s"
    bank_size: int = BANK_SIZE
    neighbourhood: int = NEIGHBOURHOOD
    candidates: int = CANDIDATES
    image_size: int = 256
    resize_mode: str = "resize"
    validation_fraction: float = 0.1
    seed: int = 42
    #: ``lite2`` (EfficientNet-Lite2's aggregated features, the default: more accurate and, through
    #: its depthwise convolutions, faster than the PDN teacher), ``pdn`` (the shipped teacher's) or
    #: ``lite0``. docs/decisions.md has the figures.
    features: str = "lite2"
    #: The backbone's blocks whose features are aggregated (None: :data:`INSTANT_LAYERS`' for the
    #: features, else the backbone's own pair at strides 8 and 16); a block at stride 4 is averaged
    #: down to the stride-8 grid, deeper ones are interpolated up to it.
    layers: tuple[int, ...] | None = None



def greedy_coreset(features: torch.Tensor, k: int, seed: int = 0, projection_dim: int = PROJECTION_DIM) -> torch.Tensor:
    """Indices of ``k`` rows of ``features`` (M, C) chosen by greedy k-centre selection: each pick
    is the row farthest from all picked so far, so the bank covers rare good patterns too, which
    a random sample of the same size would miss and then flag as defects."""
    m = features.shape[0]
    if k >= m:
        return torch.arange(m)
    g = torch.Generator().manual_seed(seed)
    if features.shape[1] > projection_dim:
        projection = torch.randn(features.shape[1], projection_dim, generator=g) / math.sqrt(projection_dim)
        points = features.float() @ projection
    else:
        points = features.float()
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(m, (), generator=g))
    points_sq = (points * points).sum(dim=1)
    nearest = torch.full((m,), math.inf)
    for i in range(1, k):
        c = points[chosen[i - 1]]
        d = points_sq - 2 * points @ c + c @ c
        nearest = torch.minimum(nearest, d)
        chosen[i] = int(nearest.argmax())
    return chosen


@torch.no_grad()
def _sample_features(model: InstantModel, images: torch.Tensor, dev: torch.device, per_image: int, g: torch.Generator, show_progress: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One teacher pass over the training images: ``per_image`` random positions of each image's
    locally averaged features (raw, not standardised), and the teacher's per-channel mean and std.

    Standardising after the sampling gives the same features as before it (the neighbourhood
    average is linear, the standardisation affine per channel), and saves a second pass.
    """
    amp = bf16_supported(dev)
    total = total_sq = None
    count = 0
    samples = []
    for i in tqdm(range(0, len(images), 8), desc="patch features", unit="batch", disable=not show_progress, dynamic_ncols=True):
        x = normalize_input(images[i : i + 8].to(dev).float() / 255).contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            raw = model.teacher(x).float()  # (n, 384, h, w)
        s, sq = raw.double().sum(dim=(0, 2, 3)), (raw.double() ** 2).sum(dim=(0, 2, 3))
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += raw.shape[0] * raw.shape[2] * raw.shape[3]
        pooled = neighbourhood_average(raw, model.neighbourhood)
        flat = pooled.permute(0, 2, 3, 1).reshape(raw.shape[0], -1, raw.shape[1]).cpu()  # (n, h*w, C)
        for f in flat:  # the same number of random positions from every image
            samples.append(f[torch.randperm(f.shape[0], generator=g)[:per_image]])
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt()
    return torch.cat(samples), mean.float()[None, :, None, None], std.float()[None, :, None, None]


@dataclass
class InstantResult:
    model: InstantModel
    metadata: dict[str, Any]


def build_instant(
    good_images: Sequence[Path],
    config: InstantConfig = InstantConfig(),
    teacher: str | Path | None = None,
    device: str = "auto",
    show_progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
    framing: Framing | None = None,
) -> InstantResult:
    """Builds the instant model from good images: no training, about a minute on a 2-core CPU for
    a few hundred images. Holds out the same 10 % as EfficientAD's training for the map quantiles."""
    if len(good_images) < MIN_GOOD_IMAGES:
        raise DataError(f"{len(good_images)} good images given; a model needs at least {MIN_GOOD_IMAGES}")
    started = time.perf_counter()
    stage = on_stage or (lambda text: None)
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    if config.features not in FEATURE_SOURCES:
        raise DataError(f"features must be one of {', '.join(FEATURE_SOURCES)}, not {config.features!r}")
    model = InstantModel(config.size, config.bank_size, config.neighbourhood, features=config.features, pretrained=True,
                         layers=config.layers or INSTANT_LAYERS.get(config.features))
    if config.features == "pdn":
        teacher_info = load_teacher_weights(model, teacher)  # it only touches model.teacher
    else:
        teacher_info = {"teacher": None, "features_source": model.teacher.targets.backbone.weights_source}
    model.to(dev).eval().requires_grad_(False)
    model.teacher.to(memory_format=torch.channels_last)

    stage("reading images")
    train_idx, val_idx = split_holdout(len(good_images), config.validation_fraction, config.seed)
    train_images, val_images, without_part = load_training_squares(good_images, config.image_size, config.resize_mode,
                                                                   train_idx, val_idx, framing)

    stage("patch features")
    g = torch.Generator().manual_seed(config.seed)
    positions = (config.image_size // 4 - 8) ** 2
    per_image = max(1, min(positions, config.candidates // len(train_images)))
    pool, mean, std = _sample_features(model, train_images, dev, per_image, g, show_progress)
    model.teacher_mean.copy_(mean)
    model.teacher_std.copy_(std)
    pool = (pool - mean.cpu().view(1, -1)) / std.cpu().view(1, -1)

    stage("memory bank")
    bank_size = min(config.bank_size, len(pool))
    chosen = greedy_coreset(pool, bank_size, seed=config.seed)
    if bank_size < config.bank_size:
        model.bank = model.bank[:bank_size].clone()
        model.bank_sq = model.bank_sq[:bank_size].clone()
    model.set_bank(pool[chosen].to(dev))

    stage("map quantiles")
    with torch.no_grad():
        maps = torch.cat([model.raw_map(to_input(val_images[i : i + 8], dev).contiguous(memory_format=torch.channels_last)) for i in range(0, len(val_images), 8)])
    model.q_start.copy_(exact_quantile(maps, MAP_QUANTILE_START))
    model.q_end.copy_(exact_quantile(maps, MAP_QUANTILE_END))

    seconds = time.perf_counter() - started
    metadata = {
        "architecture": (f"Instant-{config.size.upper()} (PDN-{config.size.upper()} teacher features, {bank_size}-patch memory bank)"
                         if config.features == "pdn" else
                         f"Instant-{config.features} (EfficientNet-{config.features.capitalize()} PatchCore features, {bank_size}-patch memory bank)"),
        "features": config.features,
        "image_size": config.image_size,
        "resize_mode": config.resize_mode,
        "bank_size": bank_size,
        "neighbourhood": config.neighbourhood,
        "layers": list(model.teacher.targets.backbone.layers) if config.features != "pdn" else None,
        "candidate_patches": len(pool),
        "seed": config.seed,
        "train_images": len(train_idx),
        "validation_images": len(val_idx),
        **framed_counts(framing, train_images, val_images, without_part),
        "training_content_sha256": content_hash(good_images),
        "build_seconds": round(seconds, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "software_version": __version__,
        **teacher_info,
    }
    log.info("instant model built from %d images in %.0f s (%d-patch bank from %d candidates)", len(train_idx), seconds, bank_size, len(pool))
    return InstantResult(model.cpu(), metadata)
