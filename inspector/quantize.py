"""The onnxruntime backends of the engine: the fp32 ONNX graph and its int8 version.

Every non-PyTorch backend starts from the same fp32 ONNX export (:func:`build_onnx`). The int8
graph is onnxruntime's static quantisation: QDQ format, per-channel int8 weights, uint8
activations whose ranges are measured on the model's own good images, run through the engine's
own preprocessing. Only convolutions are quantised: the map arithmetic after them
(teacher-student differences, squares, means, the instant model's nearest-neighbour distances) are
small differences of large numbers and stay fp32. EfficientAD's autoencoder stays fp32 too.

Measured on the EfficientAD-S ELPV demo model (100 held-out good and 60 defective cells, 32
calibration cells): quantising the autoencoder's convolutions moved good parts' scores by up to 3x
the threshold; without it, ranges from min/max moved them by up to 9.1 % of the threshold and
ranges clipped at the 99.999th percentile by up to 6.4 % (decisions all the same, image AUROC
-0.3 point either way); keeping the last convolution of teacher and student fp32 as well changed
nothing (the error starts early).

A backend is a :data:`Runner`: normalised images (N, 3, S, S) float32 in, maps (N, 1, h, w) out.
What is built here is cached by :func:`inspector.backend_cache.built_artefact`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from inspector.devices import int8_dot_saturates
from inspector.onnx_export import export_onnx

Runner = Callable[[np.ndarray], np.ndarray]
ONNX_FILE = "model.onnx"
#: Node names (ONNX export of :mod:`inspector.method`) whose convolutions stay fp32 (see above).
FP32_SCOPES = ("/autoencoder/",)
#: Activation ranges end at this percentile of the calibration images' values (see above).
ACTIVATION_PERCENTILE = 99.999
#: Bumped whenever what is built changes, so that older cached builds are not used.
RECIPE_VERSION = 3


def build_onnx(model: torch.nn.Module, folder: Path, image_size: int) -> None:
    export_onnx(model, folder / ONNX_FILE, image_size)


def needs_reduced_range() -> bool:
    """Whether int8 kernels here lack VNNI (:func:`~inspector.devices.int8_dot_saturates`), which
    onnxruntime works around by quantising weights to 7 bits."""
    return int8_dot_saturates()


def build_ort_int8(fp32_folder: Path, folder: Path, calibration: Sequence[np.ndarray]) -> None:
    """Quantises ``fp32_folder``'s graph into ``folder`` with ``calibration`` inputs, each (1, 3, S, S)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.inputs, None)
            return None if x is None else {"image": x}

    prepared = folder / "prepared.onnx"
    quant_pre_process(str(fp32_folder / ONNX_FILE), str(prepared))  # shape inference and folding, as onnxruntime advises
    convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    quantize_static(
        str(prepared), str(folder / ONNX_FILE), Reader(),
        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=needs_reduced_range(),
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": ACTIVATION_PERCENTILE},
        nodes_to_quantize=[n for n in convs if not any(s in n for s in FP32_SCOPES)],
    )
    prepared.unlink()


def ort_runner(folder: Path, threads: int) -> Runner:
    """An onnxruntime CPU session on ``folder``'s graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]
