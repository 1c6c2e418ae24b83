"""The fake API server's store, watches and controllers (Deployments, pod readiness, Events)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from harness.testing.k8s_fake._model import ApiError, Key, Resource, matches, normalise_quantities, utc_now
from harness.testing.k8s_fake._server import FakeApiHandler

__all__ = ["FakeCluster"]


class FakeCluster:
    """The API server, its object store and its controllers. Use as a context manager."""

    def __init__(
        self,
        root: Path,
        ready_delay_s: float = 0.4,
        load_delay_scale: float = 0.1,
        tick_s: float = 0.05,
        git_version: str = "v1.30.0-fake",
    ) -> None:
        self.root = root
        self.ready_delay_s = ready_delay_s
        self.load_delay_scale = load_delay_scale
        self.tick_s = tick_s
        self.git_version = git_version
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served
        self._objects: dict[Key, dict[str, Any]] = {}
        self._changes: list[tuple[int, str, Key, dict[str, Any]]] = []
        self._rv = 0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._ready_at: dict[Key, float] = {}
        self._seq = 0

    # -- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> FakeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        cluster = self

        class Handler(FakeApiHandler):
            fake = cluster

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        for target in (self._server.serve_forever, self._controller_loop):
            thread = threading.Thread(target=target, daemon=True, name=f"k8s-fake-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        self.add_namespace("default")

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path, context: str = "fake-staging", namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- test helpers (what a kubelet or a crash would do) ------------------------------------------
    def add_namespace(self, name: str) -> None:
        with self._cond:
            if ("api/v1", "namespaces", "", name) not in self._objects:
                self._store(
                    ("api/v1", "namespaces", "", name),
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                    "ADDED",
                )

    def objects(self, plural: str, namespace: str = "") -> list[dict[str, Any]]:
        with self._cond:
            return [
                copy.deepcopy(o)
                for k, o in self._objects.items()
                if k[1] == plural and (not namespace or k[2] == namespace)
            ]

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            for k, o in self._objects.items():
                if k[1] == plural and k[2] == namespace and k[3] == name:
                    return copy.deepcopy(o)
        return None

    def pod_root(self, namespace: str, name: str) -> Path:
        """The directory that plays the pod's filesystem for exec."""
        return self.root / "pods" / namespace / name

    def crash_container(self, namespace: str, pod: str, reason: str = "Error", backoff: bool = True) -> None:
        """The container exits: restartCount goes up, the pod is not ready until it has started again."""
        with self._cond:
            key = ("api/v1", "pods", namespace, pod)
            obj = copy.deepcopy(self._objects[key])
            cs = obj["status"]["containerStatuses"][0]
            cs["restartCount"] += 1
            cs["ready"] = False
            cs["lastState"] = {"terminated": {"exitCode": 1, "reason": reason, "finishedAt": utc_now()}}
            cs["state"] = (
                {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
                if backoff
                else {"running": {"startedAt": utc_now()}}
            )
            self._set_ready(obj, False)
            self._ready_at[key] = time.monotonic() + self.ready_delay_s
            self._store(key, obj, "MODIFIED")
            if backoff:
                self._event(obj, "BackOff", "Back-off restarting failed container", "Warning")

    def finish_pod(self, namespace: str, pod: str, phase: str = "Succeeded") -> None:
        """A bare pod's container ran to completion (a load worker or master that finished)."""
        with self._cond:
            key = ("api/v1", "pods", namespace, pod)
            obj = copy.deepcopy(self._objects[key])
            obj["status"]["phase"] = phase
            self._set_ready(obj, False)
            code = 0 if phase == "Succeeded" else 1
            obj["status"]["containerStatuses"][0]["state"] = {
                "terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
            }
            self._ready_at.pop(key, None)
            self._store(key, obj, "MODIFIED")

    # -- store ---------------------------------------------------------------------------------------
    def _store(self, key: Key, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        """Record a change; the caller holds the lock."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            self._objects.pop(key, None)
            self._ready_at.pop(key, None)
        else:
            self._objects[key] = obj
        self._changes.append((self._rv, kind, key, copy.deepcopy(obj)))
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def _new_meta(self, obj: dict[str, Any], namespace: str) -> None:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", utc_now())
        meta.setdefault("generation", 1)
        if namespace:
            meta["namespace"] = namespace

    def create(self, res: Resource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            name = obj.get("metadata", {}).get("name")
            if not name and obj.get("metadata", {}).get("generateName"):
                self._seq += 1
                name = f"{obj['metadata']['generateName']}{self._seq:05x}"
                obj["metadata"]["name"] = name
            if not name:
                raise ApiError(422, "Invalid", f"{res.kind}: metadata.name is required")
            if res.namespaced and ("api/v1", "namespaces", "", namespace) not in self._objects:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
            key = (res.prefix, res.plural, namespace if res.namespaced else "", name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
            obj = copy.deepcopy(obj)
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            normalise_quantities(obj)
            self._new_meta(obj, namespace if res.namespaced else "")
            if res.plural == "pods":
                self._init_pod(key, obj)
            return self._store(key, obj, "ADDED")

    def _init_pod(self, key: Key, obj: dict[str, Any]) -> None:
        container = obj["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
        delay = self.ready_delay_s
        with contextlib.suppress(ValueError):  # a non-number loads as fast as an unset variable
            delay += float(env.get("HARNESS_MODEL_LOAD_DELAY_S") or 0) * self.load_delay_scale
        self._ready_at[key] = time.monotonic() + delay
        self._seq += 1
        obj["status"] = {
            "phase": "Running",
            "podIP": f"10.244.{(self._seq >> 8) & 255}.{self._seq & 255}",
            "startTime": utc_now(),
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "ContainersReady", "status": "False"},
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "ready": False,
                    "restartCount": 0,
                    "image": container.get("image", ""),
                    "imageID": f"fake://{container.get('image', '')}",
                    "containerID": f"fake://{uuid.uuid4().hex}",
                    "started": True,
                    "state": {"running": {"startedAt": utc_now()}},
                }
            ],
        }
        root = self.pod_root(key[2], key[3])
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self._event(obj, "Scheduled", f"Successfully assigned {key[2]}/{key[3]} to fake-node")
        self._event(obj, "Started", f"Started container {container['name']}")

    def _event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        meta = obj["metadata"]
        self._seq += 1
        name = f"{meta['name']}.{self._seq:x}"
        key = ("api/v1", "events", meta["namespace"], name)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": utc_now(),
            },
            "involvedObject": {
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": utc_now(),
            "lastTimestamp": utc_now(),
            "source": {"component": "fake-kubelet"},
        }
        self._store(key, event, "ADDED")

    def _set_ready(self, pod: dict[str, Any], ready: bool) -> None:
        value = "True" if ready else "False"
        for cond in pod["status"]["conditions"]:
            cond["status"] = value
        for cs in pod["status"]["containerStatuses"]:
            cs["ready"] = ready

    def delete(self, key: Key) -> dict[str, Any]:
        with self._cond:
            obj = self._objects.get(key)
            if obj is None:
                raise ApiError(404, "NotFound", f'{key[1]} "{key[3]}" not found')
            if key[1] == "pods" and "namespace" in obj["metadata"]:
                self._event(obj, "Killing", f"Stopping container {obj['spec']['containers'][0]['name']}")
            gone = self._store(key, copy.deepcopy(obj), "DELETED")
            uid = obj["metadata"].get("uid")
            # Garbage collection: dependants by ownerReference, everything inside a deleted namespace.
            for other_key, other in list(self._objects.items()):
                owners = other["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners) or (key[1] == "namespaces" and other_key[2] == key[3]):
                    self.delete(other_key)
            if key[1] == "pods":
                shutil.rmtree(self.pod_root(key[2], key[3]), ignore_errors=True)
            return gone

    def update(self, key: Key, res: Resource, new: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            old = self._objects[key]
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            normalise_quantities(new)
            for field in ("uid", "creationTimestamp", "name", "namespace"):
                if field in old["metadata"]:
                    new["metadata"][field] = old["metadata"][field]
            if "status" in old:
                new["status"] = old["status"] if "status" not in new or res.plural != "pods" else new["status"]
            generation = old["metadata"].get("generation", 1)
            if old.get("spec") != new.get("spec"):
                generation += 1
            new["metadata"]["generation"] = generation
            return self._store(key, new, "MODIFIED")

    # -- controllers ---------------------------------------------------------------------------------
    def _controller_loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                self._reconcile()
            self._stopping.wait(self.tick_s)

    def _reconcile(self) -> None:
        now = time.monotonic()
        for key, when in list(self._ready_at.items()):
            if now >= when and key in self._objects:
                pod = copy.deepcopy(self._objects[key])
                cs = pod["status"]["containerStatuses"][0]
                if "waiting" in cs["state"]:
                    cs["state"] = {"running": {"startedAt": utc_now()}}
                self._set_ready(pod, True)
                del self._ready_at[key]
                self._store(key, pod, "MODIFIED")
        for key, dep in list(self._objects.items()):
            if key[1] == "deployments":
                self._reconcile_deployment(key, dep)

    def _reconcile_deployment(self, key: Key, dep: dict[str, Any]) -> None:
        ns, name = key[2], key[3]
        template = dep["spec"]["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        uid = dep["metadata"]["uid"]
        owned = [
            (k, p)
            for k, p in self._objects.items()
            if k[1] == "pods" and any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])
        ]
        current = [(k, p) for k, p in owned if p["metadata"]["labels"].get("pod-template-hash") == digest]
        old = [(k, p) for k, p in owned if p["metadata"]["labels"].get("pod-template-hash") != digest]
        desired = int(dep["spec"].get("replicas", 1))
        ready_current = [p for _, p in current if p["status"]["containerStatuses"][0]["ready"]]
        if len(current) < desired and len(current) + len(old) < desired + 1:
            self._seq += 1
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-{digest[:8]}-{self._seq:05x}",
                    "labels": {**(template["metadata"].get("labels") or {}), "pod-template-hash": digest},
                    "annotations": dict(template["metadata"].get("annotations") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": name,
                            "uid": uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template["spec"]),
            }
            self._new_meta(pod, ns)
            pkey = ("api/v1", "pods", ns, pod["metadata"]["name"])
            self._init_pod(pkey, pod)
            self._store(pkey, pod, "ADDED")
        elif old and (len(ready_current) + len(old) > desired or (not current and desired == 0)):
            self.delete(old[0][0])
        elif len(current) > desired:
            self.delete(sorted(current, key=lambda kp: kp[1]["metadata"]["name"])[-1][0])
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": len(owned),
            "updatedReplicas": len(current),
            "readyReplicas": len(ready_current)
            + sum(1 for _, p in old if p["status"]["containerStatuses"][0]["ready"]),
            "availableReplicas": len(ready_current),
        }
        if dep.get("status") != status:
            new = copy.deepcopy(dep)
            new["status"] = status
            self._store(key, new, "MODIFIED")

    # -- watch ---------------------------------------------------------------------------------------
    def watch(
        self, res: Resource, namespace: str, selector: str, since: int | None, timeout_s: float
    ) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if since is None:
                cursor = self._rv
                initial = [
                    copy.deepcopy(o)
                    for k, o in self._objects.items()
                    if k[:2] == (res.prefix, res.plural)
                    and (not namespace or k[2] == namespace)
                    and matches(o["metadata"].get("labels") or {}, selector)
                ]
            else:
                cursor, initial = since, []
        for obj in initial:
            yield {"type": "ADDED", "object": obj}
        while not self._stopping.is_set():
            with self._cond:
                batch = [
                    (rv, kind, o)
                    for rv, kind, k, o in self._changes
                    if rv > cursor
                    and k[:2] == (res.prefix, res.plural)
                    and (not namespace or k[2] == namespace)
                    and matches(o["metadata"].get("labels") or {}, selector)
                ]
                cursor = self._rv
                if not batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._cond.wait(min(remaining, 0.5))
                    continue
            for _, kind, obj in batch:
                yield {"type": kind, "object": obj}

    def list(self, res: Resource, namespace: str, selector: str) -> dict[str, Any]:
        with self._cond:
            items = [
                copy.deepcopy(o)
                for k, o in sorted(self._objects.items())
                if k[:2] == (res.prefix, res.plural)
                and (not namespace or k[2] == namespace)
                and matches(o["metadata"].get("labels") or {}, selector)
            ]
            return {
                "apiVersion": res.api_version,
                "kind": f"{res.kind}List",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
