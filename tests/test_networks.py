"""The networks have the paper's shapes and parameter counts (Tables 6-8)."""

import pytest
import torch

from inspector.method.efficientad import EfficientAD
from inspector.method.networks import Autoencoder, PDNMedium, PDNSmall, count_parameters, make_pdn


@pytest.mark.parametrize(
    ("size", "teacher_params", "student_params"),
    [("s", 2_694_144, 4_267_392), ("m", 8_026_624, 11_615_488)],
)
def test_pdn_shapes_and_parameter_counts(size, teacher_params, student_params):
    teacher, student = make_pdn(size), make_pdn(size, out_channels=768)
    assert count_parameters(teacher) == teacher_params  # PDN-S: the paper's 2.7 M
    assert count_parameters(student) == student_params
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        t, s = teacher(x), student(x)
    assert t.shape == (2, 384, 56, 56) and s.shape == (2, 768, 56, 56)
    assert torch.isfinite(t).all() and torch.isfinite(s).all()


def test_pdn_receptive_field_is_33_pixels():
    pdn = PDNSmall().double()
    x = torch.zeros(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    pdn(x)[0, :, 0, 0].sum().backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (33, 33)


def test_padded_pdn_matches_backbone_grid():
    """Distillation runs the PDN padded: a 256 crop gives the 64x64 grid of stride-8 features at 512."""
    assert PDNSmall(padding=True)(torch.zeros(1, 3, 256, 256)).shape[-2:] == (64, 64)
    assert PDNMedium(padding=True)(torch.zeros(1, 3, 128, 128)).shape[-2:] == (32, 32)


def test_autoencoder_shapes():
    ae = Autoencoder().eval()
    assert count_parameters(ae) == 1_096_320
    out = ae(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 384, 56, 56) and torch.isfinite(out).all()


@pytest.mark.parametrize("size", ["s", "m"])
def test_efficientad_forward_gives_one_map(size):
    model = EfficientAD(size).eval()
    with torch.no_grad():
        amap = model(torch.randn(1, 3, 256, 256))
    assert amap.shape == (1, 1, 56, 56) and torch.isfinite(amap).all()


def test_unknown_size_is_refused():
    with pytest.raises(ValueError, match="'s' or 'm'"):
        make_pdn("l")
