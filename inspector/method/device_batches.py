"""Distillation batches made on the device: natural images resident as uint8, crops drawn as tensors.

The paper distils its teacher on random crops of ImageNet (EfficientAD, Section 3.1 and the
supplement's pretraining). A per-sample Python loop over crops, resizes and flips kept an H200
waiting for the host (22 ms per iteration of batch 16 on 2026-11-28). Here every image is uploaded
once into one padded ``(N, 3, H, W)`` uint8 tensor (:class:`ImageBank`), and a batch is a handful
of batched tensor operations (:func:`random_crops`): the crop boxes, flips and grayscale coins are
drawn as tensors from a generator on the images' device, and one ``grid_sample`` resamples every
crop to the output size. Nothing waits for the host, so the device runs ahead of Python.

The same code runs on the CPU (how it is tested, and the CPU recipe of ``inspector distill``).
:class:`PhaseTimer` splits an iteration's time into its phases with CUDA events (no
synchronisation inside the loop) or, on the CPU, with the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

#: ITU-R BT.601 luma weights, as torchvision's ``rgb_to_grayscale``.
LUMA = (0.299, 0.587, 0.114)
#: Smallest crop side in source pixels.
MIN_CROP = 8


@dataclass(frozen=True)
class Augmentation:
    """torchvision's RandomResizedCrop, horizontal flip and random grayscale, as the official
    pretraining uses them."""

    scale: tuple[float, float] = (0.2, 1.0)  # area fraction of a random resized crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # its aspect ratio, drawn log-uniformly
    hflip_p: float = 0.5
    grayscale_p: float = 0.1


class ImageBank:
    """Images of different sizes in one ``(N, 3, H, W)`` uint8 tensor on a device.

    Each image sits at the top left of its slot; the rest of the slot repeats its last row and
    column, so bilinear sampling at an image's edge reads the edge (as ``F.interpolate`` does)
    instead of the padding. ``sizes`` holds each image's (height, width).
    """

    def __init__(self, images: torch.Tensor, sizes: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"an image bank is (N, 3, H, W) uint8, not {tuple(images.shape)} {images.dtype}")
        self.images = images
        self.sizes = sizes.to(images.device)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], device: torch.device | str = "cpu") -> ImageBank:
        """From (H, W, 3) uint8 RGB arrays; uploaded one by one, so the host never holds the bank."""
        if not arrays:
            raise ValueError("an image bank needs at least one image")
        height = max(a.shape[0] for a in arrays)
        width = max(a.shape[1] for a in arrays)
        images = torch.empty((len(arrays), 3, height, width), dtype=torch.uint8, device=device)
        for i, a in enumerate(arrays):
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"image {i}: expected (H, W, 3) uint8, got {a.shape} {a.dtype}")
            h, w = a.shape[:2]
            slot = images[i]
            slot[:, :h, :w] = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).to(device)
            slot[:, :h, w:] = slot[:, :h, w - 1 : w]
            slot[:, h:, :] = slot[:, h - 1 : h, :]
        sizes = torch.tensor([a.shape[:2] for a in arrays], dtype=torch.int64)
        return cls(images, sizes)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def max_side(self) -> int:
        return int(max(self.images.shape[2:]))

    @property
    def nbytes(self) -> int:
        return self.images.numel()


def crop_boxes(sizes: torch.Tensor, u: torch.Tensor, aug: Augmentation) -> tuple[torch.Tensor, ...]:
    """RandomResizedCrop's boxes for images of ``sizes`` (B, 2) from uniform draws ``u`` (B, 4):
    (top, left, height, width) as float tensors of whole pixels. One draw per box, no retries:
    a box that does not fit is clamped to the image, as the previous per-sample loop did."""
    h, w = sizes[:, 0].double(), sizes[:, 1].double()
    u = u.double()
    area = h * w * (aug.scale[0] + (aug.scale[1] - aug.scale[0]) * u[:, 0])
    lo, hi = math.log(aug.ratio[0]), math.log(aug.ratio[1])
    r = torch.exp(lo + (hi - lo) * u[:, 1])
    cw = torch.minimum(w, torch.round(torch.sqrt(area * r)).clamp_min(MIN_CROP))
    ch = torch.minimum(h, torch.round(torch.sqrt(area / r)).clamp_min(MIN_CROP))
    top = torch.floor(u[:, 2] * (h - ch + 1)).clamp(max=h - ch)
    left = torch.floor(u[:, 3] * (w - cw + 1)).clamp(max=w - cw)
    return top.float(), left.float(), ch.float(), cw.float()


def supersampling(bank: ImageBank, out_size: int) -> int:
    """Samples per output pixel and axis so that no crop is shrunk by more than 1x per sample: a
    crop larger than the output (a whole large image) is sampled k x k times per output pixel and
    box-averaged, the antialiasing that a plain bilinear ``grid_sample`` lacks. 1 when the bank's
    images are no larger than the output, as on the GPU recipe (images <= 512 px, output 512)."""
    return max(1, math.ceil(bank.max_side / out_size))


def random_crops(
    bank: ImageBank,
    batch: int,
    out_size: int,
    aug: Augmentation,
    g: torch.Generator,
    channels_last: bool = False,
) -> torch.Tensor:
    """A batch of augmented crops, (batch, 3, out_size, out_size) float32 in [0, 1] on the bank's
    device: images drawn with replacement, RandomResizedCrop boxes resampled bilinearly (corners
    aligned as ``F.interpolate(align_corners=False)``), flipped and greyed per sample.

    ``g`` must live on the bank's device; the same generator state gives the same batch."""
    dev = bank.device
    idx = torch.randint(len(bank), (batch,), generator=g, device=dev)
    u = torch.rand((batch, 6), generator=g, device=dev)
    top, left, ch, cw = crop_boxes(bank.sizes[idx], u[:, :4], aug)
    flip = u[:, 4] < aug.hflip_p
    gray = u[:, 5] < aug.grayscale_p

    # affine_grid maps the output's normalised coordinates to the source's: a crop [left, left+cw)
    # of a slot W pixels wide is x -> (cw / W) x + (2 left + cw) / W - 1; a flip negates the scale.
    _, _, height, width = bank.images.shape
    theta = torch.zeros((batch, 2, 3), device=dev)
    theta[:, 0, 0] = torch.where(flip, -cw, cw) / width
    theta[:, 0, 2] = (2 * left + cw) / width - 1
    theta[:, 1, 1] = ch / height
    theta[:, 1, 2] = (2 * top + ch) / height - 1
    k = supersampling(bank, out_size)
    grid = F.affine_grid(theta, [batch, 3, k * out_size, k * out_size], align_corners=False)
    source = bank.images[idx].float()
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if k > 1:
        crops = F.avg_pool2d(crops, k)
    crops = crops * (1 / 255)
    luma = (LUMA[0] * crops[:, 0:1] + LUMA[1] * crops[:, 1:2] + LUMA[2] * crops[:, 2:3]).expand_as(crops)
    crops = torch.where(gray[:, None, None, None], luma, crops).clamp_(0, 1)
    return crops.contiguous(memory_format=torch.channels_last) if channels_last else crops


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` (crops are drawn where the images are, without a host round trip)."""
    return torch.Generator(device=device).manual_seed(seed)


class PhaseTimer:
    """Time per phase of a loop's iteration, on a sample of iterations.

    On CUDA each phase boundary records an event, read only in :meth:`summary` (one synchronise at
    the end), so timing does not stall the queue: the figures are device time per phase. On the
    CPU the phases are wall-clock intervals. Only every ``every``-th iteration after ``warmup`` is
    timed.
    """

    def __init__(self, device: torch.device, phases: Sequence[str], every: int = 20, warmup: int = 10) -> None:
        self.cuda = device.type == "cuda"
        self.phases = tuple(phases)
        self.every, self.warmup = every, warmup
        self._marks: list[list] = []
        self._current: list | None = None

    def start(self, iteration: int) -> None:
        """Begins iteration ``iteration`` (0-based); timed only if it is a sampled one."""
        sampled = iteration >= self.warmup and (iteration - self.warmup) % self.every == 0
        self._current = [] if sampled else None
        if sampled:
            self._mark()

    def lap(self) -> None:
        """Ends the current phase (in the order of ``phases``)."""
        if self._current is not None:
            self._mark()
            if len(self._current) == len(self.phases) + 1:
                self._marks.append(self._current)
                self._current = None

    def _mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._current.append(event)
        else:
            self._current.append(time.perf_counter())

    def summary(self) -> dict:
        """Median milliseconds per phase over the timed iterations, their sum and count."""
        if not self._marks:
            return {"timed_iterations": 0}
        if self.cuda:
            torch.cuda.synchronize()
            rows = [[a.elapsed_time(b) for a, b in zip(m, m[1:])] for m in self._marks]
        else:
            rows = [[(b - a) * 1e3 for a, b in zip(m, m[1:])] for m in self._marks]
        medians = np.median(np.array(rows), axis=0)
        split = {name: round(float(v), 3) for name, v in zip(self.phases, medians)}
        return {
            "clock": "CUDA events (device time)" if self.cuda else "wall clock",
            "timed_iterations": len(rows),
            "split_ms": split,
            "sum_ms": round(float(sum(split.values())), 3),
        }
