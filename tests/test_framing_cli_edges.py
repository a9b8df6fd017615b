"""Odd and bad input to the framing options of ``inspector train``, as a technician types them:
each refused in one line with exit 2 and nothing written, before any training."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from calibration.calibrate import calibrate_engine
from calibration.teach.framing import Drawing, drawn_framing
from cli.main import main
from framing_support import REGION, frame_with_part, make_scene
from inspector.errors import InspectorError
from inspector.framing import FramedScorer, Framing
from inspector.framing.align import Alignment
from inspector.framing.framed import inspected_mask
from inspector.framing import recipe
from inspector.framing.recipe import check_training_memory, make_framing
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


def test_a_mask_cut_short_or_a_folder_is_one_line_naming_it(frames, tmp_path, capfd) -> None:
    """A mask PNG cut short (a copy killed half-way) was refused under OpenCV's own line ('[ WARN:0]
    ... PNG input buffer is incomplete'), two lines; a folder given as the mask was 'no such mask
    file', of a folder that is there."""
    whole = np.zeros((1024, 1280), np.uint8)
    whole[400:420, 500:600] = 255
    data = cv2.imencode(".png", whole)[1].tobytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    model = tmp_path / "m.safetensors"
    for mask, says in ((cut, f"{cut}: not a readable mask (a PNG file cut short"),
                       (tmp_path, f"{tmp_path}: is a folder, not a mask image file")):
        assert main(["train", str(frames), "--out", str(model), "--kind", "instant", "--features", "pdn",
                     "--region", REGION_TEXT, "--ignore", str(mask)]) == 2
        err = capfd.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and says in err, err
        assert not model.exists()


def test_a_mask_that_marks_nothing_is_refused_as_written_0_and_1(frames, tmp_path, capsys) -> None:
    """A don't-care mask written 0/1 (as labelling tools do) looks black: read as 0/255, it would
    mark nothing, and the areas the technician meant to ignore would be inspected."""
    mask = np.zeros((1024, 1280), np.uint8)
    mask[400:450, 500:560] = 1
    path = tmp_path / "mask01.png"
    cv2.imwrite(str(path), mask)
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, "--ignore", str(path))
    assert "marks no pixel as don't care" in err and "0 and 255" in err


@pytest.mark.parametrize("option, value", [("--min-match", "0.5"), ("--max-angle", "30")])
def test_an_alignment_setting_without_align_is_refused(frames, tmp_path, capsys, option, value) -> None:
    """``--min-match`` or ``--max-angle`` without ``--align`` trained a model that never searched
    for the part, the setting stored and never used, without a word."""
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, option, value)
    assert f"{option} sets how the part is found in every frame: it needs --align" in err


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


# --- a framed score is the maximum of the map the operator sees -------------------------------


class SpikeMap:
    """An engine whose map is -0.05 everywhere but one pixel, 1.0, at (row, column) ``at`` of the
    region: a peak the resampling into a turned frame cannot keep whole."""

    image_size = 2048  # never tiled here

    def __init__(self, at: tuple[int, int]) -> None:
        self.at = at

    def predict_batch(self, images):
        maps = [np.full(np.shape(image)[:2], -0.05, np.float32) for image in images]
        for m in maps:
            m[self.at] = 1.0
        return [SimpleNamespace(score=float(m.max()), anomaly_map=m) for m in maps]


@pytest.mark.parametrize("angle, dx, dy", [(10.0, 120.0, -70.0), (-7.0, -420.0, 300.0)])
def test_a_turned_parts_score_is_the_maximum_of_its_map_in_the_frame(scene, angle, dx, dy) -> None:
    """Before, the score was the region map's maximum and the frame map a bilinear resampling of
    it: a FAIL just over the threshold could show no pixel over it, so no contour."""
    rng, reference, _ = scene
    frame, _ = frame_with_part(rng, reference, angle, dx, dy)
    x, y, w, h = REGION
    scorer = FramedScorer(SpikeMap((h // 2, w // 2 + 1)), Framing(region=REGION, reference=reference, align=True))
    found = scorer.predict(frame)
    assert not found.no_part
    inspected = inspected_mask(scorer.framing, frame.shape, found.outline)
    assert found.score == found.anomaly_map[inspected].max()
    assert 0.0 < found.score < 1.0  # the spike, resampled
    assert found.anomaly_map.max() == found.score


def test_a_framed_score_never_counts_the_zeros_outside_the_region_or_in_dont_care(scene) -> None:
    rng, reference, _ = scene
    x, y, w, h = REGION
    ignore = np.zeros(reference.shape, bool)
    ignore[y : y + 10, x : x + 10] = True
    spike_under_ignore = SpikeMap((5, 5))  # only the don't-care pixels are above -0.05
    frame, _ = frame_with_part(rng, reference, 10.0, 60.0, 40.0)
    for framing in (Framing(region=REGION, ignore=ignore), Framing(region=REGION, ignore=ignore, reference=reference,
                                                                      align=True)):
        found = FramedScorer(spike_under_ignore, framing).predict(frame if framing.align else reference)
        assert found.score == pytest.approx(-0.05)


def test_a_part_found_at_the_frames_edge_is_scored_on_what_of_it_is_in_the_frame(scene) -> None:
    _, reference, _ = scene
    x, y, w, h = REGION
    scorer = FramedScorer(SpikeMap((0, 0)), Framing(region=REGION, reference=reference, align=True))
    frame_shape = reference.shape
    moved = Alignment(np.array([[1.0, 0.0, frame_shape[1] - x - w + 30], [0.0, 1.0, 0.0]]), 0.9, 0.0,
                      (frame_shape[1] - x - w + 30, 0.0))  # the region's last 30 columns beyond the frame
    region_map = np.full((h, w), -0.05, np.float32)
    region_map[h // 2, w - 10] = 1.0  # beyond the frame's edge
    frame_map, score = scorer._to_frame(region_map, moved, frame_shape)
    assert frame_map.shape == frame_shape
    assert score == pytest.approx(-0.05)
    region_map[h // 2, w - 40] = 0.5  # inside it
    assert scorer._to_frame(region_map, moved, frame_shape)[1] == pytest.approx(0.5)


# --- the pixel rule of a framed model counts the inspected pixels only -------------------------


class BrightnessMap:
    """An engine whose map is a tenth of the image's brightness: what it saw is what it says."""

    image_size = 2048  # never tiled here

    def predict_batch(self, images):
        maps = [np.asarray(image, np.float32) / 2550.0 for image in images]
        return [SimpleNamespace(score=float(m.max()), anomaly_map=m) for m in maps]


class FramedBrightnessEngine:
    """What calibration sees of a framed model: ``framing``, ``model_path`` and ``predict_batch``
    through the real FramedScorer (the map 0 outside the region, in frame pixels)."""

    model_path = Path("framed-brightness.safetensors")

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self._framed = FramedScorer(BrightnessMap(), framing)

    def predict_batch(self, images):
        return [SimpleNamespace(score=p.score, anomaly_map=p.anomaly_map, no_part=p.no_part, outline=p.outline)
                for p in self._framed.predict_batch(images)]


def test_the_inspected_pixels_are_the_region_where_the_part_was_found_less_dont_care(scene) -> None:
    rng, reference, _ = scene
    x, y, w, h = REGION
    ignore = np.zeros(reference.shape, bool)
    ignore[y + 40 : y + 120, x + 50 : x + 150] = True
    framing = Framing(region=REGION, reference=reference, ignore=ignore, align=True)
    frame, _ = frame_with_part(rng, reference, 8.0, 120.0, -70.0)
    white = np.full_like(frame, 255)  # the map is 0.1 wherever the engine looked
    scorer = FramedScorer(BrightnessMap(), framing)
    found = scorer.predict(frame)
    assert not found.no_part
    shown = FramedScorer(BrightnessMap(), Framing(region=REGION, ignore=ignore)).predict(white)
    inspected = inspected_mask(framing, frame.shape, found.outline)
    looked = scorer._to_frame(np.full((h, w), 0.1, np.float32), found.alignment, frame.shape)[0] > 0.05
    assert np.mean(inspected != looked) < 2e-3  # the same pixels, up to the region's rim
    assert abs(int(inspected.sum()) - (w * h - 80 * 100)) < 0.01 * w * h
    # Without alignment: the region as drawn, less the don't-care pixels, exactly.
    assert np.array_equal(inspected_mask(Framing(region=REGION, ignore=ignore), frame.shape), shown.anomaly_map > 0)


def test_a_framed_pixel_rule_is_set_on_the_inspected_pixels_not_the_whole_frame(tmp_path) -> None:
    """The pixel threshold is the (1 - pixel FPR) quantile of good maps' pixels. A framed map is 0
    outside its region; counted, those zeros put the threshold at 20 times the asked share of the
    inspected pixels here (a 64-px region in a 320x256 frame)."""
    region = (100, 80, 64, 64)
    rng = np.random.default_rng(3)
    good = []
    for i in range(40):
        frame = np.full((256, 320), 30, np.uint8)
        frame[80:144, 100:164] = rng.integers(0, 256, (64, 64))
        path = tmp_path / f"{i:03d}.png"
        cv2.imwrite(str(path), frame)
        good.append(path)
    engine = FramedBrightnessEngine(Framing(region=region))
    result = calibrate_engine(engine, good, target_frr=0.05, pixel_fpr=0.01)
    values = np.concatenate([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[80:144, 100:164].ravel() / 2550.0 for p in good])
    share_above = float(np.mean(values > result.pixel.pixel_threshold))
    assert share_above == pytest.approx(0.01, abs=0.003)  # 0.2 when the zeros outside were counted
    assert result.pixel.n_pixels == values.size


@pytest.mark.parametrize("region", ["-5,0,100,100", "10,-20,100,100", "-1.5,0,100,100"])
def test_a_region_with_negative_numbers_is_refused_by_what_is_wrong_with_it(frames, tmp_path, capsys, region) -> None:
    """argparse took "-5,0,100,100" for an option and said "--region: expected one argument"."""
    err = refused(frames, tmp_path, capsys, "--region", region)
    assert "expected one argument" not in err
    assert ("does not lie inside" if "." not in region else "a region is X,Y,W,H in whole pixels") in err


def test_negative_numbers_still_go_to_their_own_options(frames, tmp_path, capsys) -> None:
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, "--defect-px", "-3")
    assert "--defect-px must be a positive number" in err


# --- tiles that would not fit the memory (issue 30, part 7) --------------------------------------


def test_training_pieces_that_would_not_fit_the_memory_are_refused_before_reading_a_frame(scene) -> None:
    """762 frames of 35 tiles each (--defect-px 0.5 on a 1280x1024 frame) need about 47 GB to be
    read for training: the system killed the run; now one line says so, before any work."""
    _, reference, _ = scene
    framing = make_framing(reference, defect_px=0.5)
    assert framing is not None
    with pytest.raises(InspectorError, match=r"762 training images of 35 tiles each would take about 47\.2 GB"):
        check_training_memory(framing, reference.shape, 762, 256, available=20 * 10**9)
    check_training_memory(framing, reference.shape, 100, 256, available=20 * 10**9)  # 6.2 GB: fits
    check_training_memory(None, reference.shape, 10**6, 256, available=1)  # no framing: as before, unchecked
    one_tile = make_framing(reference, region=REGION)
    with pytest.raises(InspectorError, match="1 tile each"):
        check_training_memory(one_tile, reference.shape, 10**6, 256, available=20 * 10**9)


def test_the_command_line_refuses_tiles_beyond_the_free_memory_in_one_line(frames, tmp_path, capsys, monkeypatch) -> None:
    # The machine's free memory, made small: no real machine here is small enough to try it on.
    monkeypatch.setattr(recipe, "available_memory_bytes", lambda: 10**7)
    err = refused(frames, tmp_path, capsys, "--defect-px", "0.5")
    assert "2 training images of 35 tiles each would take about" in err and "more than the 0.0 GB free here" in err


# --- a frame of another size than the reference is refused naming its file ----------------------


@pytest.fixture(scope="module")
def region_model(scene, tmp_path_factory) -> Path:
    """An instant model with a region and no alignment: its frames must be the reference's size."""
    _, reference, _ = scene
    good = tmp_path_factory.mktemp("region") / "good"
    good.mkdir()
    for i in range(10):
        cv2.imwrite(str(good / f"{i:03d}.png"), np.roll(reference, 3 * i, axis=1))
    model = good.parent / "m.safetensors"
    assert main(["train", str(good), "--out", str(model), "--kind", "instant", "--features", "pdn",
                 "--image-size", "128", "--region", REGION_TEXT, "--device", "cpu"]) == 0
    return model


def test_a_frame_of_another_size_is_refused_naming_its_file(region_model, scene, tmp_path, capsys) -> None:
    """Train, calibrate, eval and predict said 'the frame is 1000x800, the recipe's reference
    1280x1024' without saying which of a folder's frames it was."""
    _, reference, _ = scene
    good = tmp_path / "test" / "good"
    good.mkdir(parents=True)
    for i in range(10):
        cv2.imwrite(str(good / f"{i:03d}.png"), np.roll(reference, 3 * i, axis=0))
    odd = good / "005_odd.png"  # among the first images read, in the training and the held-out share
    cv2.imwrite(str(odd), reference[:800, :1000])
    capsys.readouterr()
    runs = {
        "train": ["train", str(good), "--out", str(tmp_path / "t.safetensors"), "--kind", "instant", "--features",
                  "pdn", "--image-size", "128", "--region", REGION_TEXT, "--device", "cpu"],
        "calibrate": ["calibrate", str(region_model), str(good), "--target-frr", "0.2", "--report", str(tmp_path / "r.json"),
                      "--out", str(tmp_path / "c.safetensors"), "--device", "cpu", "--backend", "eager"],
        "eval": ["eval", str(region_model), str(tmp_path), "--device", "cpu"],
        "predict": ["predict", str(region_model), str(good / "000.png"), str(odd), "--out", str(tmp_path / "o"),
                    "--device", "cpu", "--backend", "eager"],
    }
    for command, argv in runs.items():
        assert main(argv) == 2, command
        err = capsys.readouterr().err.strip()
        assert err.splitlines()[-1].startswith(f"error: {odd}: the frame is 1000x800"), (command, err)
    assert not list(tmp_path.glob("*.safetensors")) and not (tmp_path / "r.json").exists()


def test_the_command_line_refuses_a_smallest_defect_that_tiles_off_cannot_show(frames, tmp_path, capsys) -> None:
    """The teach page refused it, the command line trained a model that could not see it: the
    check now lives in the core, below both."""
    err = refused(frames, tmp_path, capsys, "--region", REGION_TEXT, "--tiles", "off", "--defect-px", "2")
    assert "with tiles off a 2-px defect is 1.3 px at the model's input" in err and "choose auto tiles" in err


def test_a_frame_too_small_to_search_is_refused_naming_its_file_before_anything_is_written(scene, tmp_path, capsys) -> None:
    """A frame smaller than what the part is searched by was refused by the aligner, deep in
    the scoring, as 'the frame (300x750) is smaller than the part's region' without saying which
    file; inspector predict had written the overlays of the frames before it by then."""
    from inspector.framing.align import Aligner, matched_box

    _, reference, _ = scene
    framing = make_framing(reference, region=REGION, align=True)
    aligner = Aligner(framing.reference, REGION, max_angle_deg=framing.max_angle_deg)
    _, _, bw, bh = matched_box(REGION, reference.shape)
    for w in range(bw - 12, bw + 2):  # check_frame refuses exactly the frames the search cannot take
        frame = reference[:bh + 10, :w]
        try:
            aligner.align(frame)
            searched = True
        except InspectorError:
            searched = False
        if searched:
            framing.check_frame(frame.shape, "f.png")
        else:
            with pytest.raises(InspectorError, match=r"^f.png: the frame is \d+x\d+, smaller than the part's region"):
                framing.check_frame(frame.shape, "f.png")
    framing.check_frame(reference.shape, "f.png")

    model = tmp_path / "m.safetensors"
    good = tmp_path / "good"
    good.mkdir()
    for i in range(10):
        cv2.imwrite(str(good / f"{i}.png"), np.roll(reference, 3 * i, axis=1))
    assert main(["train", str(good), "--out", str(model), "--kind", "instant", "--features", "pdn", "--image-size", "128",
                 "--region", REGION_TEXT, "--align", "--device", "cpu"]) == 0
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), reference[:300, :300])
    capsys.readouterr()
    out = tmp_path / "overlays"
    assert main(["predict", str(model), str(good / "0.png"), str(small), "--out", str(out), "--device", "cpu",
                 "--backend", "eager"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {small}: the frame is 300x300, smaller than the part's region"), err
    assert not out.exists()
