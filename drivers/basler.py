"""Basler cameras through pypylon, including pylon's camera emulator.

pypylon is imported only when a BaslerCamera is opened, so the rest of the project works without
it. Acquisition runs in pylon's own grab engine thread, which fills the InstantCamera's output
queue according to the grab strategy: ``GrabStrategy_OneByOne`` (every frame, in order) for
triggered inspection, ``GrabStrategy_LatestImageOnly`` for live view (older frames are dropped
there and counted with ``GetNumberOfSkippedImages()``). ``grab()`` takes results off that queue.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from drivers.base import Camera, Frame, Settings, SourceLost, TriggerMode
from inspector.errors import CameraError

log = logging.getLogger(__name__)

EMULATOR_DEVICE_CLASS = "BaslerCamEmu"
#: Files pylon's emulator replays as images.
EMULATOR_IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".raw")


def _import_pypylon(emulated: bool) -> tuple[Any, Any]:
    """(pylon, genicam), after asking for an emulated camera when one is wanted."""
    if emulated and not os.environ.get("PYLON_CAMEMU"):
        # pylon's emulator transport layer reads this when it enumerates devices.
        os.environ["PYLON_CAMEMU"] = "1"
    try:
        from pypylon import genicam, pylon
    except ImportError as exc:
        raise CameraError("Basler cameras need pypylon: pip install 'inspector[basler]'") from exc
    return pylon, genicam


def _reason(exc: Exception) -> str:
    """The readable part of a GenICam exception (it appends the C++ file and line after ' : ')."""
    return str(exc).split(" : ")[0].strip()


class BaslerCamera(Camera):
    """A Basler camera by serial number, or the first emulated camera when ``serial`` is None.

    Features are set by their GenICam names (ExposureTime, Gain, Width/Height/OffsetX/OffsetY,
    PixelFormat, TriggerSelector/TriggerMode/TriggerSource). Mono formats come out as H×W
    (uint8, or uint16 above 8 bits), RGB formats as H×W×3; BGR, Bayer and YUV formats are
    converted to RGB8. ``frame_id`` is the camera's block id; ``camera_timestamp`` is the
    camera's tick counter (ns on USB3 and most GigE cameras; 0 from the emulator).
    When the camera is unplugged, ``grab()`` notices (``IsCameraDeviceRemoved()``) and the
    camera is reopened in the background once it shows up again.

    ``emulator_images`` (emulated cameras only) is a folder of images, or one image, that the
    emulator sends instead of its test pattern (TestImageSelector=Off, ImageFileMode=On,
    ImageFilename). It sends each image at its own size when that fits in Width×Height, cropped
    to the top-left Width×Height otherwise, converted to the PixelFormat set. It goes through the
    folder's files in name order and starts over after the last, endlessly; a file it cannot read
    as an image (a text file, say) comes out as a lost frame each time round, so keep the folder
    to images (a warning names any other file).
    """

    def __init__(
        self,
        serial: str | None = None,
        *,
        camera_id: str | None = None,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        trigger_ready_timeout_s: float = 1.0,
        emulator_images: str | Path | None = None,
    ) -> None:
        super().__init__(camera_id or f"basler://{serial or 'emulated'}", backoff_s=backoff_s)
        self.serial = serial
        self.emulator_images = Path(emulator_images) if emulator_images is not None else None
        self._emulated = serial is None
        self._trigger_ready_timeout_s = trigger_ready_timeout_s
        self._cam: Any = None  # pylon.InstantCamera while open

    @property
    def instant_camera(self) -> Any:
        """The underlying ``pylon.InstantCamera`` (replaced by a new one after a reconnect)."""
        return self._cam

    def _open(self) -> None:
        pylon, genicam = _import_pypylon(self._emulated)
        self._pylon, self._genicam = pylon, genicam
        factory = pylon.TlFactory.GetInstance()
        try:
            devices = factory.EnumerateDevices()
        except genicam.GenericException as exc:
            raise CameraError(f"{self.camera_id}: cannot list Basler cameras: {_reason(exc)}") from None
        if self.serial is None:
            matches = [d for d in devices if d.GetDeviceClass() == EMULATOR_DEVICE_CLASS]
            wanted = "no emulated Basler camera (is PYLON_CAMEMU set to 0?)"
        else:
            matches = [d for d in devices if d.GetSerialNumber() == self.serial]
            wanted = f"no Basler camera with serial number {self.serial}"
        if not matches:
            found = ", ".join(d.GetSerialNumber() for d in devices) or "none"
            raise CameraError(f"{self.camera_id}: {wanted} (found: {found})")
        # Pin the serial so that a reconnect reopens this very camera, not merely the first one.
        self.serial = matches[0].GetSerialNumber()
        try:
            camera = pylon.InstantCamera(factory.CreateDevice(matches[0]))
            camera.Open()
        except genicam.GenericException as exc:
            raise CameraError(f"{self.camera_id}: cannot open Basler camera {self.serial} "
                              f"(in use by another program?): {_reason(exc)}") from None
        self._cam = camera
        if self.emulator_images is not None:
            try:
                self._replay(self.emulator_images)
            except CameraError:
                self._close()
                raise

    def _replay(self, images: Path) -> None:
        """Make the emulator send these images instead of its test pattern."""
        if not images.exists():
            # The emulator would accept the name and then send unusable frames.
            raise CameraError(f"{self.camera_id}: emulator image folder {images} does not exist")
        if images.is_dir():
            others = sorted(p.name for p in images.iterdir() if p.suffix.lower() not in EMULATOR_IMAGE_SUFFIXES)
            if others:
                log.warning("%s: the emulator will lose a frame for each file of %s that is no image: %s",
                            self.camera_id, images, ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
        self._set("TestImageSelector", "Off")
        self._set("ImageFileMode", "On")
        self._set("ImageFilename", str(images.resolve()))

    def _close(self) -> None:
        camera, self._cam = self._cam, None
        if camera is None:
            return
        for step in (camera.StopGrabbing, camera.DestroyDevice):  # DestroyDevice also closes
            try:
                step()
            except self._genicam.GenericException as exc:
                log.debug("%s: %s failed while closing: %s", self.camera_id, step.__name__, _reason(exc))

    def _configure(self, change: Settings) -> None:
        if change.exposure_us is not None:
            self._set(self._first_present("ExposureTime", "ExposureTimeAbs"), float(change.exposure_us))
        if change.gain_db is not None:
            self._set(self._first_present("Gain", "GainAbs"), float(change.gain_db))
        if change.pixel_format is not None:
            self._set("PixelFormat", change.pixel_format)
        if change.roi is not None:
            x, y, w, h = change.roi
            # Offsets to 0 first so that any width and height fit, then the wanted offsets.
            steps = (("OffsetX", 0), ("OffsetY", 0), ("Width", w), ("Height", h), ("OffsetX", x), ("OffsetY", y))
            for name, value in steps:
                self._set(name, value)

    def _start(self, mode: TriggerMode, live: bool, trigger_line: str) -> None:
        pylon = self._pylon
        if self._first_present("TriggerSelector", required=False):
            self._set("TriggerSelector", "FrameStart")
        if mode is TriggerMode.FREE_RUN:
            self._set("TriggerMode", "Off")
        else:
            self._set("TriggerMode", "On")
            self._set("TriggerSource", "Software" if mode is TriggerMode.SOFTWARE else trigger_line)
        strategy = pylon.GrabStrategy_LatestImageOnly if live else pylon.GrabStrategy_OneByOne
        try:
            self._cam.StartGrabbing(strategy)
        except self._genicam.GenericException as exc:
            raise CameraError(f"{self.camera_id}: cannot start grabbing: {_reason(exc)}") from None

    def _stop(self) -> None:
        try:
            self._cam.StopGrabbing()
        except self._genicam.GenericException as exc:
            raise CameraError(f"{self.camera_id}: cannot stop grabbing: {_reason(exc)}") from None

    def _trigger(self) -> None:
        camera = self._cam
        if camera is None:
            raise CameraError(f"{self.camera_id}: cannot trigger, the camera is disconnected")
        try:
            ready = camera.WaitForFrameTriggerReady(
                int(self._trigger_ready_timeout_s * 1000), self._pylon.TimeoutHandling_Return
            )
            if not ready:
                raise CameraError(f"{self.camera_id}: camera not ready for a trigger within "
                                  f"{self._trigger_ready_timeout_s:g} s (still exposing?)")
            camera.ExecuteSoftwareTrigger()
        except self._genicam.GenericException as exc:
            raise CameraError(f"{self.camera_id}: software trigger failed: {_reason(exc)}") from None

    def _grab(self, timeout_s: float) -> Frame | None:
        pylon, camera = self._pylon, self._cam
        deadline = time.monotonic() + timeout_s
        # Bounded: each pass either returns or uses up some of the time left.
        while True:
            if camera.IsCameraDeviceRemoved():
                raise SourceLost("the camera was removed")
            timeout_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                result = camera.RetrieveResult(timeout_ms, pylon.TimeoutHandling_Return)
                if not result.IsValid():
                    return None  # nothing within the timeout
                try:
                    if result.GrabSucceeded():
                        self._skipped += result.GetNumberOfSkippedImages()
                        return self._frame(self._image(result), result.BlockID, result.TimeStamp)
                    self._lost += 1
                    log.warning("%s: frame %d lost: %s", self.camera_id, result.BlockID, result.ErrorDescription)
                finally:
                    result.Release()
            except self._genicam.GenericException as exc:
                if camera.IsCameraDeviceRemoved():
                    raise SourceLost(_reason(exc)) from None
                raise CameraError(f"{self.camera_id}: grab failed: {_reason(exc)}") from None
            if time.monotonic() >= deadline:
                return None

    def _image(self, result: Any) -> Any:
        """The grab result as a numpy array that owns its memory (the buffer goes back to pylon)."""
        pylon = self._pylon
        pixel_type = result.PixelType
        if (pylon.IsMonoImage(pixel_type) or pylon.IsRGB(pixel_type)) and not pylon.IsPacked(pixel_type):
            with result.GetArrayZeroCopy() as array:
                return array.copy()
        converter = pylon.ImageFormatConverter()
        if pylon.IsMonoImage(pixel_type):
            deep = pylon.BitDepth(pixel_type) > 8
            converter.OutputPixelFormat = pylon.PixelType_Mono16 if deep else pylon.PixelType_Mono8
        else:
            converter.OutputPixelFormat = pylon.PixelType_RGB8packed
        return converter.Convert(result).GetArray()

    # ---- GenICam feature access -------------------------------------------------------------

    def _first_present(self, *names: str, required: bool = True) -> str | None:
        """The first of ``names`` this camera has (cameras differ in SFNC version)."""
        for name in names:
            if self._genicam.IsAvailable(self._cam.GetNodeMap().GetNode(name)):
                return name
        if required:
            raise CameraError(f"{self.camera_id}: this camera has none of {', '.join(names)}")
        return None

    def _set(self, name: str, value: object) -> None:
        """Set a GenICam feature, turning pylon's refusal into a CameraError that says why."""
        genicam = self._genicam
        node = None
        try:
            node = self._cam.GetNodeMap().GetNode(name)
            if not genicam.IsAvailable(node):
                raise CameraError(f"{self.camera_id}: this camera has no {name} feature")
            if not genicam.IsWritable(node):
                raise CameraError(f"{self.camera_id}: {name} cannot be changed now (stop grabbing first)")
            node.Value = value
        except genicam.GenericException as exc:
            raise CameraError(
                f"{self.camera_id}: cannot set {name} to {value!r}: {_reason(exc)}{self._allowed(node)}"
            ) from None

    def _allowed(self, node: Any) -> str:
        """The values a feature accepts, for an error message ("" when they cannot be read)."""
        try:
            if hasattr(node, "Symbolics"):
                return f" (allowed: {', '.join(node.Symbolics)})"
            if hasattr(node, "Min") and hasattr(node, "Max"):
                step = f", step {node.Inc}" if getattr(node, "Inc", 1) != 1 else ""
                return f" (allowed: {node.Min:g} to {node.Max:g}{step})"
        except self._genicam.GenericException:
            pass
        return ""
