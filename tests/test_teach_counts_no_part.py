"""A framed teach says how many of its training images the part was not found in: they were left
out, so "N training images" alone overstated what the model learnt from."""

from __future__ import annotations

import cv2

from calibration.quality import QualityGates
from calibration.teach import TeachSession
from calibration.teach.framing import Drawing, drawn_framing
from cli.teach_commands import _print_candidate

from framing_support import REGION, belt, frame_with_part, make_scene


def test_a_framed_teach_counts_the_training_frames_without_the_part(tmp_path, db, capsys):
    rng, reference, _ = make_scene()
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_reference.png"), reference)
    for i in range(17):
        frame, _ = frame_with_part(rng, reference, float(rng.uniform(-8, 8)), float(rng.uniform(-40, 40)), float(rng.uniform(-40, 40)))
        cv2.imwrite(str(folder / f"b_{i:02d}.png"), frame)
    for i in range(2):  # the belt without the part
        cv2.imwrite(str(folder / f"c_empty_{i}.png"), belt(rng))
    session = TeachSession(db, "plate", tmp_path / "work", gates=QualityGates(same_size=False), device="cpu", backend="eager")
    session.collect_from_folder(folder)
    framing = drawn_framing(reference, Drawing(region=REGION, align=True))

    result = session.train(kind="instant", features="pdn", framing=framing, target_frr=0.25)
    without = result.frames_without_part
    # Both empty frames fell in the training share (the split is seeded); the warnings name them.
    empty = {p.name for p in session.sample_paths() if p.name.startswith("c_empty")}
    assert without == len(empty & {p.name for p in result.train_images}) == 2
    version = next(v for v in session.versions() if v.id == result.version_id)
    assert version.metrics["frames_without_part"] == without
    assert version.metrics["train_pieces"] > 0

    _print_candidate(result)
    out = capsys.readouterr().out
    assert f"({len(result.train_images)} training, {without} of them without the part, left out," in out, out
