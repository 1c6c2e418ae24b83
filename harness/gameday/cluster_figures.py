"""Per-second figures for the live view when the load runs in the cluster.

The local load writes one line a second (``load-stats.jsonl``); Locust's pods in the cluster keep their
figures in their own timelines until the repetition ends. So the view copies the workers' newest chunks
(``cluster_load.live_timeline`` into a folder of its own, so the steady-state probes never read a chunk it is
writing) and takes the figures of one whole second from the requests themselves. That second lies
``LAG_S`` behind now: a request is written when it ends, and the workers write their chunks once a second,
so a more recent second would still be missing its slow requests and look better than it was.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.platforms.base import Platform
from harness.platforms.kubernetes import cluster_load
from harness.ranks import nearest_rank_value

__all__ = ["LAG_S", "figures_of_second", "sample"]

LAG_S = 3.0


def figures_of_second(timeline_dir: Path, second_start_ns: int) -> dict[str, Any]:
    """Requests, errors, p50 and p99 (ms, the analysis's nearest rank) of the requests that started in that
    second."""
    from harness.timeline import read_timeline

    frame = read_timeline(timeline_dir)
    if len(frame):
        start = frame["start_ns"].to_numpy(dtype=np.int64)
        frame = frame[(start >= second_start_ns) & (start < second_start_ns + 1_000_000_000)]
    n = len(frame)
    errors = int((frame["outcome"] != "ok").sum()) if n else 0
    out: dict[str, Any] = {"time_ns": second_start_ns, "rps": float(n), "errors_per_s": float(errors),
                           "p50_ms": None, "p99_ms": None}
    if n:
        latency = frame["latency_s"].to_numpy(dtype=np.float64)
        for key, q in (("p50_ms", 50.0), ("p99_ms", 99.0)):
            out[key] = round(nearest_rank_value(latency, q) * 1000)
    return out


def sample(rep_dir: Path, platform: Platform, now_ns: int | None = None) -> dict[str, Any] | None:
    """The figures of the second ``LAG_S`` ago, with the run's users and the second's lag; None when this
    repetition's load is not running in the cluster. The copies are removed again at once."""
    dest = rep_dir / cluster_load.VIEW_DIR
    shutil.rmtree(dest, ignore_errors=True)
    try:
        copied = cluster_load.live_timeline(rep_dir, platform, LAG_S + 2, into=cluster_load.VIEW_DIR)
        if copied is None:
            return None
        now_ns = now_ns if now_ns is not None else time.time_ns()
        second = (now_ns - int(LAG_S * 1e9)) // 1_000_000_000 * 1_000_000_000
        figures = figures_of_second(copied, second)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    record = json.loads((rep_dir / cluster_load.RECORD).read_text())
    figures["users"] = record.get("settings", {}).get("users", "-")
    figures["lag_s"] = round((time.time_ns() - second) / 1e9, 1)
    return figures
