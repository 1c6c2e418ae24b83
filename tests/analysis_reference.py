"""A brute-force reference implementation of DESIGN.md's definitions, for property tests.

Written from the words, not from ``harness.analysis``: plain Python loops over request tuples, windows
built one by one, percentiles by enumerating every possible value. Slow and obviously right is the point;
the vectorised analysis must agree with it on random timelines.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

S = 1_000_000_000


@dataclass(frozen=True)
class Request:
    start: int  # ns
    latency: float  # s
    ok: bool


@dataclass(frozen=True)
class Answer:
    state: str  # no-impact | recovered | censored | inconclusive
    impact: int | None
    recovery: int | None  # instant (for censored: the lower bound's instant)
    bad_ns: int


def _end(r: Request) -> int:
    return r.start + round(r.latency * S)


def counted_at(r: Request, t0: int) -> int:
    """A request in flight at t0 that failed counts when it failed; any other at its start."""
    if not r.ok and r.start < t0 <= _end(r):
        return _end(r)
    return r.start


def reference(
    requests: list[Request], *, t0: int, fault_end: int, obs_end: int, span: tuple[int, int],
    window_ns: int, stability_ns: int, success_ratio: float, p99_s: float,
) -> Answer:
    timed = sorted(((counted_at(r, t0), i, r) for i, r in enumerate(requests)), key=lambda x: (x[0], x[1]))
    # Window edges: the grid anchored at t0, cut at the span ends and at the observation end.
    edges = {span[0], span[1]}
    if span[0] < obs_end < span[1]:
        edges.add(obs_end)
    k = 0
    while t0 + k * window_ns <= span[1]:
        if t0 + k * window_ns >= span[0]:
            edges.add(t0 + k * window_ns)
        k += 1
    k = -1
    while t0 + k * window_ns >= span[0]:
        if t0 + k * window_ns <= span[1]:
            edges.add(t0 + k * window_ns)
        k -= 1
    bounds = sorted(edges)
    windows = []
    for a, b in itertools.pairwise(bounds):
        members = [(t, r) for t, _, r in timed if a <= t < b]
        n = len(members)
        if n == 0:
            good = (b - a) < window_ns  # an empty sliver is not judged
        else:
            ok = sum(1 for _, r in members if r.ok)
            latencies = sorted(r.latency for _, r in members)
            p99 = latencies[math.ceil(0.99 * n) - 1]
            good = ok / n >= success_ratio and p99 <= p99_s
        windows.append((a, b, good, members))
    after = [w for w in windows if w[0] >= t0 and w[1] <= obs_end]
    bad = [w for w in after if not w[2]]
    bad_ns = sum(b - a for a, b, _, _ in bad)
    if not bad:
        state = "no-impact" if obs_end - max(t0, fault_end) >= stability_ns else "inconclusive"
        return Answer(state, None, None, 0)

    def offending(r: Request) -> bool:
        return not r.ok or r.latency > p99_s

    first, last = bad[0], bad[-1]
    first_off = [t for t, r in first[3] if offending(r)]
    impact = first_off[0] if first_off else first[0]
    recovery = last[1]
    if last[3]:
        last_index = max(i for i, (t, _, r) in enumerate(timed) if last[0] <= t < last[1] and offending(r))
        later_good = [t for t, _, r in timed[last_index + 1:] if not offending(r) and t < obs_end]
        if later_good:
            recovery = later_good[0]
    state = "recovered" if obs_end - last[1] >= stability_ns else "censored"
    return Answer(state, impact, recovery, bad_ns)


def sample_percentile_bounds(measured: list[float], censored: list[float], q: float) -> tuple[float, float]:
    """The smallest and largest value the nearest-rank q-th percentile can take when each censored value
    may be anywhere above its bound (just above it, or beyond every other value)."""
    n = len(measured) + len(censored)
    rank = max(1, math.ceil(q / 100 * n - 1e-9))
    low = sorted(measured + censored)[rank - 1]
    high_values = sorted(measured + [math.inf] * len(censored))
    return low, high_values[rank - 1]
