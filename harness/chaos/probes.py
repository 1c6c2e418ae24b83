"""Chaos Toolkit probes for the steady-state hypothesis, judged from what clients saw.

They read the run's own request timeline (written by the load the control started), so "the service
is fine" means users were served, not that Triton says it is healthy.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from harness.chaos.context import RunContext
from harness.platforms.kubernetes import cluster_load
from harness.procs import alive
from harness.ranks import nearest_rank_value
from harness.timeline import timeline_files

__all__ = ["error_ratio_within", "load_running", "p99_latency_within", "replicas_ready"]

Configuration = MutableMapping[str, Any]


def _recent(ctx: RunContext, window_s: float) -> tuple[int, int, float]:
    """(requests, failures, p99 latency in s) of requests started in the last ``window_s`` seconds."""
    since = time.time_ns() - int(window_s * 1e9)
    cutoff = time.time() - window_s - 5  # chunks older than this hold no recent requests
    starts: list[int] = []
    oks: list[bool] = []
    latencies: list[float] = []
    directory = ctx.run_dir / "timeline"
    if cluster_load.recorded(ctx.run_dir):  # the load runs in the cluster: its recent requests, copied now
        directory = cluster_load.live_timeline(ctx.run_dir, ctx.platform(), window_s) or directory
    for path in timeline_files(directory):
        if path.stat().st_mtime < cutoff:
            continue
        with pa.memory_map(str(path)) as src:
            table = ipc.open_stream(src).read_all()
        starts.extend(table.column("start_ns").to_pylist())
        oks.extend(o == "ok" for o in table.column("outcome").to_pylist())
        latencies.extend(table.column("latency_s").to_pylist())
    picked = [(ok, lat) for s, ok, lat in zip(starts, oks, latencies, strict=True) if s >= since]
    if not picked:
        return 0, 0, float("inf")
    p99 = nearest_rank_value([lat for _, lat in picked], 99)  # the analysis's rule (harness.ranks)
    return len(picked), sum(1 for ok, _ in picked if not ok), p99


def replicas_ready(min_ready: int | None = None, configuration: Configuration | None = None) -> bool:
    """All replicas ready (``PlatformStatus.all_ready``: a pod still terminating is not one), or at least
    ``min_ready``."""
    status = RunContext.from_configuration(configuration).platform().status()
    return status.all_ready if min_ready is None else status.ready_replicas >= min_ready


def error_ratio_within(max_ratio: float = 0.01, window_s: float = 5.0,
                       configuration: Configuration | None = None) -> bool:
    """At most ``max_ratio`` of the last ``window_s`` seconds' requests failed; no requests at all fails."""
    total, failed, _ = _recent(RunContext.from_configuration(configuration), window_s)
    return total > 0 and failed / total <= max_ratio


def p99_latency_within(max_ms: float = 500.0, window_s: float = 5.0,
                       configuration: Configuration | None = None) -> bool:
    total, _, p99 = _recent(RunContext.from_configuration(configuration), window_s)
    return total > 0 and p99 * 1000 <= max_ms


def load_running(configuration: Configuration | None = None) -> bool:
    """The harness's control is active and its load process runs (a skipped control fails this)."""
    ctx = RunContext.from_configuration(configuration)
    if cluster_load.recorded(ctx.run_dir):
        return bool(cluster_load.running(ctx.run_dir, ctx.platform()))
    marker = ctx.run_dir / "load.pid"
    if not marker.exists():
        return False
    try:
        pid = int(marker.read_text())
    except ValueError:
        return False
    return pid == 0 or alive(pid)
