"""The Basler driver against pylon's own camera emulator (no camera hardware needed).

pylon enumerates emulated cameras when PYLON_CAMEMU is set, so it is set before pypylon is
imported. The emulator can replay image files, fail buffers on request and fire its device
removal callback, which lets these tests check real images, lost frames and reconnects.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("PYLON_CAMEMU", "1")
with warnings.catch_warnings():  # pypylon's SWIG bindings warn on import under Python 3.11+
    warnings.filterwarnings("ignore", "builtin type .* has no __module__", DeprecationWarning)
    pytest.importorskip("pypylon", reason="pypylon (the 'basler' extra) is not installed")
    import pypylon.genicam  # noqa: F401 - imported here so that the warnings above stay quiet
    import pypylon.pylon  # noqa: F401

from drivers import BaslerCamera, TriggerMode, open_camera  # noqa: E402
from inspector.errors import CameraError  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GOOD = DATA / "magnetic_tile" / "train" / "good"
PHOTOS = DATA / "natural" / "bsds500"
SMALL_ROI = (0, 0, 64, 48)


@pytest.fixture
def camera():
    cam = open_camera("basler://emulated")
    cam.open()
    yield cam
    cam.close()


def grab_until(cam: BaslerCamera, seconds: float = 10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = cam.grab(0.2)
        if frame is not None:
            return frame
    return None


def test_free_run_delivers_frames_of_the_configured_size(camera: BaslerCamera) -> None:
    camera.configure(exposure_us=2000, gain_db=3.0, roi=(8, 4, 64, 48), pixel_format="Mono8")
    nodes = camera.instant_camera.GetNodeMap()
    assert nodes.GetNode("ExposureTime").Value == pytest.approx(2000)
    assert nodes.GetNode("Gain").Value == pytest.approx(3.0, abs=0.1)
    assert (nodes.GetNode("OffsetX").Value, nodes.GetNode("OffsetY").Value) == (8, 4)
    camera.start(TriggerMode.FREE_RUN)
    frames = [camera.grab(2.0) for _ in range(3)]
    assert all(f.image.shape == (48, 64) and f.image.dtype == np.uint8 for f in frames)
    assert [f.frame_id for f in frames] == sorted({f.frame_id for f in frames})
    assert frames[0].camera_id == "basler://emulated"
    assert camera.stats.grabbed == 3 and camera.stats.lost == 0
    camera.stop()
    assert not camera.is_grabbing


def test_software_trigger_gives_exactly_one_frame_per_trigger(camera: BaslerCamera) -> None:
    camera.configure(roi=SMALL_ROI)
    camera.start(TriggerMode.SOFTWARE)
    assert camera.instant_camera.GetNodeMap().GetNode("TriggerSource").Value == "Software"
    assert camera.grab(0.3) is None  # no trigger, no frame
    ids = []
    for _ in range(4):
        camera.trigger()
        ids.append(camera.grab(2.0).frame_id)
        assert camera.grab(0.2) is None
    assert ids == sorted(set(ids))
    assert camera.stats.grabbed == 4


def test_trigger_from_another_thread_releases_a_waiting_grab(camera: BaslerCamera) -> None:
    # The pipeline grabs in its acquisition thread while a PLC or the UI fires the trigger:
    # the waiting grab must not block the trigger.
    camera.configure(roi=SMALL_ROI)
    camera.start(TriggerMode.SOFTWARE)
    timer = threading.Timer(0.2, camera.trigger)
    timer.start()
    frame = camera.grab(10.0)
    timer.join()
    assert frame is not None
    assert camera.grab(0.2) is None


def test_hardware_trigger_waits_for_the_line(camera: BaslerCamera) -> None:
    camera.configure(roi=SMALL_ROI)
    camera.start(TriggerMode.HARDWARE, trigger_line="Line1")
    nodes = camera.instant_camera.GetNodeMap()
    assert (nodes.GetNode("TriggerMode").Value, nodes.GetNode("TriggerSource").Value) == ("On", "Line1")
    assert camera.grab(0.3) is None  # nothing drives Line1 on the emulator
    with pytest.raises(CameraError, match="needs start"):
        camera.trigger()
    with pytest.raises(CameraError, match="TriggerSource.*Line9"):
        camera.start(TriggerMode.HARDWARE, trigger_line="Line9")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_emulator_replays_real_images(tmp_path: Path, suffix: str) -> None:
    if not GOOD.is_dir():
        pytest.skip(f"real images not found at {GOOD}")
    folder = tmp_path / "replay"
    folder.mkdir()
    expected = []
    for index, source in enumerate(sorted(GOOD.glob("*.jpg"))[:3]):
        target = folder / f"{index:03d}{suffix}"
        if suffix == ".jpg":
            shutil.copy(source, target)  # the emulator decodes the JPEG itself
        else:
            cv2.imwrite(str(target), cv2.imread(str(source), cv2.IMREAD_UNCHANGED))
        expected.append(cv2.imread(str(target), cv2.IMREAD_UNCHANGED))
    # The emulator sends each file at its own size while that fits in Width×Height (1024×1040 here,
    # more than any of these crops), in name order, and starts over after the last one.
    with BaslerCamera(emulator_images=folder) as cam:
        cam.configure(pixel_format="Mono8")
        cam.start(TriggerMode.SOFTWARE)
        frames = []
        for _ in range(4):
            cam.trigger()
            frames.append(cam.grab(2.0))
    for frame, image in zip(frames, expected + expected[:1]):
        assert frame.image.shape == image.shape
        if suffix == ".png":
            assert np.array_equal(frame.image, image)
        else:  # two JPEG decoders may round differently
            assert np.abs(frame.image.astype(int) - image).mean() < 1.0


def test_emulator_colour_formats_come_out_rgb(tmp_path: Path) -> None:
    photos = sorted(PHOTOS.glob("*.jpg"))[:1] if PHOTOS.is_dir() else []
    if not photos:
        pytest.skip(f"real photographs not found at {PHOTOS}")
    bgr = cv2.imread(str(photos[0]))
    cv2.imwrite(str(tmp_path / "photo.png"), bgr)
    rgb = bgr[:, :, ::-1]
    with open_camera(f"basler://emulated?images={tmp_path}") as cam:
        images = {}
        for pixel_format in ("RGB8Packed", "BGR8Packed", "BayerRG8"):
            cam.configure(pixel_format=pixel_format)
            cam.start(TriggerMode.FREE_RUN)
            images[pixel_format] = cam.grab(2.0).image
            cam.stop()
    assert np.array_equal(images["RGB8Packed"], rgb)
    assert np.array_equal(images["BGR8Packed"], rgb)  # converted by the driver
    bayer = images["BayerRG8"]  # demosaiced by the driver: close, not equal
    assert bayer.shape == rgb.shape and np.abs(bayer.astype(int) - rgb).mean() < 25


def test_latest_only_skips_and_counts_while_one_by_one_keeps_all(camera: BaslerCamera) -> None:
    camera.configure(roi=SMALL_ROI)  # the emulator runs at its AcquisitionFrameRate, 100 fps
    camera.start(TriggerMode.FREE_RUN, live=True)
    first = camera.grab(2.0)
    time.sleep(0.3)  # the consumer falls behind by many frames
    second = camera.grab(2.0)
    assert camera.stats.skipped > 0
    assert second.frame_id - first.frame_id == camera.stats.skipped + 1

    skipped_before = camera.stats.skipped
    camera.start(TriggerMode.FREE_RUN, live=False)
    first = camera.grab(2.0)
    time.sleep(0.3)
    second = camera.grab(2.0)
    assert second.frame_id == first.frame_id + 1
    assert camera.stats.skipped == skipped_before


def test_failed_buffers_are_counted_as_lost(camera: BaslerCamera) -> None:
    camera.configure(roi=SMALL_ROI)
    camera.start(TriggerMode.FREE_RUN)
    assert camera.grab(2.0) is not None
    nodes = camera.instant_camera.GetNodeMap()
    nodes.GetNode("ForceFailedBufferCount").Value = 2
    nodes.GetNode("ForceFailedBuffer").Execute()
    frames = [camera.grab(2.0) for _ in range(3)]
    assert all(f is not None for f in frames)
    assert camera.stats.lost == 2 and camera.stats.grabbed == 4


def test_bad_settings_and_missing_cameras_give_clear_errors(camera: BaslerCamera, tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="PixelFormat.*Mono9.*allowed: Mono8"):
        camera.configure(pixel_format="Mono9")
    with pytest.raises(CameraError, match="Width to 99999.*allowed"):
        camera.configure(roi=(0, 0, 99999, 10))
    camera.start(TriggerMode.FREE_RUN)
    with pytest.raises(CameraError, match="Width cannot be changed now"):
        camera.configure(roi=SMALL_ROI)
    with pytest.raises(CameraError, match="no Basler camera with serial number NOSUCHSERIAL .found: "):
        open_camera("basler://NOSUCHSERIAL").open()
    with pytest.raises(CameraError, match="emulator image folder .*nowhere does not exist"):
        open_camera(f"basler://emulated?images={tmp_path}/nowhere").open()


def test_removed_camera_is_reopened_with_its_settings() -> None:
    # The first attempt comes after 1 s: time enough to see the disconnected state.
    with BaslerCamera(backoff_s=(1.0, 2.0)) as camera:
        check_removal_and_reconnect(camera)


def check_removal_and_reconnect(camera: BaslerCamera) -> None:
    camera.configure(roi=SMALL_ROI, exposure_us=1500)
    camera.start(TriggerMode.SOFTWARE)
    camera.trigger()
    assert camera.grab(2.0) is not None
    removed = camera.instant_camera
    # The emulator's removal callback, with FirePnPCallbackValue=1, marks the device as removed
    # for pylon, just as unplugging a USB camera does.
    nodes = removed.GetNodeMap()  # fetched first: a removed device has no node map any more
    fire, value = nodes.GetNode("FirePnPCallback"), nodes.GetNode("FirePnPCallbackValue")
    value.Value = 1
    fire.Execute()
    assert removed.IsCameraDeviceRemoved()
    assert camera.grab(0.5) is None
    assert not camera.is_connected
    with pytest.raises(CameraError, match="disconnected"):
        camera.trigger()

    deadline = time.monotonic() + 10
    while not camera.is_connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert camera.is_connected and camera.stats.reconnects == 1
    reopened = camera.instant_camera
    assert reopened is not removed and not reopened.IsCameraDeviceRemoved()
    nodes = reopened.GetNodeMap()
    assert (nodes.GetNode("Width").Value, nodes.GetNode("Height").Value) == (64, 48)
    assert nodes.GetNode("ExposureTime").Value == pytest.approx(1500)
    assert nodes.GetNode("TriggerSource").Value == "Software"
    camera.trigger()
    frame = grab_until(camera)
    assert frame is not None and frame.image.shape == (48, 64)
