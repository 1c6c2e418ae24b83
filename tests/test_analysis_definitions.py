"""Synthetic repetitions with known outages give exactly the figures DESIGN.md's definitions say.

Requests are written with the real TimelineWriter/Event into a run-layout directory and read back by
the analysis, so these tests cover the whole path from files to figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_run import Req, steady, write_repetition, write_run

from harness.analysis import analyse_repetition, analyse_run, figure_stats, load_settings
from harness.analysis._settings import AnalysisSettings
from harness.errors import ConfigError
from harness.events import EventKind

EXACT = {"abs": 1e-9}
DEFAULT = AnalysisSettings()


def _rep(tmp_path: Path, requests: list[Req], **kw: object) -> Path:
    return write_repetition(tmp_path / "run", "exp", "1", requests, **kw)  # type: ignore[arg-type]


def test_outage_gives_exact_impact_recovery_bad_time_and_availability(tmp_path: Path) -> None:
    # 100 req/s; refused connections from 10.0 s to 12.5 s; fault injected at 9.7 s.
    reqs = steady(0, 10, 100) + steady(10, 12.5, 100, 0.002, "connection_refused") + steady(12.5, 60, 100)
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=9.7, fault_end=9.8), DEFAULT)
    assert r.time_to_impact_s == pytest.approx(0.3, **EXACT)  # first failed request at 10.0
    assert r.recovered
    # The first good request after the last failure (12.49) starts at 12.50: TTR 2.8 s.
    assert r.time_to_recover_s == pytest.approx(12.5 - 9.7, **EXACT)
    assert r.bad_time_s == pytest.approx(3.0, **EXACT)  # windows [9.7,10.7) [10.7,11.7) [11.7,12.7)
    assert r.requests_total == 6000
    assert r.requests_failed == 250
    assert r.availability_requests == pytest.approx(5750 / 6000, **EXACT)
    assert r.availability_time == pytest.approx(57 / 60, **EXACT)
    assert r.errors_by_class == {"connection_refused": 250}
    assert r.latency["before"]["p99_s"] == pytest.approx(0.01)


def test_no_impact_gives_ttr_zero_and_no_time_to_impact(tmp_path: Path) -> None:
    r = analyse_repetition(_rep(tmp_path, steady(0, 60, 50)), DEFAULT)
    assert r.time_to_impact_s is None
    assert r.time_to_recover_s == 0.0
    assert r.recovered
    assert r.bad_time_s == 0.0
    assert r.availability_time == 1.0


def test_never_recovered_is_censored_with_a_lower_bound(tmp_path: Path) -> None:
    reqs = steady(0, 10, 100) + steady(10, 60, 100, 0.002, "connection_refused")
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=9.7), DEFAULT)
    assert not r.recovered
    assert r.time_to_recover_s is None  # never a number that looks like success
    # No good request after the last failure: at least until the end of the last bad window (60 s).
    assert r.ttr_lower_bound_s == pytest.approx(60 - 9.7, **EXACT)
    assert r.ttr_display().startswith("> ")
    assert r.bad_time_s == pytest.approx(60 - 9.7 - 0.3 + 0.3, **EXACT)  # every window from 9.7 to 60


def test_flapping_recovers_at_the_last_bad_window(tmp_path: Path) -> None:
    reqs = (
        steady(0, 10, 100)
        + steady(10, 11, 100, 0.002, "connection_reset")
        + steady(11, 15, 100)
        + steady(15, 16, 100, 0.002, "connection_refused")
        + steady(16, 60, 100)
    )
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=10.0), DEFAULT)
    assert r.time_to_impact_s == pytest.approx(0.0, **EXACT)
    assert r.time_to_recover_s == pytest.approx(16.0 - 10, **EXACT)
    assert r.bad_time_s == pytest.approx(2.0, **EXACT)
    assert r.errors_by_class == {"connection_reset": 100, "connection_refused": 100}


def test_flap_inside_the_stability_period_is_not_recovered(tmp_path: Path) -> None:
    reqs = (
        steady(0, 10, 100)
        + steady(10, 11, 100, 0.002, "timeout")
        + steady(11, 52, 100)
        + steady(52, 53, 100, 0.002, "timeout")
        + steady(53, 60, 100)
    )
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=10.0), DEFAULT)
    assert not r.recovered  # only 7 s of good windows after the last bad one
    assert r.ttr_lower_bound_s == pytest.approx(53.0 - 10, **EXACT)


def test_stability_period_boundary_is_inclusive(tmp_path: Path) -> None:
    reqs = steady(0, 10, 100) + steady(10, 11, 100, 0.002, "timeout") + steady(11, 21, 100)
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=10.0, load=(0, 21)), DEFAULT)
    assert r.recovered  # exactly 10 s of good windows (11..21) after the bad one
    short = analyse_repetition(
        write_repetition(
            tmp_path / "run2", "exp", "1", reqs, fault_start=10.0, load=(0, 21), observation_end=20.999
        ),
        DEFAULT,
    )
    assert not short.recovered


def test_windows_without_traffic_are_bad_and_use_window_bounds(tmp_path: Path) -> None:
    reqs = steady(0, 10, 100) + steady(13, 60, 100)  # nothing sent between 10 s and 13 s
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=9.7), DEFAULT)
    # [9.7,10.7) has traffic and is good; [10.7,11.7) and [11.7,12.7) are empty, hence bad.
    assert r.time_to_impact_s == pytest.approx(1.0, **EXACT)  # the first empty window's start
    assert r.time_to_recover_s == pytest.approx(3.0, **EXACT)  # the last empty window's end
    assert r.bad_time_s == pytest.approx(2.0, **EXACT)


def test_request_on_a_window_edge_belongs_to_the_later_window(tmp_path: Path) -> None:
    base = [q for q in steady(0, 60, 100) if q.t not in (10.99, 11.0, 11.01)]
    # One failure in each of two windows: each window has 99/100 ok, which meets 0.99: no impact.
    split = [*base, Req(10.99, 0.002, "timeout"), Req(11.0, 0.002, "timeout"), Req(11.01)]
    r = analyse_repetition(_rep(tmp_path, sorted(split, key=lambda q: q.t), fault_start=10.0), DEFAULT)
    assert r.time_to_impact_s is None
    assert r.requests_failed == 2
    # Both failures in [11, 12): 98/100 ok, bad.
    both = [*base, Req(10.99), Req(11.0, 0.002, "timeout"), Req(11.01, 0.002, "timeout")]
    r2 = analyse_repetition(
        write_repetition(tmp_path / "run2", "exp", "1", sorted(both, key=lambda q: q.t), fault_start=10.0),
        DEFAULT,
    )
    assert r2.time_to_impact_s == pytest.approx(1.0, **EXACT)
    assert r2.time_to_recover_s == pytest.approx(1.02, **EXACT)
    assert r2.bad_time_s == pytest.approx(1.0, **EXACT)


def test_too_slow_requests_follow_the_nearest_rank_p99(tmp_path: Path) -> None:
    reqs = steady(0, 60, 100)
    one_slow = [Req(q.t, 2.0) if q.t == 20.5 else q for q in reqs]  # 1 of 100 above 1 s: p99 still ok
    r = analyse_repetition(_rep(tmp_path, one_slow, fault_start=10.0), DEFAULT)
    assert r.time_to_impact_s is None
    two_slow = [Req(q.t, 2.0) if q.t in (20.5, 20.7) else q for q in reqs]
    r2 = analyse_repetition(
        write_repetition(tmp_path / "r2", "exp", "1", two_slow, fault_start=10.0), DEFAULT
    )
    assert r2.time_to_impact_s == pytest.approx(10.5, **EXACT)
    assert r2.time_to_recover_s == pytest.approx(20.71 - 10, **EXACT)  # the next request after the last slow one
    assert r2.bad_time_s == pytest.approx(1.0, **EXACT)
    assert r2.requests_failed == 0


def test_capacity_recovery_from_events(tmp_path: Path) -> None:
    events = [
        (10.05, EventKind.EXITED, "triton-0"),
        (11.5, EventKind.RESTARTED, "triton-0"),
        (14.0, EventKind.READY, "triton-0"),
    ]
    r = analyse_repetition(_rep(tmp_path, steady(0, 60, 10), fault_start=9.7, events=events), DEFAULT)
    assert r.capacity is not None and r.capacity.recovered
    assert r.capacity.seconds == pytest.approx(4.3, **EXACT)
    states = [(i.replica, i.state) for i in r.lanes]
    assert ("triton-0", "restarting") in states and ("triton-1", "ready") in states
    stuck = analyse_repetition(
        write_repetition(tmp_path / "r2", "exp", "1", steady(0, 60, 10), fault_start=9.7, events=events[:2]),
        DEFAULT,
    )
    assert stuck.capacity is not None and not stuck.capacity.recovered
    assert stuck.capacity.seconds is None
    assert stuck.capacity.lower_bound_s == pytest.approx(50.3, **EXACT)


def test_no_fault_means_no_recovery_figures(tmp_path: Path) -> None:
    r = analyse_repetition(_rep(tmp_path, steady(0, 60, 10), fault_start=None, fault_end=None), DEFAULT)
    assert r.t0_ns is None and r.time_to_recover_s is None and r.time_to_impact_s is None
    assert any("no fault" in n for n in r.notes)


def test_bad_experiment_json_is_reported_clearly(tmp_path: Path) -> None:
    rep = _rep(tmp_path, steady(0, 10, 10))
    (rep / "experiment.json").write_text('{"name": "", "fault_start_ns": "soon"}')
    with pytest.raises(ConfigError) as err:
        analyse_repetition(rep, DEFAULT)
    text = str(err.value)
    assert "name must be" in text and "fault must be" in text and "fault_start_ns" in text


def test_tiers_verdicts_say_which_figure_missed_by_how_much(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok_reqs = steady(0, 10, 100) + steady(10, 12.5, 100, 0.002, "connection_refused") + steady(12.5, 60, 100)
    for rep in ("1", "2"):
        write_repetition(run, "kill", rep, ok_reqs, fault_start=9.7)
    long_outage = steady(0, 10, 10) + steady(13, 60, 10)  # 3 s without traffic, then a 30 s outage
    long_outage = [Req(q.t, 0.002, "timeout") if 15 <= q.t < 45 else q for q in long_outage]
    write_repetition(run, "block", "1", long_outage, fault="network-policy-block", fault_start=9.7)
    write_repetition(
        run, "stuck", "1", steady(0, 10, 10) + steady(10, 60, 10, 0.001, "timeout"), fault_start=9.7
    )
    write_run(run, ["kill", "block", "stuck"])
    a = analyse_run(run, load_settings(), query_server=False)
    kill, block, stuck = a.experiments
    # Two repetitions within 30 s: indicative, with the confidence it has and how many more would do.
    v = kill.tiers["multi-active"]
    assert v.outcome == "indicative" and v.n == 2 and v.more_repetitions_needed == 20
    assert v.confidence == pytest.approx(1 - 0.9**2)
    assert "2 of 2 repetition(s) recovered within 30.0 s (worst 2.800 s): TTR p90 <= 30.0 s with 19% " \
           "confidence (1 - 0.9^2)" in v.why
    assert "needs 22 repetitions all within: 20 more" in v.why
    assert "2/month x 3.0 s mean per incident = 6.0 s (upper bound 6.0 s)" in v.why
    assert not any(t.supported for t in kill.tiers.values())  # two repetitions never support a tier
    assert block.tiers["multi-active"].outcome == "not supported"
    assert "TTR exceeded 30.0 s in 1 of 1 repetition(s) (worst: rep 1 35.300 s)" in block.tiers["multi-active"].why
    assert block.tiers["99.9"].outcome == "indicative"
    # "> 50.3 s" is over 30 s (decided), but says nothing about 5 min: inconclusive, and what would decide.
    assert stuck.tiers["multi-active"].outcome == "not supported"
    for name in ("99.9", "active-standby", "single-point"):
        verdict = stuck.tiers[name]
        assert verdict.outcome == "inconclusive", verdict.why
        assert verdict.deciding_observation_s == pytest.approx(verdict.tier.max_time_to_recover_s + 10)
        assert "neither for nor against" in verdict.why and "would decide" in verdict.why


def test_projected_bad_time_against_budget_uses_incidents_per_fault(tmp_path: Path) -> None:
    run = tmp_path / "run"
    reqs = steady(0, 10, 100) + steady(10, 20, 100, 0.002, "connection_refused") + steady(20, 60, 100)
    write_repetition(run, "kill", "1", reqs, fault_start=10.0)
    write_run(run, ["kill"])
    override = tmp_path / "tiers.yaml"
    override.write_text("incidents_per_month:\n  pod-kill: 30\n")
    a = analyse_run(run, load_settings(override), query_server=False)
    verdict = a.experiments[0].tiers["multi-active"]
    assert not verdict.supported  # TTR 10 s fits 30 s, but 30 x 10 s = 5 min > 4.32 min
    assert verdict.outcome == "not supported"
    assert ("projected bad time 30/month x 10.0 s mean per incident = 5 min (no upper bound from one "
            "repetition) vs the 4.32 min monthly budget: over by 40.8 s") in verdict.why


def test_settings_override_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "t.yaml"
    good.write_text(
        "analysis:\n  window_s: 0.5\ntiers:\n  - name: gold\n    availability: 0.9995\n"
        "    max_time_to_recover_s: 60\n"
    )
    s = load_settings(good)
    assert s.analysis.window_s == 0.5 and s.analysis.stability_period_s == 10.0
    assert s.tier("gold").budget_per_30d_s == pytest.approx(0.0005 * 30 * 86400)
    assert [t.name for t in s.tiers][:4] == ["single-point", "active-standby", "99.9", "multi-active"]
    assert s.tier("99.9").budget_per_30d_s == pytest.approx(43.2 * 60)
    bad = tmp_path / "bad.yaml"
    bad.write_text("analysis:\n  window_s: -1\n  objective:\n    success_ratio: 2\ncolour: red\n")
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    assert "colour" in str(err.value) and "success_ratio" in str(err.value)


def test_repetition_statistics_nearest_rank_bootstrap_and_censoring() -> None:
    st = figure_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (st.p50, st.p95, st.max) == (3.0, 5.0, 5.0)
    assert st.p50_ci95 == figure_stats([1.0, 2.0, 3.0, 4.0, 5.0]).p50_ci95  # deterministic seed
    assert st.p50_ci95 is not None and 1.0 <= st.p50_ci95[0] <= 3.0 <= st.p50_ci95[1] <= 5.0
    cens = figure_stats([1.0, 2.0, 30.0], [False, False, True])
    assert cens.p50 == 2.0 and not cens.p50_censored
    assert cens.p95_censored and cens.p95 == 30.0 and cens.p95_ci95 is None
    assert cens.show("p95") == "> 30.0 s"


def test_long_runs_merge_windows_for_plots_but_not_for_figures(tmp_path: Path) -> None:
    reqs = steady(0, 1000, 2) + steady(1000, 1005, 2, 0.002, "timeout") + steady(1005, 3600, 2)
    r = analyse_repetition(_rep(tmp_path, reqs, load=(0, 3600), fault_start=999.5, fault_end=999.6), DEFAULT)
    assert len(r.series["t_ns"]) <= 1500  # 3600 windows merged into plot bins
    assert r.time_to_recover_s == pytest.approx(1005.0 - 999.5, **EXACT)
    assert r.bad_time_s == pytest.approx(6.0, **EXACT)  # [999.5, 1000.5) ... [1004.5, 1005.5)


def test_observed_period_runs_from_the_first_request_to_the_end_of_observation(tmp_path: Path) -> None:
    # The load generator starts sending 2 s after load_start and the load is stopped 5 s after
    # observation ends: neither quiet stretch is observation, so a healthy run has availability 1.
    reqs = steady(2, 55, 10)
    r = analyse_repetition(_rep(tmp_path, reqs, load=(0, 60), observation_end=55.0), DEFAULT)
    assert r.availability_time == 1.0 and r.availability_requests == 1.0
    assert r.observed_s == pytest.approx(53.0, **EXACT)
    assert r.time_to_recover_s == 0.0
    assert any("first request was sent 2.000 s after" in n for n in r.notes)


def test_the_experiments_own_objective_and_command_line_overrides(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 3 failures per 100 requests for 5 s: bad under the default 0.99, good under max_error_ratio 0.05.
    reqs = [Req(q.t, 0.002, "timeout") if 10 <= q.t < 15 and round(q.t * 100) % 100 < 3 else q
            for q in steady(0, 60, 100)]
    write_repetition(run, "lenient", "1", reqs, fault_start=10.0,
                     configuration={"max_error_ratio": 0.05, "max_p99_ms": 500})
    write_repetition(run, "strict", "1", reqs, fault_start=10.0)
    write_run(run, ["lenient", "strict"])
    lenient, strict = analyse_run(run, load_settings(), query_server=False).experiments
    assert lenient.analysis.objective.success_ratio == pytest.approx(0.95)
    assert lenient.analysis.objective.p99_latency_s == 0.5
    assert lenient.reps[0].time_to_impact_s is None
    assert strict.reps[0].bad_time_s == pytest.approx(5.0, **EXACT)
    wide = analyse_run(run, load_settings(), query_server=False, overrides={"window_s": 10.0}).experiments[1]
    assert wide.analysis.window_s == 10.0
    assert wide.reps[0].bad_time_s == pytest.approx(10.0, **EXACT)  # one 10 s window [10, 20)
    (run / "experiments" / "lenient" / "1" / "experiment.json").write_text(
        (run / "experiments" / "lenient" / "1" / "experiment.json").read_text().replace("0.05", "1.5"))
    with pytest.raises(ConfigError, match="success_ratio"):
        analyse_run(run, load_settings(), query_server=False)


def test_an_empty_sliver_at_the_end_of_observation_is_not_an_outage(tmp_path: Path) -> None:
    # Seen in a real run: the grid anchored at t0 = 9.7 leaves a 5 ms window before the observation end
    # (40.705) in which no request happened to start; it must not turn a recovery into a censored one.
    reqs = steady(0, 10, 10) + steady(10, 10.3, 10, 0.002, "connection_refused") + steady(10.3, 40.7, 10)
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=9.7, observation_end=40.705), DEFAULT)
    assert r.recovered
    assert r.time_to_recover_s == pytest.approx(10.3 - 9.7, **EXACT)
    assert r.bad_time_s == pytest.approx(1.0, **EXACT)


def test_capacity_recovers_when_a_replaced_pod_is_ready(tmp_path: Path) -> None:
    # Kubernetes replaces a deleted pod with one of a new name; capacity is back when it is ready.
    events = [(10.1, EventKind.STOPPED, "triton-a"), (10.3, EventKind.STARTED, "triton-c"),
              (11.6, EventKind.READY, "triton-c")]
    r = analyse_repetition(_rep(tmp_path, steady(0, 60, 50), fault_start=10.0, replicas=("triton-a", "triton-b"),
                                events=events), DEFAULT)
    assert r.capacity is not None and r.capacity.recovered
    assert r.capacity.seconds == pytest.approx(1.6, **EXACT)


def test_a_dropped_packet_outage_recovers_when_the_service_serves_again(tmp_path: Path) -> None:
    # Open loop, 100 req/s, 2 s client timeout. Packets are dropped from 10.0 s to 15.05 s: every request
    # sent then hangs until its timeout. The last one (15.04 s) fails at 17.04 s, but requests sent from
    # 15.05 s on are served: the service recovered at 15.05 s, not 17.04 s (DESIGN.md, docs/measurement.md).
    reqs = steady(0, 10, 100) + steady(10, 15.05, 100, 2.0, "timeout") + steady(15.05, 60, 100)
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=10.0, fault_end=15.05), DEFAULT)
    assert r.state == "recovered"
    assert r.time_to_impact_s == pytest.approx(0.0, **EXACT)
    assert r.time_to_recover_s == pytest.approx(5.05, **EXACT)
    assert r.bad_time_s == pytest.approx(6.0, **EXACT)  # windows [10, 16): [15, 16) has 5 of 100 failed


def test_requests_in_flight_at_the_fault_start_count_when_they_fail(tmp_path: Path) -> None:
    # Ten requests sent just before a kill at 10.0 s are cut off at 10.05 s: impact, after t0.
    before = [Req(9.9 + i * 0.005, 0.15 - i * 0.005, "connection_reset") for i in range(10)]
    reqs = sorted([q for q in steady(0, 60, 100) if not 9.9 <= q.t < 9.95] + before, key=lambda q: q.t)
    r = analyse_repetition(_rep(tmp_path, reqs, fault_start=10.0, fault_end=10.0), DEFAULT)
    assert r.time_to_impact_s == pytest.approx(0.05, **EXACT)  # when they failed
    assert r.time_to_recover_s == pytest.approx(0.05, **EXACT)  # the request sent as they failed succeeded
    assert any("in flight at the fault start" in n for n in r.notes)
    from harness.commands.run_cmd import phase_counts

    counts = phase_counts(r.directory)
    assert counts["before"]["failed"] == 0 and counts["during"]["failed"] + counts["after"]["failed"] == 10


def test_no_bad_window_but_too_little_observation_is_inconclusive(tmp_path: Path) -> None:
    # The fault lands 4 s before the load ends: no bad window, but nothing says there was no impact.
    r = analyse_repetition(_rep(tmp_path, steady(0, 60, 50), fault_start=55.0, fault_end=56.0), DEFAULT)
    assert r.state == "inconclusive" and not r.recovered
    assert r.time_to_recover_s is None and r.ttr_display() == "inconclusive"
    assert r.deciding_observation_s() == pytest.approx(11.0)  # 1 s of fault + the 10 s stability period
    assert r.ttr_value() == (0.0, True)
    assert any("inconclusive" in n for n in r.notes)


def test_twenty_two_repetitions_all_within_support_a_tier_at_90_percent_on_p90(tmp_path: Path) -> None:
    run = tmp_path / "run"
    reqs = steady(0, 10, 20) + steady(10, 11, 20, 0.002, "connection_refused") + steady(11, 40, 20)
    for rep in range(1, 23):
        write_repetition(run, "kill", str(rep), reqs, load=(0, 40), fault_start=10.0, fault_end=10.0)
    write_run(run, ["kill"])
    exp = analyse_run(run, load_settings(), query_server=False).experiments[0]
    v = exp.tiers["multi-active"]
    assert v.outcome == "supported" and v.n == 22
    assert v.confidence == pytest.approx(1 - 0.9**22) and v.confidence >= 0.9
    assert v.budget is not None and v.budget.monthly_s == pytest.approx(2 * 1.0)
    assert "TTR p90 <= 30.0 s with 90% confidence (1 - 0.9^22)" in v.why
    strict = tmp_path / "strict.yaml"
    strict.write_text("evidence: {quantile: 0.95, confidence: 0.95}\n")
    v95 = analyse_run(run, load_settings(strict), query_server=False).experiments[0].tiers["multi-active"]
    assert v95.outcome == "indicative" and v95.more_repetitions_needed == 59 - 22  # 1 - 0.95^59 >= 0.95
