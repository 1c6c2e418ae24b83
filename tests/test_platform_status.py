"""What "every replica ready" means: a pod still terminating after a rollout or a kill is shown but does not count.

Found in CI: right after a rolling update's undo, the old pod lingered in the kubelet, went unready, and the next
repetition's steady-state check ("all-replicas-ready") failed, so nothing was injected. The Deployment does not
count a terminating pod, nor do the Service's endpoints; the harness now does the same.
"""

from __future__ import annotations

from typing import Any

from harness.deployment import load_deployment
from harness.platforms.base import Endpoints, PlatformStatus
from harness.platforms.kubernetes.pods import replica_status


def _pod(name: str, ready: bool, deleted: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": name, "creationTimestamp": "2026-12-07T03:00:00Z"}
    if deleted:
        meta["deletionTimestamp"] = "2026-12-07T03:30:00Z"
    return {"metadata": meta, "status": {
        "phase": "Running", "podIP": "10.0.0.1",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"restartCount": 0, "ready": ready, "state": {"running": {}}}]}}


def _status(*pods: dict[str, Any]) -> PlatformStatus:
    spec = load_deployment()
    return PlatformStatus("kubernetes", True, Endpoints("http://x:8000", "x:8001", ""),
                          tuple(replica_status(p, spec) for p in pods))


def test_a_terminating_pod_is_shown_but_neither_counts_nor_blocks() -> None:
    lingering = _status(_pod("a", True), _pod("b", True), _pod("old", False, deleted=True))
    assert [r.terminating for r in lingering.replicas] == [False, False, True]
    assert lingering.all_ready and lingering.ready_replicas == 2
    assert not _status(_pod("a", True), _pod("b", False)).all_ready
    assert not _status(_pod("old", True, deleted=True)).all_ready  # nothing but a pod on its way out
    assert not _status().all_ready
