"""The report shows GPU memory and utilisation beside the client timeline when Triton's GPU gauges were
scraped (here: a repetition directory holding what Prometheus answered, as ``gpu_metrics.json``), and
nothing extra on a CPU run."""

from __future__ import annotations

import json
from pathlib import Path

from synthetic_run import BASE, S, steady, write_repetition, write_run

from harness.report import build_report

UUID = "GPU-2b7e1516-28ae-d2a6-abf7-158809cf4f3c"


def _run(reports: Path, with_gpu: bool) -> Path:
    run = reports / ("20261202T100000Z-gpu" if with_gpu else "20261202T100000Z-cpu")
    rep = write_repetition(run, "gpu-memory-pressure", "1", steady(0, 30, 20), fault="gpu-memory-pressure",
                           load=(0, 30), fault_start=10, fault_end=15)
    if with_gpu:
        t0 = BASE / S
        memory = [[t0 + i, (1.5 if i < 10 or i >= 15 else 139.0) * 2**30] for i in range(30)]
        util = [[t0 + i, 0.2] for i in range(30)]
        (rep / "gpu_metrics.json").write_text(json.dumps({
            "series": {"memory_used_bytes": {UUID: memory}, "utilization": {UUID: util}},
            "url": "http://127.0.0.1:9090", "window": {"start_ns": BASE, "end_ns": BASE + 30 * S}}))
    write_run(run, ["gpu-memory-pressure"])
    return run


def test_gpu_memory_and_utilisation_are_plotted_beside_the_timeline(tmp_path: Path) -> None:
    html = build_report(_run(tmp_path, True), query_server=False, record_history=False).index_html.read_text()
    assert "GPU memory used GiB" in html and "GPU utilisation %" in html and UUID[:12] in html
    assert html.count("<svg") == 2  # the client timeline and the GPU plot under it


def test_a_cpu_run_has_no_gpu_plot(tmp_path: Path) -> None:
    html = build_report(_run(tmp_path, False), query_server=False, record_history=False).index_html.read_text()
    assert "GPU memory used GiB" not in html and html.count("<svg") == 1
