#!/usr/bin/env python
"""The teach page's screenshot of its "Inspection region" tab: a line camera's live frame, the
part's region drawn on it, a don't-care strip painted and a don't-care polygon, the part found
first in every frame; made by the real desktop on pylon's emulated Basler camera.

    PYLON_CAMEMU=1 QT_QPA_PLATFORM=offscreen python scripts/docs/teach_screenshots.py \\
        MODEL LINE_FRAMES OUT [--images docs/images] [--samples 16]

- ``MODEL``: the model the line runs while the technician draws, a model file of these frames'
  product (the one ``scripts/docs/operator_screenshots.py`` takes does: ``inspector train
  LINE_FRAMES/train/good --out M --kind instant --region X,Y,W,H --align``, then ``inspector
  calibrate``); the teach page lists it as the product's version 1 with its calibration.
- ``LINE_FRAMES``: frames built by ``scripts/build_line_frames.py`` (its ``reference.json``, the
  unmoved reference frame and its region, and ``train/good``).
- ``OUT``: a new or empty folder for the replayed frame, the run's history database and data
  folder, the screenshot ``teach-region.png`` and ``screenshot.json`` (the frame, what was drawn
  and what the page's Check said). With ``--images DIR`` the screenshot is copied there too.

What it does: the desktop is put together as ``inspector gui --camera basler://emulated?images=...
--model MODEL`` does (:class:`launcher.desktop.DesktopApp`, a history database and data folder of
its own in OUT). Pylon's camera emulator (``PYLON_CAMEMU=1``), its image size set to the frame's
by the product's camera settings, replays one frame: the build's reference frame, the part lying
where ``reference.json`` says. On the new database the first technician is created and signed
in, as the desktop asks on a first start. Then, on the teach page, what a technician does:
the first ``--samples`` good frames (``train/good`` by name) are imported as good samples
(the page's "Import from folder", without its folder dialog); once the line has shown a part,
"Use live frame" is clicked; on the "Inspection region" tab "Inspect a region" is set to the
part's rectangle (the region of ``reference.json``, as dragging the cyan rectangle sets it), the
brush (12 px) paints a don't-care strip along the part's lower edge through the brush's own draw
kernel (what a left-button drag calls), "Add don't-care polygon" adds a square that is dragged
(moved through its ROI) onto the part's top-right corner, "align: find the part in every frame"
is ticked, and "Check" is clicked. Before drawing, the view is zoomed in two notches of the
mouse wheel about the part (the view's own zoom, as the wheel calls it), so the drawing reads at
the README's width with the belt round the part still shown. The window, asked for 1400×900
(the desktop's first size), opens at its smallest with the teach page (1461×1093 here) and is
grabbed with the Check's summary on screen. Nothing is painted onto the picture; the summary, the
reference's source and the drawing's framing are written to ``screenshot.json``.

Deterministic: the same frames and model give the same drawing (the live frame is the one
replayed frame; only the live frame's number and the page's times differ from run to run).
Needs pypylon and PyQt6 (exit 2 without them); LINE_FRAMES is built from ``../shared/data``:
where neither the frames nor ``../shared/data`` are there, it says how to get them and exits 2.
Takes under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from emulated_desktop import (ROOT, add_engine_arguments, add_run_arguments, open_desktop, prepare_station, refuser,
                              require_gui)

SHARED = ROOT.parent / "shared" / "data"
WINDOW = (1400, 900)  # the desktop's first size (DesktopApp); the teach page makes it larger
NAME = "teach-region.png"
TECHNICIAN = ("tina", "tina-teaches")  # the first technician of the new database
BRUSH_PX = 12
ZOOM_NOTCHES = 2
WHEEL_NOTCH = 1.02 ** (-120 / 8)  # pyqtgraph's ViewBox: one notch of 120, wheelScaleFactor -1/8

refuse = refuser("teach_screenshots")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, model_help="the model file the line runs (a model of these frames)",
                      out_help="a new or empty folder for the run and its screenshot")
    parser.add_argument("--images", type=Path, help="also copy teach-region.png here (e.g. docs/images)")
    parser.add_argument("--samples", type=int, default=16, help="good frames imported as samples (default 16)")
    add_engine_arguments(parser)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the line may take to show a part")
    args = parser.parse_args(argv)

    # What the run needs, checked before anything loads.
    reference_json = args.frames / "reference.json"
    if not reference_json.is_file():
        how = ("python scripts/build_line_frames.py ../shared/data/magnetic_tile OUT --seed 1"
               if (SHARED / "magnetic_tile").is_dir() else
               f"they are built from ../shared/data (the development data), which is not at {SHARED}")
        refuse(f"{args.frames} holds no line frames (no reference.json): {how}")
    reference = json.loads(reference_json.read_text())
    reference_frame = args.frames / reference["image"]
    goods = sorted((args.frames / "train" / "good").glob("*.png"))[: args.samples]
    if not reference_frame.is_file() or not goods:
        refuse(f"{args.frames} lacks its reference frame {reference['image']} or train/good frames")
    if not args.model.is_file():
        refuse(f"no model file {args.model}")
    if args.out.exists() and any(args.out.iterdir()):
        refuse(f"{args.out} is not empty: give a new folder")
    require_gui(refuse)
    import cv2

    from launcher.desktop import wait_for

    frame = cv2.imread(str(reference_frame), cv2.IMREAD_GRAYSCALE)
    height, width = frame.shape
    out = args.out.resolve()
    db_url, camera, replay = prepare_station(out, (width, height))
    samples = out / "samples"
    samples.mkdir()
    shutil.copy(reference_frame, replay / reference_frame.name)
    for path in goods:
        shutil.copy(path, samples / path.name)

    with open_desktop(args.model, db_url, camera, device=args.device, backend=args.backend) as (qapp, app):
        shot = draw_and_grab(app, qapp, samples, tuple(reference["region"]), out, args.timeout, wait_for)

    info = {
        "command": "python scripts/docs/teach_screenshots.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "camera": camera.replace(str(replay), "OUT/replay") + " (pylon's camera emulator, PYLON_CAMEMU=1)",
        "model": {"file": args.model.name, "sha256": hashlib.sha256(args.model.read_bytes()).hexdigest()},
        "live_frame": {"frame": reference["image"], "size": [width, height],
                       "reference_region": reference["region"]},
        "samples": [path.name for path in goods],
        **shot,
    }
    (out / "screenshot.json").write_text(json.dumps(info, indent=2) + "\n")
    if args.images is not None:
        shutil.copy(out / NAME, args.images / NAME)
    print(f"check: {shot['check']!r}")
    print(f"written to {out}" + (f"; {NAME} copied to {args.images}" if args.images else ""))
    return 0


def draw_and_grab(app, qapp, samples: Path, region: tuple[int, int, int, int], out: Path, timeout_s: float,
                  wait_for) -> dict:
    """The technician's steps on the teach page, then the window grabbed."""
    from PyQt6.QtCore import QPointF

    from inspector.framing.recipe import describe

    page = app.pages["teach"]
    editor = page.framing_editor
    session = app.session
    if session.needs_first_technician():
        session.create_first_technician(*TECHNICIAN)
    accepted, refused = app.teach.import_samples(samples)
    if refused or not accepted:
        refuse(f"the teach page took {accepted} samples and refused {refused}", 1)
    app.window.show_page("teach")
    app.window.resize(*WINDOW)
    app.window.show()
    if not app.start():
        refuse("the line did not start: " + "; ".join(a.message for a in app.line.alarms), 1)
    try:
        if not wait_for(qapp, lambda: app.line.latest is not None and app.line.latest.image is not None, timeout_s):
            refuse(f"the line showed no part within {timeout_s:g} s", 1)
        page.left_tabs.setCurrentIndex(1)  # the "Inspection region" tab
        page.reference_live_button.click()
        if not editor.reference_source.startswith("live frame"):
            refuse(f"Use live frame did not take the live frame: {page.message_label.text()!r}", 1)

        x, y, w, h = region
        # Two notches of the mouse wheel over the part (what the view's wheel event does: 0.743x
        # the range per notch about the pointer): the part larger, the belt round it still shown.
        wait_for(qapp, lambda: False, 0.2)
        for _ in range(ZOOM_NOTCHES):
            editor.view.scaleBy((WHEEL_NOTCH, WHEEL_NOTCH), center=QPointF(x + w / 2, y + h / 2))
        editor.region_box.setChecked(True)  # "Inspect a region", a rectangle
        editor.set_region((x, y, w, h))  # the cyan rectangle dragged round the part
        # A don't-care strip along the part's lower edge: the brush's left-button stroke (the
        # brush's own draw kernel on the mask, as a drag calls it), every 4 px.
        editor.brush_box.setChecked(True)
        editor.brush_size.setValue(BRUSH_PX)
        for px in range(x + 24, x + w - 24 + 1, 4):
            editor.mask_item.drawAt(QPointF(px, y + h - BRUSH_PX - 6))
        editor.brush_box.setChecked(False)
        # A don't-care polygon: the button's square in the middle of the region, dragged onto the
        # part's top-right corner.
        editor.add_ignore_button.click()
        square = editor.ignore_rois[-1]
        corners = editor._points(square)
        x0, y0 = min(c[0] for c in corners), min(c[1] for c in corners)
        side = max(c[0] for c in corners) - x0
        square.setPos(square.pos() + QPointF(x + w - 12 - side - x0, y + 12 - y0))
        editor.align_box.setChecked(True)  # "align: find the part in every frame"
        page.check_framing_button.click()
        check = editor.summary.text()
        if not check.startswith("the model will inspect"):
            refuse(f"Check refused the drawing: {check!r}", 1)
        framing = page.framing_for_training()
        view_range = editor.view.viewRange()
        wait_for(qapp, lambda: False, 0.5)
        picture = app.window.grab()
        if not picture.save(str(out / NAME)):
            refuse(f"could not write {out / NAME}", 1)
        print(f"  grabbed the teach page, {picture.width()}x{picture.height()} (minimum size hint "
              f"{app.window.minimumSizeHint().width()}x{app.window.minimumSizeHint().height()})", flush=True)
    finally:
        session.sign_out()
        app.line.stop()
    return {
        "screenshot": {"file": NAME, "size": [picture.width(), picture.height()], "page": "teach",
                       "tab": page.left_tabs.tabText(page.left_tabs.currentIndex()),
                       "signed_in": f"{TECHNICIAN[0]} (technician)", "wheel_notches_zoomed_in": ZOOM_NOTCHES,
                       "view_range_px": [[round(v) for v in r] for r in view_range]},
        "reference_source": editor.reference_source,
        "drawn": {"region": list(framing.region), "dont_care_px": int(framing.ignore.sum()) if framing.ignore is not None else 0,
                  "brush_px": BRUSH_PX, "dont_care_polygons": len(editor.ignore_rois), "align": framing.align,
                  "framing": describe(framing)},
        "check": check,
    }


if __name__ == "__main__":
    sys.exit(main())
