"""The region, the don't-care areas and the part found, in front of the engine (issue 30, parts 1,
2 and 7): the engine sees only the region, the map is zero outside it and in don't-care areas and
comes back in frame pixels where the part lies, a frame without the part is NO PART, bad framings
are refused in one line."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from framing_support import H, REGION, W, belt, frame_with_part, make_scene
from inspector.errors import InspectorError
from inspector.framing import FramedScorer, Framing


class BrightnessMap:
    """An engine whose map is the image's own brightness (0..1): what it saw is what it says.
    Its input is larger than any region here: it is never tiled."""

    image_size = 2048

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict_batch(self, images):
        self.seen.extend(images)
        maps = [np.asarray(image, np.float32) / 255.0 for image in images]
        return [SimpleNamespace(score=float(m.max()), anomaly_map=m) for m in maps]


@pytest.fixture(scope="module")
def scene():
    return make_scene()


def test_the_engine_sees_only_the_region_and_the_map_is_zero_outside_it(scene) -> None:
    _, reference, part = scene
    frame = reference.copy()
    frame[10:60, 10:60] = 255  # a bright spot outside the region: not the part's business
    engine = BrightnessMap()
    result = FramedScorer(engine, Framing(region=REGION)).predict(frame)
    x, y, w, h = REGION
    assert engine.seen[0].shape == (h, w) and np.array_equal(engine.seen[0], part)
    assert result.anomaly_map.shape == (H, W) and result.anomaly_map[10:60, 10:60].max() == 0.0
    assert result.score == pytest.approx(part.max() / 255.0) and not result.no_part


def test_dont_care_areas_count_for_nothing(scene) -> None:
    _, reference, _ = scene
    frame = reference.copy()
    x, y, w, h = REGION
    frame[y + 20 : y + 40, x + 20 : x + 40] = 255  # a bright mark on the part, where nothing counts
    ignore = np.zeros((H, W), bool)
    ignore[y + 10 : y + 50, x + 10 : x + 50] = True
    plain = FramedScorer(BrightnessMap(), Framing(region=REGION)).predict(frame)
    masked = FramedScorer(BrightnessMap(), Framing(region=REGION, ignore=ignore)).predict(frame)
    assert plain.score == 1.0
    assert masked.score < 1.0 and masked.anomaly_map[ignore].max() == 0.0


def test_an_aligned_frame_is_cut_upright_and_its_map_lies_on_the_part(scene) -> None:
    rng, reference, part = scene
    frame, truth = frame_with_part(rng, reference, 10.0, 150.0, -100.0)
    engine = BrightnessMap()
    scorer = FramedScorer(engine, Framing(region=REGION, reference=reference, align=True))
    result = scorer.predict(frame)
    assert not result.no_part and result.alignment.quality > 0.5
    x, y, w, h = REGION
    inner = (slice(h // 10, -h // 10), slice(w // 10, -w // 10))
    assert np.corrcoef(engine.seen[0][inner].ravel(), part[inner].ravel())[0, 1] > 0.95
    # The map is where the part is in this frame: its bright inside maps onto the frame's part.
    centre = truth @ np.array([x + w / 2, y + h / 2, 1.0])
    cx, cy = int(centre[0]), int(centre[1])
    assert result.anomaly_map[cy, cx] > 0 and result.anomaly_map[:50, :50].max() == 0.0


def test_a_frame_without_the_part_is_no_part_and_never_scored(scene) -> None:
    rng, reference, _ = scene
    engine = BrightnessMap()
    scorer = FramedScorer(engine, Framing(region=REGION, reference=reference, align=True))
    frames = [belt(rng), frame_with_part(rng, reference, -10.0, -100.0, 80.0)[0]]
    empty, with_part = scorer.predict_batch(frames)
    assert empty.no_part and empty.score == 0.0 and empty.anomaly_map.max() == 0.0
    assert not with_part.no_part
    assert len(engine.seen) == 1  # the engine scored the part only


@pytest.mark.parametrize("framing, fragment", [
    (Framing(region=(1200, 900, 400, 340)), "does not lie inside the 1280x1024 image"),
    (Framing(region=REGION, ignore=np.ones((H, W), bool)), "covers the whole region"),
    (Framing(region=REGION, ignore=np.zeros((100, 100), bool)), "the don't-care mask is 100x100"),
    (Framing(region=None, align=True), "alignment needs a region and the reference image"),
    (Framing(region=REGION, min_quality=2.0), "within -1..1"),
])
def test_bad_framings_are_refused_in_one_line(scene, framing: Framing, fragment: str) -> None:
    _, reference, _ = scene
    with_reference = Framing(**{**framing.__dict__, "reference": reference})
    with pytest.raises(InspectorError, match=fragment):
        FramedScorer(BrightnessMap(), with_reference)


def test_a_frame_of_another_size_than_the_reference_is_refused_without_alignment(scene) -> None:
    _, reference, _ = scene
    scorer = FramedScorer(BrightnessMap(), Framing(region=REGION, reference=reference))
    with pytest.raises(InspectorError, match="its region would fall elsewhere"):
        scorer.predict(np.zeros((H // 2, W // 2), np.uint8))


class SqueezingEngine(BrightnessMap):
    """Like a real model, it sees each image squeezed into its small square input."""

    image_size = 64

    def predict_batch(self, images):
        self.seen.extend(images)
        out = []
        for image in images:
            small = cv2.resize(np.asarray(image, np.float32) / 255.0, (64, 64), interpolation=cv2.INTER_AREA)
            full = cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            out.append(SimpleNamespace(score=float(full.max()), anomaly_map=full))
        return out


def test_tiles_keep_a_thin_defect_that_squeezing_the_region_loses() -> None:
    """A tall region (1:2.5) with a 1-px crack: squeezed into the input it fades; tiled at the
    scale the smallest defect asks for, it stands out, and the blended map has no seams."""
    region = np.full((800, 320), 40, np.uint8)
    region[300:500, 150] = 255  # the crack, 1 px wide
    framing = dict(region=(0, 0, 320, 800))
    squeezed = FramedScorer(SqueezingEngine(), Framing(**framing, tiles="off")).predict(region)
    engine = SqueezingEngine()
    tiled = FramedScorer(engine, Framing(**framing, defect_px=6.0)).predict(region)
    background = 40 / 255
    assert squeezed.score - background < 0.2
    assert tiled.score - background > 2 * (squeezed.score - background)
    assert len(engine.seen) > 1 and all(t.shape[0] == t.shape[1] for t in engine.seen)  # square tiles
    # Away from the crack the blended map is the flat background: no seams where tiles meet.
    assert np.allclose(tiled.anomaly_map[:250], background, atol=1e-3)


def test_the_tiles_of_several_frames_go_to_the_engine_as_one_batch() -> None:
    """Frames the line batches (several cameras on one engine) stay one batch when tiled, and each
    frame's map is its own: a frame without the crack stays flat."""
    cracked = np.full((800, 320), 40, np.uint8)
    cracked[300:500, 150] = 255
    plain = np.full((800, 320), 40, np.uint8)
    engine = SqueezingEngine()
    batches: list[int] = []
    scored = engine.predict_batch
    engine.predict_batch = lambda images: batches.append(len(images)) or scored(images)
    scorer = FramedScorer(engine, Framing(region=(0, 0, 320, 800), defect_px=6.0))
    together = scorer.predict_batch([plain, cracked, plain])
    assert batches == [len(engine.seen)] and batches[0] % 3 == 0 and batches[0] > 3  # 3 frames, several tiles each
    alone = FramedScorer(SqueezingEngine(), Framing(region=(0, 0, 320, 800), defect_px=6.0)).predict(cracked)
    assert np.array_equal(together[1].anomaly_map, alone.anomaly_map)
    assert np.allclose(together[0].anomaly_map, 40 / 255, atol=1e-3) and together[0].score < together[1].score


def test_the_tile_plan_covers_the_region_with_square_overlapping_tiles() -> None:
    from inspector.framing.tiles import plan_tiles

    assert plan_tiles((1000, 1000), 256).count == 1  # square and no small defect: squeezed as before
    tall = plan_tiles((400, 1000), 256)  # far from square: tiled along its length, not squeezed
    assert tall.count == 3 and {box[2:] for box in tall.boxes} == {(400, 400)}
    fine = plan_tiles((1000, 1000), 256, defect_px=3.0)  # a 3-px defect: native resolution
    assert fine.count == 25 and {box[2:] for box in fine.boxes} == {(256, 256)}
    covered = np.zeros((1000, 1000), bool)
    for x, y, w, h in fine.boxes:
        covered[y : y + h, x : x + w] = True
    assert covered.all()
    assert len({box[1] for box in plan_tiles((400, 1000), 256, tiles=5).boxes}) == 5  # along the long side
    assert plan_tiles((400, 1000), 256, tiles="off").boxes == ((0, 0, 400, 1000),)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(size=(4000, 4000), input_px=256, defect_px=2.0), "more than 64"),
    (dict(size=(400, 400), input_px=256, tiles="many"), "tiles must be auto, off or a number"),
    (dict(size=(400, 400), input_px=256, tiles=0), "tiles must be auto, off or a number"),
    (dict(size=(400, 400), input_px=256, defect_px=0.0), "smallest defect must be a positive number"),
    # A count no region could hold: said as a count, not as thousands of 1-px tiles.
    (dict(size=(256, 256), input_px=256, tiles=999), "999 tiles along the region's 256-px side would be 1 px each"),
])
def test_bad_tilings_are_refused_in_one_line(kwargs, fragment: str) -> None:
    from inspector.framing.tiles import plan_tiles

    with pytest.raises(InspectorError, match=fragment):
        plan_tiles(**kwargs)


@pytest.mark.parametrize("per_pass", [1, 2, 5])
def test_tiles_in_passes_of_any_size_give_the_same_maps_and_scores(per_pass) -> None:
    """How many tiles go to the engine at once changes only the time: three frames' tiles in
    passes of at most ``per_pass`` give the maps and scores one batch gives, each frame its own."""
    cracked = np.full((800, 320), 40, np.uint8)
    cracked[300:500, 150] = 255
    plain = np.full((800, 320), 40, np.uint8)
    framing = Framing(region=(0, 0, 320, 800), defect_px=6.0)
    together = FramedScorer(SqueezingEngine(), framing).predict_batch([plain, cracked, plain])
    engine = SqueezingEngine()
    passes: list[int] = []
    scored = engine.predict_batch
    engine.predict_batch = lambda images: passes.append(len(images)) or scored(images)
    chunked = FramedScorer(engine, framing, tiles_per_pass=per_pass).predict_batch([plain, cracked, plain])
    assert sum(passes) == len(engine.seen) and max(passes) == per_pass and len(passes) == -(-len(engine.seen) // per_pass)
    for one, other in zip(together, chunked):
        assert one.score == other.score and np.array_equal(one.anomaly_map, other.anomaly_map)


def test_tiles_per_pass_under_one_is_refused() -> None:
    with pytest.raises(InspectorError, match="tiles per pass"):
        FramedScorer(SqueezingEngine(), Framing(region=(0, 0, 320, 800)), tiles_per_pass=0)
