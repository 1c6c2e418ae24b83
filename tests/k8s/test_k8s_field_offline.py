"""Offline parts of the pod-spec faults on Kubernetes: which targeting is refused before anything runs, and
what the event watcher records for a pod that is deleted or crash-loops (pod objects as the API sends them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.events import EventKind, EventLog, read_events
from harness.platforms.capabilities import refuse_unsupported
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.platforms.kubernetes.spec_ops import targeting_refusal
from harness.platforms.kubernetes.watcher import PodTracker, backoff_seconds
from harness.runner import RunOptions, load_plans

ROOT = Path(__file__).resolve().parents[2]


def test_a_pod_template_change_must_target_every_pod() -> None:
    assert targeting_refusal("rolling_update", {"mode": None}) is None
    assert targeting_refusal("corrupt_weights_rollout", {}) is None
    assert targeting_refusal("oom_at_load", {"mode": "all"}) is None
    assert "mode 'one'" in (targeting_refusal("probe_kills_slow_load", {}) or "")
    assert "mode 'count'" in (targeting_refusal("oom_at_load", {"mode": "count", "count": 1}) or "")
    assert "names" in (targeting_refusal("rolling_update", {"names": ["triton-abc"]}) or "")
    assert targeting_refusal("kill_replicas", {"mode": "one"}) is None  # deleting one pod is fine


@pytest.mark.parametrize("extra,refused", [({}, True), ({"probe_mode": "all"}, False)])
def test_the_shipped_experiment_is_refused_unless_var_says_all(tmp_path: Path, extra: dict[str, Any],
                                                               refused: bool) -> None:
    platform = KubernetesPlatform(KubernetesSettings(namespace="chaos-x", namespace_confirmed=True, dry_run=True,
                                                     state_dir=tmp_path))
    options = RunOptions(reports_dir=tmp_path, variables=extra)
    plans = load_plans([ROOT / "experiments" / "probe-kills-slow-load.yaml"], options, [])
    configs = {plan.path: plan.configuration for plan in plans}
    if refused:
        with pytest.raises(ConfigError, match=r"mode 'one'.*--var probe_mode=all"):
            refuse_unsupported(platform, [(p.path, p.experiment) for p in plans], configs)
    else:
        refuse_unsupported(platform, [(p.path, p.experiment) for p in plans], configs)


def _pod(ready: bool = True, deleting: bool = False, terminated: str = "", waiting: str = "", message: str = "",
         restarts: int = 0, last: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if terminated:
        state = {"terminated": {"reason": terminated, "exitCode": 0}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": message}}
    meta: dict[str, Any] = {"name": "triton-abc"}
    if deleting:
        meta.update(deletionTimestamp="2026-12-02T21:00:00Z", deletionGracePeriodSeconds=5)
    status = {"ready": ready, "restartCount": restarts, "state": state,
              "lastState": {"terminated": {"reason": last}} if last else {}}
    return {"metadata": meta, "status": {"phase": "Running", "podIP": "10.214.0.9", "containerStatuses": [status]}}


def test_a_deleted_pod_is_killed_at_the_request_and_exits_when_its_container_does(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", platform="kubernetes")
    tracker = PodTracker(log)
    for kind, pod in [("ADDED", _pod(ready=False)), ("MODIFIED", _pod()), ("MODIFIED", _pod(deleting=True)),
                      ("MODIFIED", _pod(ready=False, deleting=True)),
                      ("MODIFIED", _pod(ready=False, deleting=True, terminated="Completed")),
                      ("DELETED", _pod(ready=False, deleting=True, terminated="Completed"))]:
        tracker.seen(kind, pod)
    log.close()
    events = list(read_events(tmp_path / "events.jsonl"))
    assert [e.kind for e in events] == [EventKind.STARTED, EventKind.READY, EventKind.KILLED, EventKind.NOT_READY,
                                        EventKind.EXITED]
    assert "grace 5s" in events[2].reason and events[4].reason == "Completed"


def test_a_crash_loop_records_the_kubelets_back_off_and_the_cause(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", platform="kubernetes")
    tracker = PodTracker(log)
    tracker.seen("ADDED", _pod(ready=False))
    tracker.seen("MODIFIED", _pod(ready=False, waiting="CrashLoopBackOff", restarts=2, last="OOMKilled",
                                  message="back-off 20s restarting failed container=triton pod=triton-abc_ns(uid)"))
    log.close()
    backoff = [e for e in read_events(tmp_path / "events.jsonl") if e.kind == EventKind.BACKOFF]
    assert len(backoff) == 1 and backoff[0].details["backoff_s"] == 20.0
    assert backoff[0].reason == "CrashLoopBackOff after OOMKilled"
    assert backoff_seconds("back-off 2m40s restarting failed container") == 160.0
    assert backoff_seconds("container is waiting") is None


def _kubelet_event(uid: str, reason: str, message: str, count: int, pod: str = "triton-abc") -> dict[str, Any]:
    """A core/v1 Event as the kubelet (1.20) writes it: a repeat raises ``count`` on the same object."""
    return {"metadata": {"uid": uid, "name": f"{pod}.{uid}"}, "involvedObject": {"kind": "Pod", "name": pod},
            "reason": reason, "message": message, "count": count, "lastTimestamp": "2099-01-01T00:00:00Z"}


def test_every_probe_kill_is_one_event_though_the_kubelet_counts_them_on_one(tmp_path: Path) -> None:
    """Measured on the sandbox: a 2 s startup budget killed a 6 s load three times in a minute; the kubelet wrote
    one ``Killing`` Event with count 3 and one ``Unhealthy`` with count 7, and the watcher, reading only new
    Events, saw one kill (the landing: void, "1 probe kill(s)"). A failed probe alone kills nothing."""
    log = EventLog(tmp_path / "events.jsonl", platform="kubernetes")
    tracker = PodTracker(log)
    tracker.seen("ADDED", _pod(ready=False))
    refused = 'Startup probe failed: Get "http://10.214.0.9:8000/v2/health/ready": connect: connection refused'
    killing = "Container triton failed startup probe, will be restarted"
    for count in (1, 2):
        tracker.event(_kubelet_event("u1", "Unhealthy", refused, count))
    tracker.event(_kubelet_event("u2", "Killing", killing, 1))
    for count in (3, 4):
        tracker.event(_kubelet_event("u1", "Unhealthy", refused, count))
    tracker.event(_kubelet_event("u2", "Killing", killing, 3))  # two more kills seen in one update
    tracker.event(_kubelet_event("u2", "Killing", killing, 3))  # a relist of the same object: nothing new
    tracker.event(_kubelet_event("u3", "Killing", "Container triton failed liveness probe, will be restarted", 1))
    old = {**_kubelet_event("u4", "Killing", killing, 5), "lastTimestamp": "2020-01-01T00:00:00Z"}
    tracker.event(old)  # listed when the watcher started: history, not a kill now
    log.close()
    events = list(read_events(tmp_path / "events.jsonl"))
    kills = [e for e in events if e.kind == EventKind.STARTUP_FAILED]
    assert len(kills) == 3 and {e.reason for e in kills} == {refused}
    assert {e.details["kubelet"] for e in kills} == {killing}
    (liveness,) = [e for e in events if e.kind == EventKind.LIVENESS_FAILED]
    assert liveness.reason == "Liveness probe failed"  # no failure message seen: the probe is named
