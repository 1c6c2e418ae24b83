"""A pod kill on the local platform is a pod delete: a new pod at once, whatever back-off the old one was in.

The nightly voided a pod kill because memory pressure had left the replica crash-looping with a 40 s back-off:
the kill found no process, or waited out the back-off, and no replacement was seen. On Kubernetes a deleted
pod is replaced at once by a pod with no back-off history. A suite also drops that history before each
repetition, so each starts from a steady state.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.chaos import actions
from harness.events import EventKind
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.platform import LocalPlatform
from tests.helpers import events_of, wait_for

NAME = "triton-0"


def _replica(platform: LocalPlatform) -> ReplicaStatus:
    return next(r for r in platform.status().replicas if r.name == NAME)


def _crash_into_backoff(platform: LocalPlatform) -> None:
    """Two container crashes (not pod deletes): the first restarts at once, the second waits 10 s."""
    restarts = _replica(platform).restarts
    os.kill(_replica(platform).pid or 0, signal.SIGKILL)
    wait_for(lambda: _replica(platform).restarts == restarts + 1 and _replica(platform).ready, 60,
             "the first restart (immediate)")
    os.kill(_replica(platform).pid or 0, signal.SIGKILL)
    wait_for(lambda: _replica(platform).state == "backoff", 10, "CrashLoopBackOff")


def test_pod_kill_makes_a_new_pod_whatever_the_back_off(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=1, time_scale=1.0)  # back-off 10 s, 20 s, 40 s: the kubelet's own
    platform.up()
    config = {"harness_state_dir": str(platform.state), "harness_run_id": "test-run",
              "harness_run_dir": str(tmp_path / "run")}
    _crash_into_backoff(platform)
    # A pod kill while it waits out its back-off: a new pod at once (before: "no running server to kill").
    began = time.monotonic()
    result = actions.kill_replicas(mode="all", verify_timeout_s=5, configuration=config)
    assert "restarted" in result["landing"] and time.monotonic() - began < 5
    wait_for(lambda: _replica(platform).ready, 60, "the new pod to be ready")
    # The new pod has no back-off history: the next pod kill is replaced at once too (before: a 20 s back-off).
    began = time.monotonic()
    result = actions.kill_replicas(mode="all", verify_timeout_s=5, configuration=config)
    assert time.monotonic() - began < 5, result
    wait_for(lambda: _replica(platform).ready, 60, "the second new pod to be ready")
    events = events_of(platform.events_path(), NAME)
    deleted = [e for e in events if e.kind == EventKind.KILLED]
    assert [("during back-off" in e.reason) for e in deleted] == [True, False], [e.reason for e in deleted]
    assert [e.details.get("backoff_s") for e in events if e.kind == EventKind.BACKOFF] == [10.0]

    # A suite's steady state: a crash loop left by one repetition is not the next one's starting point.
    _crash_into_backoff(platform)
    began = time.monotonic()
    before = platform.reset_backoff("test")
    assert before[NAME]["state"] == "backoff"
    wait_for(lambda: _replica(platform).state != "backoff", 5, "the back-off to end at once")
    assert time.monotonic() - began < 5
    wait_for(lambda: _replica(platform).ready, 60, "the replica to be ready after the reset")
    assert any(e.kind == EventKind.FAULT and e.details.get("backoff_reset")
               for e in events_of(platform.events_path(), NAME))


def test_container_kill_keeps_the_pod_and_its_back_off(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``kill: container`` is a crash of the server, not a pod delete: the supervisor restarts it in the same pod,
    as the kubelet restarts a container, so the CrashLoopBackOff history counts (the memory-pressure experiment
    restarts Triton this way, inside the memory cgroup the pressure holds)."""
    platform = make_platform(replicas=1, time_scale=1.0)
    platform.up()
    config = {"harness_state_dir": str(platform.state), "harness_run_id": "test-run",
              "harness_run_dir": str(tmp_path / "run")}
    first = actions.kill_replicas(mode="all", kill="container", verify_timeout_s=10, configuration=config)
    assert first["landing"], first
    wait_for(lambda: _replica(platform).ready, 60, "the restarted container to be ready")
    actions.kill_replicas(mode="all", kill="container", verify_timeout_s=10, configuration=config)
    # the second crash of the same pod waits out a back-off, as a pod delete never does
    wait_for(lambda: _replica(platform).state == "backoff", 10, "CrashLoopBackOff after the second container kill")
    events = events_of(platform.events_path(), NAME)
    assert not [e for e in events if e.kind == EventKind.KILLED and "pod" in e.reason], [e.reason for e in events]
    assert [e.details.get("backoff_s") for e in events if e.kind == EventKind.BACKOFF] == [10.0]
    wait_for(lambda: _replica(platform).ready, 60, "ready after the back-off")
