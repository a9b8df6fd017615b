"""The three networks of EfficientAD (Batzner, Heckler, Koenig, WACV 2024, Section 3 and Tables 6-8).

* :class:`PDNSmall` / :class:`PDNMedium` — the patch description network (PDN): four (or six)
  convolutions whose output pixel sees a 33x33 patch of the input. The teacher is a PDN distilled
  from an ImageNet backbone; the student is a PDN of the same shape with twice the output channels
  (the first 384 imitate the teacher, the last 384 the autoencoder).
* :class:`Autoencoder` — encodes the whole image into a 64x1x1 code and decodes it back to the
  teacher's feature map, catching logical anomalies that no 33x33 patch shows.

Without padding (anomaly detection) a 256x256 image gives a 56x56 feature map. With padding
(teacher distillation, as in the official pretraining) the same image gives 64x64, the size of
the backbone's stride-8 features of a 512x512 image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Channels of the teacher's feature map (paper, Section 3.1).
OUT_CHANNELS = 384


class PDNSmall(nn.Module):
    """PDN-S, Table 6 of the paper: 2.7 M parameters for 384 output channels."""

    def __init__(self, out_channels: int = OUT_CHANNELS, padding: bool = False) -> None:
        super().__init__()
        p = 1 if padding else 0
        self.conv1 = nn.Conv2d(3, 128, kernel_size=4, padding=3 * p)
        self.pool1 = nn.AvgPool2d(kernel_size=2, stride=2, padding=1 * p)
        self.conv2 = nn.Conv2d(128, 256, kernel_size=4, padding=3 * p)
        self.pool2 = nn.AvgPool2d(kernel_size=2, stride=2, padding=1 * p)
        self.conv3 = nn.Conv2d(256, 256, kernel_size=3, padding=1 * p)
        self.conv4 = nn.Conv2d(256, out_channels, kernel_size=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 256, 256) -> (N, out_channels, 56, 56) unpadded."""
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.conv4(x)


class PDNMedium(nn.Module):
    """PDN-M, Table 7 of the paper: wider, with two extra 1x1 convolutions."""

    def __init__(self, out_channels: int = OUT_CHANNELS, padding: bool = False) -> None:
        super().__init__()
        p = 1 if padding else 0
        self.conv1 = nn.Conv2d(3, 256, kernel_size=4, padding=3 * p)
        self.pool1 = nn.AvgPool2d(kernel_size=2, stride=2, padding=1 * p)
        self.conv2 = nn.Conv2d(256, 512, kernel_size=4, padding=3 * p)
        self.pool2 = nn.AvgPool2d(kernel_size=2, stride=2, padding=1 * p)
        self.conv3 = nn.Conv2d(512, 512, kernel_size=1)
        self.conv4 = nn.Conv2d(512, 512, kernel_size=3, padding=1 * p)
        self.conv5 = nn.Conv2d(512, out_channels, kernel_size=4)
        self.conv6 = nn.Conv2d(out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 256, 256) -> (N, out_channels, 56, 56) unpadded."""
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.relu(self.conv5(x))
        return self.conv6(x)


PDN_BY_SIZE: dict[str, type[nn.Module]] = {"s": PDNSmall, "m": PDNMedium}


def make_pdn(size: str, out_channels: int = OUT_CHANNELS, padding: bool = False) -> nn.Module:
    """The PDN of a model size, ``"s"`` or ``"m"``."""
    try:
        return PDN_BY_SIZE[size](out_channels=out_channels, padding=padding)
    except KeyError:
        raise ValueError(f"model size must be 's' or 'm', not {size!r}") from None


class Autoencoder(nn.Module):
    """The autoencoder of Table 8: six strided convolutions to a 64x1x1 code; six blocks of bilinear
    upsampling, 4x4 convolution and dropout 0.2; two 3x3 convolutions to the teacher's channels."""

    #: Sizes the decoder upsamples to before each 4x4 convolution (padding 2 adds one pixel each),
    #: chosen so that the last block lands on the teacher's 56x56 output for a 256x256 input.
    DECODER_SIZES = (3, 8, 15, 32, 63, 127)

    def __init__(self, out_channels: int = OUT_CHANNELS, output_size: int = 56) -> None:
        super().__init__()
        self.output_size = output_size
        # Encoder: 256 -> 128 -> 64 -> 32 -> 16 -> 8 -> 1.
        self.enc = nn.ModuleList(
            [
                nn.Conv2d(3, 32, kernel_size=4, stride=2, padding=1),
                nn.Conv2d(32, 32, kernel_size=4, stride=2, padding=1),
                nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),
                nn.Conv2d(64, 64, kernel_size=4, stride=2, padding=1),
                nn.Conv2d(64, 64, kernel_size=4, stride=2, padding=1),
            ]
        )
        self.enc_code = nn.Conv2d(64, 64, kernel_size=8)
        # Decoder: one 4x4 convolution after each upsampling step.
        self.dec = nn.ModuleList(
            [nn.Conv2d(64, 64, kernel_size=4, stride=1, padding=2) for _ in self.DECODER_SIZES]
        )
        self.dropout = nn.Dropout(p=0.2)
        self.dec_out1 = nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1)
        self.dec_out2 = nn.Conv2d(64, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 256, 256) -> (N, out_channels, 56, 56)."""
        for conv in self.enc:
            x = F.relu(conv(x))
        x = self.enc_code(x)  # (N, 64, 1, 1): the code; no activation, as in Table 8
        for size, conv in zip(self.DECODER_SIZES, self.dec):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = self.dropout(F.relu(conv(x)))
        x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
        x = F.relu(self.dec_out1(x))
        return self.dec_out2(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
