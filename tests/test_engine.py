"""The inference engine on the CPU: what a camera gives in, a score and a full-size map out."""

import numpy as np
import pytest

from inspector.engine import PRECISION, Engine
from inspector.errors import ImageError, InspectorError, ModelFileError


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine(tiny_model, device="cpu", backend="eager")


@pytest.mark.parametrize(
    "image",
    [
        np.full((240, 320), 128, np.uint8),
        np.full((240, 320, 3), 128, np.uint8),
        np.full((240, 320), 128 * 257, np.uint16),
        np.full((240, 320, 3), 128 * 257, np.uint16),
    ],
    ids=["gray8", "rgb8", "gray16", "rgb16"],
)
def test_map_has_the_image_size_and_score_is_its_maximum(engine, image):
    pred = engine.predict(image)
    assert pred.anomaly_map.shape == (240, 320) and pred.anomaly_map.dtype == np.float32
    assert pred.score == pytest.approx(float(pred.anomaly_map.max()))
    assert np.isfinite(pred.anomaly_map).all()


def test_gray_colour_and_bit_depth_give_the_same_score(engine):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (200, 260), dtype=np.uint8)
    scores = [engine.predict(im).score for im in (gray, np.stack([gray] * 3, axis=2), gray.astype(np.uint16) * 257)]
    assert max(scores) - min(scores) < 1e-4


def test_batch_equals_single_images_of_different_sizes(engine):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((200, 300), (300, 200, 3), (256, 256))]
    batch = engine.predict_batch(images)
    for image, b in zip(images, batch):
        single = engine.predict(image)
        assert b.anomaly_map.shape == image.shape[:2]
        assert b.score == pytest.approx(single.score, abs=1e-4)
    assert engine.predict_batch([]) == []


def test_a_bright_defect_raises_the_map_where_it_is(engine):
    rng = np.random.default_rng(2)
    image = rng.normal(120, 5, (256, 256)).clip(0, 255).astype(np.uint8)
    defect = image.copy()
    defect[100:140, 100:140] = 255
    diff = engine.predict(defect).anomaly_map - engine.predict(image).anomaly_map
    inside, outside = np.abs(diff[100:140, 100:140]).mean(), np.abs(diff[:40, :40]).mean()
    assert inside > 5 * outside


def test_bad_arrays_get_clear_errors(engine):
    with pytest.raises(ImageError, match="dtype"):
        engine.predict(np.zeros((64, 64), np.float64))
    with pytest.raises(ImageError, match="shape"):
        engine.predict(np.zeros((64, 64, 5), np.uint8))


def test_backends_agree_and_auto_picks_one_by_measurement(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path))  # where auto remembers its choice
    image = np.random.default_rng(3).integers(0, 256, (180, 240), dtype=np.uint8)
    eager = Engine(tiny_model, device="cpu", backend="eager").predict(image)
    ort = Engine(tiny_model, device="cpu", backend="onnxruntime").predict(image)
    assert ort.score == pytest.approx(eager.score, abs=1e-3)
    # Which backend is fastest depends on the machine; that auto takes the fastest it measured does not.
    timings = {"eager": 0.050, "eager-bf16": 0.020, "onnxruntime": 0.030, "openvino": 0.040}
    monkeypatch.setattr(Engine, "_measure_cpu_backends", lambda self, candidates, runs=3: {c: timings.get(c, 0.010) for c in candidates})
    auto = Engine(tiny_model, device="cpu")
    # Reduced precision (bf16, int8) needs the accuracy gate, which this uncalibrated model cannot
    # pass (tests/test_int8_backends.py): the fastest fp32 backend runs.
    measured = {c: timings.get(c, 0.010) for c in auto._cpu_candidates() if PRECISION[c] == "fp32"}
    assert auto.backend == min(measured, key=measured.get) and auto.precision == "fp32"
    assert auto.info["threads"] >= 1 and len(auto.info["model_sha256"]) == 64


def test_letterbox_models_map_back_to_the_image(tiny_model, tmp_path):
    from inspector.model_file import load_model, save_model

    model, meta = load_model(tiny_model)
    path = tmp_path / "letterbox.safetensors"
    save_model(path, model, {**meta, "resize_mode": "letterbox"})
    engine = Engine(path, device="cpu", backend="eager")
    pred = engine.predict(np.full((100, 400), 90, np.uint8))
    assert pred.anomaly_map.shape == (100, 400)


def test_engine_errors(tmp_path, tiny_model):
    with pytest.raises(ModelFileError, match="no such model file"):
        Engine(tmp_path / "missing.safetensors")
    with pytest.raises(InspectorError, match="backend must be one of"):
        Engine(tiny_model, backend="tensorrt")


def test_the_instant_demo_model_runs_in_fp32_and_its_backends_agree(tmp_path, monkeypatch):
    """The shipped demo model is an instant model: bf16 moves its scores by several per cent of
    the threshold (nearest-neighbour distances are small next to the features), so the engine's
    own choice never runs it in bf16; the fp32 backends it chooses between agree on real parts,
    good and defective, far inside the accuracy gate's SCORE_TOLERANCE."""
    import importlib.util

    import demo
    from inspector import ASSETS_DIR
    from inspector.precision_gate import SCORE_TOLERANCE
    from inspector.image_io import read_image

    model = ASSETS_DIR / "demo" / "demo_model.safetensors"
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    auto = Engine(model, device="cpu")
    assert auto.kind == "instant"
    assert "eager-bf16" not in auto._cpu_candidates() and auto.backend != "eager-bf16" and auto.precision == "fp32"
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime (the [onnx] extra) is not installed: eager is the only fp32 backend")
    eager = Engine(model, device="cpu", backend="eager")
    ort = Engine(model, device="cpu", backend="onnxruntime")
    threshold = eager.metadata["threshold"]
    split = demo.elpv_split()
    for path in split.calibration_good[:4] + split.calibration_defect[:4]:
        image = read_image(path)
        ref, got = eager.predict(image), ort.predict(image)
        assert abs(got.score - ref.score) <= 0.02 * SCORE_TOLERANCE * threshold, path.name
        assert np.abs(got.anomaly_map - ref.anomaly_map).max() <= 0.02 * SCORE_TOLERANCE * threshold, path.name


def test_auto_measures_once_per_model_and_machine_and_remembers_the_choice(tiny_model, tmp_path, monkeypatch):
    """Later starts skip the measurement; another model file, a damaged cache file or
    INSPECTOR_REMEASURE_BACKEND=1 measure again, and none of them stops the engine."""
    import json

    from inspector.backend_cache import CACHE_FILE, REMEASURE_ENV
    from inspector.model_file import load_model, save_model

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    measured = []

    def measure(self, candidates, runs=3):
        measured.append(self.model_path)
        return {"eager": 0.2, **({"onnxruntime": 0.5} if "onnxruntime" in candidates else {})}

    monkeypatch.setattr(Engine, "_measure_cpu_backends", measure)
    first = Engine(tiny_model, device="cpu", warmup=False)
    assert first.backend == "eager" and measured == [tiny_model]
    cache = tmp_path / "data" / CACHE_FILE
    (entry,) = json.loads(cache.read_text())["choices"].values()
    assert entry["backend"] == "eager" and entry["model_sha256"] == first.model_sha256

    assert Engine(tiny_model, device="cpu", warmup=False).backend == "eager" and len(measured) == 1

    model, meta = load_model(tiny_model)
    other = tmp_path / "other.safetensors"
    save_model(other, model, {**meta, "note": "another file"})
    Engine(other, device="cpu", warmup=False)
    assert measured[-1] == other and len(json.loads(cache.read_text())["choices"]) == 2

    cache.write_text("{ damaged")
    assert Engine(tiny_model, device="cpu", warmup=False).backend == "eager" and len(measured) == 3
    assert len(json.loads(cache.read_text())["choices"]) == 1  # rewritten whole

    monkeypatch.setenv(REMEASURE_ENV, "1")
    Engine(tiny_model, device="cpu", warmup=False)
    assert len(measured) == 4


def test_a_missing_onnxruntime_is_no_news(tiny_model, tmp_path, monkeypatch, caplog):
    """onnxruntime is an optional extra: without it, auto measures the rest and says nothing."""
    import importlib.util
    import logging

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a))
    with caplog.at_level(logging.INFO):
        engine = Engine(tiny_model, device="cpu", warmup=False)
    assert not engine.backend.startswith("onnxruntime")
    assert not [r for r in caplog.records if "onnx" in r.getMessage().lower()]
