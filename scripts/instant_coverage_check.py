"""Would more good images still help? The held-out good images' raw map with the bank built from a quarter, a half and all of the training images.

    python scripts/instant_coverage_check.py ../shared/data/magnetic_tile N   (N good images drawn with seed 0; the build's 10 % held out)

Prints one JSON line: the 0.995 and 0.9 quantiles of the held-out maps and their images' mean maximum, per fraction. A measurement, not a test.
"""
import sys, json, numpy as np, torch
from pathlib import Path
from inspector.image_io import good_training_images
from inspector.method.instant import InstantModel
from inspector.method.instant_build import INSTANT_LAYERS, _sample_features, greedy_coreset
from inspector.method.training import load_squares, split_holdout, to_input
from inspector.method.efficientad import exact_quantile

data, n = Path(sys.argv[1]), int(sys.argv[2])
paths = good_training_images(data)
if n < len(paths):
    draw = np.random.default_rng(0).choice(len(paths), n, replace=False); paths = [paths[i] for i in sorted(draw)]
tr, va = split_holdout(len(paths), 0.1, 42)
imgs = load_squares(paths, 256, "resize"); train, val = imgs[tr], imgs[va]
model = InstantModel("s", 2048, 3, features="lite2", pretrained=True, layers=INSTANT_LAYERS["lite2"]).eval().requires_grad_(False)
g = torch.Generator().manual_seed(42)
out = {"data": str(data), "images": n, "train": len(train), "val": len(val)}
for frac in (0.25, 0.5, 1.0):
    k = max(2, int(len(train) * frac))
    pool, mean, std = _sample_features(model, train[:k], torch.device("cpu"), max(1, 120000 // k), g, False)
    model.teacher_mean.copy_(mean); model.teacher_std.copy_(std)
    pool = (pool - mean.view(1, -1)) / std.view(1, -1)
    model.set_bank(pool[greedy_coreset(pool, 2048, seed=42)])
    with torch.no_grad():
        maps = torch.cat([model.raw_map(to_input(val[i:i+8], torch.device("cpu"))) for i in range(0, len(val), 8)])
    out[f"frac_{frac}"] = {"images": k, "q995": round(float(exact_quantile(maps, 0.995)), 3), "q90": round(float(exact_quantile(maps, 0.9)), 3),
                           "mean_max": round(float(maps.amax(dim=(1, 2, 3)).mean()), 3)}
print(json.dumps(out), flush=True)
