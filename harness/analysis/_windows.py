"""The definitions of DESIGN.md ("Words") on plain numpy arrays: windows, impact, recovery, bad time.

Everything here is vectorised over a timeline that is sorted by start time, so a window is a slice
``[lo, hi)`` of the request arrays found with one ``searchsorted`` over the window boundaries, and
per-window counts are differences of cumulative sums. The whole analysis of ten million requests is
a handful of passes over the arrays; no Python loop runs per request.

Conventions (docs/measurement.md repeats them with a worked example):
- windows are half-open ``[start, end)``; a request belongs to the window holding its start time, so
  a request that starts exactly on a boundary belongs to the later window;
- the window grid is anchored at the fault start ``t0`` (window 0 starts at ``t0``) and cut at the load
  span's ends and at the end of observation, so a window never straddles ``t0`` or the observation end;
  the first and last windows of a span may therefore be shorter than the window size;
- a window is good when it has requests, ok/all >= the objective's success ratio, and its nearest-rank
  p99 latency (over all its requests) <= the objective's latency; a request is *offending* when it failed
  or took longer than that latency. A window with no requests is bad (nothing served), except a sliver
  shorter than the window size (cut by t0 or the observation end) that holds none: it is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from harness.analysis._settings import AnalysisSettings
from harness.ranks import nearest_rank_value, nearest_ranks

__all__ = [
    "Recovery",
    "RecoveryState",
    "Windows",
    "effective_starts",
    "make_windows",
    "phase_percentiles",
    "recovery",
    "window_series",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Windows:
    """Per-window counts; ``lo``/``hi`` index the request arrays (sorted by start)."""

    start_ns: IntArray
    end_ns: IntArray
    lo: IntArray
    hi: IntArray
    requests: IntArray
    failed: IntArray
    slow: IntArray
    good: BoolArray

    @property
    def duration_ns(self) -> IntArray:
        return self.end_ns - self.start_ns

    def __len__(self) -> int:
        return len(self.start_ns)


def _boundaries(anchor_ns: int, span_start: int, span_end: int, window_ns: int, cuts: list[int]) -> IntArray:
    first = -((anchor_ns - span_start) // window_ns)  # ceil((span_start - anchor) / W)
    last = (span_end - anchor_ns) // window_ns
    grid = anchor_ns + np.arange(first, last + 1, dtype=np.int64) * window_ns
    extra = np.array([span_start, span_end, *[c for c in cuts if span_start < c < span_end]], dtype=np.int64)
    points = np.unique(np.concatenate([grid, extra]))
    kept: IntArray = points[(points >= span_start) & (points <= span_end)]
    return kept


def make_windows(
    start_ns: IntArray,
    latency_s: FloatArray,
    ok: BoolArray,
    *,
    anchor_ns: int,
    span: tuple[int, int],
    cuts: list[int],
    settings: AnalysisSettings,
) -> Windows:
    """Windows over ``span`` on a grid anchored at ``anchor_ns`` and also cut at ``cuts``."""
    span_start, span_end = span
    bounds = _boundaries(anchor_ns, span_start, span_end, settings.window_ns, cuts)
    if len(bounds) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Windows(empty, empty, empty, empty, empty, empty, empty, np.zeros(0, dtype=bool))
    pos = np.searchsorted(start_ns, bounds, side="left").astype(np.int64)
    lo, hi = pos[:-1], pos[1:]
    failed_cum = np.concatenate([[0], np.cumsum(~ok, dtype=np.int64)])
    slow_cum = np.concatenate([[0], np.cumsum(latency_s > settings.objective.p99_latency_s, dtype=np.int64)])
    requests = hi - lo
    failed = failed_cum[hi] - failed_cum[lo]
    slow = slow_cum[hi] - slow_cum[lo]
    # Nearest-rank p99 <= L exactly when at most n - ceil(0.99 n) requests are slower than L.
    allowed_slow = requests - nearest_ranks(requests, 99)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(requests > 0, (requests - failed) / np.maximum(requests, 1), 0.0)
    # An empty window is bad (nothing served) -- unless it is a sliver cut off by t0 or the end of
    # observation, shorter than the window size: no request was due in it, so it says nothing.
    sliver = (requests == 0) & ((bounds[1:] - bounds[:-1]) < settings.window_ns)
    good = sliver | ((requests > 0) & (ratio >= settings.objective.success_ratio) & (slow <= allowed_slow))
    return Windows(bounds[:-1], bounds[1:], lo, hi, requests, failed, slow, good)


RecoveryState = Literal["no-impact", "recovered", "censored", "inconclusive"]


def effective_starts(
    start_ns: IntArray, latency_s: FloatArray, ok: BoolArray, t0_ns: int | None
) -> tuple[IntArray, IntArray]:
    """The instant each request counts at, and the order that sorts the timeline by it.

    A request counts at its start, except one that was in flight at the fault start ``t0`` and failed:
    users saw that failure when it happened, after ``t0``, so it counts at its end (DESIGN.md). Without
    this, requests cut off by a pod kill (or hanging on a dropped connection) count "before the fault".
    Returns ``(instants, order)``: ``instants[order]`` is sorted (stable, so ties keep the start order).
    """
    instants = start_ns
    if t0_ns is not None and len(start_ns):
        end_ns = start_ns + np.rint(latency_s * 1e9).astype(np.int64)
        moved = (~ok) & (start_ns < t0_ns) & (end_ns >= t0_ns)
        if moved.any():
            instants = np.where(moved, end_ns, start_ns)
    # Timelines are written as requests end, so even unmoved starts need not be in order: sort always,
    # skipping the O(n log n) sort only when a linear check shows the order already holds.
    if len(instants) < 2 or bool(np.all(instants[1:] >= instants[:-1])):
        return instants, np.arange(len(instants), dtype=np.int64)
    return instants, np.argsort(instants, kind="stable").astype(np.int64)


@dataclass(frozen=True)
class Recovery:
    """Impact and recovery after ``t0`` (all instants in wall-clock ns).

    ``state``: ``no-impact`` (no bad window, and at least a stability period observed after the fault
    ended), ``recovered``, ``censored`` (fewer than a stability period of good windows after the last bad
    one: ``recovery_ns`` is then the instant the true recovery is at least), or ``inconclusive`` (no bad
    window, but less than a stability period observed after the fault ended: nothing can be concluded).
    """

    state: RecoveryState
    impact_ns: int | None  # None: no bad window after t0
    recovery_ns: int | None  # the recovery instant (also the censored lower bound's instant)
    bad_ns: int  # total duration of bad windows in [t0, observation end)
    first_bad: int | None  # window indices, for plots
    last_bad: int | None
    observed_after_ns: int  # observation end - t0
    observed_after_fault_end_ns: int  # observation end - fault end

    @property
    def recovered(self) -> bool:
        return self.state in ("no-impact", "recovered")


def recovery(
    w: Windows,
    start_ns: IntArray,
    latency_s: FloatArray,
    ok: BoolArray,
    *,
    t0_ns: int,
    fault_end_ns: int,
    observation_end_ns: int,
    settings: AnalysisSettings,
) -> Recovery:
    """Time to impact, recovery instant and bad time after ``t0`` (DESIGN.md's definitions).

    ``start_ns`` are the instants requests count at (``effective_starts``), sorted, and ``w`` was built
    from them. Windows decide *whether* the service recovered; requests decide *when*: the recovery
    instant is the start of the first good request after the last offending request of the last bad
    window. Not the end of that offending request: a request whose packets were dropped hangs until its
    client timeout while requests sent after the fault was lifted already succeed.
    """
    after = (w.start_ns >= t0_ns) & (w.end_ns <= observation_end_ns)
    idx = np.flatnonzero(after)
    bad_idx = idx[~w.good[idx]]
    bad_ns = int(w.duration_ns[bad_idx].sum())
    observed_after = max(0, observation_end_ns - t0_ns)
    after_fault_end = max(0, observation_end_ns - max(t0_ns, fault_end_ns))
    if len(bad_idx) == 0:
        # Unclamped: a fault still going on at the end of observation was never observed after it ended.
        enough = observation_end_ns - max(t0_ns, fault_end_ns) >= settings.stability_ns
        state: RecoveryState = "no-impact" if enough else "inconclusive"
        return Recovery(state, None, None, 0, None, None, observed_after, after_fault_end)
    limit = settings.objective.p99_latency_s
    first, last = int(bad_idx[0]), int(bad_idx[-1])
    lo, hi = int(w.lo[first]), int(w.hi[first])
    if hi > lo:
        offending = (~ok[lo:hi]) | (latency_s[lo:hi] > limit)
        impact_ns = int(start_ns[lo + int(np.argmax(offending))])
    else:
        impact_ns = int(w.start_ns[first])
    lo, hi = int(w.lo[last]), int(w.hi[last])
    recovery_ns = int(w.end_ns[last])
    if hi > lo:
        offending = (~ok[lo:hi]) | (latency_s[lo:hi] > limit)
        last_offending = lo + len(offending) - 1 - int(np.argmax(offending[::-1]))
        end = int(np.searchsorted(start_ns, observation_end_ns, side="left"))
        good = ok[last_offending + 1:end] & (latency_s[last_offending + 1:end] <= limit)
        if good.any():
            recovery_ns = int(start_ns[last_offending + 1 + int(np.argmax(good))])
    stable_ns = observation_end_ns - int(w.end_ns[last])
    state = "recovered" if stable_ns >= settings.stability_ns else "censored"
    return Recovery(state, impact_ns, recovery_ns, bad_ns, first, last, observed_after, after_fault_end)


def phase_percentiles(
    start_ns: IntArray, latency_s: FloatArray, ok: BoolArray, phases: dict[str, tuple[int, int]]
) -> dict[str, dict[str, float | int | None]]:
    """Nearest-rank p50/p95/p99 latency of the ok requests started in each ``[start, end)`` phase."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name, (a, b) in phases.items():
        lo, hi = np.searchsorted(start_ns, [a, b], side="left")
        lat = latency_s[lo:hi][ok[lo:hi]] if b > a else latency_s[:0]
        entry: dict[str, float | int | None] = {"requests": int(max(0, hi - lo)), "ok": len(lat)}
        for q in (50, 95, 99):
            entry[f"p{q}_s"] = nearest_rank_value(lat, q) if len(lat) else None
        out[name] = entry
    return out


def window_series(
    w: Windows, latency_s: FloatArray, ok: BoolArray, max_points: int = 1500
) -> dict[str, FloatArray]:
    """Plot series: throughput, error ratio and p50/p99 latency of ok requests per (merged) window.

    Long runs have more windows than a plot can show; consecutive windows are then merged into at most
    ``max_points`` bins, with percentiles computed exactly over each bin's requests.
    """
    n = len(w)
    if n == 0:
        z = np.zeros(0)
        return {"t_ns": z, "end_ns": z, "throughput": z, "error_ratio": z, "p50_s": z, "p99_s": z, "good": z}
    group = max(1, -(-n // max_points))
    starts = np.arange(0, n, group)
    ends = np.minimum(starts + group, n)
    lo, hi = w.lo[starts], w.hi[ends - 1]
    t0, t1 = w.start_ns[starts], w.end_ns[ends - 1]
    req = (hi - lo).astype(np.float64)
    failed = np.add.reduceat(w.failed, starts).astype(np.float64)
    dur = np.maximum((t1 - t0) / 1e9, 1e-9)
    p50 = np.full(len(starts), np.nan)
    p99 = np.full(len(starts), np.nan)
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        if b > a:
            lat = latency_s[a:b][ok[a:b]]
            if len(lat):
                p50[i], p99[i] = np.percentile(lat, [50, 99], method="inverted_cdf")
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(req > 0, failed / np.maximum(req, 1), np.nan)
    good = np.minimum.reduceat(w.good.astype(np.float64), starts)
    return {"t_ns": t0.astype(np.float64), "end_ns": t1.astype(np.float64), "throughput": req / dur,
            "error_ratio": err, "p50_s": p50, "p99_s": p99, "good": good}
