"""Charts as SVG, drawn on the server by matplotlib (already the core's dependency; its
object API, not pyplot, so requests in threads draw independently). The browser gets them as
``<img>``: an SVG loaded that way runs no script, whatever text it holds.
"""

from __future__ import annotations

import io
import math
from datetime import datetime, timedelta

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from inspector.history import YieldBucket

COLOURS = ("#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#455a64", "#ad1457", "#9e9d24")


def _svg(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _axes(title: str, ylabel: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return fig, ax


def yield_chart(title: str, series: dict[str, list[YieldBucket]], bucket: timedelta | None = None) -> bytes:
    """The share of PASS per time bucket, one line per series (a station, a product). With one
    bucket's points only, the axis spans a ``bucket`` either side of it (matplotlib spread a
    lone date over four years, the hour or day it is not to be read)."""
    fig, ax = _axes(title, "yield (% PASS)")
    drawn = 0
    starts: set[datetime] = set()
    for i, (name, buckets) in enumerate(sorted(series.items())):
        points = [(b.start, 100 * b.yield_fraction) for b in buckets if b.total]
        if not points:
            continue
        times, values = zip(*points)
        starts.update(times)
        ax.plot(times, values, marker="o", markersize=3, linewidth=1.5, color=COLOURS[i % len(COLOURS)],
                label=f"{name} ({sum(b.total for b in buckets)} parts)")
        drawn += 1
    ax.set_ylim(0, 102)
    if bucket is not None and len(starts) == 1:
        [start] = starts
        ax.set_xlim(start - bucket, start + bucket)
    if drawn:
        ax.legend(loc="lower left", fontsize=8, ncols=min(drawn, 3))
    else:
        ax.text(0.5, 0.5, "no inspections in this filter", ha="center", va="center", transform=ax.transAxes)
    return _svg(fig)


def rejected(bucket: YieldBucket) -> int:
    """The parts of a bucket not passed: FAIL, and RECHECK where the history counts it."""
    return bucket.failed + getattr(bucket, "rechecked", 0)


def false_reject_chart(fails: list[YieldBucket], false_rejects: list[YieldBucket],
                       confirmed: list[YieldBucket], bucket: timedelta | None = None) -> bytes:
    """Per bucket, the rejected parts (FAIL, RECHECK) by label (false reject, confirmed defect, not yet labelled),
    stacked; the title gives the false-reject share of the labelled ones. Each bar stands on its
    bucket (``[start, start + bucket)``, from its start), not centred on the bucket's start."""
    by_start: dict[datetime, list[int]] = {}
    for index, buckets in enumerate((false_rejects, confirmed, fails)):
        for b in buckets:
            by_start.setdefault(b.start, [0, 0, 0])[index] = rejected(b)
    starts = sorted(by_start)
    fr = [by_start[s][0] for s in starts]
    cd = [by_start[s][1] for s in starts]
    rest = [max(0, by_start[s][2] - by_start[s][0] - by_start[s][1]) for s in starts]
    labelled = sum(fr) + sum(cd)
    share = f"{100 * sum(fr) / labelled:.1f} % of {labelled} labelled rejects were false rejects" if labelled else "no labelled rejects"
    fig, ax = _axes(f"Rejects by review label: {share}", "rejected parts")
    if starts:
        width = 0.8 * bucket.total_seconds() / 86400 if bucket is not None else _bar_width(starts)
        ax.bar(starts, fr, width=width, align="edge", color="#ef6c00", label="false reject")
        ax.bar(starts, cd, width=width, align="edge", bottom=fr, color="#c62828", label="confirmed defect")
        ax.bar(starts, rest, width=width, align="edge", bottom=[a + b for a, b in zip(fr, cd)], color="#9e9e9e",
               label="not labelled")
        ax.legend(loc="upper left", fontsize=8, ncols=3)
    else:
        ax.text(0.5, 0.5, "no rejects in this filter", ha="center", va="center", transform=ax.transAxes)
    return _svg(fig)


def _bar_width(starts: list[datetime]) -> float:
    """Bar width in days (matplotlib's date unit): 80 % of the closest spacing."""
    if len(starts) < 2:
        return 1 / 24
    gap = min((b - a).total_seconds() for a, b in zip(starts, starts[1:]))
    return 0.8 * gap / 86400 if gap > 0 and math.isfinite(gap) else 1 / 24
