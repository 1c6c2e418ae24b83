"""The faults from the field on the real local platform: each has its effect, and nothing remains afterwards.

Probe kills slow load and OOM at load crash-loop a replica (seen in its events with the cause as the
reason); a rolling update replaces every replica under traffic, and a corrupt-weights rollout stalls with
maxUnavailable 0 (service up) and loses capacity with maxUnavailable 1. Time-scaled (probe periods and
back-off x 0.2) so each test takes seconds.
"""

from __future__ import annotations

import os
import time

import pytest

from harness.chaos import actions, rollbacks
from harness.events import EventKind
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
        events = [e for e in events_of(platform.events_path(), "triton-0") if e.ts_ns >= since]
        kills = [e for e in events if e.kind == EventKind.STARTUP_FAILED]
        assert kills and all("startup probe failed" in e.reason for e in kills)
        backoffs = [e for e in events if e.kind == EventKind.BACKOFF]
        assert backoffs and float(backoffs[0].details["backoff_s"]) > 0
        # killed during the load: never ready between the fault and the first back-off
        assert not any(e.kind == EventKind.READY for e in events if e.ts_ns < backoffs[0].ts_ns)
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
