"""The inference engine: a model file in, (score, anomaly map) per image out.

One :class:`Engine` holds one model on one device: EfficientAD, or the instant model
(:mod:`inspector.method.instant`), which has the same interface. ``predict`` takes what a camera gives — a numpy
image, (H, W) or (H, W, 3), uint8 or uint16 — and returns a :class:`Prediction` whose map has the
image's own size. On CUDA the networks run in half precision where the accuracy gate lets them,
with channels-last memory, batch 1 replays a captured CUDA graph, and host copies go through
pinned memory. On the CPU the engine runs on a fixed number of threads with the fastest of eager
PyTorch (fp32, or bf16 where the CPU has it), onnxruntime (fp32 or int8) and OpenVINO (fp32 or
int8): measured at the first start with a model on a machine and remembered
(:mod:`inspector.backend_cache`), so later starts skip the measurement.

Reduced precision (bf16, fp16, int8) runs only where :mod:`inspector.precision_gate` lets it: on
the model's own images, decisions and scores must stay with fp32's. A backend that fails, or
cannot be checked, gives way to fp32 with a log line; :attr:`Engine.backend_reason` says which
backend runs and why in one line, and :attr:`Engine.gates` holds every gate result.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector import ENGINE_BACKENDS
from inspector.backend_cache import REMEASURE_ENV, built_artefact, choice_key, remember_backend, remembered_choice, software_versions
from inspector.method.efficientad import map_to_input_grid, normalize_input
from inspector.errors import InspectorError
from inspector.image_io import map_to_image, read_image, to_square
from inspector.file_digest import file_sha256
from inspector.framing import FramedScorer
from inspector.framing.recipe import describe as describe_framing
from inspector.model_file import load_framed_model
from inspector.devices import bf16_supported, pick_device
from inspector import precision_gate as gate
from inspector import quantize, quantize_openvino

log = logging.getLogger(__name__)

BACKENDS = ENGINE_BACKENDS
#: What each backend computes in (CUDA's fp16 is ``half``, whatever the backend).
PRECISION = {"eager": "fp32", "compile": "fp32", "cuda-graph": "fp32", "onnxruntime": "fp32", "openvino": "fp32",
             "eager-bf16": "bf16", "onnxruntime-int8": "int8", "openvino-int8": "int8"}
#: Where a reduced-precision backend that fails the accuracy gate gives way to.
FP32_OF = {"eager-bf16": "eager", "onnxruntime-int8": "onnxruntime", "openvino-int8": "openvino"}
#: What a framed model's int8 build calibrates on, part of its cache keys (see Engine._calibrated_on).
FRAMED_CALIBRATION = "calibrated on the framing's cuts"

#: Backends that run a built graph (:mod:`inspector.quantize`) rather than the PyTorch module.
RUNNER_BACKENDS = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")


def tiles_per_pass(kind: str, device_type: str, threads: int) -> int | None:
    """How many of a framed model's tiles go through the networks in one pass: None for all the
    tiles of all the frames together, 1 for one pass each (:class:`~inspector.framing.FramedScorer`
    gives the same map and score either way; only the time differs).

    Measured on this project's 2-core AVX2 CPU (docs/decisions.md, "A frame's tiles: one batch,
    one at a time on one thread"): on two threads, as the line runs there, one batch was never
    slower than a pass per tile, for EfficientAD-S (1.01-1.14x on eager, onnxruntime and OpenVINO)
    nor for the instant model (1.03-1.74x). On one thread EfficientAD-S's batch was the slower
    (0.85-0.98x, up to a fifth more CPU time): with no second thread to share a tile's work, a
    batch most likely only makes its activations outgrow the caches. A GPU is built for batches."""
    if device_type == "cpu" and kind == "efficientad" and threads == 1:
        return 1
    return None


@dataclass(frozen=True)
class Prediction:
    """One image's result: the image score (the map's maximum) and the (H, W) float32 map.

    With a framing (:mod:`inspector.framing`): ``no_part`` when the part was not found (never
    scored: ``score`` 0.0, the map all zero), ``match_quality`` how well it was found (None
    without alignment) and ``outline`` the inspected region's four corners in frame pixels
    ((4, 2) float32, clockwise from the region's top left; None without a region).
    """

    score: float
    anomaly_map: np.ndarray
    no_part: bool = False
    match_quality: float | None = None
    outline: np.ndarray | None = None


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
    """Loads a model file and scores images on CUDA (when present) or the CPU.

    ``gate_images``: the model's own images for the accuracy gate and for int8 calibration; by
    default those its file points to (:func:`inspector.precision_gate.find_gate_images`), if any.
    ``half``: None lets the gate decide fp16 on CUDA; True forces fp16 unchecked; False is fp32.
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        backend: str = "auto",
        half: bool | None = None,
        threads: int | None = None,
        warmup: bool = True,
        gate_images: gate.GateImages | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise InspectorError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.model_path = Path(model_path)
        model, self.metadata, self.framing = load_framed_model(self.model_path)
        self.model_sha256 = file_sha256(self.model_path)
        self.device = pick_device(device)
        self.image_size: int = int(self.metadata.get("image_size", 256))
        self.resize_mode: str = self.metadata.get("resize_mode", "resize")
        if self.device.type == "cpu":
            torch.set_num_threads(threads or cpu_threads())
        self.kind: str = self.metadata.get("kind", "efficientad")
        self.threshold: float | None = self.metadata.get("threshold")
        self.gate_images = gate_images if gate_images is not None else gate.find_gate_images(self.model_path, self.metadata)
        self.gates: dict[str, gate.GateResult] = {}
        self.backend_reason = ""
        self.half, self._dtype = False, torch.float32
        self.model = self._placed(model, torch.float32)
        self._graph: _CudaGraph | None = None
        self._runner: quantize.Runner | None = None
        self._runners: dict[str, quantize.Runner] = {}
        self._gate_set: gate.LoadedGateSet | None = None
        self._reference: dict[str, gate.Scored] = {}
        # The recipe's framing stands in front of the network: region, alignment, tiles. Set before
        # the backend is chosen, so the accuracy gate judges decisions made as the line makes them.
        self._framed = FramedScorer(None, self.framing, input_px=self.image_size, predict_batch=self.predict_squeezed) if self.framing else None
        self.backend = self._choose_backend(backend, half)
        self.tiles_per_pass = tiles_per_pass(self.kind, self.device.type,
                                             torch.get_num_threads() if self.device.type == "cpu" else 0)
        if self._framed is not None:
            self._framed.tiles_per_pass = self.tiles_per_pass
        self._runners, self._gate_set, self._reference = {}, None, {}  # only the chosen runner stays
        if warmup:
            self.warmup()

    # --- public API ------------------------------------------------------------------------------

    def predict(self, image: np.ndarray) -> Prediction:
        """Scores one image: (H, W) or (H, W, 3), uint8 or uint16 -> Prediction with an (H, W) map."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Scores several images; they may differ in size. Without a framing in one forward pass;
        with one, each frame's region tiled as the recipe says, the tiles of all the frames in
        passes of :attr:`tiles_per_pass` (None: one)."""
        if self._framed is None:
            return self.predict_squeezed(images)
        return [Prediction(p.score, p.anomaly_map, p.no_part, p.match_quality, p.outline) for p in self._framed.predict_batch(images)]

    def predict_squeezed(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Each image squeezed whole into the network's input (no framing), in one forward pass."""
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
        """What the networks compute in: fp32, fp16 (CUDA), bf16 (CPU autocast) or int8 (CPU)."""
        return "fp16" if self.half else PRECISION.get(self.backend, "fp32")

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
            "backend_reason": self.backend_reason,
            "gates": {name: result.as_dict() for name, result in self.gates.items()},
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "tiles_per_pass": self.tiles_per_pass,
            "framing": describe_framing(self.framing),
        }

    # --- running ---------------------------------------------------------------------------------

    def _placed(self, model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        model = model.to(self.device, dtype=dtype, memory_format=torch.channels_last).eval()
        for buffer in model.buffers():  # statistics stay fp32: quantile gaps are small numbers
            buffer.data = buffer.data.float()
        return model

    def _input(self, squares: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = normalize_input(x).to(self._dtype)
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def _graph_input(squares: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) in [0, 1] -> the normalised (N, 3, S, S) float32 a built graph takes."""
        return normalize_input(torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2)).contiguous().numpy()

    @torch.inference_mode()
    def _forward(self, squares: np.ndarray) -> torch.Tensor:
        if self._runner is not None:
            return torch.from_numpy(self._runner(self._graph_input(squares)))
        if self.backend == "cuda-graph" and len(squares) == 1:
            return self._graph.run(squares)
        # bf16 autocast: 2x faster convolutions on CPUs with AVX-512 BF16; maps stay float32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.backend == "eager-bf16"):
            return self._module(self._input(squares))

    def _activate(self, name: str) -> None:
        """Makes ``name`` the backend ``_forward`` runs, loading (and building) its graph if it has one."""
        self._module = self.model
        if name in RUNNER_BACKENDS and name not in self._runners:
            self._runners[name] = self._load_runner(name)
        self._runner = self._runners.get(name) if name in RUNNER_BACKENDS else None
        self.backend = name

    # --- choosing a backend ----------------------------------------------------------------------

    def _choose_backend(self, backend: str, half: bool | None) -> str:
        self._module = self.model
        if self.device.type == "cuda":
            return self._choose_cuda_backend(backend, half)
        if backend == "compile":
            self._module = torch.compile(self.model)
            self.backend_reason = "compile (fp32): as asked"
            return "compile"
        if backend == "auto":
            return self._auto_cpu_backend()
        if backend == "eager-bf16" and not bf16_supported(self.device):
            raise InspectorError("backend eager-bf16 needs a CPU with bfloat16 support (AVX-512 BF16 or AMX)")
        if PRECISION[backend] == "fp32":
            self._activate(backend)
            self.backend_reason = f"{backend} (fp32): as asked"
            return backend
        result = self._gate(backend, FP32_OF[backend])
        if result.passed:
            self.backend_reason = f"{backend} ({result.precision}): as asked; accuracy gate: {result.reason}"
            return backend
        fallback = FP32_OF[backend]
        log.warning("backend %s not used (accuracy gate: %s); running %s (fp32) instead", backend, result.reason, fallback)
        self._activate(fallback)
        self.backend_reason = f"{fallback} (fp32): {backend} was asked for; accuracy gate: {result.reason}"
        return fallback

    def _choose_cuda_backend(self, backend: str, half: bool | None) -> str:
        if backend in RUNNER_BACKENDS:
            raise InspectorError(f"backend {backend} runs on the CPU only; use auto, eager or compile on CUDA")
        if half:
            self.model, self.half, self._dtype = self._placed(self.model, torch.float16), True, torch.float16
            why = "fp16 as asked, unchecked by the accuracy gate"
        elif half is None:
            why = self._cuda_half()
        else:
            why = "fp32 as asked"
        if backend == "auto":
            self._graph = _CudaGraph(self.model, self.image_size, self._dtype)
            backend = "cuda-graph"
        elif backend == "compile":
            self._module = torch.compile(self.model)
        self.backend_reason = f"{backend} ({self.precision}): {why}"
        return backend

    def _cuda_half(self) -> str:
        """Switches the model to fp16 if the accuracy gate lets it; returns why it runs as it does."""
        self.backend = "eager"
        why = self._gate_unavailable()
        if why:
            self.gates["cuda-fp16"] = gate.not_eligible("cuda-fp16", "fp16", why)
            log.info("CUDA runs fp32: fp16 is %s", self.gates["cuda-fp16"].reason)
            return f"fp16 {self.gates['cuda-fp16'].reason}"
        fp32_model = self.model
        reference = self._scored()
        self.model, self.half, self._dtype = self._placed(copy.deepcopy(fp32_model), torch.float16), True, torch.float16
        self._module = self.model
        result = self.gates["cuda-fp16"] = gate.judge("cuda-fp16", "fp16", reference, self._scored(), self.threshold,
                                                      self._gate_set.labels, self._gate_set.masks, "eager fp32")
        if result.passed:
            return f"accuracy gate: {result.reason}"
        log.warning("CUDA runs fp32: fp16 not used (accuracy gate: %s)", result.reason)
        self.model, self.half, self._dtype = fp32_model, False, torch.float32
        self._module = self.model
        return f"fp16's accuracy gate: {result.reason}"

    def _cpu_candidates(self) -> list[str]:
        """The CPU backends worth measuring here: bf16 where the CPU computes it natively,
        onnxruntime and OpenVINO where installed (optional extras: no news when they are not)."""
        candidates = ["eager", "eager-bf16"] if bf16_supported(self.device) else ["eager"]
        if importlib.util.find_spec("onnxruntime") is not None:
            candidates += ["onnxruntime", "onnxruntime-int8"]
        else:
            log.debug("onnxruntime is not installed (the [onnx] extra): not measured")
        if quantize_openvino.openvino_installed():
            candidates += ["openvino", "openvino-int8"] if quantize_openvino.nncf_installed() else ["openvino"]
        if self.kind == "instant":
            # Instant models run in fp32 only: both reduced precisions are known to fail the accuracy
            # gate, so not worth their time at start-up (minutes of the teach's first minute).
            # bf16: a nearest-neighbour distance is small next to the features it comes from, so
            # bf16's error in the features grows several-fold in the map: scores moved up to 1.9 %
            # of the threshold with the teacher's features and 6 % with Lite2's, against 0.8 % for
            # EfficientAD. int8 (docs/evidence/int8_cpu.json, the demo's instant model): decisions
            # agreed on 67 % (onnxruntime) and 96 % (OpenVINO) of parts, and OpenVINO's int8 was
            # no faster than its fp32.
            candidates = [c for c in candidates if PRECISION[c] == "fp32"]
        return candidates

    def _auto_cpu_backend(self) -> str:
        """The fastest CPU backend that passes the accuracy gate: remembered from an earlier start
        with this model on this machine (:mod:`inspector.backend_cache`), else measured, gated
        and remembered for next time."""
        candidates = self._cpu_candidates()
        reduced = [c for c in candidates if PRECISION[c] != "fp32"]
        why = self._gate_unavailable() if reduced else None
        if why:
            for name in reduced:
                self.gates[name] = gate.not_eligible(name, PRECISION[name], why)
            log.debug("reduced precision (%s) not eligible for %s: %s", ", ".join(reduced), self.model_path.name, why)
            candidates = [c for c in candidates if c not in reduced]
        key = choice_key(self.model_sha256, candidates, torch.get_num_threads(), self._gate_key() if not why and reduced else ())
        entry = remembered_choice(key)
        if entry and entry["backend"] in candidates:
            try:
                self._activate(entry["backend"])
                self.gates.update({k: gate.GateResult.from_dict(v) for k, v in entry.get("gates", {}).items()})
                self.backend_reason = entry.get("reason") or f"{entry['backend']}: as measured earlier on this machine"
                log.debug("CPU backend %s, as measured earlier on this machine (%s=1 measures again)", entry["backend"], REMEASURE_ENV)
                return entry["backend"]
            except Exception as e:  # noqa: BLE001 -- measure instead: a failed build must not stop inspection
                log.info("remembered CPU backend %s is not usable now (%s); measuring again", entry["backend"], e)
        timings = self._measure_cpu_backends(candidates)
        best = self._pick(timings)
        remember_backend(key, best, timings, self.model_sha256, {k: v.as_dict() for k, v in self.gates.items()}, self.backend_reason)
        self._activate(best)
        return best

    def _pick(self, timings: dict[str, float]) -> str:
        """The fastest fp32 backend, or a reduced-precision one faster still that passes the gate
        (tried fastest first); sets ``backend_reason``."""
        fp32 = min((k for k in timings if PRECISION[k] == "fp32"), key=timings.get)
        ms = lambda name: f"{timings[name] * 1e3:.0f} ms"  # noqa: E731
        failed = []
        for name in sorted((k for k in timings if PRECISION[k] != "fp32"), key=timings.get):
            if timings[name] >= timings[fp32]:
                self.gates[name] = gate.GateResult(name, PRECISION[name], False, f"not checked: no faster than {fp32} fp32 ({ms(name)} vs {ms(fp32)})")
                continue
            result = self._gate(name, fp32)
            if result.passed:
                self.backend_reason = f"{name} ({result.precision}): fastest that passes the accuracy gate, {ms(name)} vs {ms(fp32)} for {fp32} fp32"
                log.info("CPU backend %s chosen (%s); accuracy gate: %s", name, ", ".join(f"{k} {ms(k)}" for k in timings), result.reason)
                return name
            log.warning("CPU backend %s (%s) not used (accuracy gate: %s)", name, ms(name), result.reason)
            failed.append(name)
        self.backend_reason = f"{fp32} (fp32): fastest measured ({ms(fp32)})" + (f"; {', '.join(failed)} failed the accuracy gate" if failed else "")
        ineligible = [g for g in self.gates.values() if g.reason.startswith("not eligible")]
        if ineligible:
            self.backend_reason += f"; reduced precision {ineligible[0].reason}"
        log.info("CPU backend %s chosen (%s)", fp32, ", ".join(f"{k} {ms(k)}" for k in timings))
        return fp32

    def _measure_cpu_backends(self, candidates: list[str], runs: int = 3) -> dict[str, float]:
        """Seconds per batch-1 image of each candidate that works here (a failed build or export
        is logged and leaves the candidate out: it must not stop inspection)."""
        square = np.zeros((1, self.image_size, self.image_size, 3), np.float32)
        timings = {}
        for name in candidates:
            try:
                self._activate(name)
                self._forward(square)
            except Exception as e:  # noqa: BLE001
                log.info("%s not used: %s", name, e)
                continue
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                self._forward(square)
                times.append(time.perf_counter() - t)
            timings[name] = float(np.median(times))
        return timings

    # --- the accuracy gate -----------------------------------------------------------------------

    def _gate_unavailable(self) -> str | None:
        """Why reduced precision cannot be checked for this model, or None if it can."""
        if self.threshold is None:
            return "the model has no calibrated threshold to compare decisions at"
        if self.gate_images is None:
            return "no good images of the model are known (its file names none; `inspector bench --images DIR` gives some)"
        return None

    def _gate_key(self) -> list[Any]:
        """What a remembered gate result depends on besides the model file and the software."""
        return [self.gate_images.digest(), gate.MIN_AGREEMENT, gate.SCORE_TOLERANCE, gate.METRIC_TOLERANCE, quantize.RECIPE_VERSION,
                *self._calibrated_on()]

    def _calibrated_on(self) -> list[str]:
        """For a framed model, what int8 calibrates on (see :meth:`_calibration_inputs`), in the keys of
        its builds and remembered gates: those made when it was calibrated on whole frames squeezed
        are not reused."""
        return [FRAMED_CALIBRATION] if self._framed is not None else []

    def _gate(self, name: str, reference: str) -> gate.GateResult:
        """Runs the gate on ``name`` against the fp32 backend ``reference``; leaves ``name`` active."""
        why = self._gate_unavailable()
        if why:
            result = gate.not_eligible(name, PRECISION[name], why)
        else:
            try:
                if reference not in self._reference:
                    self._activate(reference)
                    self._reference[reference] = self._scored()
                self._activate(name)
                result = gate.judge(name, PRECISION[name], self._reference[reference], self._scored(), self.threshold,
                                    self._gate_set.labels, self._gate_set.masks, f"{reference} fp32")
            except Exception as e:  # noqa: BLE001 -- a backend that cannot be built or run is not used
                result = gate.GateResult(name, PRECISION[name], False, f"failed to build or run: {e}")
        self.gates[name] = result
        return result

    def _scored(self, batch: int = 4) -> gate.Scored:
        """The active backend's scores (and maps, where AU-PRO needs them) on the gate's images."""
        if self._gate_set is None:
            self._gate_set = gate.LoadedGateSet.read(self.gate_images)
        images = self._gate_set.images
        preds = [p for i in range(0, len(images), batch) for p in self.predict_batch(images[i : i + batch])]
        maps = [p.anomaly_map for p in preds] if self._gate_set.masks is not None else None
        return gate.Scored(np.array([p.score for p in preds]), maps)

    # --- built graphs ----------------------------------------------------------------------------

    def _load_runner(self, name: str) -> quantize.Runner:
        threads = torch.get_num_threads()
        fp32 = self._built("onnx", [], lambda folder: quantize.build_onnx(self.model, folder, self.image_size))
        load = quantize.ort_runner if name.startswith("onnxruntime") else quantize_openvino.openvino_runner
        if PRECISION[name] == "fp32":
            return load(fp32, threads)
        why = self._gate_unavailable()
        if why:
            raise InspectorError(f"{name} needs the model's good images to calibrate on: {why}")
        build = quantize.build_ort_int8 if name == "onnxruntime-int8" else quantize_openvino.build_openvino_int8
        key = [self.gate_images.digest(), quantize.needs_reduced_range(), *self._calibrated_on()]
        return load(self._built(name, key, lambda folder: build(fp32, folder, self._calibration_inputs())), threads)

    def _built(self, name: str, key: list[Any], build: Callable[[Path], None]) -> Path:
        """The cached build of ``name`` for this model file; built for this start only where the
        data folder cannot be written."""
        digest = hashlib.sha256(json.dumps([quantize.RECIPE_VERSION, software_versions(), self.image_size, *key]).encode()).hexdigest()
        try:
            return built_artefact(self.model_sha256, name, digest, build)
        except OSError as e:
            log.info("%s not cached (%s); built for this start only", name, e)
            folder = Path(tempfile.mkdtemp(prefix=f"inspector-{name}-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            build(folder)
            return folder

    def _calibration_inputs(self) -> list[np.ndarray]:
        """The int8 calibration inputs, each (1, 3, S, S) as the built graph takes it: what the
        network will be shown. Without a framing, the good images squeezed whole; with one, their
        cuts as :meth:`predict` makes them (:meth:`FramedScorer.cuts`: the part found, its region
        cut and tiled; none where the part is not found), at most
        :data:`~inspector.precision_gate.QUANTISE_IMAGES` of them spread over the images, so the
        activation ranges are those of regions and tiles at their own scale, not of whole frames."""
        paths = self.gate_images.calibration_set()
        images = [read_image(p) for p in paths]
        if self._framed is not None:
            cuts = [cut for image in images for cut in self._framed.cuts(image)]
            if not cuts:
                raise InspectorError(f"int8 cannot be calibrated: the part was not found in any of the {len(paths)} "
                                     f"calibration images of {self.gate_images.source}")
            images = gate.thinned(cuts, gate.QUANTISE_IMAGES)
            log.info("calibrating int8 on %d cuts (region, tiles) of %d good images of %s", len(images), len(paths),
                     self.gate_images.source)
        else:
            log.info("calibrating int8 on %d good images of %s", len(paths), self.gate_images.source)
        return [self._graph_input(to_square(image, self.image_size, self.resize_mode)[0][None]) for image in images]


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
