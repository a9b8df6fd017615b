"""Image store: what is kept, in which format, within which quota, written atomically."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import ImageError
from inspector.history import ImageStore, InspectionRecord

T0 = datetime(2026, 3, 1, 23, 59, 50, tzinfo=timezone.utc)


def _record(i: int, decision: str = "FAIL", **kwargs: object) -> InspectionRecord:
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
    return InspectionRecord(**values)


def _pngs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def _jet(value: int) -> np.ndarray:
    """BGR colour of ``value`` (0..255) in OpenCV's JET colour map."""
    return cv2.applyColorMap(np.full((1, 1), value, np.uint8), cv2.COLORMAP_JET)[0, 0]


def test_reject_keeps_raw_uint16_and_a_colour_heatmap(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    record = _record(1)
    image_path, heatmap_path = store.save(record)
    raw = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and np.array_equal(raw, record.image)
    heat = cv2.imread(heatmap_path, cv2.IMREAD_UNCHANGED)
    assert heat.shape == (12, 16, 3) and heat.dtype == np.uint8
    # Without a fixed range each map is stretched: its extremes take the colour map's ends.
    hottest = np.unravel_index(np.argmax(record.heatmap), record.heatmap.shape)
    coldest = np.unravel_index(np.argmin(record.heatmap), record.heatmap.shape)
    assert np.array_equal(heat[hottest], _jet(255)) and np.array_equal(heat[coldest], _jet(0))
    assert Path(image_path).is_absolute() and "line_1_cam" in Path(image_path).name
    assert Path(image_path).parent.name == "2026-03-01"  # UTC date of the frame
    assert store.used_bytes == sum(p.stat().st_size for p in _pngs(tmp_path))


def test_colour_uint8_frame_round_trips(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image_path, heatmap_path = ImageStore(tmp_path).save(_record(1, image=image, heatmap=None))
    assert heatmap_path is None
    assert np.array_equal(cv2.imread(image_path, cv2.IMREAD_UNCHANGED), image)


def test_fixed_heatmap_range_is_comparable_across_images(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, heatmap_range=(0.0, 2.0))
    _, low = store.save(_record(1, heatmap=np.full((4, 4), 0.5, np.float32)))
    _, high = store.save(_record(2, heatmap=np.full((4, 4), 1.5, np.float32)))
    assert np.array_equal(cv2.imread(low)[0, 0], _jet(63))
    assert np.array_equal(cv2.imread(high)[0, 0], _jet(191))


@pytest.mark.parametrize(("rate", "kept"), [(0.0, 0), (0.25, 25), (0.1, 10), (1.0, 100)])
def test_passes_are_sampled_at_the_rate_rejects_always_kept(
    tmp_path: Path, rate: float, kept: int
) -> None:
    store = ImageStore(tmp_path, pass_sample_rate=rate)
    saved = [store.save(_record(i, "PASS", heatmap=None))[0] for i in range(100)]
    assert sum(p is not None for p in saved) == kept
    assert all(store.save(_record(100 + i))[0] is not None for i in range(5))
    assert len(_pngs(tmp_path)) == kept + 10


def test_record_without_arrays_writes_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    assert store.save(_record(1, image=None, heatmap=None)) == (None, None)
    assert _pngs(tmp_path) == []


def test_quota_deletes_oldest_first_and_survives_restart(tmp_path: Path) -> None:
    probe = ImageStore(tmp_path / "probe")
    probe.save(_record(0))
    quota = int(probe.used_bytes * 3.5)  # room for three and a half records' files
    root = tmp_path / "store"
    store = ImageStore(root, quota_bytes=quota)
    written = [p for i in range(8) for p in store.save(_record(i))]  # oldest first
    kept = [str(p) for p in _pngs(root)]
    assert set(kept) == set(written[-len(kept) :])  # what survives is the newest files
    assert set(written[-6:]) <= set(kept)  # ... and the three newest records are complete
    assert store.used_bytes == sum(Path(p).stat().st_size for p in kept) <= quota

    reopened = ImageStore(root, quota_bytes=quota)
    assert reopened.used_bytes == store.used_bytes
    written += [p for i in range(2) for p in reopened.save(_record(20 + i))]  # next UTC day
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": np.zeros((8, 8), np.float32)},
        {"image": np.zeros((8, 8, 2), np.uint8)},
        {"heatmap": np.zeros((2, 8, 8), np.float32)},
    ],
)
def test_unstorable_arrays_raise_image_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ImageError):
        ImageStore(tmp_path).save(_record(1, **kwargs))


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ImageStore(tmp_path, pass_sample_rate=2.0)
    with pytest.raises(ValueError):
        ImageStore(tmp_path, quota_bytes=0)
