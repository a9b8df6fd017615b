"""Camera drivers: one small interface, chosen by one string.

Camera URIs understood by :func:`open_camera`::

    basler://SERIAL                      a Basler camera by serial number (pypylon)
    basler://emulated                    the first camera of pylon's emulator (sets PYLON_CAMEMU=1
                                         unless it is set already)
    basler://emulated?images=/path       the emulator sending the images of a folder instead of its
                                         test pattern
    folder:///path/to/images?fps=10&loop=1
                                         replay a folder of images (png, jpg, jpeg, bmp, tif, tiff)
                                         in name order; fps=0 replays as fast as grab() asks;
                                         loop=1 starts over after the last image
    opencv://0                           a USB/V4L2 device by index (OpenCV)
    file:///path/video.mp4?realtime=1&loop=0
                                         a video file (OpenCV); realtime=0 plays as fast as grab()
                                         asks instead of at the file's own frame rate
    rtsp://..., rtsps://..., http://..., https://...
                                         a network stream, handed to OpenCV unchanged

Defaults: fps=10, loop=0, realtime=1. A relative path may be written ``folder://images``.

Every camera follows :class:`Camera`::

    cam = open_camera("folder:///data/good?fps=5")
    cam.open()
    cam.configure(exposure_us=2000, roi=(0, 0, 640, 480))
    cam.start(TriggerMode.SOFTWARE)          # live=True for a latest-frame-only live view
    cam.trigger()
    frame = cam.grab(timeout_s=1.0)          # Frame or None
    cam.stop(); cam.close()

pypylon is imported only when a Basler camera is opened. A camera is the core's
:class:`inspector.frames.FrameSource` (``Frame`` and ``TriggerMode`` are the core's, re-exported here):
the line runs on it without importing this package.
"""

from __future__ import annotations

import math
import urllib.parse

from drivers.base import Camera, CameraStats, Frame, Settings, TriggerMode
from drivers.basler import BaslerCamera  # pypylon itself is imported only by BaslerCamera.open()
from drivers.folder import FolderCamera
from drivers.opencv import OpenCVCamera
from inspector.errors import CameraError

__all__ = [
    "Camera",
    "CameraStats",
    "Frame",
    "Settings",
    "TriggerMode",
    "BaslerCamera",
    "FolderCamera",
    "OpenCVCamera",
    "open_camera",
    "EXAMPLE_URIS",
]

EXAMPLE_URIS = "basler://SERIAL, basler://emulated, folder:///path?fps=10&loop=1, opencv://0, file:///video.mp4, rtsp://host/stream"
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def open_camera(uri: str) -> Camera:
    """The camera that ``uri`` names, not yet opened (call ``open()``; it checks the device).

    Raises CameraError with one line naming the problem for a malformed URI, an unknown scheme
    or an unknown or bad query parameter.
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise CameraError(f"camera {uri!r} is not a camera URI; expected one of: {EXAMPLE_URIS}")
    try:
        parts = urllib.parse.urlsplit(uri.strip())
    except ValueError as exc:
        raise CameraError(f"camera {uri!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()

    if scheme in STREAM_SCHEMES:
        return OpenCVCamera(uri.strip(), camera_id=uri)
    if scheme == "basler":
        params = _params(uri, parts, allowed=("images",))
        if not parts.netloc or parts.path not in ("", "/"):
            raise CameraError(f"camera {uri!r}: write basler://SERIAL or basler://emulated")
        serial = urllib.parse.unquote(parts.netloc)
        serial = None if serial.lower() == "emulated" else serial
        if "images" in params and serial is not None:
            raise CameraError(f"camera {uri!r}: images= works only with basler://emulated")
        return BaslerCamera(serial, camera_id=uri, emulator_images=params.get("images") or None)
    if scheme == "folder":
        params = _params(uri, parts, allowed=("fps", "loop"))
        return FolderCamera(
            _path(uri, parts, "image folder"),
            fps=_number(uri, params, "fps", 10.0),
            loop=_flag(uri, params, "loop", False),
            camera_id=uri,
        )
    if scheme == "file":
        params = _params(uri, parts, allowed=("realtime", "loop"))
        return OpenCVCamera(
            _path(uri, parts, "video file"),
            realtime=_flag(uri, params, "realtime", True),
            loop=_flag(uri, params, "loop", False),
            camera_id=uri,
        )
    if scheme == "opencv":
        _params(uri, parts, allowed=())
        if not parts.netloc.isdigit() or parts.path not in ("", "/"):
            raise CameraError(f"camera {uri!r}: write opencv://N with N the device index, e.g. opencv://0")
        return OpenCVCamera(int(parts.netloc), camera_id=uri)
    raise CameraError(f"camera {uri!r}: unknown scheme {parts.scheme!r}; expected one of: {EXAMPLE_URIS}")


def _params(uri: str, parts: urllib.parse.SplitResult, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each given once, refusing names the scheme does not know."""
    params = {}
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            known = f"; known: {', '.join(allowed)}" if allowed else "; it takes none"
            raise CameraError(f"camera {uri!r}: unknown parameter {name!r}{known}")
        if name in params:
            raise CameraError(f"camera {uri!r}: parameter {name!r} given twice")
        params[name] = value
    return params


def _path(uri: str, parts: urllib.parse.SplitResult, what: str) -> str:
    # folder:///abs/path has an empty netloc; folder://rel/path puts "rel" there.
    path = urllib.parse.unquote(parts.netloc + parts.path)
    if not path:
        raise CameraError(f"camera {uri!r}: the URI names no {what}")
    return path


def _number(uri: str, params: dict[str, str], name: str, default: float) -> float:
    if name not in params:
        return default
    try:
        value = float(params[name])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise CameraError(f"camera {uri!r}: {name}={params[name]!r} is not a number >= 0")
    return value


def _flag(uri: str, params: dict[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise CameraError(f"camera {uri!r}: {name}={value!r} should be 1 or 0")
