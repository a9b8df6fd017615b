"""Where a product's teach files live, and the stamp that names them.

``<workdir>/<folder>/``, the folder derived from the product's name by :func:`folder_name`::

    samples/                 accepted good samples (the teaching set)
    samples/rejected/        camera frames the quality gates refused (for a person to look at)
    samples/rejections.json  every refused sample with its reasons
    samples/gates.json       the quality gates the samples were collected with
    models/                  one model file per version (never changed once registered)
    reports/<stamp>/         calibration report of each version (report.json, scores.png, roc.png)
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from inspector.history import data_dir
from inspector.history.pins import validate_name
from inspector.recipes import safe_name

#: A name that is a folder name as it is: letters, digits, ``.``, ``_`` and ``-``, beginning and
#: ending with a letter or digit. A derived folder name holds a ``+``, which a plain one never does.
_PLAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
#: Names Windows keeps for devices, with any extension.
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def default_workdir() -> Path:
    return data_dir() / "teach"


@dataclass(frozen=True)
class TeachFolders:
    """The folders of one product's teach files (made when first written, not here)."""

    dir: Path

    @classmethod
    def of(cls, product: str, workdir: str | Path | None = None) -> TeachFolders:
        """The folders of ``product``; DatabaseError for a name the rule for names refuses
        (``../tile`` would otherwise be ``tile``'s samples), whether or not the product exists yet."""
        validate_name(product, "product")
        return cls(Path(workdir or default_workdir()) / folder_name(product))

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


def folder_name(product: str) -> str:
    """The teach folder's name for ``product``; two products never share one. A plain name (see
    ``_PLAIN``) is its own folder, as before, so the teach files of such products stay where they are. Any
    other name is made plain (``my tile`` -> ``my_tile``) and told apart by a digest of the whole
    name after a ``+``: ``my tile`` and ``my_tile`` would otherwise meet, and so would ``Tile`` and
    ``tile`` where file names ignore case (Windows, macOS)."""
    if _PLAIN.fullmatch(product) and (
        sys.platform.startswith("linux")
        or (product == product.lower() and product.split(".")[0] not in _WINDOWS_DEVICES)
    ):
        return product
    digest = hashlib.sha256(product.encode("utf-8")).hexdigest()[:16]
    return f"{safe_name(product)}+{digest}"


def stamp() -> str:
    """A name part unique to the microsecond, sorting by time."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"
