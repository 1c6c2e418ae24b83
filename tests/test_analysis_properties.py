"""Property-based checks of the definitions on random timelines (hypothesis).

They run the same vectorised code the reports use (``make_windows`` + ``recovery``) on arrays, which
keeps hundreds of examples within a second or two.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.analysis._settings import AnalysisSettings, Objective
from harness.analysis._windows import Recovery, Windows, make_windows, recovery

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
    return w, recovery(w, start, lat, ok, t0_ns=t0, observation_end_ns=obs, settings=s), obs


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
        assert rec.bad_ns == 0 and rec.recovered


@fast
@given(timelines, params)
def test_windows_tile_the_span_and_availability_is_a_ratio(
    reqs: list[tuple[int, float, bool]], p: dict[str, float]
) -> None:
    w, _, _ = _analyse(reqs, p)
    assert int(w.duration_ns.sum()) == SPAN[1] - SPAN[0]
    assert int(w.requests.sum()) == len(reqs)
    good = w.duration_ns[w.good].sum() / w.duration_ns.sum()
    assert 0.0 <= good <= 1.0
    ok = sum(1 for r in reqs if r[2])
    assert 0 <= ok <= len(reqs)


@fast
@given(timelines, params, st.integers(min_value=1, max_value=200))
def test_more_successful_traffic_after_recovery_never_increases_ttr(
    reqs: list[tuple[int, float, bool]], p: dict[str, float], extra: int
) -> None:
    _, rec, obs = _analyse(reqs, p)
    if rec.recovery_ns is None or not rec.recovered or rec.recovery_ns >= obs:
        return
    step = max(1, (obs - rec.recovery_ns) // (extra + 1))
    added = [(rec.recovery_ns + step * (i + 1), 0.001, True) for i in range(extra)]
    added = [a for a in added if a[0] < obs]
    _, rec2, _ = _analyse(reqs + added, p)
    assert rec2.recovered
    assert rec2.recovery_ns is None or rec2.recovery_ns <= rec.recovery_ns
