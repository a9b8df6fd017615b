"""ONNX export of a trained model, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from inspector.errors import InspectorError
from inspector.model_file import atomic_write, load_model


def export_onnx(model: torch.nn.Module, path: str | Path, image_size: int = 256) -> None:
    """Writes normalised image (N, 3, S, S) -> combined map (N, 1, S/4-8, S/4-8) as ONNX, batch dynamic.

    The model is exported from a float32 CPU copy; ``model`` itself is left as it was.
    """
    import copy

    model = copy.deepcopy(model).float().cpu().eval()
    dummy = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["image"],
            output_names=["anomaly_map"],
            dynamic_axes={"image": {0: "batch"}, "anomaly_map": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def export_and_check(model_path: str | Path, out: str | Path, tolerance: float = 1e-3, samples: int = 4) -> float:
    """Exports, runs onnxruntime and PyTorch on the same inputs, and returns the largest map
    difference; InspectorError (and no file left) if it exceeds ``tolerance``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InspectorError("export-onnx needs the [onnx] extra: pip install 'inspector[onnx]'") from None
    model, meta = load_model(model_path)
    size = int(meta.get("image_size", 256))
    worst = {}

    def write_and_check(tmp: str) -> None:
        export_onnx(model, tmp, size)
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        x = torch.randn(samples, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        worst["diff"] = float(np.abs(got - expected).max())
        if not worst["diff"] <= tolerance:
            raise InspectorError(f"onnxruntime's map differs from PyTorch's by {worst['diff']:.2e} (> {tolerance:g}); no file written")

    atomic_write(out, write_and_check)
    return worst["diff"]
