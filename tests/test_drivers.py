"""Camera drivers without hardware: camera URIs, the folder replay camera and the OpenCV camera.

The Basler driver is tested against pylon's emulator in test_drivers_basler.py.
"""

from __future__ import annotations

import http.server
import logging
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers import BaslerCamera, Camera, FolderCamera, OpenCVCamera, TriggerMode, open_camera
from inspector.errors import CameraError

REPO = Path(__file__).resolve().parents[1]
GOOD = REPO.parent / "shared" / "data" / "magnetic_tile" / "train" / "good"
needs_data = pytest.mark.skipif(not GOOD.is_dir(), reason=f"real images not found at {GOOD}")


@pytest.fixture
def tiles(tmp_path: Path) -> list[Path]:
    """Six real grayscale JPEGs (of different sizes) copied into tmp_path/tiles."""
    if not GOOD.is_dir():
        pytest.skip(f"real images not found at {GOOD}")
    folder = tmp_path / "tiles"
    folder.mkdir()
    copies = []
    for source in sorted(GOOD.glob("*.jpg"))[:6]:
        copies.append(Path(shutil.copy(source, folder / source.name)))
    return copies


def grab_until(camera: Camera, seconds: float = 10.0):
    """The first frame within ``seconds`` (grab returns None while a camera is reconnecting)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = camera.grab(0.2)
        if frame is not None:
            return frame
    return None


# ---- camera URIs ---------------------------------------------------------------------------------


def test_uris_choose_driver_and_options(tmp_path: Path) -> None:
    folder = open_camera(f"folder://{tmp_path}?fps=2.5&loop=1")
    assert isinstance(folder, FolderCamera)
    assert (folder.folder, folder.fps, folder.loop) == (tmp_path, 2.5, True)
    assert folder.camera_id == f"folder://{tmp_path}?fps=2.5&loop=1"

    assert open_camera(f"folder://{tmp_path}").fps == 10.0
    assert open_camera("folder://relative/images").folder == Path("relative/images")
    assert open_camera("folder:///with%20space").folder == Path("/with space")

    video = open_camera("file:///videos/line.avi?realtime=0&loop=yes")
    assert isinstance(video, OpenCVCamera)
    assert (video.source, video.realtime, video.loop, video.is_file) == ("/videos/line.avi", False, True, True)

    device = open_camera("opencv://2")
    assert isinstance(device, OpenCVCamera) and device.source == 2 and not device.is_file

    stream = open_camera("rtsp://10.0.0.5:554/stream?token=abc")
    assert isinstance(stream, OpenCVCamera)
    assert stream.source == "rtsp://10.0.0.5:554/stream?token=abc" and not stream.is_file

    basler = open_camera("basler://40012345")
    assert isinstance(basler, BaslerCamera) and basler.serial == "40012345"
    emulated = open_camera(f"basler://emulated?images={tmp_path}")
    assert emulated.serial is None and emulated.emulator_images == tmp_path


@pytest.mark.parametrize(
    ("uri", "names"),
    [
        ("", "not a camera URI"),
        ("0", "not a camera URI"),
        ("/some/folder", "not a camera URI"),
        ("webcam://0", "unknown scheme 'webcam'"),
        ("basler://", "basler://SERIAL"),
        ("basler://123/extra", "basler://SERIAL"),
        ("basler://123?images=/x", "only with basler://emulated"),
        ("folder://", "names no image folder"),
        ("folder:///x?fps=fast", "fps='fast'"),
        ("folder:///x?fps=-1", "fps='-1'"),
        ("folder:///x?fsp=3", "unknown parameter 'fsp'"),
        ("folder:///x?loop=maybe", "loop='maybe'"),
        ("folder:///x?loop=1&loop=0", "given twice"),
        ("file://", "names no video file"),
        ("opencv://cam", "opencv://N"),
        ("opencv://0?fps=3", "takes none"),
        ("http://[::1", "malformed"),
    ],
)
def test_bad_uri_is_a_one_line_camera_error(uri: str, names: str) -> None:
    with pytest.raises(CameraError) as caught:
        open_camera(uri)
    message = str(caught.value)
    assert names in message
    assert "\n" not in message


def test_missing_sources_fail_on_open_naming_them(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        open_camera(f"folder://{tmp_path}/nowhere").open()
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(CameraError, match=r"no images \(.png"):
        open_camera(f"folder://{tmp_path}").open()
    with pytest.raises(CameraError, match="is not a folder"):
        open_camera(f"folder://{tmp_path}/notes.txt").open()
    with pytest.raises(CameraError, match=r"video file .*missing.avi does not exist"):
        open_camera(f"file://{tmp_path}/missing.avi").open()
    with pytest.raises(CameraError, match="OpenCV cannot read video file"):
        open_camera(f"file://{tmp_path}/notes.txt").open()
    with pytest.raises(CameraError, match="cannot open video device 97"):
        open_camera("opencv://97").open()


def test_drivers_work_without_importing_pypylon(tmp_path: Path) -> None:
    # A fresh interpreter: this test process may have imported pypylon for the Basler tests.
    cv2.imwrite(str(tmp_path / "a.png"), np.full((4, 5), 7, np.uint8))
    code = (
        "import sys, drivers\n"
        f"cam = drivers.open_camera('folder://{tmp_path}?fps=0')\n"
        "cam.open(); cam.start(); assert cam.grab(1.0).image.shape == (4, 5); cam.close()\n"
        "drivers.open_camera('basler://emulated')\n"
        "assert 'pypylon' not in sys.modules, 'pypylon was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---- folder camera -------------------------------------------------------------------------------


def test_folder_replays_real_images_in_name_order_then_ends(tiles: list[Path]) -> None:
    (tiles[0].parent / "readme.txt").write_text("ignored: not an image")
    with FolderCamera(tiles[0].parent, fps=0) as camera:
        camera.start(TriggerMode.FREE_RUN)
        frames = [camera.grab(1.0) for _ in tiles]
        assert camera.grab(0.1) is None
        assert not camera.is_grabbing
        assert camera.stats.grabbed == len(tiles)
    for frame, path in zip(frames, sorted(tiles)):
        expected = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert frame.image.ndim == 2 and frame.image.dtype == np.uint8
        assert np.array_equal(frame.image, expected)
        assert frame.camera_id == f"folder://{path.parent}"
        assert frame.host_timestamp == pytest.approx(time.time(), abs=60)
    assert [f.frame_id for f in frames] == list(range(len(tiles)))
    assert not camera.is_open


def test_folder_loop_starts_over_and_keeps_counting(tiles: list[Path]) -> None:
    with FolderCamera(tiles[0].parent, fps=0, loop=True) as camera:
        camera.start()
        frames = [camera.grab(1.0) for _ in range(len(tiles) + 2)]
    assert [f.frame_id for f in frames] == list(range(len(tiles) + 2))
    assert np.array_equal(frames[len(tiles)].image, frames[0].image)
    assert np.array_equal(frames[len(tiles) + 1].image, frames[1].image)


def test_folder_software_trigger_gives_one_frame_per_trigger(tiles: list[Path]) -> None:
    with FolderCamera(tiles[0].parent, fps=1000) as camera:
        camera.start(TriggerMode.SOFTWARE)
        assert camera.grab(0.2) is None  # no trigger, no frame, whatever the fps
        frames = []
        for _ in range(3):
            camera.trigger()
            frames.append(camera.grab(1.0))
        assert camera.grab(0.2) is None
        camera.trigger()
        camera.trigger()
        assert camera.grab(1.0) is not None and camera.grab(1.0) is not None
        assert camera.grab(0.2) is None
    assert [f.frame_id for f in frames] == [0, 1, 2]
    for frame, path in zip(frames, sorted(tiles)):
        assert np.array_equal(frame.image, cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_folder_trigger_from_another_thread_releases_a_waiting_grab(tiles: list[Path]) -> None:
    # The pipeline grabs in its acquisition thread while a PLC or the UI fires the trigger.
    with FolderCamera(tiles[0].parent, fps=0) as camera:
        camera.start(TriggerMode.SOFTWARE)
        timer = threading.Timer(0.2, camera.trigger)
        timer.start()
        frame = camera.grab(10.0)
        timer.join()
    assert frame is not None and frame.frame_id == 0


def test_folder_live_view_skips_to_newest_and_counts(tiles: list[Path]) -> None:
    with FolderCamera(tiles[0].parent, fps=500, loop=True) as camera:
        camera.start(TriggerMode.FREE_RUN, live=True)
        first = camera.grab(1.0)
        time.sleep(0.1)  # the consumer falls behind by many frame periods
        second = camera.grab(1.0)
        assert camera.stats.skipped > 0
        assert second.frame_id - first.frame_id == camera.stats.skipped + 1

        camera.start(TriggerMode.FREE_RUN, live=False)  # every frame: nothing is dropped
        first = camera.grab(1.0)
        time.sleep(0.1)
        second = camera.grab(1.0)
        assert (first.frame_id, second.frame_id) == (0, 1)


def test_folder_skips_unreadable_files_with_a_warning(tiles: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    folder = tiles[0].parent
    broken = folder / (sorted(tiles)[1].stem + "_broken.png")  # sorts right after the second tile
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with caplog.at_level(logging.WARNING, logger="drivers.folder"), FolderCamera(folder, fps=0) as camera:
        camera.start(TriggerMode.SOFTWARE)
        images = []
        for _ in tiles:
            camera.trigger()
            images.append(camera.grab(1.0).image)
        camera.trigger()
        assert camera.grab(0.2) is None
        assert camera.stats.lost == 1 and camera.stats.grabbed == len(tiles)
    assert any(broken.name in record.getMessage() for record in caplog.records)
    for image, path in zip(images, sorted(tiles)):
        assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_folder_keeps_uint16_and_turns_bgr_into_rgb(tmp_path: Path) -> None:
    gray = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50
    bgr = np.dstack([np.full((30, 40), v, np.uint8) for v in (10, 120, 250)])
    bgra = np.dstack([bgr, np.full((30, 40), 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "a_gray16.png"), gray)
    cv2.imwrite(str(tmp_path / "b_color.png"), bgr)
    cv2.imwrite(str(tmp_path / "c_alpha.png"), bgra)
    with FolderCamera(tmp_path, fps=0) as camera:
        camera.start()
        gray_frame, color_frame, alpha_frame = (camera.grab(1.0) for _ in range(3))
    assert gray_frame.image.dtype == np.uint16 and np.array_equal(gray_frame.image, gray)
    assert np.array_equal(color_frame.image, bgr[:, :, ::-1])
    assert np.array_equal(alpha_frame.image, bgr[:, :, ::-1])


def test_folder_configure_crops_converts_and_refuses(tiles: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    first = cv2.imread(str(sorted(tiles)[0]), cv2.IMREAD_UNCHANGED)
    camera = FolderCamera(tiles[0].parent, fps=0)
    with pytest.raises(CameraError, match="not open"):
        camera.configure(roi=(0, 0, 10, 10))
    with camera:
        assert camera.grab(0.1) is None and not camera.is_grabbing  # not started: no frames
        with caplog.at_level(logging.WARNING, logger="drivers.base"):
            camera.configure(exposure_us=1500, roi=(5, 7, 20, 10), pixel_format="RGB8")
        assert "exposure_us has no effect" in caplog.text
        with pytest.raises(CameraError, match="Mono12.*not supported"):
            camera.configure(pixel_format="Mono12")
        with pytest.raises(CameraError, match="ROI"):
            camera.configure(roi=(0, 0, 0, 10))
        with pytest.raises(CameraError, match="exposure"):
            camera.configure(exposure_us=-1)
        with pytest.raises(CameraError, match="FolderCamera has no HARDWARE trigger; use FREE_RUN, SOFTWARE"):
            camera.start(TriggerMode.HARDWARE)
        camera.start()
        with pytest.raises(CameraError, match="needs start\\(TriggerMode.SOFTWARE\\)"):
            camera.trigger()
        image = camera.grab(1.0).image
    assert image.shape == (10, 20, 3)
    assert np.array_equal(image, np.dstack([first[7:17, 5:25]] * 3))


def test_folder_that_vanishes_is_reopened_when_it_returns(tiles: list[Path], tmp_path: Path) -> None:
    folder = tiles[0].parent
    kept = tmp_path / "kept"
    shutil.copytree(folder, kept)
    camera = FolderCamera(folder, fps=0, loop=True, backoff_s=(0.05, 0.2))
    with camera:
        camera.start()
        assert camera.grab(1.0).frame_id == 0
        shutil.rmtree(folder)
        assert camera.grab(1.0) is None
        assert not camera.is_connected
        time.sleep(0.3)  # several reconnect attempts fail meanwhile
        assert camera.grab(0.2) is None and not camera.is_connected
        shutil.copytree(kept, folder)
        frame = grab_until(camera)
        assert frame is not None and camera.is_connected
        assert camera.stats.reconnects == 1
    assert frame.frame_id == 0  # the replay starts over on the reopened folder
    assert np.array_equal(frame.image, cv2.imread(str(sorted(tiles)[0]), cv2.IMREAD_UNCHANGED))


def test_settings_given_while_disconnected_apply_on_reconnect(tiles: list[Path], tmp_path: Path) -> None:
    folder = tiles[0].parent
    kept = tmp_path / "kept"
    shutil.copytree(folder, kept)
    with FolderCamera(folder, fps=0, backoff_s=(0.05, 0.2)) as camera:
        camera.start()
        assert camera.grab(1.0) is not None
        shutil.rmtree(folder)
        assert camera.grab(1.0) is None and not camera.is_connected
        camera.configure(roi=(0, 0, 16, 8))
        camera.start(TriggerMode.SOFTWARE)
        shutil.copytree(kept, folder)
        deadline = time.monotonic() + 10
        while not camera.is_connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.grab(0.2) is None  # software trigger mode now: nothing without a trigger
        camera.trigger()
        assert camera.grab(1.0).image.shape == (8, 16)


def test_close_ends_a_reconnect_loop_that_cannot_succeed(tiles: list[Path]) -> None:
    camera = FolderCamera(tiles[0].parent, fps=0, backoff_s=(0.05, 0.1))
    camera.open()
    camera.start()
    assert camera.grab(1.0) is not None
    shutil.rmtree(tiles[0].parent)
    assert camera.grab(1.0) is None
    assert any(t.name.startswith("reconnect folder://") for t in threading.enumerate())
    camera.close()
    assert not camera.is_open and not camera.is_connected
    assert not any(t.name.startswith("reconnect folder://") for t in threading.enumerate())


# ---- OpenCV camera -------------------------------------------------------------------------------


def write_video(path: Path, count: int = 6, fps: float = 50.0) -> list[np.ndarray]:
    """A small MJPG .avi whose frames differ, with colour channels told apart; returns them (BGR)."""
    frames = []
    sources = sorted(GOOD.glob("*.jpg"))[:count] if GOOD.is_dir() else []
    ramp = np.linspace(0, 40, 64, dtype=np.float32)[None, :].repeat(48, axis=0)
    for index in range(count):
        if index < len(sources):
            gray = cv2.resize(cv2.imread(str(sources[index]), cv2.IMREAD_GRAYSCALE), (64, 48))
        else:  # without ../shared: levels that differ frame to frame and stay within uint8
            gray = ((20 + 35 * index) % 200 + ramp).astype(np.uint8)
        # Blue half, green full, red saturated: no frame looks alike with its channels swapped.
        frames.append(np.dstack([gray // 2, gray, np.full_like(gray, 255)]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return frames


def close_to(image: np.ndarray, expected: np.ndarray) -> bool:
    return image.shape == expected.shape and float(np.abs(image.astype(int) - expected).mean()) < 6.0


def test_video_file_plays_every_frame_as_rgb_then_ends(tmp_path: Path) -> None:
    written = write_video(tmp_path / "line.avi")
    camera = open_camera(f"file://{tmp_path}/line.avi?realtime=0")
    with camera:
        camera.start()
        frames = [camera.grab(1.0) for _ in written]
        assert camera.grab(0.2) is None and not camera.is_grabbing
        assert camera.stats.grabbed == len(written)
    assert [f.frame_id for f in frames] == list(range(len(written)))
    for frame, bgr in zip(frames, written):
        assert frame.image.dtype == np.uint8
        assert close_to(frame.image, bgr[:, :, ::-1])
        assert not close_to(frame.image, bgr)
    assert frames[-1].camera_timestamp > frames[0].camera_timestamp


def test_video_file_loops_and_obeys_software_trigger(tmp_path: Path) -> None:
    written = write_video(tmp_path / "line.avi", count=4)
    with OpenCVCamera(tmp_path / "line.avi", loop=True) as camera:
        camera.start()
        frames = [camera.grab(1.0) for _ in range(6)]
        assert [f.frame_id for f in frames] == list(range(6))
        assert close_to(frames[4].image, written[0][:, :, ::-1])

        camera.start(TriggerMode.SOFTWARE)
        assert camera.grab(0.2) is None
        camera.trigger()
        frame = camera.grab(1.0)
        assert camera.grab(0.2) is None
    assert frame.frame_id == 0 and close_to(frame.image, written[0][:, :, ::-1])


def test_video_file_live_view_skips_frames_behind_schedule(tmp_path: Path) -> None:
    write_video(tmp_path / "fast.avi", count=40, fps=200.0)
    with OpenCVCamera(tmp_path / "fast.avi", loop=True) as camera:
        camera.start(live=True)
        first = camera.grab(1.0)
        time.sleep(0.1)  # 20 frame periods at 200 fps
        second = camera.grab(1.0)
    assert camera.stats.skipped > 0
    assert second.frame_id - first.frame_id == camera.stats.skipped + 1


def test_video_file_that_vanishes_is_reopened_when_it_returns(tmp_path: Path) -> None:
    video = tmp_path / "line.avi"
    written = write_video(video, count=3)
    kept = tmp_path / "kept.avi"
    shutil.copy(video, kept)
    with OpenCVCamera(video, realtime=False, backoff_s=(0.05, 0.2)) as camera:
        camera.start()
        for _ in written:
            assert camera.grab(1.0) is not None
        video.unlink()  # the stream ends and its file is gone: the source was removed, not finished
        assert camera.grab(1.0) is None
        assert not camera.is_connected
        shutil.copy(kept, video)
        frame = grab_until(camera)
        assert frame is not None and camera.is_connected and camera.stats.reconnects == 1
    assert frame.frame_id == 0 and close_to(frame.image, written[0][:, :, ::-1])


class MjpegServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A local MJPEG-over-HTTP stream, like an IP camera's: numbered frames at about 50 fps."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        self.stopping = False
        super().__init__(("127.0.0.1", port), MjpegHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping = True
        self.shutdown()
        self.server_close()


class MjpegHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :, 2] = 200  # red, in OpenCV's BGR order
        data = cv2.imencode(".jpg", image)[1].tobytes()
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(data), data)
        try:
            while not self.server.stopping:
                self.wfile.write(part)
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_network_stream_that_drops_is_reopened_when_it_returns() -> None:
    server = MjpegServer()
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    assert open_camera(url).source == url
    with OpenCVCamera(url, backoff_s=(0.05, 0.2)) as camera:
        camera.start()
        frames = [camera.grab(5.0) for _ in range(3)]
        assert [f.frame_id for f in frames] == [0, 1, 2]
        assert all(f.image.shape == (48, 64, 3) for f in frames)
        assert abs(int(frames[0].image[0, 0, 0]) - 200) < 8 and frames[0].image[0, 0, 2] < 8  # red, as RGB
        server.stop()  # the camera goes off the network
        end = time.monotonic() + 10
        while camera.is_connected and time.monotonic() < end:
            camera.grab(0.5)
        assert not camera.is_connected
        server = MjpegServer(port)
        try:
            frame = grab_until(camera)
        finally:
            server.stop()
    assert frame is not None and frame.frame_id == 0 and camera.stats.reconnects == 1


def test_unreachable_stream_is_a_clear_error() -> None:
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as probe:
        port = probe.server_address[1]  # a port that is free once the probe closes
    with pytest.raises(CameraError, match=f"cannot open video stream http://127.0.0.1:{port}/x.mjpg"):
        open_camera(f"http://127.0.0.1:{port}/x.mjpg").open()


def test_folder_skips_a_jpeg_cut_short_instead_of_replaying_it_half_grey(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A JPEG cut short (a copy into the camera's folder caught half-way) was decoded by
    cv2.imread with its missing rows grey, and the line judged that frame as the part; every
    command refuses such a file (``read_image``). The camera skips it as unreadable, as it skips
    a PNG cut short."""
    rng = np.random.default_rng(0)
    whole = cv2.GaussianBlur(rng.integers(0, 256, (240, 320), dtype=np.uint8), (5, 5), 0)
    data = cv2.imencode(".jpg", whole)[1].tobytes()
    (tmp_path / "a_whole.jpg").write_bytes(data)
    (tmp_path / "b_cut.jpg").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="drivers.folder"), FolderCamera(tmp_path, fps=0) as camera:
        camera.start(TriggerMode.SOFTWARE)
        camera.trigger()
        assert camera.grab(1.0).image.shape == (240, 320)
        camera.trigger()
        assert camera.grab(0.2) is None
        assert camera.stats.lost == 1 and camera.stats.grabbed == 1
    assert any("b_cut.jpg" in record.getMessage() for record in caplog.records)
