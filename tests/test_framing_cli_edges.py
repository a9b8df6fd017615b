"""Odd and bad input to the framing options of ``inspector train``, as a technician types them:
each refused in one line with exit 2 and nothing written, before any training."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.teach.framing import Drawing, drawn_framing
from cli.main import main
from framing_support import REGION, make_scene
from inspector.errors import InspectorError
from inspector.framing.recipe import make_framing
from inspector.framing.tiles import plan_tiles

REGION_TEXT = ",".join(str(v) for v in REGION)


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def frames(scene, tmp_path_factory) -> Path:
    """Two good frames (the refusals come before the count of images is checked)."""
    _, reference, _ = scene
    folder = tmp_path_factory.mktemp("edges") / "good"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), reference)
    cv2.imwrite(str(folder / "001.png"), np.roll(reference, 20, axis=1))
    return folder


def refused(frames: Path, tmp_path: Path, capsys, *options: str) -> str:
    """Runs ``inspector train`` with ``options``; asserts exit 2, one line, no file; the line."""
    model = tmp_path / "m.safetensors"
    assert main(["train", str(frames), "--out", str(model), "--kind", "instant", "--features", "pdn", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not any(tmp_path.glob("m.safetensors*"))
    return err


def test_a_missing_mask_file_is_one_line_not_a_traceback(frames, tmp_path, capsys) -> None:
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, "--ignore", str(tmp_path / "nowhere.png"))
    assert "nowhere.png: no such mask file" in err


def test_a_mask_that_marks_nothing_is_refused_as_written_0_and_1(frames, tmp_path, capsys) -> None:
    """A don't-care mask written 0/1 (as labelling tools do) looks black: read as 0/255, it would
    mark nothing, and the areas the technician meant to ignore would be inspected."""
    mask = np.zeros((1024, 1280), np.uint8)
    mask[400:450, 500:560] = 1
    path = tmp_path / "mask01.png"
    cv2.imwrite(str(path), mask)
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, "--ignore", str(path))
    assert "marks no pixel as don't care" in err and "0 and 255" in err


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "0", "-3"])
def test_a_defect_size_that_is_no_positive_number_is_refused(frames, tmp_path, capsys, value) -> None:
    """``--defect-px inf`` used to be accepted and stored, and the model file then refused
    everywhere it was loaded ("defect_px inf is not a number")."""
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, "--defect-px", value)
    assert "--defect-px must be a positive number of pixels" in err


@pytest.mark.parametrize("tiles", ["auto", "off", 2])
def test_the_core_refuses_an_infinite_defect_size_whatever_the_tiles(scene, tiles) -> None:
    """The teach page (drawn_framing) and any other caller of make_framing as well as the command line."""
    _, reference, _ = scene
    with pytest.raises(InspectorError, match="positive number of pixels"):
        make_framing(reference, region=REGION, tiles=tiles, defect_px=math.inf)
    with pytest.raises(InspectorError, match="positive number of pixels"):
        drawn_framing(reference, Drawing(region=REGION, tiles=tiles, defect_px=math.inf))
    if tiles != "off":
        with pytest.raises(InspectorError, match="positive number of pixels"):
            plan_tiles((400, 340), 256, tiles, math.inf)
