"""Image I/O and preprocessing: what cameras give in, clear errors for what they should not."""

import cv2
import numpy as np
import pytest

from inspector.errors import DataError, ImageError
from inspector.image_io import (
    good_training_images,
    map_to_image,
    mvtec_test_set,
    read_image,
    read_mask,
    to_float_rgb,
    to_square,
)


def test_read_image_gives_rgb_and_keeps_uint16(tmp_path):
    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    assert read_image(tmp_path / "c.png")[0, 0].tolist() == [0, 0, 255]
    cv2.imwrite(str(tmp_path / "d.png"), np.full((20, 30), 4000, np.uint16))
    deep = read_image(tmp_path / "d.png")
    assert deep.dtype == np.uint16 and deep.shape == (20, 30)


def test_corrupt_and_missing_images_get_clear_errors(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="bad.jpg: not a readable image"):
        read_image(tmp_path / "bad.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="no such image file"):
        read_image(tmp_path / "nope.png")
    # inspector predict MODEL FOLDER said "FOLDER: no such image file" of a folder that is there
    with pytest.raises(ImageError, match=f"^{tmp_path}: is a folder, not an image file$"):
        read_image(tmp_path)


def test_a_png_cut_short_is_said_once_without_the_decoders_line(tmp_path, capfd):
    cv2.imwrite(str(tmp_path / "cut.png"), np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8))
    whole = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])  # a copy killed half-way
    with pytest.raises(ImageError, match="cut.png: not a readable image .*cut short"):
        read_image(tmp_path / "cut.png")
    assert "libpng" not in capfd.readouterr().err
    (tmp_path / "cut.png").write_bytes(whole)
    assert read_image(tmp_path / "cut.png").shape == (200, 200)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((10, 10), np.float32), "dtype must be uint8 or uint16"),
        (np.zeros((10, 10, 2), np.uint8), r"shape must be \(H, W\) or \(H, W, 3\)"),
        (np.zeros((2, 10, 10, 3), np.uint8), "shape must be"),
        (np.zeros((4, 4), np.uint8), "too small"),
        ([[1, 2], [3, 4]], "expected a numpy array"),
    ],
)
def test_odd_arrays_are_refused(array, message):
    with pytest.raises(ImageError, match=message):
        to_float_rgb(array)


def test_gray_uint16_and_colour_become_the_same_float_rgb():
    gray8 = np.full((12, 16), 51, np.uint8)
    gray16 = np.full((12, 16), 51 * 257, np.uint16)
    rgb = np.stack([gray8] * 3, axis=2)
    for im in (gray8, gray16, rgb):
        out = to_float_rgb(im)
        assert out.shape == (12, 16, 3) and out.dtype == np.float32
        assert np.allclose(out, 0.2, atol=1e-4)


def test_letterbox_keeps_aspect_and_maps_back():
    image = np.zeros((100, 400), np.uint8)
    square, place = to_square(image, 256, "letterbox")
    assert square.shape == (256, 256, 3)
    assert (place.inner_h, place.inner_w, place.top) == (64, 256, 96)
    square_map = np.zeros((256, 256), np.float32)
    square_map[place.top : place.top + place.inner_h, place.left :] = 1.0
    back = map_to_image(square_map, place)
    assert back.shape == (100, 400) and np.allclose(back, 1.0)


def test_resize_mode_stretches_to_the_square():
    square, place = to_square(np.zeros((100, 400, 3), np.uint8), 256, "resize")
    assert square.shape == (256, 256, 3) and (place.inner_h, place.inner_w) == (256, 256)
    assert map_to_image(np.ones((256, 256), np.float32), place).shape == (100, 400)


def test_training_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        good_training_images(tmp_path / "missing")
    (tmp_path / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        good_training_images(tmp_path)
    cv2.imwrite(str(tmp_path / "train" / "good" / "a.png"), np.zeros((10, 10), np.uint8))
    assert [p.name for p in good_training_images(tmp_path)] == ["a.png"]
    plain = tmp_path / "plain"
    plain.mkdir()
    cv2.imwrite(str(plain / "b.jpg"), np.zeros((10, 10), np.uint8))
    (plain / "notes.txt").write_text("not an image")
    assert [p.name for p in good_training_images(plain)] == ["b.jpg"]


def test_mvtec_test_set_needs_masks(tmp_path):
    for sub in ("test/good", "test/crack", "ground_truth/crack"):
        (tmp_path / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "test/good/g.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(tmp_path / "test/crack/c.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="mask .* is missing"):
        mvtec_test_set(tmp_path)
    cv2.imwrite(str(tmp_path / "ground_truth/crack/c_mask.png"), np.zeros((10, 10), np.uint8))
    items = mvtec_test_set(tmp_path)
    assert [(i.defect_type, i.mask_path is not None) for i in items] == [("crack", True), ("good", False)]


def test_a_mask_of_another_aspect_than_its_image_is_refused_not_stretched(tmp_path):
    """A line frame's ground truth replaced by the cropped part's mask (513x309 beside a 1280x1024
    frame) was stretched over the frame: inspector eval printed pixel AUROC 6.1 and an AU-PRO
    for defects where there were none, without a word. The same picture at another scale is
    still resized."""
    mask = np.zeros((309, 513), np.uint8)
    mask[100:150, 200:260] = 255
    path = tmp_path / "c_mask.png"
    cv2.imwrite(str(path), mask)
    with pytest.raises(ImageError, match=r"c_mask.png: the mask is 513x309, its image 1280x1024: not the same picture"):
        read_mask(path, (1024, 1280))
    assert read_mask(path, (618, 1026)).sum() == 4 * 50 * 60  # twice the size: the same picture
    assert read_mask(path).shape == (309, 513)
