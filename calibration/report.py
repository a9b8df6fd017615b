"""The calibration report: ``report.json`` and PNG plots, every file written atomically.

``scores.png`` shows the score histograms of good (and defective) parts with the threshold (and
the F1-optimal threshold); ``roc.png`` the ROC curve with the operating point, when defective
samples were given. report.json is written last, so its presence means the plots are complete.

matplotlib is imported when a plot is drawn, not with this module: the desktop and the commands
import the teach workflow at start-up, and matplotlib's import (with its one-off font-cache build)
is seconds of start-up and a log line nobody needs there.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.calibrate import CalibrationResult
from calibration.thresholds import pct
from inspector.model_file import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_JSON = "report.json"
SCORES_PNG = "scores.png"
ROC_PNG = "roc.png"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON (NaN and infinities as null) atomically."""
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure (drawn off-screen with Agg). The first call imports matplotlib; its
    "generated new fontManager" note (a one-off font cache build) is kept for debug logging."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("matplotlib.font_manager").setLevel(logging.WARNING)
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save_figure(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def score_histogram(result: CalibrationResult) -> Figure:
    fig = new_figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    good = result.good_scores
    bad = result.defect_scores
    every = np.r_[good, bad] if bad is not None else good
    bins = np.histogram_bin_edges(every, bins=min(60, max(10, every.size // 4)))
    ax.hist(good, bins=bins, alpha=0.6, color="tab:green", label=f"good (n={good.size})")
    if bad is not None:
        ax.hist(bad, bins=bins, alpha=0.6, color="tab:red", label=f"defective (n={bad.size})")
    im = result.image
    ax.axvline(im.threshold, color="black", lw=1.5,
               label=f"threshold {im.threshold:.4g} (expected FRR {pct(im.expected_frr)})")
    band = getattr(result, "recheck", None)
    if band is not None:
        ax.axvspan(band.recheck_threshold, im.threshold, color="tab:orange", alpha=0.15,
                   label=f"RECHECK above {band.recheck_threshold:.4g} (expected {pct(band.expected_rate)} of good parts)")
    if result.defects is not None:
        ax.axvline(result.defects.f1_threshold, color="tab:blue", ls="--", lw=1.2,
                   label=f"F1-optimal {result.defects.f1_threshold:.4g} (F1 {result.defects.f1:.3f})")
    ax.set_xlabel("image score")
    ax.set_ylabel("parts")
    ax.set_title("Score distribution on calibration images")
    ax.legend(fontsize=8)
    return fig


def roc_figure(result: CalibrationResult) -> Figure:
    d = result.defects
    fig = new_figure(figsize=(4.8, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(d.roc_fpr, d.roc_tpr, color="tab:blue", lw=1.5, label=f"ROC (AUROC {d.auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.plot([d.frr_at_threshold], [1 - d.escape_rate], "o", color="black",
            label=f"threshold: FRR {pct(d.frr_at_threshold)}, escapes {pct(d.escape_rate)}")
    ax.plot([d.f1_frr], [1 - d.f1_escape_rate], "s", color="tab:orange", label="F1-optimal threshold")
    ax.set_xlabel("false-reject rate (good parts rejected)")
    ax.set_ylabel("defects caught")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def write_report(report_dir: str | Path, result: CalibrationResult, extra: dict[str, Any] | None = None) -> Path:
    """Writes the plots and report.json into ``report_dir``; returns the path of report.json."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    plots = {"scores": SCORES_PNG}
    _save_figure(score_histogram(result), report_dir / SCORES_PNG)
    if result.defects is not None:
        _save_figure(roc_figure(result), report_dir / ROC_PNG)
        plots["roc"] = ROC_PNG
    data = {**result.report(), "plots": plots, **(extra or {})}
    path = report_dir / REPORT_JSON
    write_json_atomic(path, data)
    return path


def read_report(path: str | Path) -> dict[str, Any]:
    """A report.json (or the folder holding one) as a dict; DataError if missing or damaged."""
    from inspector.errors import DataError

    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no calibration report there") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable calibration report ({e})") from None
