"""int8 CPU backends (onnxruntime, OpenVINO) and the accuracy gate that decides whether a
reduced-precision backend may run a model.

The models are real (the pipeline tests' tiny model, two training iterations on magnetic-tile
images) with a threshold set above their good parts' scores as a calibration would; the builds
are cached in one data folder for the module, as the engine caches them on a line PC.
"""

import importlib.util
import json
import logging

import numpy as np
import pytest

from inspector import precision_gate as gate
from inspector.engine import Engine
from inspector.precision_gate import GateImages, GateResult, Scored, judge

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime (the [onnx] extra) is not installed")
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="openvino and nncf (the [openvino] extra) are not installed",
)


# --- the gate's arithmetic -------------------------------------------------------------------------


def test_the_gate_passes_small_changes_and_fails_a_flipped_decision():
    ref = np.linspace(0.1, 0.9, 200)  # threshold 1.0: every part passes
    ok = judge("x", "int8", Scored(ref), Scored(ref * 1.01), 1.0, np.zeros(200, int))
    assert ok.passed and ok.agreement == 1.0 and ok.worst_score_change == pytest.approx(0.009)
    flipped = ref.copy()
    flipped[-1] = 1.01  # one part of 200 now fails: 99.5 % agree, still within the gate...
    assert judge("x", "int8", Scored(ref), Scored(flipped), 1.0, np.zeros(200, int)).agreement == 0.995
    flipped[-2] = 1.01  # ...two do not (99.0 %)
    result = judge("x", "int8", Scored(ref), Scored(flipped), 1.0, np.zeros(200, int))
    assert not result.passed and "decisions agree on 99.0%" in result.reason


def test_a_part_scored_at_the_threshold_is_a_tie_not_a_disagreement():
    """Calibration puts the threshold on a good part's score: that part flips under any change."""
    ref = np.r_[np.linspace(0.1, 0.9, 159), 1.0]
    result = judge("x", "bf16", Scored(ref), Scored(ref * 1.004), 1.0, np.zeros(160, int))
    assert result.passed and result.ties == 1 and result.agreement == 1.0


def test_scores_are_compared_relative_to_the_threshold_or_the_score_where_higher():
    ref = np.array([0.5, 0.9, 10.0])
    far_above = judge("x", "int8", Scored(ref), Scored(np.array([0.5, 0.9, 10.3])), 1.0, np.zeros(3, int))
    assert far_above.passed  # 3 % of a score 10x the threshold
    near = judge("x", "int8", Scored(ref), Scored(np.array([0.5, 0.96, 10.0])), 1.0, np.zeros(3, int))
    assert not near.passed and "6.0% of the threshold" in near.reason
    nan = judge("x", "int8", Scored(ref), Scored(np.array([0.5, np.nan, 10.0])), 1.0, np.zeros(3, int))
    assert not nan.passed and "NaN" in nan.reason


def test_known_defects_add_the_auroc_and_aupro_checks():
    labels = np.array([0] * 10 + [1] * 10)
    ref = np.r_[np.linspace(0.1, 0.5, 10), np.linspace(0.6, 2.0, 10)]  # AUROC 1.0
    got = ref.copy()
    got[9] = 0.65  # the worst good part now outranks the best defect: AUROC 0.99
    result = judge("x", "int8", Scored(ref), Scored(got), 1.0, labels)
    assert result.auroc_change == pytest.approx(-0.01) and not result.passed and "image AUROC -1.00 points" in result.reason
    masks = [np.zeros((8, 8), bool)] * 10 + [np.pad(np.ones((2, 2), bool), 3)] * 10
    maps = [np.random.default_rng(i).random((8, 8)) for i in range(20)]
    hot = [m.copy() for m in maps]
    for m in hot[10:]:
        m[3:5, 3:5] = 2.0
    same = judge("x", "int8", Scored(ref, hot), Scored(ref, hot), 1.0, labels, masks)
    assert same.passed and same.aupro_change == 0.0
    blurred = judge("x", "int8", Scored(ref, hot), Scored(ref, maps), 1.0, labels, masks)
    assert not blurred.passed and "AU-PRO" in blurred.reason


def test_a_gate_result_survives_json():
    result = judge("onnxruntime-int8", "int8", Scored(np.ones(3)), Scored(np.ones(3)), 2.0, np.zeros(3, int))
    assert GateResult.from_dict(json.loads(json.dumps(result.as_dict()))) == result


# --- an instruction-set cap: an AVX-512 machine running what an AVX2-only line PC runs ------------


@pytest.mark.parametrize("flags, cap, saturates", [
    (["avx2", "avx512f", "avx512_vnni"], None, False),
    (["avx2", "avx512f", "avx512_vnni"], "AVX2", True),  # oneDNN capped below VNNI: 7-bit weights
    (["avx2", "avx512f", "avx512_vnni"], "avx512_core", True),
    (["avx2", "avx512f", "avx512_vnni"], "AVX512_CORE_VNNI", False),
    (["avx2", "avx_vnni"], None, False),
    (["avx2"], None, True),
    ([], None, True),  # not known: the safe side
])
def test_int8_weights_are_7_bit_where_the_kernels_lack_vnni(monkeypatch, flags, cap, saturates):
    from inspector import devices, quantize

    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert quantize.needs_reduced_range() is saturates


def test_a_capped_run_is_remembered_apart_and_its_figures_say_so(monkeypatch):
    """A backend measured under ONEDNN_MAX_CPU_ISA=AVX2 is not the one to take without it."""
    from inspector.backend_cache import choice_key
    from inspector.devices import ISA_CAP_VARIABLES, cpu_description

    for name in ISA_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    plain, described = choice_key("abc", ["eager"], 2), cpu_description()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    capped = choice_key("abc", ["eager"], 2)
    assert capped != plain
    assert cpu_description() == f"{described}; capped by ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2"
    # MKL runs an instant model's bank search: its cap is another machine too.
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert choice_key("abc", ["eager"], 2) not in (plain, capped)
    assert cpu_description().endswith("ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2")


def test_taught_models_point_to_their_own_images(tmp_path):
    """A teach session's model names its calibration images; they and the training samples lie
    in the sample folder beside its models folder. Other model files give none."""
    samples, models = tmp_path / "tile" / "samples", tmp_path / "tile" / "models"
    samples.mkdir(parents=True)
    models.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (samples / name).write_bytes(b"png")
    model = models / "tile-1.safetensors"
    found = gate.find_gate_images(model, {"calibration_images": ["b.png", "d.png"]})
    assert [p.name for p in found.good] == ["b.png", "d.png"] and [p.name for p in found.train] == ["a.png", "c.png"]
    assert gate.find_gate_images(model, {"calibration_images": ["b.png", "gone.png"]}) is None
    # Known defects it was calibrated with join the gate; those gone since are left out.
    (tmp_path / "crack.png").write_bytes(b"png")
    found = gate.find_gate_images(model, {"calibration_images": ["b.png"], "defect_images": [str(tmp_path / "crack.png"), "/gone/x.png"]})
    assert [p.name for p in found.defects] == ["crack.png"] and "1 known defective parts" in found.source
    assert found.digest() != gate.find_gate_images(model, {"calibration_images": ["b.png"]}).digest()
    assert gate.find_gate_images(model, {}) is None
    assert gate.find_gate_images(tmp_path / "elsewhere.safetensors", {"calibration_images": ["b.png"]}) is None


# --- the engine ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data folder for the module: the int8 builds of a model are made once and reused."""
    folder = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSPECTOR_DATA_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def images(tiny_model):
    from pipeline_support import good_images

    return GateImages(good=tuple(good_images(6, skip=40)), train=tuple(good_images(4, skip=60)), source="test images")


@pytest.fixture(scope="module")
def calibrated(tiny_model, images, tmp_path_factory, data_dir):
    """The tiny model with a threshold above its good parts' fp32 scores (3x the highest), as
    calibrating it on good parts would put one. (Two iterations from a random teacher make no
    detector: what matters here is the engine's handling of the gate. How int8 fares on trained
    models is in docs/evidence/int8_cpu.json.)"""
    from inspector.image_io import read_image
    from inspector.model_file import load_model, save_model

    fp32 = Engine(tiny_model, device="cpu", backend="eager", warmup=False)
    scores = np.array([fp32.predict(read_image(p)).score for p in images.good])
    model, meta = load_model(tiny_model)
    path = tmp_path_factory.mktemp("calibrated") / "model.safetensors"
    save_model(path, model, {**meta, "threshold": float(3 * scores.max())})
    return path


def test_instant_models_do_not_spend_their_start_on_int8_or_bf16():
    """Both failed the gate by far on the demo's instant model (docs/evidence/int8_cpu.json)."""
    import types

    import torch

    def candidates(kind):
        return Engine._cpu_candidates(types.SimpleNamespace(kind=kind, device=torch.device("cpu")))

    from inspector.engine import PRECISION

    assert all(PRECISION[c] == "fp32" for c in candidates("instant")) and "eager" in candidates("instant")
    assert set(candidates("instant")) < set(candidates("efficientad"))
    if importlib.util.find_spec("onnxruntime") is not None:
        assert "onnxruntime" in candidates("instant") and "onnxruntime-int8" in candidates("efficientad")


@needs_ort
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime-int8", pytest.param("openvino-int8", marks=needs_openvino)])
def test_int8_backends_agree_with_fp32_within_the_gate(calibrated, images, backend):
    from inspector.image_io import read_image

    engine = Engine(calibrated, device="cpu", backend=backend, gate_images=images, warmup=False)
    assert engine.backend == backend and engine.precision == "int8", engine.backend_reason
    result = engine.gates[backend]
    assert result.passed and result.parts == len(images.good) and result.agreement == 1.0
    assert "passed" in engine.backend_reason
    fp32 = Engine(calibrated, device="cpu", backend="eager", warmup=False)
    image = read_image(images.good[0])
    assert abs(engine.predict(image).score - fp32.predict(image).score) <= gate.SCORE_TOLERANCE * engine.threshold


@needs_ort
def test_a_backend_that_fails_the_gate_gives_way_to_fp32_with_a_message(calibrated, images, monkeypatch, caplog):
    monkeypatch.setattr(gate, "SCORE_TOLERANCE", 0.0)  # no int8 score is exactly fp32's
    with caplog.at_level(logging.WARNING, logger="inspector.engine"):
        engine = Engine(calibrated, device="cpu", backend="onnxruntime-int8", gate_images=images, warmup=False)
    assert engine.backend == "onnxruntime" and engine.precision == "fp32"
    assert not engine.gates["onnxruntime-int8"].passed
    (record,) = [r for r in caplog.records if "onnxruntime-int8" in r.getMessage()]
    assert "(accuracy gate: failed: a score moved" in record.getMessage() and "running onnxruntime (fp32) instead" in record.getMessage()
    assert engine.backend_reason.startswith("onnxruntime (fp32): onnxruntime-int8 was asked for")


@needs_ort
def test_auto_takes_int8_only_if_it_passes_and_remembers_the_gate(calibrated, images, data_dir, monkeypatch):
    """Measured fastest, int8 runs if it passes the gate; failing, the fastest fp32 backend runs.
    Either way the gate results are remembered with the choice, and a later start reuses both."""
    from inspector.backend_cache import CACHE_FILE

    # openvino-int8 "measured" slower than fp32: not gated, so not built here (its own test builds it)
    timings = {"eager": 0.3, "eager-bf16": 0.25, "onnxruntime": 0.2, "onnxruntime-int8": 0.05, "openvino": 0.21, "openvino-int8": 0.4}
    monkeypatch.setattr(Engine, "_measure_cpu_backends", lambda self, candidates, runs=3: {c: timings[c] for c in candidates})
    monkeypatch.setenv("INSPECTOR_REMEASURE_BACKEND", "1")
    auto = Engine(calibrated, device="cpu", gate_images=images, warmup=False)
    assert auto.backend == "onnxruntime-int8" and auto.gates["onnxruntime-int8"].passed
    assert "fastest that passes the accuracy gate" in auto.backend_reason

    monkeypatch.setattr(gate, "SCORE_TOLERANCE", 0.0)
    failing = Engine(calibrated, device="cpu", gate_images=images, warmup=False)
    assert failing.backend == "onnxruntime" and failing.precision == "fp32"
    assert "failed the accuracy gate" in failing.backend_reason
    assert not any(g.passed for g in failing.gates.values())

    monkeypatch.delenv("INSPECTOR_REMEASURE_BACKEND")
    monkeypatch.setattr(Engine, "_gate", lambda *a: pytest.fail("a remembered choice runs no gate"))
    again = Engine(calibrated, device="cpu", gate_images=images, warmup=False)
    assert again.backend == "onnxruntime" and again.gates.keys() == failing.gates.keys()
    entries = json.loads((data_dir / CACHE_FILE).read_text())["choices"].values()
    assert any(e["backend"] == "onnxruntime" and not e["gates"]["onnxruntime-int8"]["passed"] for e in entries)


def test_without_the_models_images_no_reduced_precision_is_eligible(tiny_model, data_dir):
    """The tiny model has no threshold and names no images: nothing can check int8 or bf16."""
    auto = Engine(tiny_model, device="cpu", warmup=False)
    assert auto.precision == "fp32"
    assert all(not g.passed and "not eligible" in g.reason for g in auto.gates.values())
    if importlib.util.find_spec("onnxruntime") is not None:
        asked = Engine(tiny_model, device="cpu", backend="onnxruntime-int8", warmup=False)
        assert asked.backend == "onnxruntime" and "no calibrated threshold" in asked.backend_reason


@needs_ort
@pytest.mark.slow
def test_the_int8_build_is_cached_per_model_file_and_rebuilt_when_it_changes(calibrated, images, tmp_path, monkeypatch):
    import shutil

    from inspector import quantize
    from inspector.backend_cache import artefacts_root
    from inspector.model_file import load_model, save_model

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))  # nothing built yet
    builds = []
    build = quantize.build_ort_int8
    monkeypatch.setattr(quantize, "build_ort_int8", lambda *a: (builds.append(a), build(*a)))
    path = tmp_path / "model.safetensors"
    shutil.copy(calibrated, path)
    first = Engine(path, device="cpu", backend="onnxruntime-int8", gate_images=images, warmup=False)
    again = Engine(path, device="cpu", backend="onnxruntime-int8", gate_images=images, warmup=False)
    assert len(builds) == 1 and again.backend == first.backend == "onnxruntime-int8"
    (built,) = (artefacts_root() / first.model_sha256).glob("onnxruntime-int8-*/model.onnx")

    model, meta = load_model(path)
    save_model(path, model, {**meta, "note": "the same path, another file"})
    changed = Engine(path, device="cpu", backend="onnxruntime-int8", gate_images=images, warmup=False)
    assert changed.model_sha256 != first.model_sha256 and len(builds) == 2
    (rebuilt,) = (artefacts_root() / changed.model_sha256).glob("onnxruntime-int8-*/model.onnx")
    assert rebuilt != built


@needs_ort
def test_bench_reports_backend_precision_gate_and_latency(calibrated, images, tmp_path):
    from cli.main import main

    out = tmp_path / "bench.json"
    assert main(["bench", str(calibrated), "--backend", "onnxruntime-int8", "--runs", "2", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # The model names no images and none were given: int8 cannot be checked, so fp32 ran.
    assert result["backend"] == "onnxruntime" and result["precision"] == "fp32" and result["gate"] is None
    assert "not eligible" in result["gates"]["onnxruntime-int8"]["reason"]
    assert {"latency_ms_p50", "latency_ms_p99", "throughput_img_s", "machine", "backend_reason"} <= result.keys()
    assert "flags" in result["machine"]


def test_the_operator_page_says_which_backend_runs_and_why(qtbot, tmp_path, tiny_model):
    pytest.importorskip("PyQt6")
    pytest.importorskip("pyqtgraph")
    from ui.operator_page import OperatorPage
    from ui.session import Session
    from ui_support import make_db, make_line, register_model

    engine = Engine(tiny_model, device="cpu", backend="eager", warmup=False)
    db = make_db(tmp_path)
    product_id, version_id = register_model(db, tiny_model)
    page = OperatorPage(make_line(db, engine, tmp_path, 1.0, tmp_path / "images", product_id, version_id), Session(db))
    qtbot.addWidget(page)
    assert "engine: eager (fp32): as asked" in page.status.text()


# --- a framed model: int8 calibrates on what the network is shown ---------------------------------


@needs_ort
def test_a_framed_model_calibrates_int8_on_its_cuts_not_on_whole_frames(tmp_path, data_dir, monkeypatch):
    """A model with a framing (region found, cut and tiled) sees its region's tiles at native
    scale, never the frame squeezed whole: int8's activation ranges come from the same cuts,
    made by the framing's own code (FramedScorer.cuts); a frame without the part gives none.
    The gate, for its part, scores frames through the framing as the line does."""
    import cv2

    from framing_support import REGION, belt, frame_with_part, make_scene
    from inspector import quantize
    from inspector.framing import FramedScorer, Framing
    from inspector.image_io import read_image, to_square
    from inspector.method.efficientad import EfficientAD
    from inspector.model_file import save_model

    rng, reference, _ = make_scene()
    framing = Framing(region=REGION, reference=reference, align=True, tiles=2)
    path = tmp_path / "framed.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256, "threshold": 1.0}, framing)
    paths = []
    for i, (angle, dx, dy) in enumerate([(0.0, 0.0, 0.0), (6.0, 80.0, -50.0), (-9.0, -100.0, 60.0)]):
        paths.append(tmp_path / f"good{i}.png")
        cv2.imwrite(str(paths[-1]), frame_with_part(rng, reference, angle, dx, dy)[0])
    paths.append(tmp_path / "empty.png")  # the belt without the part: NO PART, nothing to calibrate on
    cv2.imwrite(str(paths[-1]), belt(rng))
    images = GateImages(good=tuple(paths[:2]), train=tuple(paths), source="framed frames")

    calibrated_on = []

    def build(fp32_folder, folder, calibration):
        calibrated_on.extend(calibration)
        raise RuntimeError("calibration recorded")  # the gate then keeps fp32: nothing more to build here

    monkeypatch.setattr(quantize, "build_ort_int8", build)
    engine = Engine(path, device="cpu", backend="onnxruntime-int8", gate_images=images, warmup=False)
    assert engine.backend == "onnxruntime" and "calibration recorded" in engine.gates["onnxruntime-int8"].reason

    cutter = FramedScorer(None, framing)
    cuts = [cut for p in paths for cut in cutter.cuts(read_image(p))]
    assert len(cuts) == 3 * len(cutter.cuts(read_image(paths[0]))) > 3  # tiles of the three parts, none of the belt
    assert len(calibrated_on) == len(cuts)
    for got, cut in zip(calibrated_on, cuts):
        assert got.shape == (1, 3, 256, 256)
        # The same cut, up to a handful of pixels: the alignment's float search may end a few 1e-7
        # apart from one run to the next (OpenCV's threads), which moves a pixel that lies on a
        # 1/32-pixel interpolation step by about a grey level.
        expected = Engine._graph_input(to_square(cut, 256, "resize")[0][None])
        differ = np.abs(got - expected) > 1e-6
        assert differ.mean() < 1e-3 and np.abs(got - expected).max() < 0.05
    squeezed = Engine._graph_input(to_square(read_image(paths[0]), 256, "resize")[0][None])
    assert not any(np.allclose(got, squeezed, atol=0.05) for got in calibrated_on)
    # The gate's fp32 reference was scored through the framing: maps in frame pixels.
    assert engine.predict(read_image(paths[1])).anomaly_map.shape == reference.shape[:2]
