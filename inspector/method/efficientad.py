"""EfficientAD's method as pure functions (Batzner, Heckler, Koenig, WACV 2024, Section 3).

Every function takes what it needs as arguments and returns its result; the calibration functions
return statistics rather than storing them. :class:`EfficientAD` only bundles the three networks
with those statistics as buffers so that they travel together in a model file.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from inspector.method.networks import OUT_CHANNELS, Autoencoder, make_pdn

# The method's constants, named once (paper, Section 3 and Algorithm 1 of the supplement).
HARD_FEATURE_QUANTILE = 0.999  # p_hard: the student learns only from its worst 0.1 % of distances
MAP_QUANTILE_START = 0.9  # q_a: maps to 0 after normalisation ...
MAP_QUANTILE_END = 0.995  # q_b: ... and this one to 0.1
MAP_SCALE = 0.1
MAP_WEIGHT_ST = 0.5  # combined map = 0.5 * student-teacher + 0.5 * student-autoencoder
MAP_WEIGHT_AE = 0.5
MAP_PAD = 4  # the 56x56 map sits 4 pixels inside the 64x64 grid of a 256x256 input
IMAGE_SIZE = 256

# The PDN's inputs are normalised like the ImageNet images its teacher was distilled on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_input(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> the network's input."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def exact_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of all elements of x with linear interpolation, as ``torch.quantile``.

    ``torch.quantile`` refuses inputs of more than 16 M elements; two k-th value look-ups give the
    same exact answer for any size.
    """
    flat = x.detach().reshape(-1).float()
    n = flat.numel()
    if n == 0:
        raise ValueError("quantile of an empty tensor")
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    # kthvalue is 1-based.
    v_lo = flat.kthvalue(lo + 1).values
    v_hi = flat.kthvalue(hi + 1).values if hi != lo else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


# --- Teacher feature normalisation (Section 3.1) -------------------------------------------------


@torch.no_grad()
def teacher_channel_stats(
    teacher: nn.Module, images: Iterable[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the teacher's output over the training images.

    ``images`` yields normalised (N, 3, 256, 256) batches. Returns two (1, 384, 1, 1) float32
    tensors. One pass with float64 sums gives the same numbers as the official two passes (the
    std around the final mean) at half the cost.
    """
    total = total_sq = None
    count = 0
    for x in images:
        out = teacher(x).double()
        s, sq = out.sum(dim=(0, 2, 3)), (out**2).sum(dim=(0, 2, 3))
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += out.shape[0] * out.shape[2] * out.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt()
    return mean.float()[None, :, None, None], std.float()[None, :, None, None]


# --- Training losses (Section 3.2, 3.3, Algorithm 1) ---------------------------------------------


def hard_feature_loss(teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
    """L_hard: mean of the squared distances at or above their 0.999 quantile.

    Both (N, 384, h, w). Only the hardest 0.1 % of (channel, position) distances propagate a
    gradient, so the student does not over-fit features that are already easy.
    """
    distance = (teacher_features - student_features) ** 2
    d_hard = exact_quantile(distance, HARD_FEATURE_QUANTILE)
    return distance[distance >= d_hard].mean()


def penalty_loss(student_features_on_natural: torch.Tensor) -> torch.Tensor:
    """L_penalty: keeps the student from imitating the teacher off the training distribution.

    (N, 384, h, w) student output on natural (ImageNet-like) images; the mean squared output.
    """
    return (student_features_on_natural**2).mean()


def efficientad_loss(
    teacher_features: torch.Tensor,
    student_out: torch.Tensor,
    student_out_on_natural: torch.Tensor,
    teacher_features_aug: torch.Tensor,
    student_out_aug: torch.Tensor,
    ae_out_aug: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The three-term loss of Algorithm 1: L_ST + L_AE + L_STAE.

    ``teacher_features`` and ``teacher_features_aug`` are the normalised teacher outputs (N, 384,
    56, 56) on the training image and on its augmented copy; ``student_out*`` are the student's
    (N, 768, 56, 56) outputs; ``ae_out_aug`` the autoencoder's (N, 384, 56, 56) output on the
    augmented image. Returns every term and the total under ``"total"``.
    """
    c = teacher_features.shape[1]
    loss_hard = hard_feature_loss(teacher_features, student_out[:, :c])
    loss_penalty = penalty_loss(student_out_on_natural[:, :c])
    loss_ae = ((teacher_features_aug - ae_out_aug) ** 2).mean()
    loss_stae = ((ae_out_aug - student_out_aug[:, c:]) ** 2).mean()
    total = loss_hard + loss_penalty + loss_ae + loss_stae
    return {"total": total, "hard": loss_hard, "penalty": loss_penalty, "ae": loss_ae, "stae": loss_stae}


# --- Anomaly maps (Section 3.4) ------------------------------------------------------------------


def raw_maps(
    image: torch.Tensor,
    teacher: nn.Module,
    student: nn.Module,
    autoencoder: nn.Module | None,
    teacher_mean: torch.Tensor,
    teacher_std: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unnormalised student-teacher and student-autoencoder maps, each (N, 1, 56, 56), float32;
    the second is None for a student-teacher-only model (no autoencoder).

    The networks may run in half precision; the maps are computed in float32 so that squaring and
    averaging 384 channels does not lose the small differences that make a defect.
    """
    teacher_out = (teacher(image).float() - teacher_mean.float()) / teacher_std.float()
    student_out = student(image).float()
    c = teacher_out.shape[1]
    map_st = ((teacher_out - student_out[:, :c]) ** 2).mean(dim=1, keepdim=True)
    if autoencoder is None:
        return map_st, None
    ae_out = autoencoder(image).float()
    map_ae = ((ae_out - student_out[:, c:]) ** 2).mean(dim=1, keepdim=True)
    return map_st, map_ae


def normalize_map(m: torch.Tensor, q_start: torch.Tensor, q_end: torch.Tensor) -> torch.Tensor:
    """Maps the q_a quantile to 0 and the q_b quantile to 0.1 (Section 3.4)."""
    return MAP_SCALE * (m - q_start) / (q_end - q_start)


def combine_maps(
    map_st: torch.Tensor,
    map_ae: torch.Tensor,
    q_st_start: torch.Tensor,
    q_st_end: torch.Tensor,
    q_ae_start: torch.Tensor,
    q_ae_end: torch.Tensor,
) -> torch.Tensor:
    """The combined anomaly map: 0.5 * normalised ST map + 0.5 * normalised AE map."""
    return MAP_WEIGHT_ST * normalize_map(map_st, q_st_start, q_st_end) + MAP_WEIGHT_AE * normalize_map(
        map_ae, q_ae_start, q_ae_end
    )


@torch.no_grad()
def map_quantiles(map_st: torch.Tensor, map_ae: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The 0.9 and 0.995 quantiles of both maps over held-out good images (Section 3.4).

    ``map_st`` and ``map_ae`` are the raw maps of all validation images, e.g. (N, 1, 56, 56);
    ``map_ae`` is None for a student-teacher-only model.
    """
    if map_ae is None:
        return {"q_st_start": exact_quantile(map_st, MAP_QUANTILE_START), "q_st_end": exact_quantile(map_st, MAP_QUANTILE_END)}
    return {
        "q_st_start": exact_quantile(map_st, MAP_QUANTILE_START),
        "q_st_end": exact_quantile(map_st, MAP_QUANTILE_END),
        "q_ae_start": exact_quantile(map_ae, MAP_QUANTILE_START),
        "q_ae_end": exact_quantile(map_ae, MAP_QUANTILE_END),
    }


def map_to_input_grid(anomaly_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, 56, 56) -> (N, 1, H, W): pad by 4 pixels to the 64x64 grid, then resize bilinearly."""
    padded = F.pad(anomaly_map, (MAP_PAD, MAP_PAD, MAP_PAD, MAP_PAD))
    return F.interpolate(padded, size=size, mode="bilinear", align_corners=False)


# --- The model: networks plus calibration state --------------------------------------------------


class EfficientAD(nn.Module):
    """Teacher, student and autoencoder with the normalisation statistics as buffers.

    ``forward`` maps normalised (N, 3, 256, 256) images to the combined, normalised (N, 1, 56, 56)
    anomaly map; it is what the inference engine, ``torch.compile`` and the ONNX export run.

    ``autoencoder=False`` makes the student-teacher-only model of the short training recipe: no
    autoencoder, a student of 384 channels, and the normalised student-teacher map as the anomaly
    map. The paper's ablation (Table 4) shows the autoencoder buys logical anomalies; at the few
    hundred iterations a CPU affords it is undertrained and its map drags the combined one down
    (issue 16's measurements), so short budgets train without it.
    """

    def __init__(self, size: str = "s", out_channels: int = OUT_CHANNELS, autoencoder: bool = True) -> None:
        super().__init__()
        self.size = size
        self.teacher = make_pdn(size, out_channels)
        self.student = make_pdn(size, (2 if autoencoder else 1) * out_channels)
        self.autoencoder = Autoencoder(out_channels) if autoencoder else None
        shape = (1, out_channels, 1, 1)
        self.register_buffer("teacher_mean", torch.zeros(shape))
        self.register_buffer("teacher_std", torch.ones(shape))
        for name in ("q_st_start", "q_ae_start"):
            self.register_buffer(name, torch.tensor(0.0))
        for name in ("q_st_end", "q_ae_end"):
            self.register_buffer(name, torch.tensor(MAP_SCALE))

    @property
    def has_autoencoder(self) -> bool:
        return self.autoencoder is not None

    def raw_maps(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return raw_maps(image, self.teacher, self.student, self.autoencoder, self.teacher_mean, self.teacher_std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        map_st, map_ae = self.raw_maps(image)
        if map_ae is None:
            return normalize_map(map_st, self.q_st_start, self.q_st_end)
        return combine_maps(map_st, map_ae, self.q_st_start, self.q_st_end, self.q_ae_start, self.q_ae_end)

    def set_teacher_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.teacher_mean.copy_(mean)
        self.teacher_std.copy_(std)

    def set_map_quantiles(self, quantiles: dict[str, torch.Tensor]) -> None:
        for name, value in quantiles.items():
            getattr(self, name).copy_(value)
