"""The `inspector` command: each engine command's happy path and its bad-input errors."""

import json
import shlex
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

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


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch):
    """The engine remembers its CPU backend choice in the data folder: a test's own, not the user's."""
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))


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


def train_args(data, out, natural_dir, *extra) -> list[str]:
    return ["train", str(data), "--out", str(out), "--teacher", "random", "--penalty-dir", str(natural_dir), "--device", "cpu", *extra]


def test_train_on_a_cpu_without_iterations_picks_the_quick_mode(tiny_mvtec, natural_dir, tmp_path, capsys, monkeypatch):
    """The paper's 70,000 iterations take days on a CPU: its default is the time-fitted quick mode
    (the step time is pinned here so that two iterations fit the budget)."""
    import inspector.method.training as training
    from inspector.method.modes import QUICK_TRAIN_S

    monkeypatch.setattr(training, "estimate_step_seconds", lambda *a, **k: training.BUDGET_MARGIN * QUICK_TRAIN_S / 2)
    out = tmp_path / "m.safetensors"
    assert main(train_args(tiny_mvtec, out, natural_dir)) == 0
    assert "2 iterations of the short recipe, quick mode" in capsys.readouterr().out
    from inspector.model_file import load_model

    assert load_model(out)[1]["iterations"] == 2
    assert training.default_mode("cpu") == "quick"
    monkeypatch.setattr(training, "pick_device", lambda device: torch.device("cuda"))
    assert training.default_mode("auto") == "full"


def help_text(capsys, command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_train_and_predict_help_state_each_default(capsys):
    from inspector.overlay import DEFAULT_VMAX

    text = help_text(capsys, "train")
    for default in ("(default: quick on a CPU, full on a CUDA GPU)", "(default: as --mode says)", "(default: s)",
                    "(default: resize)", "(default: 42)", "(default: the shipped teacher)", "(default: CUDA when present)"):
        assert default in text
    assert f"{DEFAULT_VMAX} for an uncalibrated model" in help_text(capsys, "predict")


def test_a_long_run_asks_first_at_a_terminal(tiny_mvtec, natural_dir, tmp_path, capsys, monkeypatch):
    import cli.main as cli_main
    import inspector.method.training as training

    monkeypatch.setattr(training, "ESTIMATE_FROM_ITERATIONS", 1)
    monkeypatch.setattr(training, "estimate_step_seconds", lambda *a, **k: 3600.0)  # 2 iterations: about 2 h
    monkeypatch.setattr(training, "short_step", lambda *a, **k: pytest.fail("a declined run trained"))
    monkeypatch.setattr(cli_main, "interactive", lambda: True)
    asked = []
    monkeypatch.setattr("builtins.input", lambda question: asked.append(question) or "n")
    out = tmp_path / "m.safetensors"
    assert main(train_args(tiny_mvtec, out, natural_dir, "--iterations", "2")) == 1
    assert len(asked) == 1 and "2 iterations on cpu take about 2 h 00 min" in asked[0]
    assert "training not started" in capsys.readouterr().err and not out.exists()

    question = cli_main.LongRunQuestion(ask=lambda q: "y")
    assert question.confirm(training.TrainPlan(70_000, 0, 7.0, "cpu")) and not question.declined
    short = cli_main.LongRunQuestion(ask=lambda q: pytest.fail("asked about a short run"))
    assert short.confirm(training.TrainPlan(70_000, 69_900, 7.0, "cpu"))  # a resumed run: 100 left


def test_ctrl_c_keeps_a_checkpoint_and_prints_the_command_that_resumes(tiny_mvtec, natural_dir, tmp_path, capsys, monkeypatch):
    """The first Ctrl-C stops training after the iteration in progress; what was kept and the
    command that continues are printed, and that command finishes the run."""
    import signal

    import cli.main as cli_main
    import inspector.method.training as training

    monkeypatch.setattr(cli_main, "interactive", lambda: pytest.fail("asked whether a terminal is there with --yes"))
    real_step, steps = training.short_step, []  # 3 iterations: the short recipe

    def step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            signal.raise_signal(signal.SIGINT)  # as a user pressing Ctrl-C during the second iteration
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "short_step", step)
    out = tmp_path / "m.safetensors"
    argv = train_args(tiny_mvtec, out, natural_dir, "--iterations", "3", "--yes", "--no-resume")
    handler = signal.getsignal(signal.SIGINT)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"the checkpoint {out}.ckpt keeps iteration 2 of 3" in err and not out.exists()
    resume = err.strip().splitlines()[-1].strip()
    assert resume == "inspector " + shlex.join(a for a in argv if a != "--no-resume")
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C means what it meant before

    steps.clear()
    assert main(shlex.split(resume)[1:]) == 0
    assert len(steps) == 1 and out.is_file() and not (tmp_path / "m.safetensors.ckpt").exists()


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


def test_train_checks_where_the_model_goes_before_any_work(tmp_path, capsys):
    """``--out`` naming a folder, a path through a file or a place that takes no file was found
    only when the trained model was written, after the whole training. The data folder here does
    not exist: the refusal is about ``--out``, so it came first."""
    missing = str(tmp_path / "no-such-data")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for out, words in [(tmp_path, "is a folder; give the model file's name"),
                       (a_file / "m.safetensors", "is a file, not a folder"),
                       (tmp_path / "new" / "sub" / "m.safetensors", None),  # made when the model is written
                       ("/proc/m.safetensors", "cannot be written")]:
        status = main(["train", missing, "--out", str(out)])
        line = error_line(capsys)
        assert status == 2
        if words is None:
            assert "no-such-data" in line and not (tmp_path / "new").exists()
        else:
            assert words in line and "no-such-data" not in line, line


def test_a_failed_final_save_keeps_the_training_and_the_same_command_writes_the_model(tiny_mvtec, natural_dir, tmp_path, capsys, monkeypatch):
    """The checkpoint was removed when the last iteration ended, before the model was written: a
    full disk then lost the whole training. It is removed only once the model file is durable,
    and the same command writes the model from it without training again."""
    import errno
    from pathlib import Path

    import inspector.method.training as training

    out = tmp_path / "m.safetensors"
    real_write_bytes = Path.write_bytes

    def full_for_the_model(self: Path, data: bytes) -> int:
        if self.name.startswith(".m.safetensors.") and not self.name.startswith(".m.safetensors.ckpt."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_for_the_model)
    argv = train_args(tiny_mvtec, out, natural_dir, "--iterations", "2", "--yes")
    assert main(argv) == 2
    line = error_line(capsys)
    assert "not written: no space left on the disk" in line and f"the training is kept in {out}.ckpt" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors.ckpt"]

    monkeypatch.setattr(Path, "write_bytes", real_write_bytes)
    monkeypatch.setattr(training, "short_step", lambda *a, **k: pytest.fail("trained again"))
    assert main(argv) == 0
    assert out.is_file() and not (tmp_path / "m.safetensors.ckpt").exists()
    assert "model written to" in capsys.readouterr().out


def test_eval_prints_a_table_and_writes_json(tiny_model, tiny_mvtec, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["eval", str(tiny_model), str(tiny_mvtec), "--json", str(report), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "image AUROC" in printed and "pass @1% FR" in printed and "pass @5% FR" in printed
    result = json.loads(report.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "pass_at_1pct_fr", "pass_at_5pct_fr"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["per_type"]) == {"crack", "uneven"}
    crack, uneven = result["per_type"]["crack"], result["per_type"]["uneven"]
    assert all(0.0 <= crack[key] <= 1.0 for key in ("image_auroc", "pixel_auroc", "aupro"))
    # "uneven"'s only image has an empty mask: its image AUROC is defined, its pixel metrics have
    # no defect pixel to measure and say so (NaN, shown as n/a) instead of breaking the run.
    assert 0.0 <= uneven["image_auroc"] <= 1.0
    assert uneven["pixel_auroc"] is None or uneven["pixel_auroc"] != uneven["pixel_auroc"]


def test_eval_bad_inputs(tiny_model, tmp_path, capsys):
    assert main(["eval", str(tiny_model), str(tmp_path)]) == 2
    assert "not an MVTec-layout folder" in error_line(capsys)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert main(["eval", str(bad), str(tmp_path)]) == 2
    assert "not a readable model file" in error_line(capsys)


def predict_lines(capsys, *argv) -> list[str]:
    assert main(["predict", *map(str, argv), "--device", "cpu", "--backend", "eager"]) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_predict_prints_verdicts_against_the_calibrated_threshold(tiny_model, tiny_mvtec, tmp_path, capsys):
    from inspector.model_file import load_model, save_model
    from inspector.overlay import VERDICT_RGB

    images = sorted((tiny_mvtec / "test/crack").iterdir()) + sorted((tiny_mvtec / "test/good").iterdir())[:2]
    lines = predict_lines(capsys, tiny_model, *images, "--out", tmp_path / "raw")
    assert lines[0].endswith("(EfficientAD-S), not calibrated: scores only, no PASS/FAIL (`inspector calibrate` sets a threshold)")
    assert lines[2].split() == ["score", "verdict", "image"]
    rows = [line.split(maxsplit=2) for line in lines[3:]]
    assert [r[2] for r in rows] == [str(p) for p in images] and {r[1] for r in rows} == {"-"}
    scores = [float(r[0]) for r in rows]

    model, meta = load_model(tiny_model)
    calibrated = tmp_path / "calibrated.safetensors"
    threshold = float(np.median(scores))
    save_model(calibrated, model, {**meta, "threshold": threshold})
    lines = predict_lines(capsys, calibrated, *images, "--out", tmp_path / "out")
    assert f"threshold {threshold:.4g}" in lines[0]
    assert f"colours 0 .. {2 * threshold:.4g} (threshold mid-scale)" in lines[1]
    verdicts = [line.split(maxsplit=2)[1] for line in lines[3:3 + len(images)]]
    assert verdicts == ["FAIL" if s > threshold else "PASS" for s in scores]
    assert lines[-1] == f"{len(images)} images: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL"
    for image, verdict in zip(images, verdicts):
        picture = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / f"{image.stem}_heatmap.png")), cv2.COLOR_BGR2RGB)
        h, w = cv2.imread(str(image), 0).shape
        assert picture.shape[0] > h and picture.shape[1] > w  # a banner above, a colour bar beside
        assert tuple(picture[1, 1]) == VERDICT_RGB[verdict]


def test_predict_scales_to_an_explicit_vmax(tiny_model, tiny_mvtec, tmp_path, capsys):
    image = next((tiny_mvtec / "test/good").iterdir())
    lines = predict_lines(capsys, tiny_model, image, "--out", tmp_path, "--vmax", "0.25")
    assert "colours 0 .. 0.25" in lines[1] and (tmp_path / f"{image.stem}_heatmap.png").is_file()


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


def test_export_onnx_refuses_an_export_that_differs_and_leaves_no_file(tiny_model, tmp_path, capsys, monkeypatch):
    import onnxruntime

    real_run = onnxruntime.InferenceSession.run
    # As if the exported graph computed something else: every map value 0.01 off.
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", lambda self, *a, **k: [o + 0.01 for o in real_run(self, *a, **k)])
    out = tmp_path / "off.onnx"
    assert main(["export-onnx", str(tiny_model), str(out)]) == 2
    assert "differs from PyTorch's by 1.00e-02" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


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


def test_numbers_that_make_no_sense_are_refused_before_any_work(tiny_model, tiny_mvtec, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    for argv in (["train", str(tiny_mvtec), "--out", str(out), "--iterations", "0"],
                 ["train", str(tiny_mvtec), "--out", str(out), "--iterations", "-5"],
                 ["bench", str(tiny_model), "--runs", "0"],
                 ["bench", str(tiny_model), "--repeats", "0"],
                 ["bench", str(tiny_model), "--batch", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_predict_keeps_one_overlay_per_image_and_wants_a_folder(tiny_model, tiny_mvtec, tmp_path, capsys):
    image = next((tiny_mvtec / "train" / "good").iterdir())
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(image, tmp_path / folder / "part.png")
    out = tmp_path / "out"
    assert main(["predict", str(tiny_model), str(tmp_path / "a/part.png"), str(tmp_path / "b/part.png"),
                 "--out", str(out), "--device", "cpu", "--backend", "eager"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_part_heatmap.png", "b_part_heatmap.png"]
    a_file = tmp_path / "a" / "part.png"
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(tiny_model), str(a_file), "--out", str(a_file)])
    assert exit_.value.code == 2 and "is a file; give a folder" in capsys.readouterr().err


def test_sigterm_stops_training_as_gracefully_as_ctrl_c():
    """systemd, docker stop and a shutdown send SIGTERM: the first asks for a stop after the
    iteration in progress (which keeps a checkpoint), like Ctrl-C; handlers are put back after."""
    import os
    import signal

    from cli.main import StopOnCtrlC

    before = signal.getsignal(signal.SIGTERM)
    stop = StopOnCtrlC()
    with stop.installed():
        stop.on_progress(object())  # training is under way
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.wait(5.0)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)  # a second one stops at once
    assert signal.getsignal(signal.SIGTERM) is before
