"""Image store: what is kept, in which format (frames as recorded, maps as values), within which
quota, written atomically, and read back."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import ImageError
from inspector.history import ImageStore, InspectionResult
from inspector.history.image_store import read_heatmap, read_stored_image

T0 = datetime(2026, 3, 1, 23, 59, 50, tzinfo=timezone.utc)


def _record(i: int, decision: str = "FAIL", **kwargs: object) -> InspectionResult:
    rng = np.random.default_rng(i)
    values = dict(
        time=T0 + timedelta(seconds=i),
        camera_id="line 1/cam",
        frame_id=i,
        score=0.9,
        decision=decision,
        threshold=0.5,
        image=rng.integers(0, 4096, (48, 64), dtype=np.uint16),
        heatmap=rng.random((12, 16), dtype=np.float32),
    )
    values.update(kwargs)
    return InspectionResult(**values)


def _pngs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def _paths(record: InspectionResult) -> list[str | None]:
    return [record.image_path, record.heatmap_path]


def test_reject_keeps_raw_uint16_and_the_map_as_values(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    record = _record(1)
    saved = store.save(record)
    assert saved.uid == record.uid and saved.image is record.image  # the same record, paths filled in
    image_path, heatmap_path = saved.image_path, saved.heatmap_path
    raw = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and np.array_equal(raw, record.image)
    heat = cv2.imread(heatmap_path, cv2.IMREAD_UNCHANGED)
    assert heat.shape == (12, 16) and heat.dtype == np.uint16  # grey levels, not colours
    assert (saved.heatmap_low, saved.heatmap_high) == (float(record.heatmap.min()), float(record.heatmap.max()))
    assert heat.min() == 0 and heat.max() == 65535
    assert Path(image_path).is_absolute() and "line_1_cam" in Path(image_path).name
    assert Path(image_path).parent.name == "2026-03-01"  # UTC date of the frame
    assert store.used_bytes == sum(p.stat().st_size for p in _pngs(tmp_path))


@pytest.mark.parametrize(
    ("dtype", "shape"), [(np.uint8, (20, 30, 3)), (np.uint16, (20, 30, 3)), (np.uint8, (20, 30)), (np.uint16, (20, 30))]
)
def test_frames_round_trip_unchanged(tmp_path: Path, dtype: type, shape: tuple[int, ...]) -> None:
    """RGB (or gray) -> PNG -> RGB (or gray), bit for bit; the PNG itself is an ordinary one."""
    top = 255 if dtype == np.uint8 else 65535
    image = np.random.default_rng(0).integers(0, top + 1, shape, dtype=dtype)
    image[0, 0] = (top, 0, 0) if len(shape) == 3 else top  # a pure red pixel in the corner
    saved = ImageStore(tmp_path).save(_record(1, image=image, heatmap=None))
    assert saved.heatmap_path is None and saved.heatmap_low is None
    back = read_stored_image(saved.image_path)
    assert back.dtype == image.dtype and np.array_equal(back, image)
    if len(shape) == 3:  # other programs see the same colours: red is red in the file
        assert np.array_equal(cv2.imread(saved.image_path, cv2.IMREAD_UNCHANGED)[0, 0], (0, 0, top))


@pytest.mark.parametrize(
    "heatmap",
    [
        np.random.default_rng(1).normal(0.0, 0.3, (40, 50)).astype(np.float32),  # negative values too
        np.linspace(-3.0, 7.5, 56 * 64, dtype=np.float32).reshape(56, 64),
        np.random.default_rng(2).random((12, 16)).astype(np.float32) * 1e-3 + 0.25,  # a narrow range
    ],
)
def test_stored_heatmaps_read_back_as_values(tmp_path: Path, heatmap: np.ndarray) -> None:
    saved = ImageStore(tmp_path).save(_record(1, heatmap=heatmap))
    low, high = saved.heatmap_low, saved.heatmap_high
    assert (low, high) == (float(heatmap.min()), float(heatmap.max()))
    values = read_heatmap(saved.heatmap_path, low, high)
    assert values.dtype == np.float32 and values.shape == heatmap.shape
    step = (high - low) / 65535
    assert np.abs(values - heatmap).max() <= step / 2 + 1e-6 * max(abs(low), abs(high))  # 16-bit precision
    assert values.min() == pytest.approx(low) and values.max() == pytest.approx(high)


def test_flat_and_non_finite_heatmaps(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    flat = store.save(_record(1, heatmap=np.full((4, 4), -0.5, np.float32)))
    assert flat.heatmap_low == flat.heatmap_high == -0.5
    assert np.array_equal(read_heatmap(flat.heatmap_path, -0.5, -0.5), np.full((4, 4), -0.5, np.float32))
    holes = np.array([[np.nan, 1.0], [np.inf, 2.0]], np.float32)
    odd = store.save(_record(2, heatmap=holes))
    assert (odd.heatmap_low, odd.heatmap_high) == (0.0, 2.0)  # what is not a number is stored as 0
    assert np.allclose(read_heatmap(odd.heatmap_path, 0.0, 2.0), [[0.0, 1.0], [0.0, 2.0]], atol=1e-4)


def test_reading_what_is_not_a_stored_image_raises_image_error(tmp_path: Path) -> None:
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="16-bit grey"):
        read_heatmap(colour, 0.0, 1.0)  # e.g. a legacy JET heatmap
    (tmp_path / "torn.png").write_bytes(b"\x89PNG")
    for path in (tmp_path / "torn.png", tmp_path / "absent.png"):
        with pytest.raises(ImageError):
            read_stored_image(path)


@pytest.mark.parametrize(("rate", "kept"), [(0.0, 0), (0.25, 25), (0.1, 10), (1.0, 100)])
def test_passes_are_sampled_at_the_rate_rejects_always_kept(
    tmp_path: Path, rate: float, kept: int
) -> None:
    store = ImageStore(tmp_path, pass_sample_rate=rate)
    saved = [store.save(_record(i, "PASS", heatmap=None)).image_path for i in range(100)]
    assert sum(p is not None for p in saved) == kept
    assert all(store.save(_record(100 + i)).image_path is not None for i in range(5))
    assert len(_pngs(tmp_path)) == kept + 10


def test_record_without_arrays_writes_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    record = _record(1, image=None, heatmap=None)
    assert store.save(record) is record
    assert _pngs(tmp_path) == []


def test_quota_deletes_oldest_first_and_survives_restart(tmp_path: Path) -> None:
    probe = ImageStore(tmp_path / "probe")
    probe.save(_record(0))
    quota = int(probe.used_bytes * 3.5)  # room for three and a half records' files
    root = tmp_path / "store"
    store = ImageStore(root, quota_bytes=quota)
    written = [p for i in range(8) for p in _paths(store.save(_record(i)))]  # oldest first
    kept = [str(p) for p in _pngs(root)]
    assert set(kept) == set(written[-len(kept) :])  # what survives is the newest files
    assert set(written[-6:]) <= set(kept)  # ... and the three newest records are complete
    assert store.used_bytes == sum(Path(p).stat().st_size for p in kept) <= quota

    reopened = ImageStore(root, quota_bytes=quota)
    assert reopened.used_bytes == store.used_bytes
    written += [p for i in range(2) for p in _paths(reopened.save(_record(20 + i)))]  # next UTC day
    kept = [str(p) for p in _pngs(root)]
    assert set(kept) == set(written[-len(kept) :]) and set(written[-6:]) <= set(kept)
    assert reopened.used_bytes == sum(Path(p).stat().st_size for p in kept) <= quota


def test_emptied_day_folders_are_removed(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, quota_bytes=1)  # keeps only the newest record's files
    store.save(_record(0))  # 2026-03-01
    store.save(_record(20))  # 2026-03-02
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-03-02"]


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)
    store.save(_record(1))
    leftover = next(tmp_path.iterdir()) / ".half-written.png.tmp"
    leftover.write_bytes(b"\x89PNG")
    assert ImageStore(tmp_path).used_bytes == store.used_bytes
    assert not leftover.exists()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.save(_record(2))
    names = sorted(p.name for p in tmp_path.rglob("*"))
    assert not any(n.endswith(".tmp") or "_2_FAIL" in n for n in names), names


def test_a_heatmap_the_disk_refuses_leaves_no_frame_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a disk that filled between the frame and its heatmap, the frame's PNG stayed: named by
    no row, counted by no quota, never deleted (seen with inspector run on a full image folder:
    '..._8_FAIL.png' without its heatmap, the row without an image)."""
    store = ImageStore(tmp_path, quota_bytes=10_000_000)
    store.save(_record(1))
    writes = []
    real_write = store._write

    def write_then_fill(path: Path, data: bytes) -> int:
        writes.append(path)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(store, "_write", write_then_fill)
    with pytest.raises(OSError):
        store.save(_record(2))
    assert [p.name for p in _pngs(tmp_path) if "_2_FAIL" in p.name] == []
    assert store.used_bytes == sum(p.stat().st_size for p in _pngs(tmp_path))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": np.zeros((8, 8), np.float32)},
        {"image": np.zeros((8, 8, 2), np.uint8)},
        {"heatmap": np.zeros((2, 8, 8), np.float32)},
    ],
)
def test_unstorable_arrays_raise_image_error(tmp_path: Path, kwargs: dict) -> None:
    store = ImageStore(tmp_path)
    with pytest.raises(ImageError):
        store.save(_record(1, **kwargs))
    assert _pngs(tmp_path) == [] and store.used_bytes == 0  # nothing half-stored


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ImageStore(tmp_path, pass_sample_rate=2.0)
    with pytest.raises(ValueError):
        ImageStore(tmp_path, quota_bytes=0)
