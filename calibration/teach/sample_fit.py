"""Whether the samples are frames a framing can train on, said before any training starts.

:meth:`~calibration.teach.models.Models.train` checks it before the training's start is
audited; a face may ask earlier (the teach page's Check) and gets the same answer. The training
checks every frame again as it reads it (:mod:`inspector.method.training`), the backstop for a
size this reads wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from calibration.teach.samples import split
from inspector.errors import DataError, InspectorError
from inspector.framing import Framing
from inspector.framing.recipe import check_training_memory
from inspector.image_io import header_size, read_image


def check_samples_fit(framing: Framing | None, paths: Sequence[Path], input_px: int = 256, *,
                      n_train: int | None = None, remedy: str = "draw the region on one of the samples") -> None:
    """InspectorError, in one line, where the samples ``paths`` are frames ``framing`` cannot
    train on: one of another size than the reference where the part is not searched for (its
    region would fall elsewhere), or so many tiles of them that training would not fit the memory
    (the system kills it hours later, it never refuses). ``n_train`` is how many of them the
    training learns from (None: the share :func:`~calibration.teach.samples.split` leaves it);
    ``input_px`` the model's square input; ``remedy`` what the face offers for a frame of another
    size. Nothing is checked without a framing."""
    if framing is None or not paths:
        return
    first = None
    for path in paths:
        shape = frame_shape(path)
        first = first or shape
        try:
            framing.check_frame(shape, Path(path).name)
        except InspectorError as exc:
            raise InspectorError(f"{exc}; {remedy}") from None
    check_training_memory(framing, first, training_count(paths) if n_train is None else n_train, input_px)


def frame_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file: from its header where that states it, since hundreds of
    5 MP samples would take a while to decode only to learn their size."""
    try:
        with open(path, "rb") as f:
            size = header_size(f.read(1 << 16))
    except OSError:
        size = None  # read_image says why
    if size is None:
        return read_image(path).shape[:2]
    return size[1], size[0]


def training_count(paths: Sequence[Path]) -> int:
    """How many of ``paths`` a teach trains on (the rest calibrates)."""
    try:
        return len(split(list(paths))[0])
    except DataError:
        return len(paths)  # too few to teach at all: the training says so
