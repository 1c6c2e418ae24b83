"""The slow-load baseline on Kubernetes reads a pod's *first* ready after its start, not its last.

The pod's ``Ready`` condition keeps only its last transition. A pod whose readiness went away after its start
(a failed probe; the network block's agent dropped the kubelet's probes until it let the node's traffic
through) then reads as if its start had taken a minute, the
baseline rises, and every slow load after it looks normal: in a suite, the slow load after the network block
voided on the sandbox with a 23.5 s baseline against a 9 s start. The watcher's events say when it first
became ready. Pod objects as the API sends them; no cluster needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.events import Event, EventKind
from harness.platforms.kubernetes.new_template import KubernetesLoadClock, timestamp_ns
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings

STARTED = "2026-12-06T23:00:00Z"
READY_AGAIN = "2026-12-06T23:01:00Z"  # the last transition: back from a readiness outage a minute later


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}"},
            "status": {"containerStatuses": [{"name": "triton", "restartCount": 0,
                                              "state": {"running": {"startedAt": STARTED}}}],
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": READY_AGAIN}]}}


def _ready_s(clock: KubernetesLoadClock, name: str, first_ready: bool = True) -> float | None:
    start = clock._start(_pod(name), "mlp", first_ready=first_ready)
    assert start is not None
    return start.ready_s


def test_the_baseline_takes_the_first_ready_the_watcher_saw(tmp_path: Path) -> None:
    platform = KubernetesPlatform(KubernetesSettings(namespace="chaos-x", namespace_confirmed=True, dry_run=True,
                                                     state_dir=tmp_path))
    clock = KubernetesLoadClock(platform)
    started = timestamp_ns(STARTED) or 0
    # no events: the condition is all there is
    assert _ready_s(clock, "triton-a") == 60.0
    platform.events_path().parent.mkdir(parents=True, exist_ok=True)
    with platform.events_path().open("w") as fh:
        for at_s, kind in ((9.2, EventKind.READY), (30.0, EventKind.NOT_READY), (60.4, EventKind.READY)):
            fh.write(Event(started + int(at_s * 1e9), kind, "triton-a", "", "kubernetes", {}).to_json() + "\n")
    assert _ready_s(clock, "triton-a") == 9.2
    # a pod the watcher never saw ready keeps the condition's reading; a new pod's own start reads the condition
    assert _ready_s(clock, "triton-b") == 60.0
    assert _ready_s(clock, "triton-a", first_ready=False) == 60.0
