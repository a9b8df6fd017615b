"""The one frozen record of a frame's inspection, from decision to result subscribers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.history import InspectionRecord


@dataclass(frozen=True)
class InspectionResult(InspectionRecord):
    """An :class:`~inspector.history.InspectionRecord` plus what the pipeline knows about the frame.

    The engine worker builds it and hands it to the history writer as is (it *is* the record the
    history stores; the fields below that the database has no column for stay in memory). Result
    subscribers receive a copy made once it is durable, with ``inspection_id``, the image paths
    and ``journaled`` filled in and the run's counts so far.

    Inherited: ``time`` (UTC datetime of ``host_timestamp``), ``camera_id``, ``frame_id``,
    ``score``, ``decision``, ``threshold``, ``model_version_id``, ``product_id``,
    ``latency_total_ms`` (frame reached the host -> decision made), ``latency_model_ms`` (the
    engine's predict call), ``image`` and ``heatmap``, ``uid``. ``image`` follows the history's
    convention, (H, W) gray or (H, W, 3) **BGR**, uint8/uint16; :attr:`camera_image` gives it in
    the camera's RGB order. ``heatmap`` is the (H, W) float32 anomaly map on the image's own grid
    (also :attr:`anomaly_map`).

    ``camera_timestamp``: the camera's clock (driver units). ``host_timestamp``: ``time.time()``
    when the frame reached the host. ``defect_area_px``: see :class:`~.decision.Decision`.
    ``shadow_score``: the candidate ("shadow") model's score of the same frame, which decides
    nothing; ``None`` without a shadow model. ``error``: why the engine could not score the frame
    (the part then FAILs, fail-safe, with ``score`` 0.0 and no map or model latency).
    ``passed_total``/``failed_total``/``errors_total``: durable results of this pipeline run so
    far, this one included (0 before it is durable).
    """

    camera_timestamp: int | float | None = None
    host_timestamp: float | None = None
    defect_area_px: int | None = None
    shadow_score: float | None = None
    error: str | None = None
    inspection_id: int | None = None
    image_path: str | None = None
    heatmap_path: str | None = None
    journaled: bool = False
    passed_total: int = 0
    failed_total: int = 0
    errors_total: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shadow_score is not None and not math.isfinite(self.shadow_score):
            object.__setattr__(self, "shadow_score", None)
        elif self.shadow_score is not None:
            object.__setattr__(self, "shadow_score", float(self.shadow_score))

    @property
    def anomaly_map(self) -> np.ndarray | None:
        """The (H, W) float32 anomaly map (``None`` for an error result)."""
        return self.heatmap

    @property
    def camera_image(self) -> np.ndarray | None:
        """The frame as the camera delivered it: (H, W) gray or (H, W, 3) RGB."""
        if self.image is not None and self.image.ndim == 3 and self.image.shape[2] == 3:
            return cv2.cvtColor(self.image, cv2.COLOR_BGR2RGB)
        return self.image

    @property
    def durable(self) -> bool:
        """True once the result is committed to the database or fsynced to the spill journal."""
        return self.inspection_id is not None or self.journaled


def history_image(camera_image: np.ndarray) -> np.ndarray:
    """A camera frame (gray or RGB) in the history's channel order (gray or BGR)."""
    if camera_image.ndim == 3 and camera_image.shape[2] == 3:
        return cv2.cvtColor(camera_image, cv2.COLOR_RGB2BGR)
    return camera_image
