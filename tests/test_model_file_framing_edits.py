"""A model file's framing edited by hand (then given its digests again, as ``inspector model
upgrade`` does): whatever the framing's tensors or settings hold, the file is refused as it is
read, in one line naming it, never with a traceback, and never once the line has started."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from framing_support import REGION, make_scene
from inspector.errors import ModelFileError
from inspector.framing import Framing
from inspector.method.efficientad import EfficientAD
from inspector.model_file import _read, load_framed_model, save_model, save_tensors


@pytest.fixture(scope="module")
def framed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, reference, _ = make_scene()
    ignore = np.zeros(reference.shape, bool)
    ignore[400:420, 500:600] = True
    path = tmp_path_factory.mktemp("framed") / "framed.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256}, Framing(region=REGION, ignore=ignore, reference=reference, align=True))
    return path


def edited(framed_file: Path, out: Path, *, entry: dict | None = None, tensors: dict | None = None) -> Path:
    """``framed_file`` with its framing's settings and tensors changed, its digests made anew."""
    stored, meta = _read(framed_file)
    meta = {k: v for k, v in meta.items() if k not in ("tensor_sha256", "metadata_sha256")}
    meta["framing"] = {**meta["framing"], **(entry or {})}
    stored.update(tensors or {})
    save_tensors(out, stored, meta)
    return out


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


H, W = make_scene()[1].shape


@pytest.mark.parametrize("name, value, fragment", [
    ("framing.ignore", torch.zeros(H, dtype=torch.uint8), "the don't-care mask is a 1024 uint8 tensor, not one 8-bit grey channel"),
    ("framing.ignore", torch.zeros(H, W, 3, dtype=torch.uint8), "the don't-care mask is a 1024x1280x3 uint8 tensor"),
    ("framing.ignore", torch.zeros(H, W), "the don't-care mask is a 1024x1280 float32 tensor"),
    ("framing.reference", torch.zeros(H, dtype=torch.uint8), "the reference image is a 1024 uint8 tensor, not 8-bit grey or RGB"),
    ("framing.reference", torch.zeros(H, W, 4, dtype=torch.uint8), "the reference image is a 1024x1280x4 uint8 tensor"),
    ("framing.reference", torch.rand(H, W), "the reference image is a 1024x1280 float32 tensor"),
    ("framing.reference", torch.zeros(H, W, dtype=torch.int16), "the reference image is a 1024x1280 int16 tensor"),
    # Refused only where the line built its aligner: 'the region of the reference image is
    # featureless', of which file not said.
    ("framing.reference", torch.full((H, W), 90, dtype=torch.uint8), "the region of the reference image is featureless"),
])
def test_framing_tensors_of_another_shape_or_type_are_refused_naming_the_file(framed_file, tmp_path, name, value, fragment) -> None:
    """A 1-D mask or reference ended in a bare IndexError or ValueError (exit 1, a traceback); a
    3-channel mask was 'the don't-care mask is 1280x1024, the image 1280x1024'; a 4-channel
    reference was refused only as the line built its aligner, without the file's name; a float
    reference or mask was taken and scored."""
    path = edited(framed_file, tmp_path / "edited.safetensors", tensors={name: value})
    with pytest.raises(ModelFileError, match=f"{path}: its framing is unusable \\({fragment}"):
        load_framed_model(path)
    frame = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(frame), make_scene()[1])
    status, out, err = run_main(["predict", str(path), str(frame), "--out", str(tmp_path / "out"), "--backend", "eager"])
    assert status == 2 and err.strip().splitlines() == [f"error: {path}: its framing is unusable ({err.split('(', 1)[1].strip()}"]
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value", [("align", "false"), ("align", None), ("ignore", "yes")])
def test_framing_switches_that_are_not_true_or_false_are_refused(framed_file, tmp_path, key, value) -> None:
    """``"align": "false"`` was read as bool("false"): the part searched for, the edit's opposite."""
    path = edited(framed_file, tmp_path / "edited.safetensors", entry={key: value})
    with pytest.raises(ModelFileError, match=f"{path}: its framing is unusable \\({key} {value!r} is not true or false\\)"):
        load_framed_model(path)


@pytest.mark.parametrize("entry, fragment", [
    ({"tiles": 100000}, "100000 tiles along the region's 400-px side would be 1 px each"),
    ({"tiles": 30}, "more than 64"),
])
def test_tiles_the_region_cannot_be_cut_into_are_refused_as_the_file_is_read(framed_file, tmp_path, entry, fragment) -> None:
    """Refused only as each frame was scored: inspector run registered the version, audited its
    start and FAILed every part with an engine_error alarm; inspector predict printed its header
    and the table's head, then an error without the file's name."""
    path = edited(framed_file, tmp_path / "edited.safetensors", entry=entry)
    with pytest.raises(ModelFileError, match=f"{path}: its framing is unusable \\(.*{fragment}"):
        load_framed_model(path)
    frame = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(frame), make_scene()[1])
    status, out, err = run_main(["predict", str(path), str(frame), "--out", str(tmp_path / "out"), "--backend", "eager"])
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and str(path) in err
