"""Write .ci/constraints.txt: the exact versions of everything ``inspector[dev]`` installs, as they
are in this environment. CI installs with them, so a new release upstream cannot break a build
that passed; users keep the ranges of setup.cfg. Refresh on purpose:

    pip install -U -e '.[dev]' && bash .ci/run && python scripts/refresh_constraints.py
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from packaging.requirements import Requirement

OUT = Path(__file__).resolve().parents[1] / ".ci" / "constraints.txt"
EXTRAS = ("dev", "gui", "basler", "onnx", "distill", "demo")


def closure(name: str, extras: tuple[str, ...], seen: dict[str, set[str]]) -> None:
    """Every distribution ``name[extras]`` needs here, by normalised name."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen and set(extras) <= seen[key]:
        return
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return  # not needed on this platform (an environment marker left it out)
    seen.setdefault(key, set()).update(extras)
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            closure(req.name, tuple(req.extras), seen)


def main() -> None:
    seen: dict[str, set[str]] = {}
    closure("inspector", EXTRAS, seen)
    seen.pop("inspector", None)
    lines = [
        "# Versions known to pass .ci/run (written by scripts/refresh_constraints.py; see its docstring).",
        "# torch without a local label: the constraint admits the CPU build (+cpu) and the CUDA one.",
    ]
    for key in sorted(seen):
        version = md.version(key).split("+")[0]
        lines.append(f"{key}=={version}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(lines) - 2} pins written to {OUT}")


if __name__ == "__main__":
    main()
