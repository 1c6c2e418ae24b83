"""Distributed load on Kubernetes: a Locust master and N workers as cluster objects, timelines copied back.

Objects (all labelled with the run and an expiry, so ``harness cleanup`` finds them after a crash):
- ConfigMap ``harness-load-<run>``: the load profile file, mounted at ``/profile``;
- Pod ``harness-load-<run>-master`` and Service ``harness-load-<run>-master`` (port 5557) that workers join;
- Pods ``harness-load-<run>-worker-<i>``, each with an emptyDir at ``/timeline``.

Timelines travel back by copy, not by stream: each worker writes its ``harness.timeline`` chunks into its
own ``/timeline`` (``HARNESS_TIMELINE_DIR``), then writes ``/timeline/EXIT`` with Locust's exit code and
stays alive (``sleep``), so the harness can ``tar`` the folder out through the exec API once the master
pod has finished (``kubectl cp`` semantics), every worker at once, each checked against the manifest its
writer kept and put on the harness's clock (timeline_copy). Copy beats streaming here because a worker
that loses its connection keeps its file, and nothing in the cluster needs to reach the harness. The pods are deleted
at the end, whether the run completed or not.

The image must contain the harness (with Locust and tritonclient); ``harness load`` passes its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PlatformError
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.render import label, slug
from harness.platforms.kubernetes.timeline_copy import copy_timelines, worker_prefixes

__all__ = [
    "LoadJob",
    "collect_timelines",
    "delete_load",
    "render_load_objects",
    "run_distributed_load",
    "start_load",
    "wait_for_master",
]

ROLE = "harness.load-role"
_KIND = KIND_BY_NAME
MASTER_PORT = 5557


@dataclass(frozen=True)
class LoadJob:
    run_id: str
    namespace: str
    workers: int
    image: str
    profile: Path
    host: str  # the service under test as workers reach it, e.g. http://triton.ns.svc.cluster.local:8000
    users: int = 10
    spawn_rate: float = 10.0
    duration_s: float = 60.0
    expires_at: str = ""
    locust_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(
        default_factory=lambda: {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    )

    def __post_init__(self) -> None:
        problems = []
        if self.workers < 1:
            problems.append(f"--workers must be at least 1, got {self.workers}")
        if not self.image:
            problems.append("no image for the load pods; it must contain the harness (pass --load-image)")
        if not self.profile.is_file():
            problems.append(f"load profile {self.profile} does not exist")
        if self.users < 1 or self.spawn_rate <= 0 or self.duration_s <= 0:
            problems.append("users, spawn rate and duration must be positive")
        if problems:
            raise ConfigError("invalid distributed load:\n  - " + "\n  - ".join(problems))

    @property
    def base(self) -> str:
        return f"harness-load-{slug(self.run_id, 40)}"

    @property
    def master(self) -> str:
        return f"{self.base}-master"

    def worker(self, index: int) -> str:
        return f"{self.base}-worker-{index}"


def _pod(job: LoadJob, name: str, role: str, command: list[str], worker_id: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(job.env.items())]
    env += [
        {"name": "HARNESS_TIMELINE_DIR", "value": "/timeline"},
        # Names timeline files, so no '-' (LoadSettings refuses it): "w<i>", "master" for the master.
        {"name": "HARNESS_WORKER_ID", "value": worker_id},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {ROLE: role, "harness.load-run": slug(job.run_id)}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "locust",
                    "image": job.image,
                    "command": command,
                    "env": env,
                    "resources": job.resources,
                    "ports": [{"name": "master", "containerPort": MASTER_PORT, "protocol": "TCP"}]
                    if role == "master"
                    else [],
                    "volumeMounts": [
                        {"name": "profile", "mountPath": "/profile", "readOnly": True},
                        {"name": "timeline", "mountPath": "/timeline"},
                    ],
                }
            ],
            "volumes": [
                {"name": "profile", "configMap": {"name": job.base}},
                {"name": "timeline", "emptyDir": {}},
            ],
        },
    }


def render_load_objects(job: LoadJob) -> list[dict[str, Any]]:
    """ConfigMap, master Service, master Pod, worker Pods: in creation order, labelled for the run."""
    locust = ["locust", "-f", f"/profile/{job.profile.name}", "--headless", *job.locust_args]
    master_cmd = [
        *locust,
        "--master",
        "--expect-workers",
        str(job.workers),
        "--host",
        job.host,
        "-u",
        str(job.users),
        "-r",
        f"{job.spawn_rate:g}",
        "-t",
        f"{job.duration_s:g}s",
        "--master-bind-port",
        str(MASTER_PORT),
    ]
    worker_line = " ".join([*locust, "--worker", "--master-host", job.master, "--master-port", str(MASTER_PORT)])
    # The worker stays alive after Locust exits so its /timeline can be copied out.
    worker_cmd = ["sh", "-c", f"{worker_line}; echo $? > /timeline/EXIT; exec sleep 86400"]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": job.base, "labels": {}},
            "data": {job.profile.name: job.profile.read_text(encoding="utf-8")},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": job.master, "labels": {}},
            "spec": {
                "selector": {ROLE: "master", "harness.load-run": slug(job.run_id)},
                "ports": [{"name": "master", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"}],
            },
        },
        _pod(job, job.master, "master", master_cmd, "master"),
    ]
    objects += [_pod(job, job.worker(i), "worker", worker_cmd, f"w{i}") for i in range(job.workers)]
    return [label(o, job.run_id, job.expires_at) for o in objects]


def _create_pod(api: KubeApi, collection: str, pod: dict[str, Any], wait_s: float = 30.0) -> None:
    """Create a pod, waiting out a namespace too new to have its service-account token yet.

    The API server refuses pods (500, "No API token found for service account") until the token
    controller has caught up with a namespace created moments ago; kubectl users retry by hand.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            api.request("POST", collection, body=pod)
            return
        except ApiFailure as exc:
            if exc.status != 500 or "service account" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def start_load(api: KubeApi, job: LoadJob) -> list[str]:
    created = []
    for obj in render_load_objects(job):
        kind = _KIND[obj["kind"]]
        if obj["kind"] == "Pod":  # pods are immutable: create, never apply over a previous run's
            _create_pod(api, kind.collection(job.namespace), obj)
        else:
            api.apply(obj, job.namespace)
        created.append(f"{obj['kind'].lower()} {obj['metadata']['name']}")
    return created


def wait_for_master(api: KubeApi, job: LoadJob, timeout_s: float, poll_s: float = 0.5) -> str:
    """Until the master pod has finished; its phase (Succeeded or Failed)."""
    deadline = time.monotonic() + timeout_s
    path = f"{_KIND['Pod'].collection(job.namespace)}/{job.master}"
    while time.monotonic() < deadline:
        pod = api.get(path)
        if pod is None:
            raise PlatformError(f"the load master pod {job.namespace}/{job.master} disappeared")
        phase = str((pod.get("status") or {}).get("phase", ""))
        if phase in ("Succeeded", "Failed"):
            return phase
        time.sleep(poll_s)
    raise PlatformError(f"the load master {job.namespace}/{job.master} did not finish within {timeout_s:g}s")


def collect_timelines(api: KubeApi, job: LoadJob, dest: Path, wait_s: float = 60.0) -> list[Path]:
    """Copy every worker's /timeline into ``dest`` as ``part-<worker>-<file>``, all workers at once, each
    checked against its manifest and put on the harness's clock; every worker must deliver
    (harness.platforms.kubernetes.timeline_copy; ``dest/workers.json`` says what came back)."""
    pods = [job.worker(i) for i in range(job.workers)]
    return copy_timelines(api, job.namespace, worker_prefixes(pods, job.base), dest, wait_s=wait_s).files


def delete_load(api: KubeApi, job: LoadJob) -> list[str]:
    """Delete every object of this load run (by its run label), pods first."""
    selector = f"harness.load-run={slug(job.run_id)}"
    removed = []
    for kind in (_KIND["Pod"], _KIND["Service"], _KIND["ConfigMap"]):
        try:
            items = api.list(kind, job.namespace, selector)
        except ApiFailure:
            items = []
        names = [o["metadata"]["name"] for o in items]
        if kind.kind == "ConfigMap":
            names = [job.base]
        elif kind.kind == "Service":
            names = [job.master]
        for name in names:
            if api.delete(f"{kind.collection(job.namespace)}/{name}", grace_s=0 if kind.kind == "Pod" else None):
                removed.append(f"{kind.kind.lower()} {name}")
    return removed


def run_distributed_load(
    api: KubeApi, job: LoadJob, dest: Path, timeout_s: float, collect_wait_s: float = 60.0
) -> list[Path]:
    """Create, wait, collect, and always delete: what ``harness load --platform kubernetes`` calls.

    ``timeout_s`` bounds the whole load (the master's ``-t`` plus start-up); ``collect_wait_s`` is how long
    a worker may take to write its last chunk after the master finished.
    """
    try:
        start_load(api, job)
        wait_for_master(api, job, timeout_s)
        return collect_timelines(api, job, dest, wait_s=collect_wait_s)
    finally:
        delete_load(api, job)
