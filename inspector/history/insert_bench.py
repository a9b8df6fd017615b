"""Insert throughput of the history writer, for the command line (not asserted in tests)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from inspector.history.db import HistoryDB
from inspector.history.writer import HistoryWriter
from inspector.inspection import InspectionResult


def benchmark_inserts(url: str, n: int = 10_000, batch_size: int = 256) -> float:
    """Push ``n`` synthetic records through a :class:`HistoryWriter` into the database at ``url``
    (schema upgraded first) and return the durable inserts per second, from the first submit to
    the last commit. The rows stay in the database: point it at a scratch one."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    db = HistoryDB(url)
    try:
        db.upgrade()
        t0 = datetime.now(timezone.utc)
        records = [
            InspectionResult(
                time=t0 + timedelta(milliseconds=i),
                camera_id="bench",
                frame_id=i,
                score=(i % 100) / 100.0,
                decision="FAIL" if i % 100 == 99 else "PASS",
                threshold=0.5,
                latency_total_ms=12.0,
                latency_model_ms=8.0,
            )
            for i in range(n)
        ]
        writer = HistoryWriter(db, batch_size=batch_size, max_buffered=n)
        writer.start()
        start = time.perf_counter()
        for record in records:
            writer.submit(record)
        writer.stop(timeout=None)
        elapsed = time.perf_counter() - start
        if writer.stats.written != n:
            raise RuntimeError(f"benchmark stored {writer.stats} instead of {n} rows")
    finally:
        db.close()
    return n / elapsed
