"""The framing is part of the recipe: drawn (or given) at training, kept in the model file, and
applied by the engine wherever the model runs -- the command line, evaluation, the line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cli.main import main
from framing_support import REGION, frame_with_part, make_scene
from inspector.engine import Engine
from inspector.errors import InspectorError, ModelFileError
from inspector.evaluate import score_images
from inspector.image_io import TestImage as Item, mvtec_test_set  # renamed: pytest would collect Test*
from inspector.framing import Framing
from inspector.framing.recipe import framing_file_parts, framing_from_file, make_framing
from inspector.method.efficientad import EfficientAD
from inspector.model_file import METADATA_KEY, load_framed_model, load_model_tensors, save_model


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def frames(scene, tmp_path_factory) -> Path:
    """An MVTec-layout folder of line frames: good parts moved and turned on changing belts, and
    a test set with a scratched part, a good one turned by 10 degrees and an empty belt."""
    rng, reference, _ = scene
    root = tmp_path_factory.mktemp("line")
    (root / "train" / "good").mkdir(parents=True)
    cv2.imwrite(str(root / "train" / "good" / "000.png"), reference)
    for i in range(1, 12):
        frame, _ = frame_with_part(rng, reference, float(rng.uniform(-8, 8)), float(rng.uniform(-120, 120)), float(rng.uniform(-90, 90)))
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), frame)
    test = root / "test"
    (test / "good").mkdir(parents=True)
    (test / "scratch").mkdir()
    (root / "ground_truth" / "scratch").mkdir(parents=True)
    turned, _ = frame_with_part(rng, reference, 10.0, 60.0, -40.0)
    cv2.imwrite(str(test / "good" / "turned.png"), turned)
    scratched, truth = frame_with_part(rng, reference, -5.0, -80.0, 50.0)
    x, y, w, h = REGION
    line = cv2.transform(np.array([[[x + 120, y + 100], [x + 260, y + 220]]], np.float32), truth)[0].astype(int)
    mask = np.zeros(scratched.shape, np.uint8)
    cv2.line(mask, tuple(line[0]), tuple(line[1]), 255, 7)
    scratched[mask > 0] = 255
    cv2.imwrite(str(test / "scratch" / "scratched.png"), scratched)
    cv2.imwrite(str(root / "ground_truth" / "scratch" / "scratched_mask.png"), mask)
    return root


def test_a_framing_is_kept_in_the_model_file_inside_its_digests(scene, tmp_path) -> None:
    _, reference, _ = scene
    ignore = np.zeros(reference.shape, bool)
    ignore[400:420, 500:600] = True
    framing = Framing(region=REGION, ignore=ignore, reference=reference, align=True, tiles=3, defect_px=6.0)
    path = tmp_path / "m.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256}, framing)

    _, meta, loaded = load_framed_model(path)
    assert loaded.region == REGION and loaded.align and loaded.tiles == 3 and loaded.defect_px == 6.0
    assert np.array_equal(loaded.ignore, ignore) and np.array_equal(loaded.reference, reference)
    assert meta["framing"]["reference_size"] == [reference.shape[1], reference.shape[0]]

    # An edited region breaks the metadata digest, an edited mask the tensors': both refused.
    tensors, meta = load_model_tensors(path)
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata={METADATA_KEY: json.dumps({**meta, "framing": {**meta["framing"], "region": [0, 0, 64, 64]}})})
    with pytest.raises(ModelFileError, match="metadata"):
        load_framed_model(edited)
    tensors["framing.ignore"] = torch.zeros_like(tensors["framing.ignore"])
    save_file(tensors, str(edited), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ModelFileError, match="tensor"):
        load_framed_model(edited)


def test_a_stored_framing_that_cannot_work_is_refused_by_name(scene) -> None:
    _, reference, _ = scene
    meta, tensors = framing_file_parts(Framing(region=REGION, reference=reference, align=True))
    meta["framing"]["region"] = [1200, 1000, 400, 400]  # off the reference
    with pytest.raises(ModelFileError, match="its framing is unusable"):
        framing_from_file(meta, tensors, "m.safetensors")
    meta["framing"]["region"] = list(REGION)
    meta["framing"]["tiles"] = "many"
    with pytest.raises(ModelFileError, match="tiles 'many'"):
        framing_from_file(meta, tensors, "m.safetensors")
    meta["framing"]["tiles"] = "auto"
    # A turn the search cannot take was refused only where the aligner was built, without the
    # file's name: a model upgraded after a hand edit failed in predict with a bare range error.
    meta["framing"]["max_angle_deg"] = 1000.0
    with pytest.raises(ModelFileError, match=r"m.safetensors: its framing is unusable \(the largest turn searched must be within 0..45 degrees, got 1000\)"):
        framing_from_file(meta, tensors, "m.safetensors")


def test_options_that_change_nothing_make_no_framing_and_bad_ones_one_line(scene) -> None:
    _, reference, _ = scene
    assert make_framing(reference[:600, :600]) is None  # square, no region: squeezed as before
    assert make_framing(np.zeros((1000, 300), np.uint8)) is not None  # tall: tiled along its length
    flat = np.full_like(reference, 90)
    for kwargs, fragment in [
        (dict(region=(1200, 0, 400, 400)), "does not lie inside"),
        (dict(align=True), "alignment needs a region"),
        (dict(ignore=np.zeros((10, 10), bool)), "draw it on the reference"),
        (dict(region=(0, 0, 1280, 1024), tiles=20), "more than 64"),
    ]:
        with pytest.raises(InspectorError, match=fragment):
            make_framing(reference, **kwargs)
    with pytest.raises(InspectorError, match="the part cannot be found"):
        make_framing(flat, region=REGION, align=True)


@pytest.mark.slow
def test_train_with_a_region_and_alignment_then_eval_and_predict_in_frame_pixels(frames, tmp_path, capsys) -> None:
    model = tmp_path / "framed.safetensors"
    region = ",".join(str(v) for v in REGION)
    assert main(["train", str(frames), "--out", str(model), "--kind", "instant", "--features", "pdn",
                 "--image-size", "128", "--region", region, "--align", "--device", "cpu"]) == 0
    assert "inspects region 440,330,400,340, part found first" in capsys.readouterr().out

    engine = Engine(model, device="cpu", backend="eager")
    assert engine.framing.region == REGION and engine.framing.align
    turned = cv2.imread(str(frames / "test" / "good" / "turned.png"), cv2.IMREAD_GRAYSCALE)
    scratched = cv2.imread(str(frames / "test" / "scratch" / "scratched.png"), cv2.IMREAD_GRAYSCALE)
    empty = np.full_like(turned, 40)
    good, bad, none = engine.predict_batch([turned, scratched, empty])
    assert not good.no_part and good.match_quality > 0.5 and good.anomaly_map.shape == turned.shape
    assert bad.score > good.score  # the scratch, found on the part turned by -5 degrees
    mask = cv2.imread(str(frames / "ground_truth" / "scratch" / "scratched_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    peak = np.unravel_index(np.argmax(bad.anomaly_map), bad.anomaly_map.shape)
    assert cv2.dilate(mask.astype(np.uint8), np.ones((41, 41), np.uint8))[peak]  # the map's peak lies on the scratch
    assert none.no_part and none.score == 0.0 and not none.anomaly_map.any()
    # The region's outline follows the part: the turned part's corners are not the reference's.
    assert good.outline.shape == (4, 2) and not np.allclose(good.outline, none.outline if none.outline is not None else 0)

    assert main(["eval", str(model), str(frames), "--device", "cpu"]) == 0
    assert "overall" in capsys.readouterr().out
    # The pixel metrics count only what the model inspects: its map is 0 elsewhere by construction,
    # and those zeros would outrank every inspected score below 0.
    for s in score_images(engine, mvtec_test_set(frames), show_progress=False):
        assert s.inspected is not None and s.inspected.any() and not s.inspected.all()
        assert not s.anomaly_map[~s.inspected].any()
    assert score_images(engine, [Item(empty_frame(tmp_path, empty), "good", None)], show_progress=False)[0].inspected.sum() == 0

    # predict says NO PART for the empty belt and draws the region where the part was found.
    empty_png = tmp_path / "empty.png"
    cv2.imwrite(str(empty_png), empty)
    assert main(["predict", str(model), str(empty_png), str(frames / "test" / "good" / "turned.png"),
                 "--out", str(tmp_path / "overlays"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["-", "NO"] and line.endswith("empty.png") for line in lines)
    drawn = cv2.imread(str(tmp_path / "overlays" / "turned_heatmap.png"))
    assert drawn is not None and (np.abs(drawn.astype(int) - [255, 229, 0]).sum(axis=2) < 60).sum() > 500  # the outline (BGR)


@pytest.mark.parametrize("options, fragment", [
    (["--region", "1200,1000,400,400"], "does not lie inside the 1280x1024 image"),
    (["--region", "10,10,100"], "a region is X,Y,W,H"),
    (["--align"], "alignment needs a region"),
    (["--region", "0,0,1280,1024", "--tiles", "20"], "more than 64"),
])
def test_bad_framing_options_are_one_line_and_exit_2_with_nothing_written(frames, tmp_path, capsys, options, fragment) -> None:
    model = tmp_path / "m.safetensors"
    assert main(["train", str(frames), "--out", str(model), "--kind", "instant", "--features", "pdn", *options]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not model.exists()


def test_a_mask_of_the_wrong_size_is_refused(frames, tmp_path, capsys) -> None:
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.zeros((100, 100), np.uint8))
    model = tmp_path / "m.safetensors"
    assert main(["train", str(frames), "--out", str(model), "--kind", "instant", "--features", "pdn",
                 "--region", "440,330,400,340", "--ignore", str(mask)]) == 2
    err = capsys.readouterr().err
    assert "the don't-care mask is 100x100, the image 1280x1024" in err
    # The refusal named the reference alone: which of the two files to draw again, it did not say.
    assert f"don't-care mask {mask})" in err and len(err.strip().splitlines()) == 1
    assert not model.exists()


def test_a_mask_that_covers_the_whole_region_names_the_mask_file(frames, tmp_path, capsys) -> None:
    """A mask painted on a transparent layer whose clear pixels are stored white reads all white:
    refused as covering the region, naming the mask file as well as the reference."""
    mask = tmp_path / "painted.png"
    rgba = np.zeros((1024, 1280, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[400:420, 500:600, 3] = 255
    cv2.imwrite(str(mask), rgba)
    model = tmp_path / "m.safetensors"
    assert main(["train", str(frames), "--out", str(model), "--kind", "instant", "--features", "pdn",
                 "--region", "440,330,400,340", "--ignore", str(mask)]) == 2
    err = capsys.readouterr().err
    assert "covers the whole region" in err and f"don't-care mask {mask})" in err
    assert not model.exists()


def empty_frame(folder: Path, frame: np.ndarray) -> Path:
    path = folder / "belt.png"
    cv2.imwrite(str(path), frame)
    return path
