"""GPU memory used and utilisation over a repetition, from Triton's gauges scraped by Prometheus.

Shown beside the client timeline when the service ran on GPUs (on the CPU Triton exports no such series,
and the report shows nothing extra). Like the server figures, the first successful query is kept in the
repetition directory (``gpu_metrics.json``), so a report rebuilt after the platform is gone still shows it.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["GPU_FILE", "GPU_METRICS", "gpu_series"]

GPU_FILE = "gpu_metrics.json"
# metric -> PromQL: one series per GPU (Triton labels them gpu_uuid; replicas on one GPU report the same value)
GPU_METRICS = {
    "memory_used_bytes": "max by (gpu_uuid) (nv_gpu_memory_used_bytes)",
    "utilization": "max by (gpu_uuid) (nv_gpu_utilization)",
}


def _query_range(url: str, query: str, start_s: float, end_s: float, timeout_s: float) -> dict[str, list[list[float]]]:
    params = urllib.parse.urlencode({"query": query, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": "1"})
    with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query_range?{params}", timeout=timeout_s) as resp:
        body = json.loads(resp.read())
    out: dict[str, list[list[float]]] = {}
    for series in (body.get("data") or {}).get("result") or []:
        uuid = str((series.get("metric") or {}).get("gpu_uuid", "?"))
        out[uuid] = [[float(t), float(v)] for t, v in series.get("values") or [] if math.isfinite(float(v))]
    return out


def gpu_series(rep_dir: Path, url: str | None, start_ns: int, end_ns: int,
               timeout_s: float = 3.0) -> dict[str, Any] | None:
    """``{"series": {metric: {gpu_uuid: [[unix_s, value], ...]}}, "url": ...}``, or None when there is none."""
    cache = rep_dir / GPU_FILE
    if cache.exists():
        try:
            cached: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
            return cached
        except ValueError:
            pass
    if not url or end_ns <= start_ns:
        return None
    try:
        series = {key: _query_range(url, query, start_ns / 1e9, end_ns / 1e9, timeout_s)
                  for key, query in GPU_METRICS.items()}
    except (OSError, ValueError):
        return None  # Prometheus gone or not answering: the timeline stands without it
    if not any(series.values()):
        return None  # no GPU series: a CPU run
    data = {"series": series, "url": url, "window": {"start_ns": start_ns, "end_ns": end_ns}}
    cache.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return data
