"""The instant model: nearest-neighbour patch distance on the shipped teacher's features.

Why it exists: EfficientAD's student and autoencoder need tens of thousands of iterations, which a
CPU line PC cannot give in a technician's wait, while the distilled teacher's 384-channel patch
features alone already separate good from defective parts (a 1-NN patch search on them comes
close to what the trained model reaches; see docs/decisions.md). So teaching first builds this
model in about a minute with no training at all, and EfficientAD replaces it only when it has
shown on the calibration images that it is at least as good.

The method is PatchCore's (Roth et al., "Towards Total Recall in Industrial Anomaly Detection",
CVPR 2022) on EfficientAD's teacher instead of a WideResNet:

1. the teacher's features of every good training image, standardised per channel (Section 3.1 of
   EfficientAD) and averaged over each position's 3x3 neighbourhood (PatchCore's local aggregation);
2. a memory bank: a greedy k-centre coreset of those patch features, small enough that the
   distance search stays within the engine's latency budget;
3. the anomaly map: each position's Euclidean distance to its nearest bank entry, normalised with
   the 0.9/0.995 quantiles on held-out good images exactly like EfficientAD's maps (Section 3.4),
   so thresholds, heatmaps and calibration treat both kinds alike. The image score is the map's
   maximum.

:class:`InstantModel` has EfficientAD's interface (normalised image in, normalised (N, 1, 56, 56)
map out), so the engine, the ONNX export, calibration and the line run it unchanged. Building it
is :mod:`inspector.method.instant_build`'s (kept apart, like EfficientAD's training, so that
loading a model never imports the training code).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from inspector.method.efficientad import MAP_SCALE
from inspector.method.networks import OUT_CHANNELS, make_pdn
from inspector.model_file import INSTANT_KIND

#: Bank entries: the distance search costs 56 x 56 x BANK_SIZE x 384 multiply-adds per image,
#: about as much as the teacher itself at 2,048 (docs/decisions.md has the measured trade-off).
BANK_SIZE = 2048
#: PatchCore's neighbourhood: each position's features averaged over 3x3 positions.
NEIGHBOURHOOD = 3
#: Where the features come from: an ImageNet backbone's aggregated distillation targets
#: (:class:`~inspector.method.backbones.BackboneFeatures`; ``lite2`` is the default of a new model)
#: or the PDN teacher (``pdn``, the shipped one). On magnetic tile and ELPV, Lite2's carry more
#: than the teacher distilled from Lite0, and cost half as much per image on the CPU.
FEATURE_SOURCES = ("pdn", "lite0", "lite2")


def neighbourhood_average(features: torch.Tensor, neighbourhood: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, h, w): each position's mean over its k x k neighbours (PatchCore)."""
    if neighbourhood <= 1:
        return features
    return F.avg_pool2d(features, neighbourhood, stride=1, padding=neighbourhood // 2, count_include_pad=False)


def patch_features(teacher: nn.Module, mean: torch.Tensor, std: torch.Tensor, image: torch.Tensor, neighbourhood: int) -> torch.Tensor:
    """Normalised image (N, 3, S, S) -> standardised, locally averaged features (N, 384, h, w)."""
    return neighbourhood_average((teacher(image).float() - mean) / std, neighbourhood)


def nearest_distance(features: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) features, (M, C) bank with its squared norms (M,) -> (N, 1, h, w) distances.

    |f - b|^2 = |f|^2 - 2 f.b + |b|^2 turns the search into one matrix product; it runs in
    float32 even under autocast because in bf16 the cancellation would swamp small distances.
    """
    n, c, h, w = features.shape
    f = features.float().permute(0, 2, 3, 1).reshape(-1, c)  # (N*h*w, C)
    with torch.autocast(device_type=f.device.type, enabled=False):
        d2 = (f * f).sum(dim=1, keepdim=True) - 2 * f @ bank.float().t() + bank_sq.float()[None]
        d2 = d2.min(dim=1).values.clamp_min(0)
    return d2.sqrt().reshape(n, 1, h, w)


class InstantModel(nn.Module):
    """The teacher, its feature statistics, the memory bank and the map quantiles.

    ``forward`` maps normalised (N, 3, S, S) images to the normalised (N, 1, h, w) anomaly map,
    like :class:`~inspector.method.efficientad.EfficientAD`.
    """

    kind = INSTANT_KIND

    def __init__(self, size: str = "s", bank_size: int = BANK_SIZE, neighbourhood: int = NEIGHBOURHOOD,
                 out_channels: int = OUT_CHANNELS, features: str = "pdn", pretrained: bool = False,
                 layers: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.size = size
        self.neighbourhood = neighbourhood
        self.features = features
        if features == "pdn":
            self.teacher = make_pdn(size, out_channels)
        else:  # the backbone's own code; its weights come from the model file unless ``pretrained``
            from inspector.method.backbones import BackboneFeatures

            self.teacher = BackboneFeatures(features, pretrained=pretrained, layers=layers)
        shape = (1, out_channels, 1, 1)
        self.register_buffer("teacher_mean", torch.zeros(shape))
        self.register_buffer("teacher_std", torch.ones(shape))
        self.register_buffer("bank", torch.zeros(bank_size, out_channels))
        self.register_buffer("bank_sq", torch.zeros(bank_size))
        self.register_buffer("q_start", torch.tensor(0.0))
        self.register_buffer("q_end", torch.tensor(MAP_SCALE))

    def raw_map(self, image: torch.Tensor) -> torch.Tensor:
        features = patch_features(self.teacher, self.teacher_mean.float(), self.teacher_std.float(), image, self.neighbourhood)
        return nearest_distance(features, self.bank, self.bank_sq)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return MAP_SCALE * (self.raw_map(image) - self.q_start) / (self.q_end - self.q_start)

    def set_bank(self, bank: torch.Tensor) -> None:
        self.bank.copy_(bank)
        self.bank_sq.copy_((bank.double() ** 2).sum(dim=1).float())


def bank_search_macs(bank_size: int, image_size: int = 256, channels: int = OUT_CHANNELS) -> int:
    """Multiply-adds of one image's distance search (the teacher's own cost comes on top)."""
    side = image_size // 4 - 8
    return side * side * bank_size * channels
