"""A framing kept in the model file, so the recipe that trained the model is the one that runs it.

The settings go in the metadata under ``"framing"`` (inside the metadata digest); the reference
image and the don't-care mask are tensors (inside the tensor digest)::

    "framing": {"region": [x, y, w, h], "align": true, "min_quality": 0.35, "max_angle_deg": 15.0,
                "tiles": "auto", "defect_px": 8.0, "reference_size": [w, h], "ignore": true}
    framing.reference  uint8 (H, W) or (H, W, 3)      framing.ignore  uint8 (H, W), 1 = don't care

A region drawn as a polygon adds ``"polygon": [[x, y], ...]`` (its corners in reference pixels);
a framing without one has no such key, so its metadata, digest and training fingerprint are what
they were before polygons were kept.

A file without the key has no framing: the whole frame squeezed into the model's input, as every
model trained before framing existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from inspector.errors import InspectorError, ModelFileError
from inspector.framing.framed import Framing
from inspector.framing.tiles import TILE_MODES

FRAMING_KEY = "framing"
TENSOR_PREFIX = "framing."
REFERENCE = TENSOR_PREFIX + "reference"
IGNORE = TENSOR_PREFIX + "ignore"


def framing_file_parts(framing: Framing) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The metadata entry and the tensors that store ``framing`` in a model file."""
    tensors: dict[str, torch.Tensor] = {}
    size = None
    if framing.reference is not None:
        reference = np.ascontiguousarray(_as_uint8(framing.reference))
        tensors[REFERENCE] = torch.from_numpy(reference)
        size = [int(reference.shape[1]), int(reference.shape[0])]
    if framing.ignore is not None:
        tensors[IGNORE] = torch.from_numpy(np.ascontiguousarray(framing.ignore.astype(np.uint8)))
        size = size or [int(framing.ignore.shape[1]), int(framing.ignore.shape[0])]
    entry = {
        "region": None if framing.region is None else [int(v) for v in framing.region],
        "align": bool(framing.align),
        "min_quality": float(framing.min_quality),
        "max_angle_deg": float(framing.max_angle_deg),
        "tiles": framing.tiles,
        "defect_px": None if framing.defect_px is None else float(framing.defect_px),
        "reference_size": size,
        "ignore": framing.ignore is not None,
    }
    if framing.polygon is not None:  # only then: a rectangle's entry stays as older files have it
        entry["polygon"] = [[float(x), float(y)] for x, y in framing.polygon]
    return {FRAMING_KEY: entry}, tensors


def split_framing_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the model's own tensors, the framing's)."""
    own = {k: v for k, v in tensors.items() if not k.startswith(TENSOR_PREFIX)}
    framing = {k: v for k, v in tensors.items() if k.startswith(TENSOR_PREFIX)}
    return own, framing


def framing_from_file(meta: dict[str, Any], tensors: dict[str, torch.Tensor], where: str = "model file") -> Framing | None:
    """The framing a model file stores (None: it has none); ModelFileError naming what is unusable."""
    entry = meta.get(FRAMING_KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ModelFileError(f"{where}: its framing is not a table of settings")
    try:
        reference = tensors.get(REFERENCE)
        ignore = tensors.get(IGNORE)
        for name in ("align", "ignore"):
            if not isinstance(entry.get(name, False), bool):  # bool("false") would be True
                raise InspectorError(f"{name} {entry.get(name)!r} is not true or false")
        if entry.get("ignore") and ignore is None:
            raise InspectorError("the don't-care mask it names is missing")
        _check_image_tensor(reference, "the reference image", channels=(1, 3), dtypes=(torch.uint8,))
        _check_image_tensor(ignore, "the don't-care mask", channels=(1,), dtypes=(torch.uint8, torch.bool))
        tiles = entry.get("tiles", "auto")
        if not (tiles in TILE_MODES or (isinstance(tiles, int) and not isinstance(tiles, bool) and tiles >= 1)):
            raise InspectorError(f"tiles {tiles!r} is not auto, off or a number")
        region = entry.get("region")
        if region is not None and not (isinstance(region, list) and len(region) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in region)):
            raise InspectorError(f"region {region!r} is not four whole numbers")
        defect_px = entry.get("defect_px")
        for name, value in (("min_quality", entry.get("min_quality", 0.0)), ("max_angle_deg", entry.get("max_angle_deg", 15.0)),
                            ("defect_px", defect_px if defect_px is not None else 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InspectorError(f"{name} {value!r} is not a number")
        framing = Framing(
            region=None if region is None else tuple(region),
            ignore=None if ignore is None else ignore.numpy().astype(bool),
            reference=None if reference is None else reference.numpy(),
            align=bool(entry.get("align", False)),
            min_quality=float(entry.get("min_quality", 0.0)),
            max_angle_deg=float(entry.get("max_angle_deg", 15.0)),
            tiles=tiles,
            defect_px=None if defect_px is None else float(defect_px),
            polygon=_polygon_entry(entry.get("polygon")),
        )
        shape = framing.reference.shape if framing.reference is not None else framing.ignore.shape if framing.ignore is not None else None
        framing.check(shape if shape is not None else (1 << 30, 1 << 30))
        if framing.region is not None or shape is not None:
            # Tiles the region cannot be cut into were refused only as each frame was scored: the
            # line started and FAILed every part with an engine error.
            from inspector.framing.tiles import plan_tiles

            x, y, w, h = framing.region or (0, 0, shape[1], shape[0])
            input_px = meta.get("image_size", 256)
            plan_tiles((w, h), input_px if isinstance(input_px, int) and input_px > 0 else 256, framing.tiles, framing.defect_px)
        if framing.align:
            # What the line's aligner refuses (a reference flat where the region is), refused here
            # with the file's name: it was 'the region of the reference image is featureless' alone.
            from inspector.framing.align import Aligner

            Aligner(framing.reference, framing.region, max_angle_deg=framing.max_angle_deg)
    except InspectorError as e:
        raise ModelFileError(f"{where}: its framing is unusable ({e})") from None
    return framing


def _check_image_tensor(tensor: torch.Tensor | None, what: str, *, channels: tuple[int, ...],
                        dtypes: tuple[torch.dtype, ...]) -> None:
    """InspectorError where a stored image is not what the framing writes: (H, W), or (H, W, C)
    with C in ``channels``, of one of ``dtypes`` (a 1-D tensor ended in a bare IndexError, a
    4-channel or float reference was refused at the line without the file's name, or scored)."""
    if tensor is None:
        return
    shape = tuple(tensor.shape)
    ok_shape = len(shape) == 2 or (len(shape) == 3 and shape[2] in channels and shape[2] != 1)
    if not ok_shape or tensor.dtype not in dtypes or min(shape, default=0) < 1:
        kind = "8-bit grey or RGB" if 3 in channels else "one 8-bit grey channel"
        raise InspectorError(f"{what} is a {'x'.join(map(str, shape)) or 'scalar'} {str(tensor.dtype).removeprefix('torch.')} "
                             f"tensor, not {kind}")


def _polygon_entry(entry: Any) -> tuple[tuple[float, float], ...] | None:
    """A stored polygon as the framing keeps it; InspectorError for one that is no list of corners
    (the rest, :meth:`Framing.check` says)."""
    if entry is None:
        return None
    if not (isinstance(entry, list) and all(isinstance(p, list) and len(p) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in p) for p in entry)):
        raise InspectorError(f"polygon {entry!r} is not a list of x, y corners")
    return tuple((float(x), float(y)) for x, y in entry)


def describe(framing: Framing | None) -> str:
    """One line for people: what of the frame the model inspects."""
    if framing is None:
        return "the whole frame"
    where = ",".join(str(v) for v in framing.region) if framing.region else ""
    if framing.polygon is not None:
        parts = [f"polygon region of {len(framing.polygon)} corners in {where}"]
    else:
        parts = ["region " + where if framing.region else "the whole frame"]
    if framing.ignore is not None:
        parts.append(f"{int(framing.ignore.sum())} don't-care px")
    if framing.align:
        parts.append(f"part found first (NO PART under match {framing.min_quality:g})")
    if framing.tiles != "auto" or framing.defect_px is not None:
        parts.append(f"tiles {framing.tiles}" + (f" for {framing.defect_px:g}-px defects" if framing.defect_px else ""))
    return ", ".join(parts)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """The reference as 8 bits: alignment matches edges, which 8 bits keep."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.clip(np.asarray(image, np.float32) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)


def make_framing(
    reference: np.ndarray,
    *,
    region: tuple[int, int, int, int] | None = None,
    ignore: np.ndarray | None = None,
    align: bool = False,
    min_quality: float | None = None,
    max_angle_deg: float = 15.0,
    tiles: str | int = "auto",
    defect_px: float | None = None,
    input_px: int = 256,
    polygon: Sequence[tuple[float, float]] | None = None,
) -> Framing | None:
    """The framing a technician asked for, checked on the ``reference`` it was drawn on; None
    where it changes nothing (no region, mask or alignment, and the reference needs one tile):
    such a model squeezes the whole frame, as every model before framing did.

    InspectorError, in one line, for what could not work: a region outside the image or too
    small, a mask of another size or covering the whole region, alignment without a region, a
    region the part cannot be found by (too little texture to match), too many tiles. A
    ``polygon`` region comes with its bounding rectangle as ``region`` and its outside in
    ``ignore`` (:func:`calibration.teach.framing.drawn_framing` makes them).
    """
    from inspector.framing.align import Aligner
    from inspector.framing.framed import MIN_QUALITY
    from inspector.framing.tiles import plan_tiles

    if ignore is not None:
        ignore = np.asarray(ignore).astype(bool)
        if ignore.ndim != 2:
            raise InspectorError(f"the don't-care mask must be one grey channel, got shape {ignore.shape}")
    if align and region is None:
        raise InspectorError("alignment needs a region: draw (or give --region) where the part lies in the reference")
    framing = Framing(region=region, ignore=ignore, reference=_as_uint8(reference) if align or region or ignore is not None else None,
                      align=align, min_quality=MIN_QUALITY if min_quality is None else float(min_quality),
                      max_angle_deg=float(max_angle_deg), tiles=tiles, defect_px=defect_px,
                      polygon=_corners(polygon))
    framing.check(reference.shape)
    x, y, w, h = region or (0, 0, reference.shape[1], reference.shape[0])
    plan = plan_tiles((w, h), input_px, tiles, defect_px)  # too many tiles: refused here, not at the line
    _check_defect_shown((w, h), input_px, tiles, defect_px)
    if region is None and ignore is None and not align and plan.count == 1:
        return None
    if align:
        found = Aligner(framing.reference, region, max_angle_deg=framing.max_angle_deg).align(framing.reference)
        if not found.quality >= framing.min_quality:
            raise InspectorError(f"the part cannot be found by its region {x},{y},{w},{h} even in the reference itself "
                                 f"(match {found.quality:.2f}, under {framing.min_quality:g}): draw the region round the "
                                 "whole part, edges included")
    return framing


def _corners(polygon: Sequence[tuple[float, float]] | None) -> tuple[tuple[float, float], ...] | None:
    """``polygon`` as the framing keeps it: a tuple of (x, y) floats."""
    if polygon is None:
        return None
    try:
        return tuple((float(x), float(y)) for x, y in polygon)
    except (TypeError, ValueError):
        raise InspectorError("the region polygon needs at least three corners of finite numbers") from None


def _check_defect_shown(size: tuple[int, int], input_px: int, tiles: str | int, defect_px: float | None) -> None:
    """InspectorError where tiles off or N show the smallest defect under the model's
    :data:`~.tiles.DEFECT_INPUT_PX` and auto tiles would show it larger: only auto tiles are cut
    for the smallest defect, off or N squeeze it as they come, a slip the technician should hear of."""
    from inspector.framing.tiles import DEFECT_INPUT_PX, plan_tiles

    if defect_px is None or tiles == "auto":
        return

    def seen(choice: str | int) -> float:  # the defect's size at the model's input
        side = max(max(bw, bh) for _, _, bw, bh in plan_tiles(size, input_px, choice, defect_px).boxes)
        return defect_px * input_px / side

    try:
        best = seen("auto")
    except InspectorError:  # auto would need too many tiles: off or N is a choice, not a slip
        best = 0.0
    if seen(tiles) < min(DEFECT_INPUT_PX, best) - 1e-6:
        raise InspectorError(f"with tiles {tiles} a {defect_px:g}-px defect is {seen(tiles):.1f} px at the model's "
                             f"input, under the {DEFECT_INPUT_PX:g} px it needs to be found: choose auto tiles")


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` (whole pixels) -> the region; InspectorError naming what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InspectorError(f"a region is X,Y,W,H in whole pixels of the reference image, not {text!r}")
    return values  # type: ignore[return-value]


#: Bytes a training piece (one tile of one frame, at the model's input) takes while the training
#: set is read, per input pixel: float32 RGB kept for every piece, stacked once more, then uint8.
TRAINING_BYTES_PER_PX = 3 * 4 + 3 * 4 + 3


def available_memory_bytes() -> int | None:
    """Memory the system can give a process now (Linux' MemAvailable; None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_training_memory(framing: Framing | None, frame_shape: tuple[int, ...], n_images: int, input_px: int,
                          available: int | None = None) -> None:
    """InspectorError, in one line, where the training pieces ``framing`` cuts from ``n_images``
    frames of ``frame_shape`` would not fit the memory ``available`` (default: what the system
    has now): many tiles a frame times many frames is killed by the system hours later, never
    refused. Nothing is checked where the memory is unknown."""
    from inspector.framing.tiles import plan_tiles

    available = available_memory_bytes() if available is None else available
    if framing is None or available is None:
        return
    x, y, w, h = framing.region or (0, 0, frame_shape[1], frame_shape[0])
    tiles = plan_tiles((w, h), input_px, framing.tiles, framing.defect_px).count
    need = n_images * tiles * input_px * input_px * TRAINING_BYTES_PER_PX
    if need > available:
        raise InspectorError(f"{n_images} training images of {tiles} tile{'s' if tiles != 1 else ''} each would take about "
                             f"{need / 1e9:.1f} GB of memory to train on, more than the {available / 1e9:.1f} GB free here: "
                             "give a larger smallest defect, a smaller region, fewer tiles or fewer images")
