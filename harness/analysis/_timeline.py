"""What a repetition's figures need from its request timeline, and today's in-memory way of getting it.

``TimelineFigures`` is the contract between the timeline and ``analyse_repetition``. Two engines fill it:
``figures_in_memory`` (the whole timeline read, sorted and held as arrays: simple, and the oracle the
property tests hold the other to) and ``harness.analysis._stream.figures_streamed`` (batched passes over
the compacted file in flat memory: what reports use). Both must give the same figures to the nanosecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.analysis._settings import AnalysisSettings
from harness.analysis._windows import (
    FloatArray,
    Recovery,
    effective_starts,
    make_windows,
    phase_percentiles,
    recovery,
    window_series,
)
from harness.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TimelineFigures", "TimelineQuestion", "figures_in_memory", "rank_index"]


@dataclass(frozen=True)
class TimelineQuestion:
    """The instants experiment.json gives (ns; None when it has none) and where it came from."""

    load_start_ns: int | None
    load_end_ns: int | None
    observation_end_ns: int | None
    t0_ns: int | None
    fault_end_ns: int | None
    where: Path  # experiment.json, for error messages
    rep_dir: Path


@dataclass
class TimelineFigures:
    span: tuple[int, int]  # observed load span (start moved to the first request)
    obs_end: int
    t0_ns: int | None  # None when no fault, or the fault started outside the span
    total: int  # requests counted in [span start, observation end)
    failed: int
    availability_time: float | None
    observed_ns: int
    errors_by_class: dict[str, int]
    errors_after_fault_by_class: dict[str, int]
    recovery: Recovery | None
    latency: dict[str, dict[str, float | int | None]]
    series: dict[str, FloatArray]
    notes: list[str] = field(default_factory=list)


def rank_index(n: int, q: float) -> int:
    """The 0-based index of numpy's ``inverted_cdf`` (nearest-rank) q-th percentile of n sorted values,
    computed with numpy's own floating-point steps so both engines pick the very same element."""
    v = float(n * np.true_divide(q, 100) - 1)
    p = float(np.floor(v))
    idx = int(p) if v - p == 0 else int(p) + 1
    return max(0, min(idx, n - 1))


def span_of(q: TimelineQuestion, first_start: int | None, last_start: int | None) -> tuple[int, int]:
    """The load span from experiment.json, else from the timeline's first and last starts."""
    if first_start is None and q.load_start_ns is None:
        raise ConfigError(f"{q.rep_dir}: the timeline is empty and experiment.json has no load_start_ns; "
                          "nothing to analyse")
    span_start = q.load_start_ns if q.load_start_ns is not None else int(first_start or 0)
    span_end = q.load_end_ns if q.load_end_ns is not None else int(last_start or 0) + 1
    if span_end <= span_start:
        raise ConfigError(f"{q.where}: load_end_ns ({span_end}) is not after load_start_ns ({span_start})")
    return span_start, span_end


def bound_span(
    q: TimelineQuestion, span: tuple[int, int], outside: int, first_inside: int | None,
    settings: AnalysisSettings, notes: list[str],
) -> tuple[int, int, int | None]:
    """(span start, observation end, t0) after the checks both engines make, with their notes."""
    span_start, span_end = span
    if outside:
        notes.append(f"{outside} requests started outside the load period and were left out")
    if first_inside is not None and first_inside > span_start:
        # Observation begins with the first request: before it the load generator had asked nothing.
        gap_s = (first_inside - span_start) / 1e9
        if gap_s > settings.window_s:
            notes.append(f"the first request was sent {gap_s:.3f} s after the load period began; "
                         "the observed period starts there")
        span_start = first_inside
    obs_end = q.observation_end_ns if q.observation_end_ns is not None else span_end
    if obs_end > span_end:
        notes.append(f"observation ended {(obs_end - span_end) / 1e9:.3f} s after the load stopped; "
                     "the observation is cut at the end of the load")
        obs_end = span_end
    t0 = q.t0_ns
    if t0 is not None and not span_start <= t0 < span_end:
        notes.append("the fault started outside the observed load period; impact and recovery cannot be "
                     "measured")
        t0 = None
    return span_start, obs_end, t0


def moved_note(moved: int) -> str:
    return (f"{moved} request(s) in flight at the fault start failed after it: they count as impact "
            "at the time they failed")


def phases_of(span_start: int, obs_end: int, t0: int | None, fault_end_ns: int | None
              ) -> dict[str, tuple[int, int]]:
    if t0 is None:
        return {"before": (span_start, obs_end), "during": (obs_end, obs_end), "after": (obs_end, obs_end)}
    fault_end = fault_end_ns if fault_end_ns is not None else obs_end
    return {"before": (span_start, t0), "during": (t0, max(t0, fault_end)), "after": (max(t0, fault_end), obs_end)}


def figures_in_memory(frame: pd.DataFrame, q: TimelineQuestion, settings: AnalysisSettings) -> TimelineFigures:
    """Every figure from the whole timeline held in memory (``read_timeline``'s frame, sorted by start)."""
    notes: list[str] = []
    start = frame["start_ns"].to_numpy(dtype=np.int64)
    latency = frame["latency_s"].to_numpy(dtype=np.float64)
    ok = (frame["outcome"] == "ok").to_numpy(dtype=bool)
    span_start, span_end = span_of(q, int(start[0]) if len(start) else None,
                                   int(start[-1]) if len(start) else None)
    outside = int(np.count_nonzero((start < span_start) | (start >= span_end)))
    inside = start[(start >= span_start) & (start < span_end)]
    span_start, obs_end, t0 = bound_span(q, (span_start, span_end), outside,
                                         int(inside[0]) if len(inside) else None, settings, notes)
    # Requests in flight at t0 that failed count at their failure (``effective_starts``); re-sort by it.
    instants, order = effective_starts(start, latency, ok, t0)
    moved = int(np.count_nonzero(instants != start))
    if moved or bool(np.any(order != np.arange(len(order)))):
        start, latency, ok = instants[order], latency[order], ok[order]
        frame = frame.iloc[order].reset_index(drop=True)
    if moved:
        notes.append(moved_note(moved))
    anchor = t0 if t0 is not None else span_start
    w = make_windows(start, latency, ok, anchor_ns=anchor, span=(span_start, span_end),
                     cuts=[obs_end], settings=settings)
    in_span = slice(int(np.searchsorted(start, span_start)), int(np.searchsorted(start, obs_end)))
    total = int(in_span.stop - in_span.start)
    failed = int(np.count_nonzero(~ok[in_span]))
    observed = w.end_ns <= obs_end
    dur = w.duration_ns
    span_ns = int(dur[observed].sum())
    availability_time = float(dur[observed & w.good].sum() / span_ns) if span_ns else None
    errors = frame["error_class"].iloc[in_span][~ok[in_span]].value_counts()
    errors_by_class = {str(k) or "unclassified": int(v) for k, v in errors.items()}
    rec = None
    errors_after: dict[str, int] = {}
    if t0 is not None:
        rec = recovery(w, start, latency, ok, t0_ns=t0, observation_end_ns=obs_end, settings=settings,
                       fault_end_ns=q.fault_end_ns if q.fault_end_ns is not None else t0)
        a, b = np.searchsorted(start, [t0, obs_end])
        err_after = frame["error_class"].iloc[a:b][~ok[a:b]].value_counts()
        errors_after = {str(k) or "unclassified": int(v) for k, v in err_after.items()}
    return TimelineFigures(
        span=(span_start, span_end), obs_end=obs_end, t0_ns=t0, total=total, failed=failed,
        availability_time=availability_time, observed_ns=span_ns, errors_by_class=errors_by_class,
        errors_after_fault_by_class=errors_after, recovery=rec,
        latency=phase_percentiles(start, latency, ok, phases_of(span_start, obs_end, t0, q.fault_end_ns)),
        series=window_series(w, latency, ok), notes=notes)
