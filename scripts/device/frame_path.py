"""Frame -> decision on the device, in the variants the inference benchmark compares.

A camera frame (uint8, (H, W) or (H, W, 3), in host memory) goes up to the device as uint8 and is
resized (bilinear with antialiasing), normalised and scored there; the decision (score >
threshold) and the score come back to the host; the map stays on the device unless a subscriber
asks for it. :class:`FrameDecider` is that computation as one module, so it can run eagerly, be
captured in a CUDA graph (:class:`GraphedDecider`) or be handed to ``torch.compile``.

The engine (``inspector.engine``) resizes on the host in float32 and uploads float32; this path is
what the benchmark measures against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from inspector.method.efficientad import IMAGENET_MEAN, IMAGENET_STD, map_to_input_grid


class FrameDecider(nn.Module):
    """(N, H, W, C) uint8 frames on the device, C = 1 or 3 -> (scores (N,), decisions (N,), maps
    (N, 1, S, S) on the network's square). The model may be fp16/bf16 and channels-last; the
    normalisation is one multiply-add folded from the ImageNet mean/std and the 1/255 scale."""

    def __init__(self, model: nn.Module, threshold: float, size: int = 256, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.model = model
        self.size = size
        self.dtype = dtype
        self.channels_last = channels_last
        self.threshold = float(threshold)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("scale", 1 / (255 * std))
        self.register_buffer("shift", -torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) / std)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = frames.permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        x = x.expand(-1, 3, -1, -1) * self.scale + self.shift  # a grey frame feeds all three channels
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amap = map_to_input_grid(self.model(x).float(), (self.size, self.size))
        score = amap.amax(dim=(1, 2, 3))
        return score, score > self.threshold, amap


def prepare(model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    """The model on ``device`` in ``dtype`` (statistics buffers kept fp32, as the engine keeps them)."""
    model = model.to(device, dtype=dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for buffer in model.buffers():
        buffer.data = buffer.data.float()
    return model.eval()


def as_nhwc(frame: np.ndarray) -> np.ndarray:
    return frame[None, :, :, None] if frame.ndim == 2 else frame[None]


class EagerDecider:
    """Per frame: upload (pageable, or through a pinned buffer), run the decider, read the
    score and decision back (one synchronising copy)."""

    def __init__(self, decider: FrameDecider, device: torch.device, pinned: bool = False) -> None:
        self.decider, self.device, self.pinned = decider, device, pinned
        self._host: torch.Tensor | None = None

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> tuple[float, bool]:
        nhwc = as_nhwc(frame)
        if self.pinned:
            if self._host is None or self._host.shape != nhwc.shape:
                self._host = torch.empty(nhwc.shape, dtype=torch.uint8).pin_memory()
            self._host.numpy()[...] = nhwc
            x = self._host.to(self.device, non_blocking=True)
        else:
            x = torch.from_numpy(np.ascontiguousarray(nhwc)).to(self.device)
        score, decision, _ = self.decider(x)
        out = torch.stack([score, decision.float()], dim=1).cpu()
        return float(out[0, 0]), bool(out[0, 1])


class GraphedDecider:
    """The whole frame -> decision path in one CUDA graph: pinned host frame -> device copy ->
    decider -> score and decision copied into pinned host memory. Per frame the host copies the
    frame into the pinned buffer, replays the graph and waits for it. ``map_to_host`` adds the
    map's copy back (what a heatmap subscriber costs)."""

    def __init__(self, decider: FrameDecider, frame_shape: Sequence[int], device: torch.device, batch: int = 1,
                 map_to_host: bool = False) -> None:
        shape = (batch, *frame_shape) if len(frame_shape) == 3 else (batch, *frame_shape, 1)
        self.host_in = torch.empty(shape, dtype=torch.uint8).pin_memory()
        self.host_np = self.host_in.numpy()
        self.dev_in = torch.zeros(shape, dtype=torch.uint8, device=device)
        self.host_out = torch.empty((batch, 2), dtype=torch.float32).pin_memory()
        self.host_map = torch.empty((batch, 1, decider.size, decider.size), dtype=torch.float32).pin_memory() if map_to_host else None
        self.decider = decider
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # kernels chosen and memory pooled before the capture
                self._body()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self._body()

    def _body(self) -> None:
        self.dev_in.copy_(self.host_in, non_blocking=True)
        score, decision, amap = self.decider(self.dev_in)
        self.host_out.copy_(torch.stack([score, decision.float()], dim=1), non_blocking=True)
        if self.host_map is not None:
            self.host_map.copy_(amap, non_blocking=True)

    def run(self, frames: np.ndarray) -> np.ndarray:
        """(batch, H, W[, C]) uint8 -> (batch, 2) float32 of score and decision."""
        self.host_np[...] = frames.reshape(self.host_np.shape)
        self.graph.replay()
        torch.cuda.current_stream().synchronize()
        return self.host_out.numpy()

    def __call__(self, frame: np.ndarray) -> tuple[float, bool]:
        out = self.run(as_nhwc(frame))
        return float(out[0, 0]), bool(out[0, 1])


def time_per_call(call: Callable[[np.ndarray], object], frames: Sequence[np.ndarray], runs: int, warmup: int = 10,
                  budget_s: float | None = None) -> dict:
    """Wall-clock milliseconds per call over ``runs`` calls cycling through ``frames`` (fewer if
    ``budget_s`` runs out): p50, p99, mean, and the calls made."""
    for i in range(warmup):
        call(frames[i % len(frames)])
    times = []
    t_end = None if budget_s is None else time.perf_counter() + budget_s
    for i in range(runs):
        t = time.perf_counter()
        call(frames[i % len(frames)])
        times.append((time.perf_counter() - t) * 1e3)
        if t_end is not None and time.perf_counter() > t_end and len(times) >= 5:
            break
    ms = np.array(times)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "mean_ms": round(float(ms.mean()), 4), "calls": int(ms.size)}


def scores_of(call: Callable[[np.ndarray], tuple[float, bool]], frames: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([call(f)[0] for f in frames])
