"""A region drawn as a polygon is kept as the polygon: in the model file (inside its digest, only
where there is one, so a rectangle's file is what it was), in the one-line summary, and in the
outline people see -- as drawn, and turned and moved with the part where it is found first. What
the model inspects does not change: the polygon's bounding rectangle, its outside don't-care."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from safetensors.torch import save_file

from calibration.teach.framing import Drawing, drawn_framing
from framing_support import H, REGION, W, frame_with_part, make_scene
from inspector.errors import InspectorError, ModelFileError
from inspector.framing import FramedScorer, Framing
from inspector.framing.align import Alignment, turn_about
from inspector.framing.framed import inspected_mask, outside_polygon, region_shape_in_frame
from inspector.framing.recipe import describe, framing_file_parts, framing_from_file
from inspector.method.efficientad import EfficientAD
from inspector.method.training import framing_fingerprint
from inspector.model_file import METADATA_KEY, load_framed_model, load_model_tensors, save_model

x, y, w, h = REGION
#: A part's outline inside REGION, its corners at fractions of a pixel as a mouse leaves them.
POLYGON = ((x + 0.4, y + 60.5), (x + 200.25, y + 0.0), (x + 400.0, y + 80.0), (x + 330.5, y + 340.0), (x + 40.0, y + 300.75))


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def polygon_framing(scene) -> Framing:
    _, reference, _ = scene
    painted = np.zeros(reference.shape, bool)
    painted[y + 150 : y + 170, x + 150 : x + 190] = True  # the technician's own don't-care
    return drawn_framing(reference, Drawing(polygon=POLYGON, ignore=painted, align=True))


def test_the_teach_keeps_the_polygon_beside_its_rectangle_and_outside_mask(polygon_framing) -> None:
    framing = polygon_framing
    assert framing.polygon == POLYGON and framing.region == REGION  # the bounding rectangle, as before
    assert framing.ignore[y + 2, x + 2] and not framing.ignore[y + 170, x + 200]  # outside; inside
    assert framing.ignore[y + 160, x + 160]  # painted
    assert describe(framing).startswith(f"polygon region of 5 corners in {x},{y},{w},{h}, ")
    assert describe(Framing(region=REGION)) == f"region {x},{y},{w},{h}"


def test_a_polygon_is_kept_in_the_model_file_inside_its_digest(polygon_framing, tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(path, EfficientAD("s"), {"image_size": 256}, polygon_framing)
    _, meta, loaded = load_framed_model(path)
    assert loaded.polygon == POLYGON and loaded.region == REGION
    assert np.array_equal(loaded.ignore, polygon_framing.ignore)
    assert meta["framing"]["polygon"] == [list(p) for p in POLYGON]

    # Another polygon in the file breaks the metadata digest: refused.
    tensors, meta = load_model_tensors(path)
    moved = [[px + 1, py] for px, py in meta["framing"]["polygon"]]
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata={METADATA_KEY: json.dumps({**meta, "framing": {**meta["framing"], "polygon": moved}})})
    with pytest.raises(ModelFileError, match="metadata"):
        load_framed_model(edited)


def test_a_rectangles_entry_and_fingerprint_are_what_they_were_and_polygons_differ(scene, polygon_framing) -> None:
    _, reference, _ = scene
    rectangle = Framing(region=REGION, reference=reference, align=True)
    entry = framing_file_parts(rectangle)[0]["framing"]
    # The keys every file had before polygons were kept: its metadata digest and the training
    # checkpoint's fingerprint over them are unchanged, and such a file loads as it did.
    assert set(entry) == {"region", "align", "min_quality", "max_angle_deg", "tiles", "defect_px", "reference_size", "ignore"}
    assert framing_from_file(*framing_file_parts(rectangle)).polygon is None
    # Two polygons with the same bounding rectangle and mask are two recipes.
    other = Framing(**{**polygon_framing.__dict__, "polygon": ((x, y + 60.5), *POLYGON[1:])})
    other.check(reference.shape)
    assert framing_fingerprint(other) != framing_fingerprint(polygon_framing)


def test_the_outline_of_a_polygon_is_its_corners_as_drawn_without_alignment(polygon_framing) -> None:
    framing = Framing(**{**polygon_framing.__dict__, "align": False})
    scorer = FramedScorer(None, framing)
    outline = scorer.outline((H, W))
    assert outline.shape == (4, 2)  # the region's corners, as the inspected pixels need them
    assert np.allclose(region_shape_in_frame(framing, outline), POLYGON, atol=1e-3)
    assert np.allclose(region_shape_in_frame(framing), POLYGON, atol=1e-3)  # where the reference has it
    # A rectangle region's outline is its four corners, as before.
    rectangle = Framing(region=REGION)
    assert np.array_equal(region_shape_in_frame(rectangle, FramedScorer(None, rectangle).outline((H, W))),
                          [[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    assert region_shape_in_frame(Framing()) is None and region_shape_in_frame(None) is None


def test_the_outline_of_a_polygon_turns_and_moves_with_the_part(polygon_framing) -> None:
    matrix = turn_about(10.0, (x + w / 2, y + h / 2), (x + w / 2 + 60, y + h / 2 - 40))
    alignment = Alignment(matrix, 0.9, 10.0, (60.0, -40.0))
    outline = FramedScorer(None, polygon_framing).outline((H, W), alignment)
    shape = region_shape_in_frame(polygon_framing, outline)
    expected = cv2.transform(np.float32(POLYGON)[None], matrix)[0]
    assert shape.shape == (5, 2) and np.allclose(shape, expected, atol=1e-2)
    assert not np.allclose(shape, POLYGON, atol=5)
    # The inspected pixels still come from the four corners: inside the turned polygon, not outside it.
    inspected = inspected_mask(polygon_framing, (H, W), outline)
    centre = cv2.transform(np.float32([[[x + 200, y + 170]]]), matrix)[0, 0]
    corner = cv2.transform(np.float32([[[x + 3, y + 3]]]), matrix)[0, 0]
    assert inspected[int(centre[1]), int(centre[0])] and not inspected[int(corner[1]), int(corner[0])]


def test_a_found_parts_polygon_lies_on_the_part(scene, polygon_framing) -> None:
    rng, reference, _ = scene
    frame, truth = frame_with_part(np.random.default_rng(5), reference, 10.0, 60.0, -40.0)
    engine = SimpleNamespace(image_size=2048, predict_batch=lambda images: [
        SimpleNamespace(score=0.0, anomaly_map=np.zeros(i.shape[:2], np.float32)) for i in images])
    result = FramedScorer(engine, polygon_framing).predict(frame)
    assert not result.no_part
    shape = region_shape_in_frame(polygon_framing, result.outline)
    assert np.abs(shape - cv2.transform(np.float32(POLYGON)[None], truth)[0]).max() < 3


def _polygon_framing(**change) -> Framing:
    ignore = outside_polygon(POLYGON, (H, W))
    return Framing(**{"region": REGION, "ignore": ignore, "polygon": POLYGON, **change})


@pytest.mark.parametrize("change, says", [
    ({"polygon": POLYGON[:2]}, "the region polygon needs at least three corners"),
    ({"polygon": ((x, y), (x + w, float("nan")), (x, y + h))}, "at least three corners of finite numbers"),
    ({"polygon": ((-3.0, y), (x + w, y), (x, y + h))}, "corners do not lie inside the 1280x1024 image"),
    ({"region": (x, y, w + 10, h)}, f"the region {x},{y},{w + 10},{h} is not the bounding rectangle {x},{y},{w},{h}"),
    ({"region": None}, "the region none is not the bounding rectangle"),
    ({"ignore": None}, "does not cover the region outside its polygon"),
    ({"ignore": np.zeros((H, W), bool)}, "does not cover the region outside its polygon"),
])
def test_a_polygon_that_is_not_the_region_inspected_is_one_line(change, says) -> None:
    with pytest.raises(InspectorError, match=says) as info:
        _polygon_framing(**change).check((H, W))
    assert "\n" not in str(info.value)


def test_a_stored_polygon_that_is_no_list_of_corners_is_refused_by_name(polygon_framing) -> None:
    meta, tensors = framing_file_parts(polygon_framing)
    for bad in ("round", [[1, 2, 3]], [[True, 2]]):
        meta["framing"]["polygon"] = bad
        with pytest.raises(ModelFileError, match="its framing is unusable.*polygon"):
            framing_from_file(meta, tensors, "m.safetensors")
    meta["framing"]["polygon"] = [[px + 500, py] for px, py in POLYGON]  # off the region
    with pytest.raises(ModelFileError, match="not lie inside|not the bounding rectangle"):
        framing_from_file(meta, tensors, "m.safetensors")


def test_inspector_predict_outlines_a_polygon_region_as_the_polygon(scene, polygon_framing, tmp_path, monkeypatch) -> None:
    import inspector.overlay
    from cli.main import main

    _, reference, _ = scene
    model = tmp_path / "m.safetensors"
    save_model(model, EfficientAD("s"), {"image_size": 256}, polygon_framing)
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), reference)
    drawn = []
    real = inspector.overlay.annotated_overlay
    monkeypatch.setattr(inspector.overlay, "annotated_overlay", lambda *a: drawn.append(a[5]) or real(*a))
    assert main(["predict", str(model), str(frame), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert np.allclose(drawn[0], POLYGON, atol=0.5)  # the part found where the reference has it
