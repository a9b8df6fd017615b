"""The `inspector` command: each engine command's happy path and its bad-input errors."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cli.main import main

EMPTY_MASK_UNEVEN = "exp3_num_45042"  # a defective image whose published mask is empty


@pytest.fixture(scope="module")
def tiny_mvtec(shared_data, tmp_path_factory):
    """A small MVTec-layout copy of magnetic_tile, including a defect with an empty mask."""
    src, dst = shared_data / "magnetic_tile", tmp_path_factory.mktemp("tile")
    picks = {"test/good": sorted((src / "test/good").glob("*.jpg"))[:3], "test/crack": sorted((src / "test/crack").glob("*.jpg"))[:2],
             "test/uneven": [src / "test/uneven" / f"{EMPTY_MASK_UNEVEN}.jpg"], "train/good": sorted((src / "train/good").glob("*.jpg"))[:12]}
    for sub, files in picks.items():
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dst / sub)
            if sub in ("test/crack", "test/uneven"):
                mask_dir = dst / "ground_truth" / sub.split("/")[1]
                mask_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / "ground_truth" / sub.split("/")[1] / f"{f.stem}_mask.png", mask_dir)
    assert not cv2.imread(str(dst / "ground_truth/uneven" / f"{EMPTY_MASK_UNEVEN}_mask.png"), 0).any()
    return dst


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_train_writes_a_model(tiny_mvtec, natural_dir, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", str(tiny_mvtec), "--out", str(out), "--iterations", "1", "--teacher", "random", "--penalty-dir", str(natural_dir), "--device", "cpu"]) == 0
    assert out.is_file() and not (tmp_path / "m.safetensors.ckpt").exists()
    assert "model written to" in capsys.readouterr().out


def test_train_bad_inputs(tmp_path, tiny_mvtec, natural_dir, capsys):
    out = tmp_path / "m.safetensors"
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no images found" in error_line(capsys)
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted((tiny_mvtec / "train/good").iterdir())[:4]:
        shutil.copy(f, few)
    assert main(["train", str(few), "--out", str(out), "--teacher", "random"]) == 2
    assert "4 good images given; training needs at least 10" in error_line(capsys)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_mvtec / "train/good", corrupt)
    (corrupt / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert main(["train", str(corrupt), "--out", str(out), "--teacher", "random", "--penalty-dir", str(natural_dir)]) == 2
    assert "zz_broken.jpg: not a readable image" in error_line(capsys)
    assert main(["train", str(tiny_mvtec), "--out", str(out), "--teacher", str(tmp_path / "nope.safetensors")]) == 2
    assert "no such model file" in error_line(capsys)
    assert not out.exists()


def test_eval_prints_a_table_and_writes_json(tiny_model, tiny_mvtec, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["eval", str(tiny_model), str(tiny_mvtec), "--json", str(report), "--device", "cpu"]) == 0
    assert "image AUROC" in capsys.readouterr().out
    result = json.loads(report.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["per_type"]) == {"crack", "uneven"}
    assert result["per_type"]["uneven"]["image_auroc"] >= 0  # the empty mask breaks nothing


def test_eval_bad_inputs(tiny_model, tmp_path, capsys):
    assert main(["eval", str(tiny_model), str(tmp_path)]) == 2
    assert "not an MVTec-layout folder" in error_line(capsys)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert main(["eval", str(bad), str(tmp_path)]) == 2
    assert "not a readable model file" in error_line(capsys)


def test_predict_writes_overlays(tiny_model, tiny_mvtec, tmp_path, capsys):
    images = sorted((tiny_mvtec / "test/crack").iterdir())
    assert main(["predict", str(tiny_model), *map(str, images), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(images) and all(float(line.split("\t")[1]) == float(line.split("\t")[1]) for line in lines)
    for image in images:
        overlay = cv2.imread(str(tmp_path / "out" / f"{image.stem}_heatmap.png"))
        assert overlay.shape[:2] == cv2.imread(str(image), 0).shape


def test_predict_with_a_corrupt_image_writes_nothing(tiny_model, tiny_mvtec, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    good = next((tiny_mvtec / "test/good").iterdir())
    assert main(["predict", str(tiny_model), str(good), str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "broken.png: not a readable image" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_bench_reports_latency_and_throughput(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_model), "--runs", "2", "--repeats", "2", "--backend", "eager", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["runs"] == 4
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p99"] and result["throughput_img_s"] > 0
    assert "latency p50" in capsys.readouterr().out


def test_export_onnx_checks_onnxruntime(tiny_model, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", str(tiny_model), str(out)]) == 0
    assert out.stat().st_size > 1_000_000 and "reproduces the map" in capsys.readouterr().out
    assert main(["export-onnx", str(tiny_model), str(tmp_path / "strict.onnx"), "--tolerance", "0"]) in (0, 2)


def test_errors_reach_the_user_as_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cli", "predict", str(tmp_path / "none.safetensors"), str(tmp_path / "x.png"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'x.png'}: no such image file"


def test_cuda_asked_without_a_gpu_is_a_clear_error(tiny_model, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", str(tiny_model), "--device", "cuda"]) == 2
    assert "no CUDA GPU is available" in error_line(capsys)
