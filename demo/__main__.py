"""``python -m demo``: the demo's data split and its model card (``scripts/make_demo_model.sh``)."""

from __future__ import annotations

import sys
from pathlib import Path

from demo import copy_split, elpv_split, write_card


def main(argv: list[str] | None = None) -> int:
    """``python -m demo split OUTDIR``: writes train/, calibration_good/, calibration_defect/,
    replay/; ``python -m demo card MODEL REPORT_JSON OUT_JSON ITERATIONS``: the model card."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m demo")
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("split")
    s.add_argument("out", type=Path)
    c = sub.add_parser("card")
    c.add_argument("model", type=Path)
    c.add_argument("report", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("iterations", type=int)
    args = p.parse_args(argv)
    if args.action == "card":
        card = write_card(args.model, args.report, args.out, args.iterations)
        print(f"card written to {args.out}: threshold {card['calibration'].get('threshold')}")
        return 0
    split = elpv_split()
    copy_split(split.train, args.out / "train")
    copy_split(split.calibration_good, args.out / "calibration_good")
    copy_split(split.calibration_defect, args.out / "calibration_defect")
    copy_split([p for p, _ in split.replay], args.out / "replay")
    print(f"{len(split.train)} training, {len(split.calibration_good)} + {len(split.calibration_defect)} calibration, "
          f"{len(split.replay)} replay cells under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
