"""scripts/build_tall_frames.py: the same source and seed give the same frames, in MVTec layout,
with masks in frame coordinates (issue 30, part 6), or none from a source without ground_truth
(ELPV). The magnetic-tile test needs ../shared/data (skips without it)."""

import json
from pathlib import Path

import cv2
import numpy as np

from script_support import load_script


def _builder():
    return load_script("build_tall_frames.py")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tall_frames_are_deterministic_and_in_mvtec_layout(shared_data, tmp_path):
    build = _builder().build
    source = shared_data / "magnetic_tile"
    count = build(source, tmp_path / "a", 300, 750, 3, seed=0, limit=2)
    build(source, tmp_path / "b", 300, 750, 3, seed=0, limit=2)
    build(source, tmp_path / "c", 300, 750, 3, seed=1, limit=2)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b  # byte for byte
    assert a != c  # another seed, other frames
    kinds = sorted(p.name for p in (source / "test").iterdir() if p.is_dir())
    assert count == 2 * (1 + len(kinds))
    assert len(list((tmp_path / "a" / "train" / "good").glob("*.png"))) == 2
    for kind in kinds:
        frames = sorted((tmp_path / "a" / "test" / kind).glob("*.png"))
        assert len(frames) == 2
        for frame_path in frames:
            frame = cv2.imread(str(frame_path), cv2.IMREAD_GRAYSCALE)
            assert frame.shape == (750, 300)
            mask_path = tmp_path / "a" / "ground_truth" / kind / f"{frame_path.stem}_mask.png"
            assert mask_path.is_file() == (kind != "good")
            if kind != "good":
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                assert mask.shape == frame.shape and set(np.unique(mask)) <= {0, 255}
                # The defect lies in one slot only: the one its own image fills.
                rows = np.nonzero(mask.any(axis=1))[0]
                if rows.size:
                    assert rows.min() // 250 == rows.max() // 250


def test_a_source_without_ground_truth_gives_frames_without_masks(tmp_path):
    """ELPV's layout (scripts/elpv_layout.py) has no ground_truth: the frames have no masks, and a
    defective image fills its slot whole where it is the slot's size (300×300 cells, 300×900 frames)."""
    source = tmp_path / "cells"
    rng = np.random.default_rng(0)
    cells = {}
    for split_kind, count in (("train/good", 3), ("test/good", 3), ("test/defect", 2)):
        (source / split_kind).mkdir(parents=True)
        for i in range(count):
            cell = rng.integers(0, 256, (30, 30), dtype=np.uint8)
            cells[f"{split_kind}/cell{i:04d}.png"] = cell
            cv2.imwrite(str(source / split_kind / f"cell{i:04d}.png"), cell)
    build = _builder().build
    assert build(source, tmp_path / "frames", 30, 90, 3, seed=1) == 8
    build(source, tmp_path / "again", 30, 90, 3, seed=1)
    assert _files(tmp_path / "frames") == _files(tmp_path / "again")
    assert not (tmp_path / "frames" / "ground_truth").exists()
    record = json.loads((tmp_path / "frames" / "frames.json").read_text())
    for name in ("cell0000", "cell0001"):
        frame = cv2.imread(str(tmp_path / "frames" / "test" / "defect" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        entry = record["frames"][f"test/defect/{name}"]
        assert frame.shape == (90, 30)
        for slot, used in enumerate(entry["slots"]):
            assert (used == f"test/defect/{name}.png") if slot == entry["slot"] else used.startswith("test/good/")
            assert np.array_equal(frame[30 * slot : 30 * (slot + 1)], cells[used])  # whole, unchanged
    # At the default 1:2.5 a slot is shorter than the cell: it holds the cell's middle rows.
    build(source, tmp_path / "short", 30, 75, 3, seed=1)
    frame = cv2.imread(str(tmp_path / "short" / "test" / "defect" / "cell0000.png"), cv2.IMREAD_GRAYSCALE)
    slot = json.loads((tmp_path / "short" / "frames.json").read_text())["frames"]["test/defect/cell0000"]["slot"]
    bounds = [0, 25, 50, 75]
    assert np.array_equal(frame[bounds[slot] : bounds[slot + 1]], cells["test/defect/cell0000.png"][2:27])
