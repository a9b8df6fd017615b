"""scripts/build_tall_frames.py: the same source and seed give the same frames, in MVTec layout,
with masks in frame coordinates (issue 30, part 6). Needs ../shared/data (skips without it)."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_tall_frames.py"


def _builder():
    spec = importlib.util.spec_from_file_location("build_tall_frames", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
