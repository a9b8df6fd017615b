#!/usr/bin/env python
"""The operator page's screenshots of a line camera's frames: RECHECK, NO PART and a FAIL with its
region outlined, made by the real desktop on pylon's emulated Basler camera.

    PYLON_CAMEMU=1 QT_QPA_PLATFORM=offscreen python scripts/docs/operator_screenshots.py \\
        MODEL LINE_FRAMES OUT [--images docs/images] [--defect-kind break] [--seed 1]

- ``MODEL``: a model file taught with an inspection region that finds the part first
  (``inspector train DATA --out M --kind instant --region X,Y,W,H --align``) and calibrated with
  a recheck band (``inspector calibrate M GOOD --recheck-rate 0.03 --report R --out MODEL``);
  anything else is refused (exit 2): without them the page shows no outline, RECHECK or NO PART.
- ``LINE_FRAMES``: frames built by ``scripts/build_line_frames.py`` (its ``test/good`` and
  ``test/<defect kind>`` folders).
- ``OUT``: a new or empty folder for the replayed frames, the run's history database, the four
  screenshots (``operator-pass.png``, ``operator-recheck.png``, ``operator-fail-outline.png``,
  ``operator-no-part.png``) and ``screenshots.json`` (the frames, their scores and the rule).
  With ``--images DIR`` the three the manual shows (RECHECK, NO PART, the FAIL outline) are
  copied there too.

What it does: the desktop is put together as ``inspector gui --camera basler://emulated?images=...
--model MODEL`` does (:class:`launcher.desktop.DesktopApp`, a history database of its own in
OUT). Before the line starts, its engine and rule decide the candidates, in name order: the
first good frame that PASSes, the first good frame in the recheck band (else the first defective
one of ``--defect-kind`` in it), the first frame of ``--defect-kind`` that FAILs. No frame is
made up except the fourth: a frame of the belt without the part, made by the build script's own
belt maker (a BSDS500 photograph from ``../shared/data/natural``; seeded). If no real part lands in the band,
the script says so and exits 1: set the band by hand (``inspector calibrate ... --recheck-rate``
with another rate) rather than faking a score. The four frames are replayed (PASS, NO PART,
RECHECK, FAIL) round after round by pylon's camera emulator (``PYLON_CAMEMU=1``), its image size
set to the frames' (the emulator's default 1024×1040 would crop a 1280-wide frame), one part at a
time (software trigger, as the desktop presents an emulated camera's parts); once the page's
counts hold ``--rounds`` rounds, the operator window is grabbed the moment each decision is on
screen (a decision drawn over by the next part before the grab waits for its next round).

Needs ``../shared/data`` (the belt photographs), pypylon and PyQt6: without them it says so and
exits 2. Takes a minute or two on a CPU (each candidate frame is scored once; a frame takes
about half a second).
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path

from emulated_desktop import (ROOT, add_engine_arguments, add_run_arguments, open_desktop, prepare_station, refuser,
                              require_gui)

BELTS = ROOT.parent / "shared" / "data" / "natural" / "bsds500"
WINDOW = (1600, 960)
#: Screenshot file of each decision; the manual shows the last three.
NAMES = {"PASS": "operator-pass.png", "RECHECK": "operator-recheck.png", "FAIL": "operator-fail-outline.png",
         "NO_PART": "operator-no-part.png"}
DOCUMENTED = ("RECHECK", "FAIL", "NO_PART")
#: The replay's order. The display shows the newest result (at most ten a second, as results are
#: recorded): a part whose next frame comes at once is seldom drawn. A frame without the part is
#: decided at once (nothing to score), so it follows the PASS, whose picture matters least.
REPLAY_ORDER = ("PASS", "NO_PART", "RECHECK", "FAIL")
FEEDER_RATE = 0.7  # parts a second: one every 1.4 s, between 1 s and the reject hold's 2 s

refuse = refuser("operator_screenshots")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, model_help="model file with a region found first (--align) and a recheck band",
                      out_help="a new or empty folder for the run and its screenshots")
    parser.add_argument("--images", type=Path, help="also copy the manual's three screenshots here (e.g. docs/images)")
    parser.add_argument("--defect-kind", default="break", help="test/<kind> the FAIL is taken from (default: break)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the belt of the frame without the part")
    add_engine_arguments(parser)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of the four frames shown before the screenshots (counts and trend to show)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the line may take to show all four")
    args = parser.parse_args(argv)

    # What the run needs, checked before anything loads.
    if not BELTS.is_dir() or not any(BELTS.glob("*.jpg")):
        refuse(f"needs ../shared/data: the belt photographs (BSDS500) are not at {BELTS}")
    if not args.model.is_file():
        refuse(f"no model file {args.model}")
    goods = sorted((args.frames / "test" / "good").glob("*.png"))
    defects = sorted((args.frames / "test" / args.defect_kind).glob("*.png"))
    if not goods or not defects:
        refuse(f"{args.frames} holds no test/good and test/{args.defect_kind} frames: build them with "
               "python scripts/build_line_frames.py ../shared/data/magnetic_tile OUT --seed 1")
    if args.out.exists() and any(args.out.iterdir()):
        refuse(f"{args.out} is not empty: give a new folder")
    require_gui(refuse)
    import cv2
    import numpy as np

    from inspector.model_file import load_tensors
    from launcher.desktop import wait_for

    _, meta = load_tensors(args.model)
    framing = meta.get("framing") or {}
    if not framing.get("region") or not framing.get("align"):
        refuse(f"{args.model} has no inspection region found first (train it with --region X,Y,W,H --align)")
    if meta.get("recheck_threshold") is None:
        refuse(f"{args.model} has no recheck band: inspector calibrate {args.model} GOOD_DIR --recheck-rate 0.03 "
               "--report DIR --out NEW")
    height, width = cv2.imread(str(goods[0]), cv2.IMREAD_GRAYSCALE).shape

    out = args.out.resolve()
    db_url, camera, replay = prepare_station(out, (width, height))

    with open_desktop(args.model, db_url, camera, device=args.device, backend=args.backend) as (qapp, app):
        picked = pick_frames(app, goods, defects, args.seed, (width, height), np, cv2)
        for i, decision in enumerate(REPLAY_ORDER):
            cv2.imwrite(str(replay / f"{i + 1}-{decision.lower().replace('_', '-')}.png"), picked[decision]["image"])
        shots = run_line(app, qapp, out, args.rounds * len(picked), args.timeout, wait_for)

    info = {
        "command": "python scripts/docs/operator_screenshots.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "camera": camera.replace(str(replay), "OUT/replay") + " (pylon's camera emulator, PYLON_CAMEMU=1)",
        "model": {"file": args.model.name, "kind": meta.get("kind"), "architecture": meta.get("architecture"),
                  "framing": framing, "threshold": meta.get("threshold"),
                  "recheck_threshold": meta.get("recheck_threshold"), "pixel_threshold": meta.get("pixel_threshold"),
                  "min_defect_area_px": meta.get("min_defect_area_px")},
        "frames": {d: {k: v for k, v in p.items() if k != "image"} for d, p in picked.items()},
        "screenshots": shots,
    }
    (out / "screenshots.json").write_text(json.dumps(info, indent=2) + "\n")
    if args.images is not None:
        for decision in DOCUMENTED:
            shutil.copy(out / NAMES[decision], args.images / NAMES[decision])
    for decision, shot in shots.items():
        print(f"{decision:8s} {shot['file']}: {shot['banner']!r}")
    print(f"written to {out}" + (f"; {', '.join(NAMES[d] for d in DOCUMENTED)} copied to {args.images}" if args.images else ""))
    return 0


def plain(text: str) -> str:
    """A banner's rich text as words."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def decide(engine, rule, image) -> tuple[str, float | None]:
    """What the line decides on ``image`` (the pipeline's order: NO PART first, then the rule)."""
    prediction = engine.predict(image)
    if getattr(prediction, "no_part", False):
        return "NO_PART", None
    return rule.decide(prediction.score, prediction.anomaly_map).decision, float(prediction.score)


def pick_frames(app, goods: list[Path], defects: list[Path], seed: int, size: tuple[int, int], np, cv2) -> dict:
    """The frame for each decision, decided by the desktop's own engine and rule."""
    engine, rule = app.line.recipe.engine, app.line.recipe.rule
    picked: dict[str, dict] = {}

    def take(decision: str, path: Path, image, score) -> None:
        picked[decision] = {"frame": "/".join(path.parts[-3:]), "score": score, "image": image}
        print(f"  {decision:8s} {'/'.join(path.parts[-3:])}: score {score:.4f}", flush=True)

    print(f"rule: FAIL above {rule.threshold:.4f}, RECHECK above {rule.recheck_threshold:.4f}; choosing the frames ...",
          flush=True)
    for path in goods:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        decision, score = decide(engine, rule, image)
        if decision in ("PASS", "RECHECK") and decision not in picked:
            take(decision, path, image, score)
        if "PASS" in picked and "RECHECK" in picked:
            break
    for path in defects:
        if "RECHECK" in picked and "FAIL" in picked:
            break
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        decision, score = decide(engine, rule, image)
        if decision in ("FAIL", "RECHECK") and decision not in picked:
            take(decision, path, image, score)
    if "PASS" not in picked or "FAIL" not in picked:
        refuse(f"no {'PASS' if 'PASS' not in picked else 'FAIL'} among the frames: is this the model of these frames?", 1)
    if "RECHECK" not in picked:
        refuse("no real part lands in the recheck band: set the band by hand (inspector calibrate ... "
               "--recheck-rate R with another rate, or the teach page's recheck band) rather than faking a score", 1)

    # The belt without the part: the build script's belt maker, nothing placed on it.
    spec = importlib.util.spec_from_file_location("build_line_frames", ROOT / "scripts" / "build_line_frames.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    belt = build._belt(np.random.default_rng([seed, 0]), sorted(BELTS.glob("*.jpg")), *size)
    decision, score = decide(engine, rule, belt)
    if decision != "NO_PART":
        refuse(f"the belt without the part was decided {decision}, not NO PART (try another --seed)", 1)
    picked["NO_PART"] = {"frame": f"the belt alone (build_line_frames._belt, seed {seed})", "score": None, "image": belt}
    print(f"  NO_PART  the belt alone (seed {seed})", flush=True)
    return picked


def run_line(app, qapp, out: Path, frames: int, timeout_s: float, wait_for) -> dict:
    """Runs the line on the emulated camera and grabs the window once each decision is on screen,
    once the page's counts hold ``frames`` (so the counts and the trend hold every decision)."""
    operator = app.pages["operator"]
    labels = operator.counters.labels

    def counted() -> int:  # the frames the page's counts show: the parts, and those without one
        return int(labels["total"].text().replace(",", "")) + int(labels["no_part"].text().replace(",", ""))

    app.session.preview("operator")
    app.window.show_page("operator")
    # Wider than the desktop's first 1400x900: at that width a long camera URI wraps in the Line
    # panel and the banner's second line (the score against both thresholds) is cut off.
    app.window.resize(WINDOW[0], WINDOW[1])
    app.window.show()
    # The desktop's feeder presents 4 parts a second; a reject then holds the screen (HOLD_S) over
    # the pass and the NO PART after it until the next reject. One part every 1.4 s lets the hold
    # end while the pass is the newest result, and the NO PART come after it.
    app.line.config = app.line.config.with_changes(feeder_rate=FEEDER_RATE)
    if not app.start():
        refuse("the line did not start: " + "; ".join(a.message for a in app.line.alarms), 1)
    shots: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(shots) < 4 and time.monotonic() < deadline:
            wait_for(qapp, lambda: False, 0.02)
            shown = operator.shown
            if shown is None or shown.decision in shots or counted() < frames:
                continue
            if shown.decision == "FAIL" and operator.image_view.outline is None:
                continue
            picture = app.window.grab()
            if operator.shown is not shown:  # a newer part came while grabbing: next round
                continue
            name = NAMES[shown.decision]
            picture.save(str(out / name))
            shots[shown.decision] = {"file": name, "banner": plain(operator.banner.text()), "score": shown.score,
                                     "frame_id": shown.frame_id, "outline": operator.image_view.outline is not None}
            print(f"  shown: {shown.decision} (frame {counted()} on the page's counts)", flush=True)
    finally:
        app.session.sign_out()
        app.line.stop()
    if len(shots) < 4:
        refuse(f"within {timeout_s:g} s the page showed only {sorted(shots)}", 1)
    return shots


if __name__ == "__main__":
    sys.exit(main())
