"""Property-based checks of the definitions on random timelines (hypothesis).

They run the same vectorised code the reports use (``make_windows`` + ``recovery``) on arrays, which
keeps hundreds of examples within a second or two.
"""

from __future__ import annotations

import math
import random

import numpy as np
from analysis_reference import Answer, Request, reference, sample_percentile_bounds
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.analysis import figure_stats
from harness.analysis._aggregate import censored_percentile, nearest_rank
from harness.analysis._settings import AnalysisSettings, Objective
from harness.analysis._windows import Recovery, Windows, effective_starts, make_windows, recovery

S = 1_000_000_000
SPAN = (0, 40 * S)

request = st.tuples(
    st.integers(min_value=0, max_value=40 * S - 1),  # start
    st.sampled_from([0.001, 0.01, 0.2, 1.5, 3.0]),  # latency (above 1 s is too slow)
    st.booleans() | st.just(True),  # ok, biased towards success
)
timelines = st.lists(request, min_size=0, max_size=300)
params = st.fixed_dictionaries(
    {
        "t0": st.integers(min_value=0, max_value=30 * S),
        "obs": st.integers(min_value=1 * S, max_value=40 * S),
        "window": st.sampled_from([0.25, 0.5, 1.0, 2.0]),
        "stability": st.sampled_from([0.0, 2.0, 5.0, 10.0]),
    }
)


def _arrays(reqs: list[tuple[int, float, bool]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    reqs = sorted(reqs)
    start = np.array([r[0] for r in reqs], dtype=np.int64)
    lat = np.array([r[1] for r in reqs], dtype=np.float64)
    ok = np.array([r[2] for r in reqs], dtype=bool)
    return start, lat, ok


def _analyse(reqs: list[tuple[int, float, bool]], p: dict[str, float]) -> tuple[Windows, Recovery, int]:
    s = AnalysisSettings(
        window_s=p["window"], stability_period_s=p["stability"], objective=Objective(0.99, 1.0)
    )
    start, lat, ok = _arrays(reqs)
    t0 = int(p["t0"])
    obs = max(t0, min(int(p["obs"]), SPAN[1]))
    w = make_windows(start, lat, ok, anchor_ns=t0, span=SPAN, cuts=[obs], settings=s)
    return w, recovery(w, start, lat, ok, t0_ns=t0, fault_end_ns=t0, observation_end_ns=obs, settings=s), obs


fast = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(timelines, params)
def test_ttr_is_not_before_impact(reqs: list[tuple[int, float, bool]], p: dict[str, float]) -> None:
    _, rec, _ = _analyse(reqs, p)
    if rec.impact_ns is not None and rec.recovery_ns is not None:
        assert rec.recovery_ns >= rec.impact_ns


@fast
@given(timelines, params)
def test_bad_time_fits_in_the_observation(reqs: list[tuple[int, float, bool]], p: dict[str, float]) -> None:
    _w, rec, obs = _analyse(reqs, p)
    assert 0 <= rec.bad_ns <= obs - int(p["t0"])
    assert rec.impact_ns is None or rec.impact_ns >= int(p["t0"])
    if rec.impact_ns is None:
        assert rec.bad_ns == 0 and rec.state in ("no-impact", "inconclusive")


@fast
@given(timelines, params)
def test_windows_tile_the_span_and_availability_is_a_ratio(
    reqs: list[tuple[int, float, bool]], p: dict[str, float]
) -> None:
    w, _, _ = _analyse(reqs, p)
    assert int(w.duration_ns.sum()) == SPAN[1] - SPAN[0]
    assert int(w.requests.sum()) == len(reqs)
    assert int(w.failed.sum()) == sum(1 for r in reqs if not r[2])
    # each window's verdict, recomputed by brute force from its own requests (objective 0.99, p99 <= 1 s)
    for i in range(len(w.requests)):
        inside = [r for r in reqs if int(w.start_ns[i]) <= r[0] < int(w.end_ns[i])]
        assert len(inside) == int(w.requests[i])
        if not inside:
            sliver = int(w.end_ns[i] - w.start_ns[i]) < round(p["window"] * S)
            assert bool(w.good[i]) == sliver
            continue
        latencies = sorted(r[1] for r in inside)
        p99 = latencies[math.ceil(0.99 * len(latencies) - 1e-9) - 1]
        ratio = sum(1 for r in inside if r[2]) / len(inside)
        assert bool(w.good[i]) == (ratio >= 0.99 and p99 <= 1.0), (i, ratio, p99)


@fast
@given(timelines, params, st.integers(min_value=1, max_value=200))
def test_more_successful_traffic_after_recovery_never_increases_ttr(
    reqs: list[tuple[int, float, bool]], p: dict[str, float], extra: int
) -> None:
    _, rec, obs = _analyse(reqs, p)
    if rec.recovery_ns is None or not rec.recovered or rec.recovery_ns >= obs:
        return
    if not any(ok and lat <= 1.0 and start == rec.recovery_ns for start, lat, ok in reqs):
        return  # no good request after the last offending one: the instant was the bad window's end
    step = max(1, (obs - rec.recovery_ns) // (extra + 1))
    added = [(rec.recovery_ns + step * (i + 1), 0.001, True) for i in range(extra)]
    added = [a for a in added if a[0] < obs]
    _, rec2, _ = _analyse(reqs + added, p)
    assert rec2.recovered
    assert rec2.recovery_ns is None or rec2.recovery_ns <= rec.recovery_ns


# --- The definitions against a brute-force reference (tests/analysis_reference.py) -----------------------


@st.composite
def outages(draw: st.DrawFn) -> dict[str, object]:
    """A random timeline with the shapes that matter: steady traffic, a dropped-packet stretch whose
    requests hang until the client timeout, fast refusals, slow requests, requests in flight at t0 that
    fail after it, and an observation that may end soon after the fault."""
    spacing = draw(st.sampled_from([0.1, 0.25, 0.5]))
    timeout = draw(st.sampled_from([0.5, 1.0, 2.0]))
    t0 = draw(st.integers(min_value=2 * S, max_value=25 * S))
    drop = sorted(draw(st.lists(st.integers(min_value=0, max_value=38 * S), min_size=2, max_size=2)))
    refuse = sorted(draw(st.lists(st.integers(min_value=0, max_value=38 * S), min_size=2, max_size=2)))
    slow_every = draw(st.sampled_from([0, 7, 13]))
    stray = set(draw(st.lists(st.integers(min_value=0, max_value=400), max_size=4)))
    jitter = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    reqs: list[Request] = []
    for i in range(int(40 / spacing)):
        t = round(i * spacing * S) + jitter.choice([0, 0, 1, 7_000_000])
        if t >= SPAN[1]:
            break
        if drop[0] <= t < drop[1]:
            reqs.append(Request(t, timeout, False))  # hangs until the client gives up
        elif refuse[0] <= t < refuse[1]:
            reqs.append(Request(t, 0.002, False))
        elif i in stray:
            reqs.append(Request(t, 0.003, False))
        elif slow_every and i % slow_every == 0:
            reqs.append(Request(t, 1.5, True))
        else:
            reqs.append(Request(t, 0.01, True))
    # Requests in flight at t0 that fail after it (a kill cuts them off; a drop lets them hang).
    for lag in draw(st.lists(st.sampled_from([0.05, 0.3, 0.9]), max_size=3)):
        reqs.append(Request(t0 - round(lag * S / 2), lag, False))
    fault_end = t0 + draw(st.integers(min_value=0, max_value=10 * S))
    obs = draw(st.integers(min_value=t0 + 1, max_value=SPAN[1]))
    return {"reqs": sorted(reqs, key=lambda r: (r.start, r.latency, r.ok)), "t0": t0, "fault_end": fault_end,
            "obs": obs, "window": draw(st.sampled_from([0.5, 1.0])),
            "stability": draw(st.sampled_from([0.0, 3.0, 10.0]))}


def _both(case: dict[str, object]) -> tuple[Recovery, Answer, Windows]:
    got, want, w, _ = _both_with_requests(case)
    return got, want, w


def _both_with_requests(case: dict[str, object]) -> tuple[Recovery, Answer, Windows, list[tuple[int, float, bool]]]:
    """As ``_both``, with the requests as the analysis orders them (a request in flight at t0 that failed
    after it counts at the time it failed)."""
    reqs = case["reqs"]
    assert isinstance(reqs, list)
    t0, fault_end, obs = int(case["t0"]), int(case["fault_end"]), int(case["obs"])  # type: ignore[call-overload]
    s = AnalysisSettings(window_s=float(case["window"]), stability_period_s=float(case["stability"]),  # type: ignore[arg-type]
                         objective=Objective(0.99, 1.0))
    start = np.array([r.start for r in reqs], dtype=np.int64)
    lat = np.array([r.latency for r in reqs], dtype=np.float64)
    ok = np.array([r.ok for r in reqs], dtype=bool)
    instants, order = effective_starts(start, lat, ok, t0)
    start, lat, ok = instants[order], lat[order], ok[order]
    w = make_windows(start, lat, ok, anchor_ns=t0, span=SPAN, cuts=[obs], settings=s)
    got = recovery(w, start, lat, ok, t0_ns=t0, fault_end_ns=fault_end, observation_end_ns=obs, settings=s)
    want = reference(reqs, t0=t0, fault_end=fault_end, obs_end=obs, span=SPAN, window_ns=s.window_ns,
                     stability_ns=s.stability_ns, success_ratio=0.99, p99_s=1.0)
    ordered = [(int(a), float(b), bool(c)) for a, b, c in zip(start, lat, ok, strict=True)]
    return got, want, w, ordered


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outages())
def test_recovery_matches_the_brute_force_reference(case: dict[str, object]) -> None:
    got, want, _ = _both(case)
    event(f"state {want.state}")
    assert got.state == want.state
    assert got.impact_ns == want.impact
    assert got.recovery_ns == want.recovery
    assert got.bad_ns == want.bad_ns


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outages())
def test_a_hanging_request_never_delays_the_recovery_instant(case: dict[str, object]) -> None:
    """The recovery instant is a request's start: a request that hangs until its timeout after the fault
    was lifted cannot push it past the start of a good request sent after the last offending one."""
    got, _, w, ordered = _both_with_requests(case)
    if got.state == "recovered" and got.recovery_ns is not None and got.last_bad is not None:
        good_starts = {start for start, lat, ok in ordered if ok and lat <= 1.0}
        assert got.recovery_ns in good_starts or got.recovery_ns == int(w.end_ns[got.last_bad])
        lo, hi = int(w.start_ns[got.last_bad]), int(w.end_ns[got.last_bad])
        offending = [start for start, lat, ok in ordered if (not ok or lat > 1.0) and lo <= start < hi]
        # nothing offending in the last bad window started after the recovery instant, however long
        # earlier ones hung (later good windows may hold a stray failure: they are good all the same)...
        assert not [start for start in offending if start > got.recovery_ns], (got, lo, hi)
        # ...and it is the first good start after the last offending request: none earlier was skipped
        if got.recovery_ns in good_starts and offending:
            last = max(offending)
            assert not [start for start in good_starts if last < start < got.recovery_ns]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outages())
def test_no_conclusion_without_a_stability_period_after_the_fault(case: dict[str, object]) -> None:
    got, _, _ = _both(case)
    after_end = int(case["obs"]) - max(int(case["t0"]), int(case["fault_end"]))  # type: ignore[call-overload]
    if got.impact_ns is None:
        stability = round(float(case["stability"]) * S)  # type: ignore[arg-type]
        assert got.state == ("no-impact" if after_end >= stability else "inconclusive")


values = st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 20.0, 30.0]), st.booleans()),
                  min_size=1, max_size=12)


@settings(max_examples=400, deadline=None)
@given(values, st.sampled_from([50.0, 90.0, 95.0, 100.0]))
def test_percentiles_never_hide_a_censored_value(pairs: list[tuple[float, bool]], q: float) -> None:
    """Measured only when the percentile is the same wherever the censored values really are; censored
    ("> x") with x a sure lower bound otherwise; the nearest-rank percentile when nothing is censored."""
    vals = [v for v, _ in pairs]
    cens = [c for _, c in pairs]
    value, is_censored = censored_percentile(vals, cens, q)
    low, high = sample_percentile_bounds([v for v, c in pairs if not c], [v for v, c in pairs if c], q)
    assert value == low  # a sure lower bound, and exactly the percentile when it is measured
    if not is_censored:
        assert low == high
    if not any(cens):
        assert not is_censored and value == sorted(vals)[nearest_rank(len(vals), q) - 1]


def test_the_issue_example_ten_twenty_thirty_and_more_than_five() -> None:
    st_ = figure_stats([10.0, 20.0, 30.0, 5.0], [False, False, False, True])
    assert st_.p50_censored and st_.show("p50") == "> 10.0 s"  # never "10 s" as if measured
    assert st_.p95_censored and st_.max_censored
    assert figure_stats([10.0, 20.0, 30.0, 100.0], [False, False, False, True]).show("p50") == "20.0 s"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.floats(0, 2), st.booleans()), min_size=0, max_size=40),
       st.one_of(st.none(), st.integers(0, 10**9)))
def test_effective_starts_sorts_requests_written_in_any_order(
        reqs: list[tuple[int, float, bool]], t0: int | None) -> None:
    """Timelines are written as requests end, so starts come out of order; the order returned must sort the
    counting instants whether or not a request moved (it did not when none failed across t0)."""
    start = np.array([r[0] for r in reqs], dtype=np.int64)
    lat = np.array([r[1] for r in reqs], dtype=np.float64)
    ok = np.array([r[2] for r in reqs], dtype=bool)
    instants, order = effective_starts(start, lat, ok, t0)
    assert sorted(order.tolist()) == list(range(len(reqs)))
    assert np.all(np.diff(instants[order]) >= 0)
