#!/usr/bin/env python
"""Lays out ELPV mono cells in the MVTec layout that scripts/build_line_frames.py takes.

A second real dataset for issue 30's line frames, beside magnetic tile: the instant model does
well on ELPV's monocrystalline cells (about 0.95 image AUROC on the cells themselves,
``instant_elpv_size_bank.json``), so framed figures can be set against a good cropped one. The
cells are those of the earlier ELPV evidence (``sweep_instant.py --elpv-all``, at d559bce):

- ``train/good``: the demo split's 300 training cells (``demo.elpv_split().train``; defect
  probability 0);
- ``test/good``: every other good mono cell (288);
- ``test/defect``: every mono cell with defect probability 1 (313). The experts' uncertain ones
  (1/3, 2/3) are left out, as ``demo.mono_cells`` and all earlier ELPV figures leave them out.

ELPV has no defect masks: there is no ``ground_truth`` folder (build_line_frames.py then writes
frames without masks, and eval_framing.py reports no AU-PRO). The files are copied unchanged
(300×300 8-bit grey, CC BY-NC-SA 4.0: see ``demo.ATTRIBUTION``); the same installed
``elpv-dataset`` always gives the same folder.

    python scripts/elpv_layout.py /work/runs/elpv_cells
    python scripts/build_line_frames.py /work/runs/elpv_cells /work/runs/elpv_frames
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import demo


def lay_out(out: Path, root: Path | None = None) -> dict[str, int]:
    """Copies the cells into ``out`` (replacing an earlier layout there); the count per folder."""
    split = demo.elpv_split(root)
    good, defective = demo.mono_cells(root)
    trained_on = set(split.train)
    folders = {
        "train/good": sorted(split.train),
        "test/good": [p for p in good if p not in trained_on],
        "test/defect": defective,
    }
    for name, paths in folders.items():
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for path in paths:
            shutil.copyfile(path, folder / path.name)
    (out / "ATTRIBUTION.txt").write_text(demo.ATTRIBUTION + "\n")
    return {name: len(paths) for name, paths in folders.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (train/good, test/good, test/defect)")
    args = parser.parse_args()
    counts = lay_out(args.out)
    print(", ".join(f"{n} in {name}" for name, n in counts.items()) + f": {args.out}")


if __name__ == "__main__":
    main()
