"""The batched distillation data path (inspector.method.device_batches), on the CPU at small sizes."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from inspector.method.device_batches import (
    Augmentation,
    ImageBank,
    PhaseTimer,
    crop_boxes,
    make_generator,
    random_crops,
    supersampling,
)


def arrays(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture
def bank():
    return ImageBank.from_arrays(arrays([(40, 60), (64, 32), (50, 50), (24, 70)]))


def test_bank_pads_by_repeating_the_edges(bank):
    assert bank.images.shape == (4, 3, 64, 70) and bank.images.dtype == torch.uint8
    assert bank.sizes.tolist() == [[40, 60], [64, 32], [50, 50], [24, 70]]
    first = bank.images[0]
    assert torch.equal(first[:, :40, 60:], first[:, :40, 59:60].expand(-1, -1, 10))
    assert torch.equal(first[:, 40:, :], first[:, 39:40, :].expand(-1, 24, -1))
    with pytest.raises(ValueError):
        ImageBank.from_arrays([np.zeros((8, 8), np.uint8)])


def test_crops_have_the_shape_dtype_and_range_asked_for(bank):
    crops = random_crops(bank, 5, 32, Augmentation(), make_generator(bank.device, 0))
    assert crops.shape == (5, 3, 32, 32) and crops.dtype == torch.float32
    assert crops.min() >= 0 and crops.max() <= 1 and crops.std() > 0.05
    last = random_crops(bank, 2, 16, Augmentation(), make_generator(bank.device, 0), channels_last=True)
    assert last.is_contiguous(memory_format=torch.channels_last)


def test_same_seed_same_batch_other_seed_other_batch(bank):
    a = random_crops(bank, 6, 24, Augmentation(), make_generator(bank.device, 3))
    b = random_crops(bank, 6, 24, Augmentation(), make_generator(bank.device, 3))
    c = random_crops(bank, 6, 24, Augmentation(), make_generator(bank.device, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = make_generator(bank.device, 3)
    state = g.get_state()
    first = random_crops(bank, 6, 24, Augmentation(), g)
    g.set_state(state)
    assert torch.equal(first, random_crops(bank, 6, 24, Augmentation(), g))


def test_boxes_stay_inside_their_images():
    sizes = torch.tensor([[40, 60], [300, 200], [8, 8]]).repeat(200, 1)
    u = torch.rand((len(sizes), 4), generator=torch.Generator().manual_seed(0))
    aug = Augmentation()
    top, left, ch, cw = crop_boxes(sizes, u, aug)
    h, w = sizes[:, 0].float(), sizes[:, 1].float()
    assert (top >= 0).all() and (left >= 0).all() and (top + ch <= h).all() and (left + cw <= w).all()
    assert (ch >= 1).all() and (cw >= 1).all()
    assert torch.equal(top, top.round()) and torch.equal(cw, cw.round())
    area = (ch * cw / (h * w))[sizes[:, 0] == 300]
    assert area.min() > 0.15 and area.max() <= 1.0


def whole_image(**aug):
    return Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), **aug)


def test_a_whole_image_crop_is_a_bilinear_resize():
    image = arrays([(48, 48)], seed=1)
    bank = ImageBank.from_arrays(image)
    g = make_generator(bank.device, 0)
    crop = random_crops(bank, 1, 96, whole_image(hflip_p=0.0, grayscale_p=0.0), g)
    ref = F.interpolate(torch.from_numpy(image[0]).permute(2, 0, 1)[None].float() / 255, size=96, mode="bilinear", align_corners=False)
    assert torch.allclose(crop, ref, atol=1e-4)
    flipped = random_crops(bank, 1, 96, whole_image(hflip_p=1.0, grayscale_p=0.0), g)
    assert torch.allclose(flipped, ref.flip(-1), atol=1e-4)
    gray = random_crops(bank, 1, 96, whole_image(hflip_p=0.0, grayscale_p=1.0), g)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    assert torch.allclose(gray[:, 0], (0.299 * ref[:, 0] + 0.587 * ref[:, 1] + 0.114 * ref[:, 2]), atol=1e-4)


def test_shrinking_crops_are_supersampled():
    """An image larger than the output is box-averaged over k x k samples: a one-pixel
    checkerboard shrunk 4x comes out mid-grey, not aliased."""
    board = ((np.indices((128, 128)).sum(axis=0) % 2) * 255).astype(np.uint8)
    bank = ImageBank.from_arrays([np.repeat(board[:, :, None], 3, axis=2)])
    assert supersampling(bank, 32) == 4 and supersampling(bank, 128) == 1
    crop = random_crops(bank, 1, 32, whole_image(hflip_p=0.0, grayscale_p=0.0), make_generator(bank.device, 0))
    assert abs(float(crop.mean()) - 0.5) < 0.01 and float(crop.std()) < 0.05


def test_phase_timer_splits_sampled_iterations():
    timer = PhaseTimer(torch.device("cpu"), ("a", "b"), every=2, warmup=1)
    for i in range(6):
        timer.start(i)
        timer.lap()
        timer.lap()
    summary = timer.summary()
    assert summary["timed_iterations"] == 3 and set(summary["split_ms"]) == {"a", "b"}
    assert PhaseTimer(torch.device("cpu"), ("a",)).summary() == {"timed_iterations": 0}


def test_targets_with_bf16_backbone_weights_run():
    """The CUDA configuration (bf16 backbone weights under autocast, fp32 aggregation), exercised
    on the CPU where its operations exist too."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [distill] extra")
    from inspector.method.backbones import LiteBackbone, PatchCoreTargets
    from inspector.method.distill import Targets

    cpu = torch.device("cpu")
    targets = Targets(PatchCoreTargets(LiteBackbone("lite2")), cpu, amp=True, bf16_weights=True)
    assert next(targets.targets.backbone.parameters()).dtype == torch.bfloat16
    out = targets.raw(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 384, 16, 16) and out.dtype == torch.float32 and torch.isfinite(out).all()
    fp32 = Targets(PatchCoreTargets(LiteBackbone("lite2")), cpu, amp=False).raw(torch.rand(2, 3, 128, 128))
    assert fp32.dtype == torch.float32
