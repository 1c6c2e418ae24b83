"""Following a real Deployment rollout, and its phases per pod from the watcher's events.

The controller decides everything (surge pods first, old pods deleted as maxUnavailable allows, a stall at
``progressDeadlineSeconds``); this only reads: the Deployment's status and conditions, and the pods every
0.2 s for the lowest number of ready, non-terminating pods (the Service's capacity). Completed means
``kubectl rollout status`` would say so: observedGeneration current, every replica updated, ready and
available, no pod of the old template left. Stalled means the controller said so: ``Progressing=False``
with reason ``ProgressDeadlineExceeded``.

Phases per pod (``phases``): an old pod is ``terminating`` from its deletion request until its container
exited (the preStop delay, SIGTERM, Triton's shutdown; the endpoints controller drops it at the request and
kube-proxy follows with its sync lag, so requests routed to it in that window can fail); a new pod is in
``new-pod-startup`` from its creation until it is ready.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from harness.errors import FaultError
from harness.events import Event, EventKind
from harness.platforms.kubernetes.api import KubeApi

__all__ = ["RolloutSource", "follow", "follow_back", "phases", "wait_terminated"]


class RolloutSource(Protocol):
    """What following a rollout reads: the API, the namespace and the Deployment's pods (``KubernetesSpecOps``)."""

    @property
    def api(self) -> KubeApi: ...

    @property
    def namespace(self) -> str: ...

    def pods(self) -> list[dict[str, Any]]: ...


def _ready(pod: Mapping[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(bool(cs.get("ready")) for cs in statuses)


def _reason(pod: Mapping[str, Any]) -> str:
    """What the pod is doing: its container's waiting/terminated reason, else ready / not ready."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        for key in ("waiting", "terminated"):
            if key in (cs.get("state") or {}):
                return str(cs["state"][key].get("reason", key))
    return "ready" if _ready(pod) else "not ready"


def _stalled(dep: Mapping[str, Any]) -> str:
    for condition in (dep.get("status") or {}).get("conditions") or []:
        if (condition.get("type") == "Progressing" and condition.get("status") == "False"
                and condition.get("reason") == "ProgressDeadlineExceeded"):
            return f"Progressing=False, ProgressDeadlineExceeded: {condition.get('message', '')}"
    return ""


def _complete(dep: Mapping[str, Any], generation: int, pods: Sequence[Mapping[str, Any]]) -> bool:
    want = int((dep.get("spec") or {}).get("replicas", 1))
    st = dep.get("status") or {}
    # Pods being deleted no longer count (as for the ReplicaSet controller and ``kubectl rollout status``): the
    # kubelet may take a while to finish one, and it is out of the Service from the deletion request on.
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return (int(st.get("observedGeneration", 0)) >= max(generation, int(dep["metadata"].get("generation", 1)))
            and st.get("updatedReplicas") == want and st.get("readyReplicas") == want
            and st.get("availableReplicas") == want and st.get("replicas") == want
            and len(live) == want and all(_ready(p) for p in live))


def follow(ops: RolloutSource, record: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """Until the rollout completed or stalled (or ``timeout_s``): what happened, with the capacity kept."""
    api, path = ops.api, f"/apis/apps/v1/namespaces/{ops.namespace}/deployments/{record['deployment']}"
    before = set(record.get("pods_before") or [])
    generation = int(record.get("generation") or 0)
    started = time.monotonic()
    min_ready: int | None = None
    new_pods: dict[str, str] = {}  # every pod of the new template seen, with its last reason
    completed, stalled, replicas = False, "", 0
    while True:
        dep = api.get(path)
        if dep is None:
            stalled = "the Deployment disappeared during the rollout"
            break
        pods = ops.pods()
        replicas = int(dep["spec"].get("replicas", 1))
        ready = sum(1 for p in pods if _ready(p) and not p["metadata"].get("deletionTimestamp"))
        min_ready = ready if min_ready is None else min(min_ready, ready)
        for pod in pods:
            name = pod["metadata"]["name"]
            if name not in before:
                new_pods[name] = _reason(pod)
        if _complete(dep, generation, pods):
            completed = True
            break
        # A stall counts once the controller has seen this generation: right after a restore the Deployment
        # still carries the stalled rollout's ProgressDeadlineExceeded until the controller re-reads it.
        observed = int((dep.get("status") or {}).get("observedGeneration", 0))
        stalled = _stalled(dep) if observed >= generation else ""
        if stalled:
            break
        if time.monotonic() - started > timeout_s:
            stalled = (f"neither completed nor reported stalled by the controller within {timeout_s:g}s "
                       f"({int((dep.get('status') or {}).get('updatedReplicas') or 0)} of {replicas} updated)")
            break
        time.sleep(0.2)
    pods = ops.pods()
    return {"completed": completed, "stalled": "" if completed else stalled,
            "duration_s": round(time.monotonic() - started, 3), "min_ready": min_ready or 0,
            "ready_at_end": sum(1 for p in pods if _ready(p) and not p["metadata"].get("deletionTimestamp")),
            "replicas": replicas, "old_pods": sorted(before), "new_pods": new_pods,
            "replaced": sorted(before - {p["metadata"]["name"] for p in pods
                                         if not p["metadata"].get("deletionTimestamp")})}


def wait_terminated(ops: RolloutSource, timeout_s: float) -> list[str]:
    """Until no pod of the Deployment is being deleted any more, or ``timeout_s``; the pods still terminating.

    A completed rollout still has its old pods shutting down, and they matter to clients: Triton keeps
    answering the kept-alive connections it has after SIGTERM, so without a preStop delay it can run to the
    end of the grace period, and its SIGKILL then fails the requests in flight (seen on the sandbox: the
    reference's pods exited 30 s after their deletion, each with four ``connection_closed`` errors)."""
    started = time.monotonic()
    while True:
        left = sorted(p["metadata"]["name"] for p in ops.pods() if p["metadata"].get("deletionTimestamp"))
        if not left or time.monotonic() - started > timeout_s:
            return left
        time.sleep(0.5)


def follow_back(ops: RolloutSource, deployment: str, generation: int, timeout_s: float, what: str) -> None:
    """An undo's roll (``what`` was restored, the Deployment now at ``generation``): followed to the end, then
    until the replaced pods exited; FaultError when the controller did not complete it."""
    rolled = follow(ops, {"deployment": deployment, "generation": generation}, timeout_s)
    if not rolled["completed"]:
        raise FaultError(f"{what} was restored but the roll back did not complete: {rolled['stalled']}")
    wait_terminated(ops, timeout_s)


def phases(events: Sequence[Event], old_pods: Sequence[str], new_pods: Sequence[str]) -> list[dict[str, Any]]:
    """``terminating`` for each old pod (deletion requested until its container exited), ``new-pod-startup``
    for each new pod (created until ready); ``end_ns`` None when the phase had not ended."""
    out: list[dict[str, Any]] = []
    for pod in old_pods:
        mine = [e for e in events if e.replica == pod]
        deleted = next((e.ts_ns for e in mine if e.kind in (EventKind.KILLED, EventKind.STOPPED)), None)
        if deleted is None:
            continue
        exited = next((e.ts_ns for e in mine if e.kind == EventKind.EXITED and e.ts_ns >= deleted), None)
        out.append({"pod": pod, "phase": "terminating", "start_ns": deleted, "end_ns": exited})
    for pod in new_pods:
        mine = [e for e in events if e.replica == pod]
        started = next((e.ts_ns for e in mine if e.kind == EventKind.STARTED), None)
        if started is None:
            continue
        ready = next((e.ts_ns for e in mine if e.kind == EventKind.READY and e.ts_ns >= started), None)
        out.append({"pod": pod, "phase": "new-pod-startup", "start_ns": started, "end_ns": ready})
    return out
