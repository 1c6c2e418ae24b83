"""The faults from the field on the real local platform: each has its effect, and nothing remains afterwards.

Probe kills slow load and OOM at load crash-loop a replica (seen in its events with the cause as the
reason); a rolling update replaces every replica under traffic, and a corrupt-weights rollout stalls with
maxUnavailable 0 (service up) and loses capacity with maxUnavailable 1. Time-scaled (probe periods and
back-off x 0.2) so each test takes seconds.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from harness.chaos import actions, rollbacks
from harness.events import Event, EventKind
from harness.platforms.local.platform import LocalPlatform
from tests.helpers import events_of, wait_for
from tests.test_faults_local import Traffic, _config, _no_faults_left, _replica, up

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="memory cgroups need root")


def _ready_again(platform: LocalPlatform, name: str) -> None:
    wait_for(lambda: _replica(platform, name).ready, 60, f"{name} ready again after the rollback")


def test_probe_kills_slow_load_crashloops_with_the_probe_as_reason(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=1) as platform:
        config = _config(platform, tmp_path)
        since = time.time_ns()
        result = actions.probe_kills_slow_load(names=["triton-0"], budget_s=2, load_s=6, configuration=config)
        assert "killed by the startup probe" in result["landing"] and "CrashLoopBackOff" in result["landing"]
        # The landing may come with the second kill, before the back-off that follows it ("CrashLoopBackOff not
        # yet": the rule that also fits a long grace period, where the kubelet shows none): wait for the back-off.
        def events() -> list[Event]:
            return [e for e in events_of(platform.events_path(), "triton-0") if e.ts_ns >= since]

        wait_for(lambda: any(e.kind == EventKind.BACKOFF for e in events()), 30, "the back-off after the kills")
        kills = [e for e in events() if e.kind == EventKind.STARTUP_FAILED]
        assert kills and all("startup probe failed" in e.reason for e in kills)
        backoffs = [e for e in events() if e.kind == EventKind.BACKOFF]
        assert float(backoffs[0].details["backoff_s"]) > 0
        # killed during the load: never ready between the fault and the first back-off
        assert not any(e.kind == EventKind.READY for e in events() if e.ts_ns < backoffs[0].ts_ns)
        rollbacks.restore_pod_spec(configuration=config)
        _ready_again(platform, "triton-0")
    _no_faults_left(platform)


@needs_root
def test_oom_at_load_is_oomkilled_and_crashloops(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=1) as platform:
        config = _config(platform, tmp_path)
        since = time.time_ns()
        result = actions.oom_at_load(names=["triton-0"], limit_mb=384, arena_mb=768, configuration=config)
        assert "OOMKilled" in result["landing"]
        events = [e for e in events_of(platform.events_path(), "triton-0") if e.ts_ns >= since]
        assert any(e.kind == EventKind.EXITED and e.reason.startswith("OOMKilled") for e in events)
        assert any(e.kind == EventKind.BACKOFF and "OOMKilled" in e.reason for e in events)
        rollbacks.restore_pod_spec(configuration=config)
        _ready_again(platform, "triton-0")
    _no_faults_left(platform)


def _failures_between(traffic: Traffic, start: float, end: float) -> int:
    return sum(1 for ts, o in list(traffic.outcomes) if start <= ts <= end and not o.ok)


def test_rolling_update_replaces_every_replica_and_a_prestop_delay_spares_users(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform, Traffic(platform.status().endpoints.http) as traffic:
        config = _config(platform, tmp_path)
        failures = {}
        for prestop in (0.0, 1.5):
            restarts = {r.name: r.restarts for r in platform.status().replicas}
            began = time.monotonic()
            result = actions.rolling_update(prestop_s=prestop, endpoint_lag_s=0.5, configuration=config)
            failures[prestop] = _failures_between(traffic, began, time.monotonic())
            assert "replaced 2 replica(s)" in result["landing"]
            now = {r.name: r for r in platform.status().replicas}
            assert sorted(now) == ["triton-0", "triton-1"], "the surge pod was not removed"
            assert all(now[n].ready and now[n].restarts == restarts[n] + 1 for n in restarts)
            rollbacks.restore_pod_spec(configuration=config)
        landings = [json.loads(line) for line in (tmp_path / "run" / "landings.jsonl").read_text().splitlines()]
        phases = {p["phase"] for p in landings[0]["measured"]["phases"]}
        assert {"endpoint-lag", "startup", "surge-startup"} <= phases
        assert landings[0]["measured"]["min_ready"] >= 2  # maxUnavailable 0 (the reference Deployment)
    print(f"failed requests during the rollout by preStop delay: {failures}")
    # SIGTERM while the endpoint is still routed fails requests; a preStop delay past the lag spares them
    assert failures[0.0] > 0 and failures[1.5] == 0, failures
    _no_faults_left(platform)


def test_corrupt_weights_rollout_stalls_at_full_capacity_or_loses_it(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform, Traffic(platform.status().endpoints.http) as traffic:
        config = _config(platform, tmp_path)
        began = time.monotonic()
        held = actions.corrupt_weights_rollout(max_surge=1, max_unavailable=0, progress_deadline_s=4,
                                               configuration=config)
        assert held["stalled"] and held["capacity_lost"] == 0
        assert "corrupt" in _replica(platform, "triton-surge-0").reason
        assert platform.status().ready_replicas == 2 and _failures_between(traffic, began, time.monotonic()) == 0
        rollbacks.restore_pod_spec(configuration=config)
        wait_for(lambda: [r.name for r in platform.status().replicas] == ["triton-0", "triton-1"], 30,
                 "the surge pod to go")
        lost = actions.corrupt_weights_rollout(max_surge=0, max_unavailable=1, progress_deadline_s=4,
                                               configuration=config)
        assert lost["stalled"] and lost["capacity_lost"] == 1
        landing = json.loads((tmp_path / "run" / "landings.jsonl").read_text().splitlines()[-1])
        assert landing["measured"]["min_ready"] == 1
        rollbacks.restore_pod_spec(configuration=config)
        wait_for(lambda: platform.status().ready_replicas == 2, 60, "both replicas back on the old revision")
    _no_faults_left(platform)


def test_corrupt_weights_rollout_stalled_before_the_new_pod_started_still_lands_on_the_weight_check(
        make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A deadline shorter than the surge pod's start, as a loaded nightly machine gave (the surge pod still
    # refused connections at its 10 s deadline, and the repetition was void): the stall stands, and the reason
    # is read again until the pod reached the weight check.
    with up(make_platform, replicas=2) as platform:
        config = _config(platform, tmp_path)
        held = actions.corrupt_weights_rollout(max_surge=1, max_unavailable=0, progress_deadline_s=0.2,
                                               configuration=config)
        assert held["stalled"] and held["capacity_lost"] == 0
        landing = json.loads((tmp_path / "run" / "landings.jsonl").read_text().splitlines()[-1])
        assert landing["landed"] and "corrupt" in landing["measured"]["new_pod_reasons"]["triton-surge-0"]
        assert landing["measured"]["reasons_read_after_s"] > 0, "the surge pod had not started at the deadline"
        rollbacks.restore_pod_spec(configuration=config)
        wait_for(lambda: [r.name for r in platform.status().replicas] == ["triton-0", "triton-1"], 30,
                 "the surge pod to go")
    _no_faults_left(platform)


def test_rollout_knows_how_many_surge_pods_the_local_platform_has() -> None:
    from harness.faults.rollout import SURGE_SLOTS as FAMILY_SLOTS
    from harness.platforms.local.supervisor import SURGE_SLOTS as PLATFORM_SLOTS

    assert FAMILY_SLOTS == PLATFORM_SLOTS
