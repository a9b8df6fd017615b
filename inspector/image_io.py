"""Image I/O and the one preprocessing every image takes before the networks.

Images travel as numpy arrays: (H, W) grayscale or (H, W, 3) RGB, uint8 or uint16. Two ways to
bring a part to the network's 256x256 square:

* ``"resize"`` (the paper's): stretch to 256x256. Right when every part fills the frame the same
  way, as in MVTec AD; a long thin part gets squashed, which the model learns as normal.
* ``"letterbox"``: scale the longer side to 256 and pad the rest with black. Right for long or
  tall parts whose fine defects would be squashed away; the map is cropped back to the part.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from inspector.errors import DataError, ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Above the largest area-scan sensors (~150 MP); decoded as 16-bit RGB it is already 1.2 GB. A
#: small file can claim far more (a "decompression bomb"), so the claim is read before decoding.
MAX_IMAGE_PIXELS = 200_000_000
RESIZE_MODES = ("resize", "letterbox")


def _file_bytes(path: Path, what: str, remedy: str = "") -> np.ndarray:
    """The bytes of an image file about to be decoded as ``what`` ("image", "mask"), ImageError
    where it cannot be: a folder, no file, a header claiming too many pixels, a PNG cut short.
    Read by hand because cv2.imread cannot say *why* it failed."""
    if path.is_dir():  # "no such image file" of a folder that is there reads as a typing error
        raise ImageError(f"{path}: is a folder, not {'an image' if what == 'image' else 'a ' + what + ' image'} file")
    if not path.is_file():
        raise ImageError(f"{path}: no such {what} file")
    data = np.fromfile(path, dtype=np.uint8)
    size = header_size(data[:1 << 16].tobytes())
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"{path}: the {what} claims {size[0]}x{size[1]} pixels, more than the "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels an image may have; not decoded")
    if _png_cut_short(data):
        # libpng would print its own line on stderr above ours: a file cut short (a copy or a
        # save that was killed) is said here once, without decoding.
        raise ImageError(f"{path}: not a readable {what} (a PNG file cut short: it has no end chunk){remedy}")
    return data


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image file as (H, W) or (H, W, 3) RGB, uint8 or uint16; ImageError if unreadable."""
    path = Path(path)
    data = _file_bytes(path, "image")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    try:
        return as_rgb_or_gray(image, bgr=True)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None


def _png_cut_short(data: np.ndarray) -> bool:
    """Whether ``data`` is a PNG file without its closing IEND chunk, i.e. truncated."""
    return data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data.tobytes().rfind(b"IEND") < 0


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG, JPEG, BMP or TIFF file's header states it (``head``: its first
    bytes), None for another format or a header that cannot be read (the decoder then judges)."""
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head.startswith(b"BM"):
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)  # a negative height: rows stored top-down
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(head)
    except struct.error:  # cut short: the decoder says so
        return None
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(head) and head[i] == 0xFF:
        marker, length = head[i + 1], struct.unpack(">H", head[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame, not DHT/JPG/DAC
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", head[4:8])[0]
    count = struct.unpack(order + "H", head[ifd : ifd + 2])[0]
    found: dict[int, int] = {}
    for k in range(count):
        tag, kind = struct.unpack(order + "HH", head[ifd + 2 + 12 * k : ifd + 6 + 12 * k])
        value = head[ifd + 10 + 12 * k : ifd + 14 + 12 * k]
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            found[tag] = struct.unpack(order + "H", value[:2])[0] if kind == 3 else struct.unpack(order + "I", value)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def as_rgb_or_gray(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Checks an array is an image the engine takes, converting BGR(A)/RGBA to RGB."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"image dtype must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = {(3, True): cv2.COLOR_BGR2RGB, (4, True): cv2.COLOR_BGRA2RGB, (4, False): cv2.COLOR_RGBA2RGB}
        if (image.shape[2], bgr) in code:
            image = cv2.cvtColor(image, code[(image.shape[2], bgr)])
    elif image.ndim != 2:
        raise ImageError(f"image shape must be (H, W) or (H, W, 3), got {image.shape}")
    if min(image.shape[:2]) < 8:
        raise ImageError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small")
    return image


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8/uint16 -> (H, W, 3) float32 in [0, 1]."""
    image = as_rgb_or_gray(image)
    scale = 255.0 if image.dtype == np.uint8 else 65535.0
    out = image.astype(np.float32) / scale
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return out


@dataclass(frozen=True)
class Placement:
    """Where the original image sits inside the square network input (for mapping back)."""

    height: int  # original image size
    width: int
    top: int  # region of the square input covered by the image
    left: int
    inner_h: int
    inner_w: int
    size: int


def placement(height: int, width: int, size: int, mode: str) -> Placement:
    if mode == "resize":
        return Placement(height, width, 0, 0, size, size, size)
    if mode == "letterbox":
        scale = size / max(height, width)
        ih, iw = max(1, round(height * scale)), max(1, round(width * scale))
        return Placement(height, width, (size - ih) // 2, (size - iw) // 2, ih, iw, size)
    raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")


def to_square(image: np.ndarray, size: int, mode: str) -> tuple[np.ndarray, Placement]:
    """(H, W[, 3]) uint8/uint16 -> (size, size, 3) float32 in [0, 1], and where the image went."""
    rgb = to_float_rgb(image)
    p = placement(rgb.shape[0], rgb.shape[1], size, mode)
    interp = cv2.INTER_AREA if max(rgb.shape[:2]) > size else cv2.INTER_LINEAR
    inner = cv2.resize(rgb, (p.inner_w, p.inner_h), interpolation=interp)
    if mode == "resize":
        return inner, p
    out = np.zeros((size, size, 3), np.float32)
    out[p.top : p.top + p.inner_h, p.left : p.left + p.inner_w] = inner
    return out, p


def to_tensor(squares: Sequence[np.ndarray]) -> torch.Tensor:
    """List of (S, S, 3) float32 -> (N, 3, S, S) float32, not yet normalised."""
    return torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).contiguous()


def map_to_image(square_map: np.ndarray, p: Placement) -> np.ndarray:
    """(S, S) map on the network's square -> (H, W) map on the original image."""
    inner = square_map[p.top : p.top + p.inner_h, p.left : p.left + p.inner_w]
    return cv2.resize(inner, (p.width, p.height), interpolation=cv2.INTER_LINEAR)


# --- Data folders --------------------------------------------------------------------------------


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def good_training_images(data_dir: str | Path) -> list[Path]:
    """The good images of an MVTec-layout folder (``train/good``) or of a plain folder."""
    data_dir = Path(data_dir)
    mvtec = data_dir / "train" / "good"
    paths = list_images(mvtec if mvtec.is_dir() else data_dir)
    if not paths:
        where = mvtec if mvtec.is_dir() else data_dir
        raise DataError(f"{where}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


@dataclass(frozen=True)
class TestImage:
    path: Path
    defect_type: str  # "good" for defect-free images
    mask_path: Path | None  # None for good images


def mvtec_test_set(data_dir: str | Path) -> list[TestImage]:
    """The test images of an MVTec-layout folder: ``test/<type>/*`` and ``ground_truth/<type>/``."""
    data_dir = Path(data_dir)
    test_dir = data_dir / "test"
    if not test_dir.is_dir():
        raise DataError(f"{data_dir}: not an MVTec-layout folder (no test/ folder)")
    items: list[TestImage] = []
    for type_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        for path in list_images(type_dir):
            mask = None
            if type_dir.name != "good":
                mask = data_dir / "ground_truth" / type_dir.name / f"{path.stem}_mask.png"
                if not mask.is_file():
                    raise DataError(f"{path}: its ground-truth mask {mask} is missing")
            items.append(TestImage(path, type_dir.name, mask))
    if not items:
        raise DataError(f"{test_dir}: no test images found")
    return items


def read_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A 0/255 mask as bool (H, W), resized (nearest) to the image's ``shape`` if needed (None:
    as it is); ImageError for one of another aspect than the image (not its picture)."""
    path = Path(path)
    data = _file_bytes(path, "mask", remedy="; save it again")
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if mask is None:
        raise ImageError(f"{path}: not a readable mask (corrupt, truncated or unsupported format)")
    if shape is not None and mask.shape != shape:
        # A mask of another shape is stretched over the image, which is right only for the same
        # picture at another scale: one of another aspect (the cropped part's mask beside a line
        # camera's frame) would mark defects where there are none, and the pixel metrics say so
        # without a word.
        if abs(mask.shape[1] / mask.shape[0] - shape[1] / shape[0]) > 0.02 * shape[1] / shape[0]:
            raise ImageError(f"{path}: the mask is {mask.shape[1]}x{mask.shape[0]}, its image {shape[1]}x{shape[0]}: "
                             "not the same picture (a mask must have its image's size or at least its shape)")
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127
