"""The pods of a Deployment's *new* template, and the Kubernetes ``LoadClock``
(``harness.faults.slow_load_landing``) that reads their starts.

After an env patch the Deployment controller makes (or scales back up) the ReplicaSet whose template is the
patched one; its pods carry that ReplicaSet's ``pod-template-hash`` label. Those, created after the patch,
are the pods that restarted with the change: "any pod that appeared since" would also count a pod the old
ReplicaSet replaced after an eviction, and the old pods, which a rollout with maxUnavailable 0 keeps ready
until the new ones are, say nothing about the change at all.

A start is read from the pod's own status: the Triton container's ``startedAt`` and the pod's ``Ready``
condition's ``lastTransitionTime`` (RFC 3339 in whole seconds on the API, hence ``precision_s = 1``), and the
model load from the container's log (Triton's own lines, ``harness.triton.loadlog``). The ``Ready`` condition
keeps its *last* transition: a pod whose readiness went away after its start (a failed probe, or the network
block's agent before it let the kubelet's probes through) would read a much later ready time and raise the
baseline until every slow load looked normal (a suite's slow load after its network block voided that way on the
sandbox: baseline 23.5 s against a 9 s start). So a baseline start takes the first ``ready`` the platform's
event watcher saw after the start when it saw one earlier than the condition says; Triton's log of the load is
not affected either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness.deployment import DeploymentSpec
from harness.events import EventKind, read_events
from harness.platforms.base import LoadStart
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.usermanifest import ServiceShape
from harness.triton.loadlog import load_seconds

__all__ = ["KubernetesLoadClock", "TemplateHost", "current_template_pods", "new_template_pods", "timestamp_ns"]


class TemplateHost(Protocol):
    """What this module uses of the Kubernetes platform, declared here so that it does not import the platform
    that uses it (``KubernetesPlatform`` satisfies it)."""

    shape: ServiceShape
    spec: DeploymentSpec

    @property
    def api(self) -> KubeApi: ...

    @property
    def namespace(self) -> str: ...

    @property
    def selector(self) -> str: ...

    def events_path(self) -> Path: ...


_HASH = "pod-template-hash"
_REVISION = "deployment.kubernetes.io/revision"
_LOG_HEAD = 256 * 1024  # the load is logged at the start: the head of the container's log holds it
_LOG_TAIL_LINES = 5000  # a reload's lines: the end of the container's log


def timestamp_ns(text: str | None) -> int | None:
    """An API timestamp (``2026-12-06T19:37:04Z``) as wall-clock nanoseconds; None when absent or garbled."""
    if not text:
        return None
    try:
        return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()) * 10**9
    except ValueError:
        return None


def _env_of(template: Mapping[str, Any], container: str) -> dict[str, str]:
    containers = ((template.get("spec") or {}).get("containers")) or []
    chosen = next((c for c in containers if c.get("name") == container), containers[0] if containers else {})
    return {str(e.get("name")): str(e.get("value", "")) for e in chosen.get("env") or [] if "value" in e}


def _revision(obj: Mapping[str, Any]) -> int:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(_REVISION)
    return int(str(raw)) if str(raw or "").isdigit() else 0


def _replica_sets(platform: TemplateHost) -> list[dict[str, Any]]:
    found = platform.api.request("GET", f"/apis/apps/v1/namespaces/{platform.namespace}/replicasets",
                                 {"labelSelector": platform.selector}) or {}
    return list(found.get("items") or [])


def _pods_of(platform: TemplateHost, replica_set: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    template_hash = ((replica_set or {}).get("metadata", {}).get("labels") or {}).get(_HASH)
    if not template_hash:
        return []
    return platform.api.list(KIND_BY_NAME["Pod"], platform.namespace, f"{platform.selector},{_HASH}={template_hash}")


def current_template_pods(platform: TemplateHost) -> list[dict[str, Any]]:
    """The live pods of the Deployment's current template (its ReplicaSet of the Deployment's revision): pods of
    an earlier template that a rollout has not removed yet are left out."""
    dep = platform.api.get(f"{KIND_BY_NAME['Deployment'].collection(platform.namespace)}/{platform.spec.name}")
    revision = _revision(dep or {})
    current = next((rs for rs in _replica_sets(platform) if revision and _revision(rs) == revision), None)
    return [p for p in _pods_of(platform, current) if not p["metadata"].get("deletionTimestamp")]


def new_template_pods(platform: TemplateHost, env: Mapping[str, str], since_ns: int) -> list[dict[str, Any]]:
    """The pods of the ReplicaSet whose template carries ``env`` (the newest such revision), created at or after
    ``since_ns`` (to the API's whole second): the pods that started with the patched template."""
    container = platform.shape.container
    matching = [rs for rs in _replica_sets(platform)
                if all(_env_of((rs.get("spec") or {}).get("template") or {}, container).get(k) == str(v)
                       for k, v in env.items())]
    if not matching:
        return []
    pods = _pods_of(platform, max(matching, key=_revision))
    floor = since_ns // 10**9 * 10**9
    return sorted((p for p in pods if (timestamp_ns(p["metadata"].get("creationTimestamp")) or 0) >= floor),
                  key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))


class KubernetesLoadClock:
    signals = "the pods' own timestamps (container startedAt, Ready condition) and Triton's log of the load"
    precision_s = 1.0

    def __init__(self, platform: TemplateHost) -> None:
        self.platform = platform

    def _log(self, pod: str, tail: bool = False) -> str:
        from kubernetes import client as k8s

        # a start's load is at the head of the container's log; a reload's is at its end
        try:
            api = k8s.CoreV1Api(self.platform.api.client)
            container = self.platform.shape.container
            text = (api.read_namespaced_pod_log(pod, self.platform.namespace, container=container,
                                                tail_lines=_LOG_TAIL_LINES) if tail else
                    api.read_namespaced_pod_log(pod, self.platform.namespace, container=container,
                                                limit_bytes=_LOG_HEAD))
        except Exception:  # noqa: BLE001 - no log (yet, or not allowed): the load is then judged on timestamps
            return ""
        return str(text or "")

    def _first_ready_seen(self, name: str, started_ns: int) -> int | None:
        """The first ``ready`` event of pod ``name`` the watcher recorded after ``started_ns`` (whole-second
        start, so from one second before it); None when the watcher saw none."""
        try:
            events = read_events(self.platform.events_path())
            return next((e.ts_ns for e in events if e.replica == name and e.kind == EventKind.READY
                         and e.ts_ns >= started_ns - 10**9), None)
        except OSError:
            return None

    def _start(self, pod: Mapping[str, Any], model: str, first_ready: bool = False) -> LoadStart | None:
        status = pod.get("status") or {}
        container = next((c for c in status.get("containerStatuses") or []
                          if c.get("name") == self.platform.shape.container), None)
        state = (container or {}).get("state") or {}
        # running: this start; waiting after a crash (CrashLoopBackOff): the last start, which ended unready
        started = timestamp_ns((state.get("running") or {}).get("startedAt")
                               or (((container or {}).get("lastState") or {}).get("terminated") or {}).get("startedAt"))
        if started is None:
            return None  # not started yet (scheduling, init container, image)
        waiting = (state.get("waiting") or {}).get("reason") or ""
        restarts = int((container or {}).get("restartCount") or 0)
        last = ", ".join(x for x in (waiting, f"{restarts} restart(s)" if restarts else "") if x)
        condition: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        ready = timestamp_ns(condition.get("lastTransitionTime")) if condition.get("status") == "True" else None
        name = str(pod["metadata"]["name"])
        if first_ready and ready is not None and (seen := self._first_ready_seen(name, started)) is not None:
            ready = max(started, min(ready, seen))
        load = load_seconds(self._log(name), model) if ready is not None else None  # logged before it is ready
        return LoadStart(name, str(pod["metadata"].get("uid", "")), started, ready, load, last)

    def last_load(self, target: str, model: str) -> float | None:
        return load_seconds(self._log(target, tail=True), model)

    def baseline(self, targets: Sequence[str], model: str) -> dict[str, LoadStart]:
        """Every ready pod of the current (plain) template now: one template, so the targets are all of them
        anyway; pods of an earlier template (a previous fault's, still rolling back) are not plain starts."""
        out = {}
        for pod in current_template_pods(self.platform):
            start = self._start(pod, model, first_ready=True)
            if start is not None and start.ready_ns is not None:
                out[start.replica] = start
        return out

    def restarted(self, targets: Sequence[str], record: Mapping[str, Any], since_ns: int,
                  model: str) -> dict[str, LoadStart | None]:
        """The new template's pods created before the first of them became ready: later ones are the next
        steps of the same rollout, which the check does not wait for."""
        try:
            pods = new_template_pods(self.platform, dict(record.get("env") or {}), since_ns)
        except ApiFailure:
            return {}
        starts = {str(p["metadata"]["name"]): self._start(p, model) for p in pods}
        first_ready = min((s.ready_ns for s in starts.values() if s is not None and s.ready_ns is not None),
                          default=None)
        if first_ready is None:
            return starts
        return {str(p["metadata"]["name"]): starts[str(p["metadata"]["name"])] for p in pods
                if (timestamp_ns(p["metadata"].get("creationTimestamp")) or 0) <= first_ready}
