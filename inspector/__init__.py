"""inspector: inline visual inspection built on EfficientAD (Batzner et al., WACV 2024)."""

__version__ = "0.1.0"

# Model files record the format they were written in; a reader refuses other majors.
MODEL_FORMAT_VERSION = 1

#: Inference backends of :class:`inspector.engine.Engine` (here so that command lines can offer
#: them without importing torch).
ENGINE_BACKENDS = ("auto", "eager", "eager-bf16", "compile", "onnxruntime")
