"""scripts/bench_align.py, the benchmark behind issue 30's alignment target (15 ms in a 5 MP
frame): it finds every placed part to within a pixel and writes the figures it prints."""

import json
import sys

from script_support import load_script


def test_the_benchmark_finds_the_parts_and_writes_its_figures(tmp_path, monkeypatch, capsys) -> None:
    bench = load_script("bench_align.py")
    out = tmp_path / "align.json"
    monkeypatch.setattr(sys, "argv", ["bench_align.py", "--frames", "2", "--repeats", "2", "--json", str(out)])
    bench.main()
    figures = json.loads(out.read_text())
    assert figures["frame"] == "2592x1944" and figures["frames"] == 2
    assert figures["worst_corner_error_px"] < 1.5 and figures["lowest_quality"] > 0.9
    for name in ("align_ms", "framing_ms"):
        assert 0 < figures[f"{name}_p10"] <= figures[f"{name}_median"] <= figures[f"{name}_p90"]
    printed = capsys.readouterr().out
    assert "align a 2592x1944 frame: median" in printed and "the framing's whole cost" in printed
