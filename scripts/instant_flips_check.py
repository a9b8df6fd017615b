"""Measurement (not kept): the instant model banked with mirrored copies of its training images, on
86 of magnetic tile's good images (a quick teach's share), scored on the whole test set.

    python scripts/instant_flips_check.py '[{}, {"flips": true}]'
"""
import json, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "scripts")
from sweep_instant import on_mvtec
from inspector.image_io import good_training_images
from inspector.method.instant_build import InstantConfig, build_instant
from inspector.model_file import save_model
data = Path("../shared/data/magnetic_tile")
allg = good_training_images(data)
rng = np.random.default_rng(0)
sub = [allg[i] for i in sorted(rng.choice(len(allg), 86, replace=False))]  # ~77 banked + 9 held out, like a 100-image quick teach
for settings in json.loads(sys.argv[1]):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        b = build_instant(sub, InstantConfig(**settings), device="cpu", show_progress=False)
        m = Path(tmp) / "m.safetensors"; save_model(m, b.model, b.metadata)
        print(json.dumps({"settings": settings, "images": len(sub), "build_s": round(time.perf_counter() - t, 1), **on_mvtec(m, data)}), flush=True)
