"""How a pod of the Deployment under test reads as a replica (``ReplicaStatus``): ready, why not, its state.

Pure readings of the API's pod objects, apart from the platform (``platform.py``) so that its lifecycle reads on
its own; ``status`` and the rollout wait use them, and the same words reach the user in both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from harness.deployment import DeploymentSpec
from harness.platforms.base import ReplicaStatus

__all__ = ["parse_time", "pod_ready", "pod_reason", "replica_status"]


def parse_time(text: str) -> float | None:
    """An API timestamp (``2026-12-06T19:37:04Z``) as epoch seconds; None when absent or garbled."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return None


def pod_ready(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(bool(cs.get("ready")) for cs in statuses)


def pod_reason(pod: dict[str, Any]) -> str:
    """Why the pod is not ready (its container's waiting or terminated reason, Terminating, its phase); "" if ready."""
    st = pod.get("status") or {}
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            if key in state:
                return str(state[key].get("reason", key))
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return "" if pod_ready(pod) else ("not ready" if st.get("phase") == "Running" else str(st.get("phase", "")))


def replica_status(pod: dict[str, Any], spec: DeploymentSpec) -> ReplicaStatus:
    """The pod as the harness reports a replica, its addresses on the Deployment's ports."""
    st = pod.get("status") or {}
    ip = str(st.get("podIP", ""))
    statuses = st.get("containerStatuses") or [{}]
    reason = pod_reason(pod)
    created = parse_time(str(pod["metadata"].get("creationTimestamp", "")))
    state = (
        "backoff"
        if reason == "CrashLoopBackOff"
        else "running"
        if pod_ready(pod)
        else "stopped"
        if st.get("phase") in ("Succeeded", "Failed")
        else "starting"
    )
    return ReplicaStatus(
        name=pod["metadata"]["name"],
        address=ip,
        pid=None,
        ready=pod_ready(pod),
        restarts=int(statuses[0].get("restartCount") or 0),
        reason=reason,
        state=state,
        age_s=max(0.0, time.time() - created) if created else 0.0,
        http=f"http://{ip}:{spec.port('http')}" if ip else "",
        grpc=f"{ip}:{spec.port('grpc')}" if ip else "",
        metrics=f"http://{ip}:{spec.port('metrics')}/metrics" if ip else "",
        uid=str(pod["metadata"].get("uid", "")),
        terminating=bool(pod["metadata"].get("deletionTimestamp")),
    )
