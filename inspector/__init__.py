"""inspector: inline visual inspection built on EfficientAD (Batzner et al., WACV 2024) -- the core.

The core imports nothing of the packages above it (drivers, calibration, demo, ui, launcher,
cli), no Qt and no argparse; ``lint-imports`` checks that in CI. Its rooms:

``method/``       the paper: networks, the method's functions, training, teacher distillation
``engine``        a model file -> score and anomaly map per image, on CUDA or the CPU
``model_file``    safetensors + JSON metadata, with a digest; never unpickled
``frames``        what the line needs of a camera (Frame, TriggerMode, FrameSource)
``line/``         camera -> engine -> decision -> history -> subscribers; the rule, drift, building a line
``history/``      the database, the durable writer, the image store, migrations
``recipes``       products and their active model, threshold and camera settings
``roles``         who may do what
``precision_gate``  whether a reduced-precision backend (int8, bf16, fp16) may run a model
``quantize``, ``quantize_openvino``  the engine's onnxruntime and OpenVINO backends, fp32 and int8
``image_io``, ``overlay``, ``ad_metrics``, ``evaluate``, ``engine_bench``, ``onnx_export``, ``devices``
"""

from pathlib import Path

__version__ = "0.1.0"

#: What ships inside the package: the distilled teachers (``weights/``), the natural images of the
#: penalty loss and the demo model (``assets/``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"

# Model files record the format they were written in; a reader refuses other majors.
MODEL_FORMAT_VERSION = 1

#: Inference backends of :class:`inspector.engine.Engine` (here so that command lines can offer
#: them without importing torch).
ENGINE_BACKENDS = ("auto", "eager", "eager-bf16", "compile", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
