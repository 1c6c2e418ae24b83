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

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PlatformError
from harness.load.settings import LoadSettings
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.render import label, slug
from harness.platforms.kubernetes.timeline_copy import copy_timelines, worker_prefixes

__all__ = [
    "LoadJob",
    "collect_timelines",
    "delete_load",
    "pod_log_tail",
    "render_load_objects",
    "run_distributed_load",
    "start_load",
    "stop_load",
    "wait_for_master",
    "wait_sending",
]

ROLE = "harness.load-role"
_KIND = KIND_BY_NAME
MASTER_PORT = 5557


@dataclass(frozen=True)
class LoadJob:
    """One distributed load: where it runs, what it sends (``settings``), and the objects it is made of.

    ``settings`` are the whole load's (users, open-loop rate, protocol, timeout, duration; ``http_url`` and
    ``grpc_target`` the Service as pods reach it); every pod gets them as ``HARNESS_*`` variables, because
    the profile's shape and users read those and Locust ignores ``-u/-r/-t`` when a shape is present.
    ``duration_s`` None runs until ``stop_load``. ``env``: request options and profile parameters.
    ``name`` names the objects (default: the run id); loads of one run (repetitions) need names of their own.
    """

    run_id: str
    namespace: str
    workers: int
    image: str
    profile: Path
    settings: LoadSettings
    name: str = ""
    expires_at: str = ""
    locust_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] | None = None  # None: sized from each worker's share of the rate
    # The kubelet ends the pods after this long (activeDeadlineSeconds) even if nobody deletes them: a load that
    # runs until stopped must not outlive a harness killed with SIGKILL by more than its expiry.
    deadline_s: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.workers < 1:
            problems.append(f"--workers must be at least 1, got {self.workers}")
        if not self.image:
            problems.append("no image for the load pods; it must contain the harness (pass --load-image)")
        if not self.profile.is_file():
            problems.append(f"load profile {self.profile} does not exist")
        if self.settings.users < 1:
            problems.append(f"users must be at least 1, got {self.settings.users}")
        if problems:
            raise ConfigError("invalid distributed load:\n  - " + "\n  - ".join(problems))

    @property
    def host(self) -> str:
        """The Service under test as the pods reach it, e.g. http://triton.ns.svc.cluster.local:8000."""
        return self.settings.http_url

    @property
    def run_label(self) -> str:
        return slug(self.name or self.run_id)

    @property
    def base(self) -> str:
        return f"harness-load-{slug(self.name or self.run_id, 40)}"

    @property
    def master(self) -> str:
        return f"{self.base}-master"

    def worker(self, index: int) -> str:
        return f"{self.base}-worker-{index}"

    def worker_settings(self) -> LoadSettings:
        """What one worker pod runs with: the per-process parts (in-flight cap) sized to its share."""
        return self.settings.for_workers(self.workers)

    def pod_env(self) -> dict[str, str]:
        """Every setting as the environment the shape and the users read (the same on master and workers)."""
        env = {**self.env, **self.worker_settings().to_env()}
        for per_pod in ("HARNESS_TIMELINE_DIR", "HARNESS_WORKER_ID", "HARNESS_REQUESTS"):
            env.pop(per_pod, None)  # set per pod (timeline, id); the plan is made in each worker
        return env

    def worker_resources(self) -> dict[str, Any]:
        """CPU request sized to a worker's share of an open-loop rate (one core per 5,000 req/s over HTTP,
        2,500 over gRPC: below the 6,300 and 3,000 one Locust process measured here); 500m in a closed loop,
        whose rate follows the service."""
        if self.resources is not None:
            return self.resources
        if self.settings.open_loop:
            per_core = 2500.0 if self.settings.protocol == "grpc" else 5000.0
            rate = self.settings.rate * self.settings.worker_share(self.workers)
            cpu = f"{max(100, math.ceil(1000 * rate / per_core))}m"
        else:
            cpu = "500m"
        return {"requests": {"cpu": cpu, "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


_MASTER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}


def _pod(job: LoadJob, name: str, role: str, command: list[str], worker_id: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(job.pod_env().items())]
    env += [
        {"name": "HARNESS_TIMELINE_DIR", "value": "/timeline"},
        # Names timeline files, so no '-' (LoadSettings refuses it): "w<i>", "master" for the master.
        {"name": "HARNESS_WORKER_ID", "value": worker_id},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {ROLE: role, "harness.load-run": job.run_label}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            **({"activeDeadlineSeconds": job.deadline_s} if job.deadline_s else {}),
            "containers": [
                {
                    "name": "locust",
                    "image": job.image,
                    "command": command,
                    "env": env,
                    "resources": _MASTER_RESOURCES if role == "master" else job.worker_resources(),
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
    """ConfigMap, master Service, master Pod, worker Pods: in creation order, labelled for the run.

    No ``-u/-r/-t``: the profile's shape decides users and duration from ``HARNESS_*`` (Locust ignores those
    flags with a shape). ``--stop-timeout``: a stopped user finishes its request in flight, so it is recorded.
    ``--exit-code-on-error 0``: failed requests are the measurement, not a failure of the load generator.
    """
    locust = ["locust", "-f", f"/profile/{job.profile.name}", "--headless", "--exit-code-on-error", "0",
              *job.locust_args]
    master_cmd = [
        *locust,
        "--master",
        "--expect-workers",
        str(job.workers),
        "--host",
        job.host,
        "--stop-timeout",
        f"{math.ceil(job.settings.timeout_s + 1)}s",  # whole seconds: Locust refuses "2.5"
        "--master-bind-port",
        str(MASTER_PORT),
    ]
    # The worker is the harness's own Locust worker, as the local --workers path starts it: it makes its request
    # plan from the server's metadata *before* it joins the master, so the shape's clock starts once every
    # worker is ready to send (a plain `locust --worker` planned lazily, inside the run: seconds lost under load).
    worker_line = " ".join(["python3", "-m", "harness.load._main", "--worker", "--profile",
                            f"/profile/{job.profile.name}", "--master-host", job.master, "--master-port",
                            str(MASTER_PORT)])
    # The worker stays alive after Locust exits so its /timeline can be copied out.
    # EXIT is written whole (rename), so the copy never reads it half-written
    worker_cmd = ["sh", "-c", f"{worker_line}; echo $? > /timeline/EXIT.tmp; mv /timeline/EXIT.tmp /timeline/EXIT; "
                            "exec sleep 86400"]
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
                "selector": {ROLE: "master", "harness.load-run": job.run_label},
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


_IMAGE_MISSING = ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName")


def pod_log_tail(api: KubeApi, namespace: str, pod: str, lines: int = 15) -> str:
    """The last lines of a pod's log, for an error message (empty when it cannot be read)."""
    from kubernetes import client as k8s

    try:
        text = k8s.CoreV1Api(api.client).read_namespaced_pod_log(pod, namespace, tail_lines=lines)
    except Exception:  # noqa: BLE001 - only decorates an error that is raised anyway
        return ""
    return str(text or "").strip()


def _pod_problem(api: KubeApi, job: LoadJob, pod: dict[str, Any]) -> str | None:
    """Why a load pod cannot (or no longer) send load, or None while it is starting or running."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _IMAGE_MISSING:
            return (f"pod {name}: image {job.image} cannot be pulled ({waiting.get('reason')}: "
                    f"{str(waiting.get('message', ''))[:200]}); give an image the cluster can pull with --load-image")
        if (cs.get("state") or {}).get("terminated"):
            return f"pod {name} exited; its log ends:\n{pod_log_tail(api, job.namespace, name)}"
    if status.get("phase") in ("Succeeded", "Failed"):
        return f"pod {name} ended ({status.get('phase')}); its log ends:\n{pod_log_tail(api, job.namespace, name)}"
    return None


def wait_sending(api: KubeApi, job: LoadJob, timeout_s: float = 180.0, poll_s: float = 0.5) -> None:
    """Until the load is on: every pod runs and a worker has recorded requests (a timeline chunk), so
    the warm-up starts under load, as it does with the local load process. A pod that exits or an image
    that cannot be pulled raises at once, with the pod's log."""
    deadline = time.monotonic() + timeout_s
    selector = f"harness.load-run={job.run_label}"
    while True:
        pods = api.list(_KIND["Pod"], job.namespace, selector)
        problems = [p for p in (_pod_problem(api, job, pod) for pod in pods) if p]
        if problems:
            raise PlatformError("the in-cluster load did not start: " + "; ".join(problems))
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if len(running) == job.workers + 1:
            for i in range(job.workers):
                code, out, _ = _exec_bytes(api, job.namespace, job.worker(i), ["ls", "/timeline"])
                if code == 0 and b"part-" in out:
                    return
        if time.monotonic() > deadline:
            states = ", ".join(f"{p['metadata']['name']} {(p.get('status') or {}).get('phase')}" for p in pods)
            raise PlatformError(f"the in-cluster load sent no request within {timeout_s:g}s ({states}); "
                                f"the master's log ends:\n{pod_log_tail(api, job.namespace, job.master)}")
        time.sleep(poll_s)


def stop_load(api: KubeApi, job: LoadJob, wait_s: float) -> str:
    """Stop a load that runs until stopped, as Ctrl-C stops Locust: SIGINT to the master (PID 1 of its
    pod), which quits the workers; their users finish the requests in flight (``--stop-timeout``), their
    timelines are flushed and ``/timeline/EXIT`` written. The master's final phase.

    SIGINT, not SIGTERM: as PID 1 the master gets only signals it has a handler for, and Locust's SIGTERM
    handler (a gevent watcher) was not installed as one there (``SigCgt`` lacks it; measured on the sandbox:
    the master ignored SIGTERM for a minute), while Python's own SIGINT handler is."""
    path = f"{_KIND['Pod'].collection(job.namespace)}/{job.master}"
    pod = api.get(path)
    if pod is None:
        raise PlatformError(f"the load master pod {job.namespace}/{job.master} disappeared")
    if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
        code, _, err = _exec_bytes(api, job.namespace, job.master,
                                   ["python3", "-c", "import os, signal; os.kill(1, signal.SIGINT)"])
        if code != 0:
            raise PlatformError(f"could not stop the load master {job.master}: exit {code}: {err.strip()[:200]}")
    return wait_for_master(api, job, wait_s)


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


def _exec_bytes(api: KubeApi, namespace: str, pod: str, command: list[str]) -> tuple[int, bytes, str]:
    code, out, err = exec_raw(api, namespace, pod, command, binary=True)
    return code, bytes(out or b""), bytes(err or b"").decode(errors="replace")


def collect_timelines(api: KubeApi, job: LoadJob, dest: Path, wait_s: float = 60.0) -> list[Path]:
    """Copy every worker's /timeline into ``dest`` as ``part-<worker>-<file>``, all workers at once, each
    checked against its manifest and put on the harness's clock; every worker must deliver
    (harness.platforms.kubernetes.timeline_copy; ``dest/workers.json`` says what came back)."""
    pods = [job.worker(i) for i in range(job.workers)]
    return copy_timelines(api, job.namespace, worker_prefixes(pods, job.base), dest, wait_s=wait_s).files


def delete_load(api: KubeApi, job: LoadJob) -> list[str]:
    """Delete every object of this load run (by its run label), pods first."""
    selector = f"harness.load-run={job.run_label}"
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
