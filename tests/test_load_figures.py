"""Figures of a load taken from its timeline: the live view's per-second figures when the load runs in the
cluster, from the requests the workers wrote (a real timeline folder here; the copy from the pods is tested on
the sandbox, tests/k8s/test_k8s_run.py), and ``harness load``'s closing summary."""

from __future__ import annotations

from pathlib import Path

from harness.gameday.cluster_figures import figures_of_second
from harness.timeline import TimelineWriter

S = 1_000_000_000
BASE = 1_700_000_000 * S


def test_one_second_of_requests_gives_its_rate_errors_and_nearest_rank_latencies(tmp_path: Path) -> None:
    writer = TimelineWriter(tmp_path / "timeline", worker="w1")
    # second 0: 5 requests; second 1: 100 requests, latencies 1..100 ms, the 4 slowest failed; second 2: 3
    for i in range(5):
        writer.record(BASE + i * S // 10, 0.5, "ok")
    for i in range(100):  # written as they end: slowest first, so the file is not in start order
        j, failed = 99 - i, i < 4
        writer.record(BASE + S + j * S // 100, (j + 1) / 1000, "error" if failed else "ok", "timeout" if failed else "")
    for i in range(3):
        writer.record(BASE + 2 * S + i, 0.2, "ok")
    writer.close()
    second = figures_of_second(tmp_path / "timeline", BASE + S)
    assert second["rps"] == 100 and second["errors_per_s"] == 4
    assert second["p50_ms"] == 50 and second["p99_ms"] == 99  # the 50th and 99th of 100, not interpolated
    assert figures_of_second(tmp_path / "timeline", BASE)["rps"] == 5
    empty = figures_of_second(tmp_path / "timeline", BASE + 10 * S)
    assert empty["rps"] == 0 and empty["p99_ms"] is None


def test_the_load_commands_summary_takes_percentiles_by_the_analysis_rule(tmp_path: Path) -> None:
    """``harness load``'s closing p50/p99 are latencies requests really had (nearest rank), as in the report:
    of 100 requests taking 1..100 ms, p99 is 99 ms, not the interpolated 99.01 ms."""
    from harness.commands.load_cmd import summarize

    writer = TimelineWriter(tmp_path / "timeline", worker="w0")
    for i in range(100):
        writer.record(BASE + i * S // 100, (i + 1) / 1000, "ok")
    writer.record(BASE + S, 5.0, "error", "timeout")
    writer.close()
    summary = summarize(tmp_path / "timeline")
    assert summary["requests"] == 101 and summary["ok"] == 100 and summary["errors"] == {"timeout": 1}
    assert summary["p50_ms"] == 50.0 and summary["p99_ms"] == 99.0
