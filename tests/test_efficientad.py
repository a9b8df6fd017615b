"""The method's functions behave as the paper says."""

import pytest
import torch

from inspector.method.efficientad import (
    HARD_FEATURE_QUANTILE,
    combine_maps,
    efficientad_loss,
    exact_quantile,
    hard_feature_loss,
    map_quantiles,
    map_to_input_grid,
    normalize_map,
    teacher_channel_stats,
)


def test_hard_feature_loss_only_propagates_through_the_top_tenth_of_a_percent():
    torch.manual_seed(0)
    teacher = torch.randn(1, 384, 56, 56)
    student = torch.randn(1, 384, 56, 56, requires_grad=True)
    loss = hard_feature_loss(teacher, student)
    loss.backward()
    distance = (teacher - student.detach()) ** 2
    hard = distance >= torch.quantile(distance.flatten()[:16_000_000], HARD_FEATURE_QUANTILE)
    with_grad = student.grad != 0
    assert torch.equal(with_grad, hard)
    assert with_grad.sum().item() == pytest.approx(0.001 * distance.numel(), rel=0.01)
    assert loss.item() == pytest.approx(distance[hard].mean().item(), rel=1e-5)


def test_exact_quantile_matches_torch_quantile():
    x = torch.randn(10_001)
    for q in (0.0, 0.5, 0.9, 0.995, 0.999, 1.0):
        assert exact_quantile(x, q).item() == pytest.approx(torch.quantile(x, q).item(), abs=1e-6)


def test_exact_quantile_beyond_torch_quantiles_16m_limit():
    x = torch.arange(20_000_001, dtype=torch.float32)  # torch.quantile refuses this many
    with pytest.raises(RuntimeError):
        torch.quantile(x, 0.9)
    assert exact_quantile(x, 0.9).item() == pytest.approx(18_000_000.0)
    assert exact_quantile(x, 0.995).item() == pytest.approx(19_900_000.0)


def test_quantile_normalisation_maps_q90_to_0_and_q995_to_01():
    torch.manual_seed(1)
    map_st, map_ae = torch.rand(10, 1, 56, 56) * 3, torch.rand(10, 1, 56, 56) + 5
    q = map_quantiles(map_st, map_ae)
    for m, start, end in ((map_st, q["q_st_start"], q["q_st_end"]), (map_ae, q["q_ae_start"], q["q_ae_end"])):
        n = normalize_map(m, start, end)
        assert exact_quantile(n, 0.9).item() == pytest.approx(0.0, abs=1e-5)
        assert exact_quantile(n, 0.995).item() == pytest.approx(0.1, abs=1e-5)
    combined = combine_maps(map_st, map_ae, **q)
    expected = 0.5 * normalize_map(map_st, q["q_st_start"], q["q_st_end"]) + 0.5 * normalize_map(map_ae, q["q_ae_start"], q["q_ae_end"])
    assert torch.allclose(combined, expected)


def test_map_is_padded_by_four_and_resized_to_the_input():
    amap = torch.ones(1, 1, 56, 56)
    full = map_to_input_grid(amap, (256, 256))
    assert full.shape == (1, 1, 256, 256)
    assert full[0, 0, 0, 0] == 0  # the 4-pixel border of the 64x64 grid is zero
    assert full[0, 0, 128, 128] == pytest.approx(1.0)


def test_teacher_channel_stats_are_per_channel_mean_and_std():
    teacher = torch.nn.Conv2d(3, 4, 1)
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    mean, std = teacher_channel_stats(teacher, batches)
    with torch.no_grad():
        out = torch.cat([teacher(b) for b in batches])
    assert mean.shape == std.shape == (1, 4, 1, 1)
    assert torch.allclose(mean.flatten(), out.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(std.flatten(), out.std(dim=(0, 2, 3), unbiased=False), atol=1e-5)


def test_efficientad_loss_is_the_sum_of_its_terms():
    torch.manual_seed(2)
    t, t_aug = torch.randn(1, 384, 8, 8), torch.randn(1, 384, 8, 8)
    s, s_nat, s_aug = torch.randn(1, 768, 8, 8), torch.randn(1, 768, 8, 8), torch.randn(1, 768, 8, 8)
    ae = torch.randn(1, 384, 8, 8)
    losses = efficientad_loss(t, s, s_nat, t_aug, s_aug, ae)
    assert losses["penalty"].item() == pytest.approx((s_nat[:, :384] ** 2).mean().item())
    assert losses["ae"].item() == pytest.approx(((t_aug - ae) ** 2).mean().item())
    assert losses["stae"].item() == pytest.approx(((ae - s_aug[:, 384:]) ** 2).mean().item())
    parts = losses["hard"] + losses["penalty"] + losses["ae"] + losses["stae"]
    assert losses["total"].item() == pytest.approx(parts.item())
