"""Server-side figures from Prometheus, shown beside the client-side ones.

Client-side outcomes are the truth for SLIs (DESIGN.md: Triton counted requests as successes that
clients received as errors), so these figures only annotate: where they disagree the report says so,
and when Prometheus cannot be reached the report completes on client data and says what is missing.
The first successful query of a repetition is kept in ``server_metrics.json`` beside its timeline, so a
report rebuilt after the platform is gone still shows it.

Every query is scoped to the service under test (``service_scope``): the instances of its replicas'
metrics endpoints (local, attached), or its namespace and its Deployment's pods (Kubernetes), as the
platform reported them at up/attach. A Prometheus shared by several Tritons is never summed across them;
without a scope nothing is queried, and the report says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SERVER_FILE", "compare_with_client", "find_prometheus_url", "server_figures"]

SERVER_FILE = "server_metrics.json"

_QUERIES = {
    "requests_success": "sum(increase(nv_inference_request_success{{{s}}}[{d}s]))",
    "requests_failure": "sum(increase(nv_inference_request_failure{{{s}}}[{d}s]))",
    "queue_time_us_total": "sum(increase(nv_inference_queue_duration_us{{{s}}}[{d}s]))",
    "inferences": "sum(increase(nv_inference_count{{{s}}}[{d}s]))",
    "gpu_memory_used_max_bytes": "max(max_over_time(nv_gpu_memory_used_bytes{{{s}}}[{d}s]))",
}


def find_prometheus_url(*documents: Mapping[str, Any]) -> str | None:
    """The Prometheus URL from run.json / settings.json: endpoints, else the local platform's settings."""
    for doc in documents:
        for holder in (doc, doc.get("settings") if isinstance(doc.get("settings"), dict) else {}):
            if not isinstance(holder, dict):
                continue
            endpoints = holder.get("endpoints")
            if isinstance(endpoints, dict) and isinstance(endpoints.get("prometheus"), str) \
                    and endpoints["prometheus"]:
                return str(endpoints["prometheus"])
            if isinstance(holder.get("prometheus_url"), str) and holder["prometheus_url"]:
                return str(holder["prometheus_url"])
            if holder.get("prometheus") is not False and holder.get("prometheus_port") \
                    and holder.get("front_address"):
                return f"http://{holder['front_address']}:{holder['prometheus_port']}"
    return None


def _query(url: str, scope: str, start_ns: int, end_ns: int, timeout_s: float) -> dict[str, Any]:
    from prometheus_api_client import PrometheusConnect  # heavy import, only when asked
    from urllib3.util.retry import Retry

    prom = PrometheusConnect(url=url, disable_ssl=True, retry=Retry(total=0), timeout=timeout_s)
    duration = max(1, math.ceil((end_ns - start_ns) / 1e9))
    at = end_ns / 1e9
    values: dict[str, Any] = {}
    for key, template in _QUERIES.items():
        result = prom.custom_query(template.format(s=scope, d=duration), params={"time": at})
        values[key] = float(result[0]["value"][1]) if result else None
    success = values["requests_success"]
    qtotal = values.pop("queue_time_us_total")
    inferences = values.pop("inferences")
    values["queue_time_mean_ms"] = (qtotal / inferences / 1000.0) if qtotal is not None and inferences \
        else None
    values["window"] = {"start_ns": start_ns, "end_ns": end_ns}
    values["url"] = url
    values["scope"] = scope
    if success is None and values["requests_failure"] is None:
        values["missing"] = ["Triton request counters (no nv_inference_request_* series in that period)"]
    else:
        values["missing"] = []
    if values["gpu_memory_used_max_bytes"] is None:
        values["missing"].append("GPU memory (no nv_gpu_memory_used_bytes series: no GPU, or not scraped)")
    return values


def server_figures(
    rep_dir: Path, url: str | None, start_ns: int, end_ns: int, timeout_s: float = 3.0, scope: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(figures, problem): cached figures, else a fresh query scoped by ``scope`` (``service_scope``);
    problem says what is missing and why."""
    cache = rep_dir / SERVER_FILE
    if cache.exists():
        try:
            cached: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
            if "scope" not in cached:
                return cached, ("server-side figures were queried before queries were scoped to the service: "
                                "they may include other Tritons scraped by the same Prometheus")
            return cached, None
        except ValueError:
            pass
    if not url:
        return None, "server-side figures missing: the run names no Prometheus endpoint"
    if not scope:
        return None, ("server-side figures missing: the run records no instance or pod of the service under "
                      "test to scope the Prometheus queries by (a cluster-wide sum would count other services)")
    try:
        figures = _query(url, scope, start_ns, end_ns, timeout_s)
    except Exception as exc:  # noqa: BLE001 - any transport or API failure only removes an annotation
        return None, (f"server-side figures missing: Prometheus at {url} could not be queried "
                      f"({type(exc).__name__})")
    cache.write_text(json.dumps(figures, indent=2, sort_keys=True), encoding="utf-8")
    return figures, None


def compare_with_client(server: Mapping[str, Any], ok: int, failed: int) -> list[str]:
    """Notes where Triton's counters disagree with what the clients saw (by more than 1 % or 5 requests)."""
    notes = []
    pairs = (("successful", "requests_success", ok), ("failed", "requests_failure", failed))
    for label, server_key, client in pairs:
        value = server.get(server_key)
        if value is None:
            continue
        diff = round(value) - client
        if abs(diff) > max(5, 0.01 * max(ok + failed, 1)):
            notes.append(f"Triton counted {round(value)} {label} requests, clients saw {client} "
                         f"({diff:+d}); client-side outcomes are the SLI truth. Usual causes: requests "
                         "refused before reaching Triton, responses rejected after Triton answered, and "
                         "counters lost with a killed replica (increments since its last scrape vanish and "
                         "its counter restarts from zero)")
    return notes
