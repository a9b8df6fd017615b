"""The OpenVINO backends of the engine (PyPI ``openvino``; int8 also needs ``nncf``).

``openvino`` runs the fp32 ONNX graph of :mod:`inspector.quantize`; ``openvino-int8`` is NNCF's
post-training quantisation of it, calibrated on the model's own good images and restricted, as
onnxruntime's is, to the convolutions outside :data:`inspector.quantize.FP32_SCOPES`. Activation
ranges are the calibration images' min/max, and NNCF's overflow fix (7-bit first-layer weights,
for AVX2's saturating int8 dot product) only where the CPU lacks VNNI. On the EfficientAD-S ELPV
demo model (100 held-out good and 60 defective cells) NNCF's defaults (ranges from the mean of
per-image min/max, the overflow fix) moved scores by up to 31 % of the threshold; these settings
by up to 4.9 %, with the same decisions and image AUROC. Both are
compiled with the fp32 inference precision hint: on CPUs with AVX-512 BF16 or AMX, OpenVINO's
default would silently compute in bf16, a reduced precision the accuracy gate has not checked.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspector.quantize import FP32_SCOPES, ONNX_FILE, Runner

IR_FILE = "model.xml"  # with model.bin beside it


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def nncf_installed() -> bool:
    return importlib.util.find_spec("nncf") is not None


CALIBRATION_FILE = "calibration.npy"


def build_openvino_int8(fp32_folder: Path, folder: Path, calibration: Sequence[np.ndarray]) -> None:
    """Quantises ``fp32_folder``'s ONNX graph with NNCF into an OpenVINO IR in ``folder``.

    NNCF runs in a child process: it makes and drops OpenVINO Cores of its own, and a dropped Core
    leaves the process to die on its next SIGINT (see :func:`_core`); a line or a teach session
    must never carry that risk. The calibration inputs travel as one .npy file.
    """
    import subprocess
    import sys

    from inspector.errors import InspectorError

    np.save(folder / CALIBRATION_FILE, np.stack([np.asarray(c, np.float32) for c in calibration]), allow_pickle=False)
    try:
        done = subprocess.run([sys.executable, "-m", "inspector.quantize_openvino", str(fp32_folder), str(folder)],
                              capture_output=True, text=True)
    finally:
        (folder / CALIBRATION_FILE).unlink(missing_ok=True)
    if done.returncode != 0 or not (folder / IR_FILE).is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InspectorError(f"OpenVINO int8 quantisation failed (exit {done.returncode}): {last}")


def _quantise(fp32_folder: Path, folder: Path) -> None:
    """NNCF's post-training quantisation (the child process of :func:`build_openvino_int8`)."""
    import logging

    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from inspector.quantize import needs_reduced_range

    logging.getLogger("nncf").setLevel(logging.WARNING)  # one INFO line per node otherwise
    model = ov.Core().read_model(str(fp32_folder / ONNX_FILE))
    kept = sorted({op.get_type_name() for op in model.get_ops()} - {"Convolution", "GroupConvolution"})
    scope = nncf.IgnoredScope(types=kept, patterns=[f".*{s}.*" for s in FP32_SCOPES], validate=False)
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        overflow_fix=OverflowFix.FIRST_LAYER if needs_reduced_range() else OverflowFix.DISABLE,
    )
    calibration = list(np.load(folder / CALIBRATION_FILE, allow_pickle=False))
    quantised = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration), ignored_scope=scope,
                              advanced_parameters=advanced)
    ov.save_model(quantised, str(folder / IR_FILE))


@functools.cache
def _core():
    """One OpenVINO Core for the process's lifetime. A Core that is garbage-collected unloads its
    CPU plugin, and the process then died (SIGSEGV) on its next SIGINT: a Ctrl-C, or the graceful
    stop of ``inspector run``. Kept, the plugin stays loaded."""
    import openvino as ov

    return ov.Core()


def openvino_runner(folder: Path, threads: int) -> Runner:
    """A compiled OpenVINO CPU model of ``folder``'s IR, or of its ONNX graph where it has no IR."""
    core = _core()
    path = folder / IR_FILE if (folder / IR_FILE).is_file() else folder / ONNX_FILE
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    # Calling the compiled model uses its one shared infer request, which refuses a second caller
    # while busy ("Infer Request is busy"): an engine called from two threads (a line and a
    # shadow comparison, several cameras) must queue instead of losing frames.
    lock = threading.Lock()

    def run(x):
        with lock:
            return compiled(x)[0]

    return run


if __name__ == "__main__":
    import sys

    _quantise(Path(sys.argv[1]), Path(sys.argv[2]))
