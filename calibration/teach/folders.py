"""Where a product's teach files live, and the stamp that names them.

``<workdir>/<product>/``::

    samples/                 accepted good samples (the teaching set)
    samples/rejected/        camera frames the quality gates refused (for a person to look at)
    samples/rejections.json  every refused sample with its reasons
    samples/gates.json       the quality gates the samples were collected with
    models/                  one model file per version (never changed once registered)
    reports/<stamp>/         calibration report of each version (report.json, scores.png, roc.png)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from inspector.history import data_dir
from inspector.recipes import safe_name


def default_workdir() -> Path:
    return data_dir() / "teach"


@dataclass(frozen=True)
class TeachFolders:
    """The folders of one product's teach files (made when first written, not here)."""

    dir: Path

    @classmethod
    def of(cls, product: str, workdir: str | Path | None = None) -> TeachFolders:
        return cls(Path(workdir or default_workdir()) / safe_name(product))

    @property
    def samples(self) -> Path:
        return self.dir / "samples"

    @property
    def rejected(self) -> Path:
        return self.samples / "rejected"

    @property
    def models(self) -> Path:
        return self.dir / "models"

    @property
    def reports(self) -> Path:
        return self.dir / "reports"


def stamp() -> str:
    """A name part unique to the microsecond, sorting by time."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"
