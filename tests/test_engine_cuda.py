"""CUDA engine: half precision, CUDA graph and pinned copies agree with the fp32 CPU engine.

Runs where a CUDA GPU exists (scripts/device/run_gpu.sh runs it on the lent GPU machine); CI
has none and skips it.
"""

import numpy as np
import pytest
import torch

from inspector.method.efficientad import EfficientAD
from inspector.engine import Engine
from inspector.precision_gate import SCORE_TOLERANCE, GateImages
from inspector.model_file import save_model
from inspector.method.training import validation_quantiles

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A random-weight model calibrated like a trained one, so scores sit in their usual range."""
    torch.manual_seed(0)
    model = EfficientAD("s").eval()
    images = (torch.rand(4, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    model.set_map_quantiles(validation_quantiles(model, images, torch.device("cpu")))
    path = tmp_path_factory.mktemp("cuda") / "model.safetensors"
    save_model(path, model, {"architecture": "EfficientAD-S", "image_size": 256})
    return path


def camera_images(n: int, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (300, 400), dtype=np.uint8)
    images = []
    for i in range(n):
        im = base.copy()
        im[50 + 20 * i : 80 + 20 * i, 100:140] = 255  # a bright "defect" that moves
        images.append(np.stack([im] * 3, axis=2))
    return images


def test_fp16_cuda_graph_scores_match_fp32_cpu(model_file):
    cpu = Engine(model_file, device="cpu", backend="eager")
    gpu = Engine(model_file, device="cuda", half=True)  # forced: this model has no images for the accuracy gate
    assert gpu.backend == "cuda-graph" and gpu.half
    for image in camera_images(4):
        ref, got = cpu.predict(image), gpu.predict(image)
        assert got.anomaly_map.shape == image.shape[:2]
        assert np.corrcoef(got.anomaly_map.ravel(), ref.anomaly_map.ravel())[0, 1] > 0.99


def test_fp16_cuda_scores_stay_within_the_tolerance_of_the_threshold_on_a_trained_model():
    """The shipped demo model (an instant model) is calibrated: fp16 on the GPU passes the accuracy
    gate on its held-out cells and keeps each real part's score within SCORE_TOLERANCE x threshold
    of fp32 on the CPU."""
    import demo
    from inspector import ASSETS_DIR
    from inspector.image_io import read_image

    model = ASSETS_DIR / "demo" / "demo_model.safetensors"
    split = demo.elpv_split()
    images = GateImages(good=tuple(split.calibration_good[:40]), defects=tuple(split.calibration_defect[:20]))
    cpu = Engine(model, device="cpu", backend="eager")
    gpu = Engine(model, device="cuda", gate_images=images)
    assert gpu.half and gpu.gates["cuda-fp16"].passed, gpu.backend_reason
    threshold = cpu.metadata["threshold"]
    for path in split.calibration_good[:4] + split.calibration_defect[:4]:
        image = read_image(path)
        assert abs(gpu.predict(image).score - cpu.predict(image).score) <= SCORE_TOLERANCE * threshold, path.name


def test_without_images_for_the_gate_cuda_runs_fp32(model_file):
    gpu = Engine(model_file, device="cuda")
    assert not gpu.half and gpu.precision == "fp32" and "not eligible" in gpu.backend_reason


def test_cuda_batch_matches_batch_one(model_file):
    gpu = Engine(model_file, device="cuda", half=True)
    images = camera_images(3)
    batch = gpu.predict_batch(images)
    single = [gpu.predict(im) for im in images]
    for b, s in zip(batch, single):
        assert abs(b.score - s.score) <= 1e-2 * max(1.0, abs(s.score))


def test_cuda_fp32_eager_matches_cpu(model_file):
    cpu = Engine(model_file, device="cpu", backend="eager")
    gpu = Engine(model_file, device="cuda", backend="eager", half=False)
    image = camera_images(1)[0]
    assert abs(gpu.predict(image).score - cpu.predict(image).score) <= 1e-3 * max(1.0, abs(cpu.predict(image).score))
