"""Does a contrast preprocessing make ELPV's faint defects visible to the instant model?

    python scripts/instant_preprocess_check.py stretch40 highpass4 clahe3

The defective cells the demo model lets pass are mostly faint, thin vertical lines (finger
interruptions, micro-cracks) a grey level or two darker than the cell. Each variant rewrites the
demo split's cells (training, 200 good and 60 defective held out) through one preprocessing --
``stretch40``: each cell to its own mean and standard deviation, 40 grey levels per deviation;
``highpass4``: the cell minus its Gaussian blur (sigma 6 px), times 4; ``clahe3``: OpenCV's CLAHE,
clip 3, 8x8 tiles -- builds the default instant model on them and calibrates it for 1 % false
rejects. Prints one JSON line per variant. A measurement, not a test.
"""
import json, sys, tempfile, numpy as np, cv2, demo
from pathlib import Path
from inspector.method.instant_build import InstantConfig, build_instant
from inspector.model_file import save_model
from calibration.calibrate import calibrate_model

def stretch(img, gain):
    x = img.astype(np.float32); m, s = x.mean(), x.std() + 1e-6
    return np.clip((x - m) / s * gain + 128, 0, 255).astype(np.uint8)
def clahe(img, clip):
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(img)
def highpass(img, gain):
    x = img.astype(np.float32)
    return np.clip((x - cv2.GaussianBlur(x, (0, 0), 6)) * gain + 128, 0, 255).astype(np.uint8)
VARIANTS = {"none": lambda i: i, "stretch40": lambda i: stretch(i, 40), "clahe3": lambda i: clahe(i, 3.0), "highpass4": lambda i: highpass(i, 4)}
split = demo.elpv_split()
for name in sys.argv[1:]:
    f = VARIANTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        def conv(paths, sub):
            out = []
            for k, p in enumerate(paths):
                q = Path(tmp) / sub / f"{k:04d}.png"; q.parent.mkdir(exist_ok=True, parents=True)
                cv2.imwrite(str(q), f(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))); out.append(q)
            return out
        tr, cg, cd = conv(split.train, "t"), conv(split.calibration_good, "g"), conv(split.calibration_defect, "d")
        built = build_instant(tr, InstantConfig(), device="cpu", show_progress=False)
        m = Path(tmp) / "m.safetensors"; save_model(m, built.model, built.metadata)
        r = calibrate_model(m, cg, cd, device="cpu", backend="eager", target_frr=0.01, show_progress=False)
        rep = r.report(); good = np.sort(r.good_scores)[::-1]
        print(json.dumps({"pre": name, "auroc": round(rep["auroc"], 4), "escape_rate": rep["escape_rate"],
                          "escapes_k": [round(float(np.mean(r.defect_scores <= good[k])), 3) for k in range(6)]}), flush=True)
