"""Server-side figures count the service under test only: two real Tritons, one real Prometheus.

Two tritonservers serve the same model; one Prometheus scrapes both (as a shared cluster Prometheus
would). Triton A gets a few requests, Triton B three times as many. A's figures, queried with A's scope,
must be A's own count, whatever B did; the same query scoped to both instances sees B's traffic, so the
test would fail if the scope were dropped.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

from harness.analysis._server import server_figures
from harness.platforms.local.prometheus import PrometheusServer, render_prometheus_config
from harness.service import service_scope
from tests.conftest import free_port, random_subnet
from tests.outside_triton import OutsideTriton, outside_triton

BODY = json.dumps({"inputs": [
    {"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["the quick brown fox"]},
    {"name": "WEIGHTS", "datatype": "FP32", "shape": [3], "data": [0.5, 1.0, 2.0]}]}).encode()


def _infer(server: OutsideTriton, n: int) -> None:
    for _ in range(n):
        request = urllib.request.Request(f"{server.http}/v2/models/textstats/infer", data=BODY, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200


def _counter(server: OutsideTriton) -> float:
    """What Triton A's own /metrics says it served (the truth the scoped query must match)."""
    url = f"http://{server.address}:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("nv_inference_request_success{"))


def _scraped(prom: str, scope: str, want: float) -> bool:
    query = urllib.parse.quote(f"sum(nv_inference_request_success{{{scope}}})")
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/query?query={query}", timeout=5) as resp:
            result = json.load(resp)["data"]["result"]
    except OSError:  # Prometheus still starting
        return False
    return bool(result) and float(result[0]["value"][1]) >= want


def test_a_second_triton_on_the_same_prometheus_changes_no_figure_of_the_first(tmp_path: Path) -> None:
    subnet = random_subnet()
    with outside_triton(tmp_path / "a", f"{subnet}.2") as a, outside_triton(tmp_path / "b", f"{subnet}.3") as b:
        listen = f"{subnet}.1:{free_port(f'{subnet}.1')}"
        config = tmp_path / "prometheus.yml"
        config.write_text(render_prometheus_config(
            [("a", f"{a.address}:{a.metrics_port}"), ("b", f"{b.address}:{b.metrics_port}")],
            f"{subnet}.1:9", 0.5))
        prom = PrometheusServer(config, tmp_path / "tsdb", listen, tmp_path / "prometheus.log")
        prom.start()
        try:
            url = f"http://{listen}"
            scope_a = service_scope({"endpoints": {"metrics": [f"http://{a.address}:{a.metrics_port}/metrics"]}})
            scope_both = service_scope({"endpoints": {"metrics": [
                f"http://{a.address}:{a.metrics_port}/metrics", f"http://{b.address}:{b.metrics_port}/metrics"]}})
            assert scope_a and scope_both
            deadline = time.monotonic() + 60  # both scraped at zero before any traffic
            while not (_scraped(url, scope_a, 0) and _scraped(url, scope_both, 0)):
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
                time.sleep(0.5)
            start = time.time_ns()
            time.sleep(1.0)
            _infer(a, 20)
            _infer(b, 60)
            served_a = _counter(a)
            assert served_a == 20
            while not _scraped(url, scope_both, 80):
                assert time.monotonic() < deadline + 60
                time.sleep(0.5)
            time.sleep(1.0)
            end = time.time_ns()
            rep = tmp_path / "rep-a"
            rep.mkdir()
            figures, problem = server_figures(rep, url, start, end, scope=scope_a)
            assert problem is None and figures is not None
            assert figures["scope"] == scope_a
            # increase() extrapolates to the window's edges (seen: 23.9 for 20 when scrapes lag on a busy
            # machine); a whole B (60 requests) is far beyond that, and within reach of the two together.
            assert abs(figures["requests_success"] - served_a) < 12, figures
            both, _ = server_figures(tmp_path, url, start, end, scope=scope_both)
            assert both is not None and abs(both["requests_success"] - 80) < 24, both  # B was visible
            assert both["requests_success"] > figures["requests_success"] + 40, (both, figures)
            unscoped, why = server_figures(tmp_path / "none", url, start, end, scope=None)
            assert unscoped is None and why is not None and "scope" in why  # never a cluster-wide sum
        finally:
            prom.stop()
