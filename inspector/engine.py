"""The inference engine: a model file in, (score, anomaly map) per image out.

One :class:`Engine` holds one model on one device: EfficientAD, or the instant model
(:mod:`inspector.method.instant`), which has the same interface. ``predict`` takes what a camera gives — a numpy
image, (H, W) or (H, W, 3), uint8 or uint16 — and returns a :class:`Prediction` whose map has the
image's own size. On CUDA the networks run in half precision with channels-last memory, batch 1
replays a captured CUDA graph, and host copies go through pinned memory. On the CPU the engine
runs channels-last on a fixed number of threads with the fastest of eager PyTorch (fp32, or bf16
where the CPU has it) and onnxruntime: measured at the first start with a model on a machine and
remembered (:mod:`inspector.backend_cache`), so later starts skip the measurement.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector import ENGINE_BACKENDS
from inspector.backend_cache import REMEASURE_ENV, choice_key, remember_backend, remembered_backend
from inspector.method.efficientad import map_to_input_grid, normalize_input
from inspector.errors import InspectorError
from inspector.image_io import map_to_image, to_square
from inspector.file_digest import file_sha256
from inspector.model_file import load_model
from inspector.onnx_export import export_onnx
from inspector.devices import bf16_supported, pick_device

log = logging.getLogger(__name__)

BACKENDS = ENGINE_BACKENDS
#: fp16 on CUDA and bf16 autocast on the CPU keep image scores within this fraction of the
#: calibrated threshold of their fp32 scores: what matters is whether a part lands on the same
#: side of the threshold, not the error relative to the score. Measured 0.8 % for bf16 on an
#: AVX-512 BF16 CPU with the EfficientAD-S demo model shipped until version 0.1 (the instant model
#: that replaced it is never run in bf16, see _cpu_candidates); tests/test_engine_cuda.py checks fp16.
HALF_SCORE_TOLERANCE = 0.02


@dataclass(frozen=True)
class Prediction:
    """One image's result: the image score (the map's maximum) and the (H, W) float32 map."""

    score: float
    anomaly_map: np.ndarray


def cpu_threads() -> int:
    """Threads for CPU inference: ``OMP_NUM_THREADS`` when set, else the cores this process may run
    on (``taskset``/cgroup pinning counts, which ``os.cpu_count`` ignores)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

class Engine:
    """Loads a model file and scores images on CUDA (when present) or the CPU."""

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        backend: str = "auto",
        half: bool | None = None,
        threads: int | None = None,
        warmup: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise InspectorError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.model_path = Path(model_path)
        model, self.metadata = load_model(self.model_path)
        self.model_sha256 = file_sha256(self.model_path)
        self.device = pick_device(device)
        self.image_size: int = int(self.metadata.get("image_size", 256))
        self.resize_mode: str = self.metadata.get("resize_mode", "resize")
        if self.device.type == "cpu":
            torch.set_num_threads(threads or cpu_threads())
        self.half = self.device.type == "cuda" if half is None else half
        dtype = torch.float16 if self.half else torch.float32
        self.kind: str = self.metadata.get("kind", "efficientad")
        self.model: torch.nn.Module = model.to(self.device, dtype=dtype, memory_format=torch.channels_last).eval()
        for buffer in self.model.buffers():  # statistics stay fp32: quantile gaps are small numbers
            buffer.data = buffer.data.float()
        self._dtype = dtype
        self._graph: _CudaGraph | None = None
        self._ort = None
        self.backend = self._choose_backend(backend)
        if warmup:
            self.warmup()

    # --- public API ------------------------------------------------------------------------------

    def predict(self, image: np.ndarray) -> Prediction:
        """Scores one image: (H, W) or (H, W, 3), uint8 or uint16 -> Prediction with an (H, W) map."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Scores several images in one forward pass; they may differ in size."""
        if len(images) == 0:
            return []
        squares, places = zip(*(to_square(im, self.image_size, self.resize_mode) for im in images))
        maps = self.square_maps(np.stack(squares))
        results = []
        for square_map, place in zip(maps, places):
            full = map_to_image(square_map, place)
            results.append(Prediction(float(full.max()), full))
        return results

    def square_maps(self, squares: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) float32 in [0, 1] -> (N, S, S) float32 anomaly maps on the network's square."""
        maps = self._forward(squares)  # (N, 1, 56, 56) on the device
        grid = map_to_input_grid(maps.float(), (self.image_size, self.image_size))
        return grid[:, 0].cpu().numpy()

    @property
    def precision(self) -> str:
        """What the networks compute in: fp32, fp16 (CUDA) or bf16 (CPU autocast)."""
        return "fp16" if self.half else "bf16" if self.backend == "eager-bf16" else "fp32"

    def warmup(self, runs: int = 2) -> None:
        square = np.zeros((1, self.image_size, self.image_size, 3), np.float32)
        for _ in range(runs):
            self.square_maps(square)

    @property
    def info(self) -> dict[str, Any]:
        return {
            "model": str(self.model_path),
            "model_sha256": self.model_sha256,
            "architecture": self.metadata.get("architecture"),
            "kind": self.kind,
            "device": str(self.device),
            "backend": self.backend,
            "precision": self.precision,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
        }

    # --- backends --------------------------------------------------------------------------------

    def _input(self, squares: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = normalize_input(x).to(self._dtype)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _forward(self, squares: np.ndarray) -> torch.Tensor:
        if self.backend == "onnxruntime":
            x = normalize_input(torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2))
            (out,) = self._ort.run(None, {"image": x.contiguous().numpy()})
            return torch.from_numpy(out)
        if self.backend == "cuda-graph" and len(squares) == 1:
            return self._graph.run(squares)
        # bf16 autocast: 2x faster convolutions on CPUs with AVX-512 BF16; maps stay float32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.backend == "eager-bf16"):
            return self._module(self._input(squares))

    def _choose_backend(self, backend: str) -> str:
        self._module = self.model
        if self.device.type == "cuda":
            if backend == "onnxruntime":
                raise InspectorError("backend onnxruntime runs on the CPU only; use auto, eager or compile on CUDA")
            if backend == "auto":
                self._graph = _CudaGraph(self.model, self.image_size, self._dtype)
                return "cuda-graph"
        if backend == "compile":
            self._module = torch.compile(self.model)
            return "compile"
        if backend == "onnxruntime":
            self._ort = self._onnx_session()
            return "onnxruntime"
        if backend == "eager":
            return "eager"
        if backend == "eager-bf16":
            if not bf16_supported(self.device):
                raise InspectorError("backend eager-bf16 needs a CPU with bfloat16 support (AVX-512 BF16 or AMX)")
            return "eager-bf16"
        return self._auto_cpu_backend()

    def _onnx_session(self):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InspectorError("backend onnxruntime needs the [onnx] extra: pip install 'inspector[onnx]'") from None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(self.model, path, self.image_size)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _cpu_candidates(self) -> list[str]:
        """The CPU backends worth measuring here: bf16 where the CPU computes it natively,
        onnxruntime where it is installed (the optional [onnx] extra: no news when it is not)."""
        candidates = ["eager", "eager-bf16"] if bf16_supported(self.device) else ["eager"]
        if self.kind == "instant":
            # A nearest-neighbour distance is small next to the features it comes from, so bf16's
            # error in the features grows several-fold in the map: scores moved up to 1.9 % of the
            # threshold with the teacher's features and 6 % with Lite2's, against 0.8 % for
            # EfficientAD. Not within HALF_SCORE_TOLERANCE, so never chosen by itself.
            candidates.remove("eager-bf16") if "eager-bf16" in candidates else None
        if importlib.util.find_spec("onnxruntime") is not None:
            candidates.append("onnxruntime")
        else:
            log.debug("onnxruntime is not installed (the [onnx] extra): not measured")
        return candidates

    def _auto_cpu_backend(self) -> str:
        """The fastest CPU backend: remembered from an earlier start with this model on this
        machine (:mod:`inspector.backend_cache`), else measured, and remembered for next time."""
        candidates = self._cpu_candidates()
        key = choice_key(self.model_sha256, candidates, torch.get_num_threads())
        remembered = remembered_backend(key)
        if remembered in candidates:
            try:
                if remembered == "onnxruntime":
                    self._ort = self._onnx_session()
                log.debug("CPU backend %s, as measured earlier on this machine (%s=1 measures again)", remembered, REMEASURE_ENV)
                return remembered
            except Exception as e:  # noqa: BLE001 -- measure instead: a failed export must not stop inspection
                log.info("remembered CPU backend %s is not usable now (%s); measuring again", remembered, e)
        timings = self._measure_cpu_backends(candidates)
        best = min(timings, key=timings.get)
        remember_backend(key, best, timings, self.model_sha256)
        return best

    def _measure_cpu_backends(self, candidates: list[str], runs: int = 3) -> dict[str, float]:
        """Seconds per batch-1 image of each candidate that works here; leaves the onnxruntime
        session in place only if it is the fastest."""
        square = np.zeros((1, self.image_size, self.image_size, 3), np.float32)
        timings = {}
        if "onnxruntime" in candidates:
            try:
                self._ort = self._onnx_session()
            except Exception as e:  # noqa: BLE001 -- a failed export must not stop inspection
                log.info("onnxruntime not used: %s", e)
                candidates = [c for c in candidates if c != "onnxruntime"]
        for name in candidates:
            self.backend = name
            self._forward(square)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                self._forward(square)
                times.append(time.perf_counter() - t)
            timings[name] = float(np.median(times))
        if min(timings, key=timings.get) != "onnxruntime":
            self._ort = None
        log.info("CPU backend %s chosen (%s)", min(timings, key=timings.get), ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in timings.items()))
        return timings


class _CudaGraph:
    """Batch-1 inference replayed from a captured CUDA graph, with pinned host buffers."""

    def __init__(self, model: torch.nn.Module, size: int, dtype: torch.dtype) -> None:
        dev = next(model.parameters()).device
        self.host_in = torch.zeros((1, size, size, 3), dtype=torch.float32).pin_memory()
        self.static_in = torch.zeros((1, 3, size, size), device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm up kernels and the allocator before capture
                model(self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = model(self.static_in)

    def run(self, squares: np.ndarray) -> torch.Tensor:
        self.host_in.copy_(torch.from_numpy(squares))
        x = self.host_in.to(self.static_in.device, non_blocking=True).permute(0, 3, 1, 2)
        self.static_in.copy_(normalize_input(x))
        self.graph.replay()
        return self.static_out.clone()
