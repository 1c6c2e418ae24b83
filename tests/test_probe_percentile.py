"""The steady-state probe judges p99 latency by the analysis's own nearest-rank rule (``harness.ranks``).

The probe used to take ``int(0.99 n)`` (for n = 100 the slowest request) while the analysis takes the
``ceil(0.99 n)``-th smallest: a hypothesis could deviate on a window the analysis calls good.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis._settings import AnalysisSettings, Objective
from harness.analysis._windows import make_windows
from harness.chaos.probes import p99_latency_within
from harness.timeline import TimelineWriter

S = 1_000_000_000


def _timeline(run_dir: Path, latencies: list[float]) -> np.ndarray:
    """Requests started over the last second, with these latencies, in the runner's timeline format."""
    now = time.time_ns()
    starts = [now - S + i * (S // (len(latencies) + 1)) for i in range(len(latencies))]
    writer = TimelineWriter(run_dir / "timeline", worker="0", flush_interval_s=1e9)
    for start, latency in zip(starts, latencies, strict=True):
        writer.record(start, latency, "ok", "", 200, "triton-0")
    writer.close()
    return np.array(starts, dtype=np.int64)


def _analysis_says_good(starts: np.ndarray, latencies: list[float], max_s: float) -> bool:
    settings_ = AnalysisSettings(window_s=5.0, stability_period_s=1.0, objective=Objective(0.99, max_s))
    span = (int(starts[0]), int(starts[-1]) + 1)
    w = make_windows(starts, np.array(latencies), np.ones(len(latencies), dtype=bool), anchor_ns=span[0],
                     span=span, cuts=[], settings=settings_)
    return bool(w.good.all())


def test_one_slow_request_in_a_hundred_is_within_p99_for_probe_and_analysis(tmp_path: Path) -> None:
    latencies = [0.01] * 99 + [1.0]
    starts = _timeline(tmp_path, latencies)
    assert _analysis_says_good(starts, latencies, 0.5)
    assert p99_latency_within(max_ms=500, window_s=5, configuration={"harness_run_dir": str(tmp_path)})
    # two slow ones in a hundred: p99 is slow for both
    other = tmp_path / "two"
    latencies = [0.01] * 98 + [1.0, 1.0]
    starts = _timeline(other, latencies)
    assert not _analysis_says_good(starts, latencies, 0.5)
    assert not p99_latency_within(max_ms=500, window_s=5, configuration={"harness_run_dir": str(other)})


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=1, max_value=400) | st.sampled_from([100, 200, 300]),
       slow=st.integers(min_value=0, max_value=8))
def test_probe_and_analysis_agree_on_any_window(tmp_path_factory, n: int, slow: int) -> None:  # type: ignore[no-untyped-def]
    slow = min(slow, n)
    latencies = [0.01] * (n - slow) + [1.0] * slow
    run_dir = tmp_path_factory.mktemp("probe")
    starts = _timeline(run_dir, latencies)
    probe = p99_latency_within(max_ms=500, window_s=5, configuration={"harness_run_dir": str(run_dir)})
    assert probe == _analysis_says_good(starts, latencies, 0.5), (n, slow)
