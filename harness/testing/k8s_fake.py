"""A small, honest stand-in for a Kubernetes API server, for tests on machines without a cluster.

It is a real HTTP server on 127.0.0.1 speaking the REST paths and JSON the harness and chaosk8s use, so
the official ``kubernetes`` client and ``chaosk8s`` talk to it through an ordinary kubeconfig file with
nothing patched. Behind the API sits just enough controller behaviour to matter for resilience tests:

- a Deployment owns pods named ``<deployment>-<hash>-<suffix>``; a deleted pod is replaced, and a new pod
  becomes ready ``ready_delay_s`` after it was created (plus ``HARNESS_MODEL_LOAD_DELAY_S`` x
  ``load_delay_scale`` when its template sets that variable, so a slow-load patch really is slower);
- a changed pod template (for example an env patch) rolls the pods: one surge pod at a time, an old pod
  deleted each time a new one is ready;
- core/v1 Events (Scheduled, Started, Killing, BackOff) are recorded for pods;
- ``watch=true`` streams JSON lines (ADDED / MODIFIED / DELETED) from a resourceVersion;
- ``pods/exec`` upgrades to a WebSocket with the ``v4.channel.k8s.io`` subprotocol and runs the command
  as a host process inside the pod's own directory (absolute paths in the arguments are rebased into it);
  stdout, stderr and the exit status come back on channels 1, 2 and 3 as a kubelet sends them. The
  process gets its own network namespace (``unshare -n``), so ``localhost`` in the pod is the pod's.

What it does not do (see docs/kubernetes.md): scheduling, resource accounting (``nvidia.com/gpu`` is not
checked), field ownership in server-side apply (an apply replaces the fields it names, there are no
conflicts), strategic merge by list keys (strategic merge patches are treated as JSON merge patches),
NetworkPolicy enforcement, probes against real containers, authentication, or admission.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import shutil
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

__all__ = ["FakeCluster", "Resource"]

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Resource:
    prefix: str  # "api/v1" or "apis/<group>/<version>"
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("apis/").removeprefix("api/")


RESOURCES = (
    Resource("api/v1", "namespaces", "Namespace", namespaced=False),
    Resource("api/v1", "pods", "Pod"),
    Resource("api/v1", "services", "Service"),
    Resource("api/v1", "configmaps", "ConfigMap"),
    Resource("api/v1", "events", "Event"),
    Resource("apis/apps/v1", "deployments", "Deployment"),
    Resource("apis/networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    Resource("apis/policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("apis/monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor"),
    Resource("apis/monitoring.coreos.com/v1", "podmonitors", "PodMonitor"),
)

Key = tuple[str, str, str, str]  # prefix, plural, namespace ("" when cluster-scoped), name


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str], selector: str) -> bool:
    """Equality and existence label selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``)."""
    if not selector:
        return True
    terms: list[str] = []
    depth, cur = 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    for raw in terms:
        term = raw.strip()
        if not term:
            continue
        if " in " in term or " notin " in term:
            neg = " notin " in term
            key, values = term.split(" notin " if neg else " in ", 1)
            options = {v.strip() for v in values.strip().strip("()").split(",")}
            inside = labels.get(key.strip()) in options
            if inside == neg:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            try:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            except (KeyError, IndexError, ValueError) as exc:
                raise ApiError(422, "Invalid", f"json patch path {op['path']} does not exist") from exc
        last = parts[-1]
        kind = op["op"]
        try:
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"json patch test failed at {op['path']}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "add" and isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            elif kind in ("add", "replace"):
                if kind == "replace" and (last not in parent if isinstance(parent, dict) else False):
                    raise ApiError(422, "Invalid", f"json patch replace of missing {op['path']}")
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    parent[last] = op["value"]
            else:
                raise ApiError(422, "Invalid", f"unsupported json patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"json patch {kind} at {op['path']} failed: {exc}") from exc
    return doc


def _normalise_quantities(obj: dict[str, Any]) -> None:
    """Resource quantities come back as strings from a real API server (``1`` is returned as ``"1"``)."""
    spec = obj.get("spec") or {}
    pod_spec = ((spec.get("template") or {}).get("spec")) if "template" in spec else spec
    for container in (pod_spec or {}).get("containers") or []:
        for section in ((container.get("resources") or {}).get(k) for k in ("requests", "limits")):
            if isinstance(section, dict):
                for key, value in list(section.items()):
                    section[key] = str(value)


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

        class Handler(_Handler):
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
            cs["lastState"] = {"terminated": {"exitCode": 1, "reason": reason, "finishedAt": _now()}}
            cs["state"] = (
                {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
                if backoff
                else {"running": {"startedAt": _now()}}
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
        meta.setdefault("creationTimestamp", _now())
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
            _normalise_quantities(obj)
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
            "startTime": _now(),
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
                    "state": {"running": {"startedAt": _now()}},
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
                "creationTimestamp": _now(),
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
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
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
            _normalise_quantities(new)
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
                    cs["state"] = {"running": {"startedAt": _now()}}
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
                    and _matches(o["metadata"].get("labels") or {}, selector)
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
                    and _matches(o["metadata"].get("labels") or {}, selector)
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
                and _matches(o["metadata"].get("labels") or {}, selector)
            ]
            return {
                "apiVersion": res.api_version,
                "kind": f"{res.kind}List",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeCluster
    _raw_body = b""
    protocol_version = "HTTP/1.1"  # watch streams are chunked, as a real API server sends them

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self._raw_body
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "")
        try:
            return yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"cannot decode body: {exc}") from exc

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self._raw_body = self.rfile.read(length) if length else b""  # always: the connection is reused
        self.fake.requests.append((method, url.path))
        try:
            if url.path in ("/version", "/version/"):
                self._send(
                    200,
                    {
                        "major": "1",
                        "minor": "30",
                        "gitVersion": self.fake.git_version,
                        "gitCommit": "0" * 40,
                        "gitTreeState": "clean",
                        "buildDate": "2026-01-01T00:00:00Z",
                        "goVersion": "go1.22",
                        "compiler": "gc",
                        "platform": "linux/amd64",
                    },
                )
                return
            bare = url.path.rstrip("/")
            if bare in ("/api", "/apis", "/api/v1") or (bare.startswith("/apis/") and bare.count("/") == 3):
                self._send(200, self._discovery(bare))
                return
            self._resource(method, url.path, query)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _discovery(self, path: str) -> dict[str, Any]:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        groups: dict[str, list[str]] = {}
        for r in RESOURCES:
            if r.prefix.startswith("apis/"):
                group, version = r.prefix.split("/")[1:]
                groups.setdefault(group, [])
                if version not in groups[group]:
                    groups[group].append(version)
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        prefix = path.lstrip("/")
        found = [r for r in RESOURCES if r.prefix == prefix]
        if not found:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": found[0].api_version,
            "resources": [
                {
                    "name": r.plural,
                    "kind": r.kind,
                    "namespaced": r.namespaced,
                    "singularName": "",
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
                for r in found
            ],
        }

    def _parse(self, path: str) -> tuple[Resource, str, str, str]:
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            prefix, rest = "api/" + parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            prefix, rest = "/".join(parts[:3]), parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces" and prefix == "api/v1":
            rest = ["namespaces", rest[1]]
        if not rest:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        for res in RESOURCES:
            if res.prefix == prefix and res.plural == rest[0]:
                name = rest[1] if len(rest) > 1 else ""
                sub = rest[2] if len(rest) > 2 else ""
                return res, namespace, name, sub
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _resource(self, method: str, path: str, query: dict[str, str]) -> None:
        fake = self.fake
        res, namespace, name, sub = self._parse(path)
        key = (res.prefix, res.plural, namespace, name)
        if sub == "exec":
            self._exec(namespace, name, query)
            return
        if sub:
            raise ApiError(404, "NotFound", f"subresource {sub} is not served by the fake")
        selector = query.get("labelSelector", "")
        if method == "GET" and not name:
            if query.get("watch") in ("true", "1"):
                since = query.get("resourceVersion")
                self._stream(
                    fake.watch(
                        res,
                        namespace,
                        selector,
                        int(since) if since else None,
                        float(query.get("timeoutSeconds") or 60),
                    )
                )
            else:
                self._send(200, fake.list(res, namespace, selector))
            return
        if method == "GET":
            obj = fake.get(res.plural, namespace, name)
            if obj is None:
                raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
            self._send(200, obj)
        elif method == "POST":
            self._send(201, fake.create(res, namespace, self._body() or {}))
        elif method == "DELETE" and name:
            self._send(200, fake.delete(key))
        elif method == "PATCH" and name:
            self._send(200, self._patch(res, key, self._body(), query))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not served by the fake")

    def _patch(self, res: Resource, key: Key, body: Any, query: dict[str, str]) -> dict[str, Any]:
        fake = self.fake
        ctype = self.headers.get("Content-Type", "")
        current = fake.get(res.plural, key[2], key[3])
        if "apply-patch" in ctype:
            if not query.get("fieldManager"):
                raise ApiError(422, "Invalid", "fieldManager is required for apply patch")
            if not isinstance(body, dict) or body.get("metadata", {}).get("name") != key[3]:
                raise ApiError(400, "BadRequest", "apply body must be an object named like the path")
            if current is None:
                return fake.create(res, key[2], body)
            new = copy.deepcopy(current)
            meta = body.get("metadata") or {}
            for field in ("labels", "annotations"):
                if field in meta:
                    new["metadata"][field] = {**(new["metadata"].get(field) or {}), **meta[field]}
            for field, value in body.items():
                if field not in ("metadata", "status", "apiVersion", "kind"):
                    new[field] = value
            return fake.update(key, res, new)
        if current is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{key[3]}" not found')
        if "json-patch" in ctype:
            new = json_patch(current, body)
        elif "merge-patch" in ctype:  # merge and strategic merge (the fake does not merge lists by key)
            new = merge_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"patch content type {ctype!r} is not supported")
        return fake.update(key, res, new)

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for event in events:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- exec over WebSocket ---------------------------------------------------------------------------
    def _exec(self, namespace: str, name: str, query: dict[str, str]) -> None:
        pod = self.fake.get("pods", namespace, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if self.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "BadRequest", "exec needs a WebSocket upgrade")
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if "v4.channel.k8s.io" not in offered:
            raise ApiError(400, "BadRequest", f"no supported subprotocol in {offered}")
        accept = base64.b64encode(
            hashlib.sha1((self.headers["Sec-WebSocket-Key"] + _WS_GUID).encode()).digest()
        ).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        commands = parse_qs(urlsplit(self.path).query).get("command", [])
        root = self.fake.pod_root(namespace, name)
        status = _run_in_pod(root, pod, commands, self._ws_send)
        self._ws_send(3, json.dumps(status).encode())
        self._ws_frame(0x8, struct.pack("!H", 1000))
        self.wfile.flush()
        self.close_connection = True

    def _ws_send(self, channel: int, data: bytes) -> None:
        step = 1 << 16
        for start in range(0, max(len(data), 1), step):
            self._ws_frame(0x2, bytes([channel]) + data[start : start + step])

    def _ws_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 1 << 16:
            header += bytes([126]) + struct.pack("!H", n)
        else:
            header += bytes([127]) + struct.pack("!Q", n)
        with contextlib.suppress(OSError):  # the client went away; the exec is over for it
            self.wfile.write(header + payload)


def _run_in_pod(
    root: Path, pod: dict[str, Any], command: list[str], send: Callable[[int, bytes], None]
) -> dict[str, Any]:
    """Run ``command`` as a host process in the pod's directory, with the container's env."""
    if not command:
        return {"status": "Failure", "message": "no command given", "reason": "BadRequest"}
    container = pod["spec"]["containers"][0]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "TMPDIR": str(root / "tmp"),
        "HOSTNAME": pod["metadata"]["name"],
    }
    env.update({e["name"]: str(e.get("value", "")) for e in container.get("env") or []})
    args = [command[0]] + [str(root) + a if a.startswith("/") else a for a in command[1:]]
    # Its own network namespace, as a pod has: "localhost" in the pod must not reach this host's
    # services (another Triton on 127.0.0.1:8000 would otherwise answer an in-pod reload).
    unshare = shutil.which("unshare")
    if unshare is None:
        send(2, b"the fake needs unshare (util-linux) to give exec its own network namespace\n")
        return {"status": "Failure", "reason": "InternalError", "message": "unshare not found"}
    args = [unshare, "-n" if os.geteuid() == 0 else "-rn", *args]
    try:
        done = subprocess.run(args, cwd=root, env=env, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        send(2, f"exec: {command[0]!r}: executable file not found in $PATH\n".encode())
        return {
            "status": "Failure",
            "reason": "InternalError",
            "message": f"{command[0]}: executable file not found",
        }
    if done.stdout:
        send(1, done.stdout)
    if done.stderr:
        send(2, done.stderr)
    if done.returncode == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": f"command terminated with non-zero exit code: {done.returncode}",
        "details": {"causes": [{"reason": "ExitCode", "message": str(done.returncode)}]},
    }
