"""scripts/bench_tiles.py, the benchmark behind the tiles-per-pass decision: each way of passing a
frame's tiles is timed on the same frame and named as the evidence files name it, and the batch's
ratios come only where both the batch and one pass a tile were timed."""

from types import SimpleNamespace

import numpy as np

from script_support import load_script


def _bench():
    return load_script("bench_tiles.py")


class _CountingEngine:
    """Maps of zeros, counting the tiles of each pass."""

    image_size = 64

    def __init__(self) -> None:
        self.passes: list[int] = []

    def predict_batch(self, images):
        self.passes.append(len(images))
        return [SimpleNamespace(score=0.0, anomaly_map=np.zeros(image.shape[:2], np.float32)) for image in images]


def test_each_way_passes_the_tiles_it_names_and_the_row_holds_its_figures() -> None:
    bench = _bench()
    engine = _CountingEngine()
    frame = np.zeros((64, round(64 * (1 + 3 * 0.75))), np.uint8)  # four tiles overlapping by a quarter
    row = bench._time(engine, frame, 4, repeats=2, passes=[None, 2, 1])
    assert [bench._name(k) for k in (None, 2, 1)] == ["batch", "2_per_pass", "one_by_one"]
    # A warm-up and two repeats of each way, the ways alternating: 4, then 2+2, then 1+1+1+1.
    assert engine.passes == [4, 2, 2, 1, 1, 1, 1] * 3
    for name in ("batch", "2_per_pass", "one_by_one"):
        assert {"median_ms", "p10_ms", "p90_ms", "per_tile_ms", "tiles_per_s", "cpu_median_ms"} <= row[name].keys()
    assert row["tiles"] == 4 and "batch_speedup" in row and "batch_cpu_ratio" in row
    assert "batch_speedup" not in bench._time(_CountingEngine(), frame, 4, repeats=1, passes=[None, 2])


def test_the_machine_is_described_by_its_avx_flags() -> None:
    flags = _bench()._avx_flags()
    assert all(flag.startswith("avx") for flag in flags) and flags == sorted(set(flags))
