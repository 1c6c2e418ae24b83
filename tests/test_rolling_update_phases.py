"""The rolling update's errors per phase when the load ran in the cluster: the landing is judged while the
workers still hold their timelines, so the figures are taken once the timeline is back (chaos control)."""

from __future__ import annotations

from pathlib import Path

from harness.faults.rolling_update import NAME, NO_TIMELINE, errors_once_the_timeline_is_back
from harness.timeline import TimelineWriter

S = 1_000_000_000
BASE = 1_700_000_000 * S


def _landing(errors: object = None) -> dict[str, object]:
    phases = [{"pod": "a", "phase": "terminating", "start_ns": BASE + 2 * S, "end_ns": BASE + 4 * S},
              {"pod": "b", "phase": "new-pod-startup", "start_ns": BASE + 6 * S, "end_ns": None}]
    return {"fault": NAME, "targets": ["a", "b"], "landed": True, "check": "c",
            "detail": f"replaced 2 replica(s) in 9s; ready replicas never below 2; {NO_TIMELINE}",
            "measured": {"phases": phases, "errors_by_phase": errors, "window_ns": [BASE + 1 * S, BASE + 9 * S]}}


def test_errors_per_phase_are_counted_from_the_timeline_that_came_back(tmp_path: Path) -> None:
    writer = TimelineWriter(tmp_path / "timeline", worker="w0")
    # one request every 100 ms from 0 to 10 s; failures at 3.0-3.4 s (terminating) and 7.0 s (startup)
    for i in range(100):
        failed = 30 <= i < 35 or i == 70
        writer.record(BASE + i * S // 10, 0.01, "error" if failed else "ok", "connection_closed" if failed else "")
    writer.close()
    done = errors_once_the_timeline_is_back(_landing(), tmp_path / "timeline")
    assert done is not None
    errors = done["measured"]["errors_by_phase"]
    assert errors["terminating"] == {"requests": 21, "errors": 5}  # 2.0 s .. 4.0 s inclusive
    assert errors["new-pod-startup"] == {"requests": 31, "errors": 1}  # 6.0 s .. the window's end, 9.0 s
    assert errors["other"] == {"requests": 29, "errors": 0}
    assert NO_TIMELINE not in done["detail"] and "terminating 5/21" in done["detail"]


def test_nothing_is_added_without_a_timeline_or_when_the_figures_are_there(tmp_path: Path) -> None:
    assert errors_once_the_timeline_is_back(_landing(), tmp_path / "missing") is None
    assert errors_once_the_timeline_is_back(_landing({"other": {"requests": 1, "errors": 0}}), tmp_path) is None
    assert errors_once_the_timeline_is_back({**_landing(), "fault": "pod-kill"}, tmp_path) is None
