"""``harness attach --platform kubernetes``: test a Deployment the harness did not create, and leave it as it was.

This module holds the attachment's record and the rules that judge it (what it found, what may be done to it,
whether it is as it was); ``KubernetesPlatform.attach`` and ``.detach`` act on the cluster with them.

State (``<k8s state dir>/<namespace>/``, the same folder ``up`` uses, so one namespace holds either the
harness's own service or an attached one):

- ``attached.json``: the Deployment and Service exactly as found (uid, generation, labels, annotations,
  spec), the ``ServiceShape`` the platform acts with, and the server's models and versions read through
  the Service; ``detach`` compares the cluster with it;
- ``attached-faults.jsonl``: one line per self-undoing change a fault made to the Deployment itself (the
  slow-load env patch), so ``detach`` can say why the generation moved;
- ``settings.json``, ``state.json``, ``selector``, ``events.jsonl``, the watcher's pid: as for ``up``.

Safety: the harness reads the Deployment and Service, and never writes to them. Faults act on the pods
(deleted, labelled for a NetworkPolicy, exec'd into) or, for the slow-load fault only, patch the
Deployment's env with the undo record in the ``harness/env-patch`` annotation. ``detach`` (and ``down``)
undoes every fault object and checks the Deployment and Service are as they were.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.faults.oom_at_load import ARENA_ENV
from harness.jsonfile import write_json_atomic
from harness.platforms.kubernetes.api import KIND_BY_NAME, KubeApi
from harness.platforms.kubernetes.faults import ENV_PATCH
from harness.platforms.kubernetes.render import MODEL_CONFIGMAP
from harness.platforms.kubernetes.usermanifest import ServiceShape, selects

__all__ = [
    "ATTACHED_FILE",
    "FAULT_LOG",
    "Attachment",
    "DetachReport",
    "compare",
    "fault_notes",
    "find_service",
    "new_attachment",
    "note_deployment_fault",
    "record_of",
    "refused_actions",
]

ATTACHED_FILE = "attached.json"
FAULT_LOG = "attached-faults.jsonl"
_KIND = KIND_BY_NAME
DELAY_ENV = "HARNESS_MODEL_LOAD_DELAY_S"  # what the reference model reads to load slowly
# Annotations the control plane itself moves; anything else that changes is reported.
_VOLATILE_ANNOTATIONS = ("deployment.kubernetes.io/revision", ENV_PATCH)


@dataclass(frozen=True)
class Attachment:
    namespace: str
    run_id: str
    attached_ns: int
    deployment: dict[str, Any]  # name, uid, generation, labels, annotations, spec
    service: dict[str, Any]  # name, uid, labels, annotations, spec
    shape: ServiceShape
    server: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    python3: bool = False  # the Triton container can run the harness's in-pod scripts

    def save(self, state: Path) -> None:
        write_json_atomic(state / ATTACHED_FILE, {
            "schema": 1, "namespace": self.namespace, "run_id": self.run_id, "attached_ns": self.attached_ns,
            "deployment": self.deployment, "service": self.service, "shape": self.shape.to_json(),
            "server": self.server, "models": self.models, "python3": self.python3})

    @classmethod
    def load(cls, state: Path) -> Attachment | None:
        path = state / ATTACHED_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(namespace=raw["namespace"], run_id=raw["run_id"], attached_ns=int(raw["attached_ns"]),
                       deployment=raw["deployment"], service=raw["service"],
                       shape=ServiceShape.from_json(raw["shape"]), server=raw.get("server") or {},
                       models=list(raw.get("models") or []), python3=bool(raw.get("python3")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the attachment at {path}: {exc}; remove the file after checking that "
                              "no fault of the harness is left in the namespace (harness cleanup)") from exc

    def where(self) -> str:
        return f"Deployment {self.namespace}/{self.deployment['name']}"


def record_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"name": meta.get("name"), "uid": meta.get("uid"), "generation": meta.get("generation"),
            "labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {}),
            "spec": obj.get("spec") or {}}


def find_service(api: KubeApi, ns: str, dep: dict[str, Any], name: str) -> dict[str, Any]:
    """The Service clients call: the one named, which must select the Deployment's pods, else the only one that does."""
    if name:
        svc = api.get(f"{_KIND['Service'].collection(ns)}/{name}")
        if svc is None:
            raise ConfigError(f"no Service {name!r} in namespace {ns}; check the name "
                              f"(kubectl -n {ns} get services) or leave --service out to find it by selector")
        if not selects(svc, dep):
            raise ConfigError(f"Service {ns}/{name} does not select the pods of Deployment "
                              f"{dep['metadata']['name']} (its selector {svc['spec'].get('selector')}, the pods' "
                              f"labels {dep['spec']['template']['metadata'].get('labels')}); name the Service "
                              "that routes to them")
        return svc
    found = [s for s in api.list(_KIND["Service"], ns) if selects(s, dep)]
    if len(found) != 1:
        listed = ", ".join(s["metadata"]["name"] for s in found)
        raise ConfigError(f"{len(found)} Services in {ns} select the pods of Deployment {dep['metadata']['name']}"
                          f"{f' ({listed})' if listed else ''}; pass --service NAME (the one clients call)")
    return found[0]


def new_attachment(ns: str, dep: Mapping[str, Any], svc: Mapping[str, Any], shape: ServiceShape,
                   described: Mapping[str, Any], python3: bool) -> Attachment:
    """The record of what ``attach`` found, named by the time it was taken."""
    run_id = "attach-" + datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return Attachment(namespace=ns, run_id=run_id, attached_ns=time.time_ns(), deployment=record_of(dep),
                      service=record_of(svc), shape=shape, server=dict(described["server"]),
                      models=list(described["models"]), python3=python3)


def note_deployment_fault(state: Path, record: Mapping[str, Any]) -> None:
    """Remember that a fault changed the attached Deployment itself (the env patch), for ``detach``."""
    with (state / FAULT_LOG).open("a") as fh:
        fh.write(json.dumps({"ts_ns": time.time_ns(), "kind": record.get("kind"), "run_id": record.get("run_id"),
                             "env": record.get("env")}, sort_keys=True) + "\n")


def fault_notes(state: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in (state / FAULT_LOG).read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def compare(attachment: Attachment, dep: Mapping[str, Any] | None, svc: Mapping[str, Any] | None,
            notes: list[dict[str, Any]]) -> list[str]:
    """How the Deployment and Service differ from when they were attached ([] when exactly as they were)."""
    changes: list[str] = []
    for what, was, now in (("Deployment", attachment.deployment, dep), ("Service", attachment.service, svc)):
        name = f"{what} {attachment.namespace}/{was['name']}"
        if now is None:
            changes.append(f"{name} no longer exists")
            continue
        rec = record_of(now)
        if rec["uid"] != was["uid"]:
            changes.append(f"{name} was replaced (uid {was['uid']} -> {rec['uid']})")
        for key in ("labels", "annotations"):
            old = {k: v for k, v in was[key].items() if k not in _VOLATILE_ANNOTATIONS}
            new = {k: v for k, v in rec[key].items() if k not in _VOLATILE_ANNOTATIONS}
            for k in sorted(set(old) | set(new)):
                if old.get(k) != new.get(k):
                    changes.append(f"{name}: {key[:-1]} {k}: {old.get(k)!r} -> {new.get(k)!r}")
        if what == "Deployment":
            for key, label in (("replicas", "spec.replicas"), ("template", "spec.template")):
                if was["spec"].get(key) != rec["spec"].get(key):
                    changes.append(f"{name}: {label} differs from when it was attached")
            rest = {k: v for k, v in was["spec"].items() if k not in ("replicas", "template")}
            if rest != {k: v for k, v in rec["spec"].items() if k not in ("replicas", "template")}:
                changes.append(f"{name}: spec (strategy, selector, ...) differs from when it was attached")
            if rec["generation"] != was["generation"]:
                faults = ", ".join(f"{n.get('kind')} {n.get('env')} (run {n.get('run_id')})" for n in notes)
                why = (f"rolled by the harness's self-undoing fault(s) {faults}, patched and restored"
                       if faults else "changed by someone else while attached")
                line = f"{name}: generation {was['generation']} -> {rec['generation']}, {why}"
                if faults:
                    line += "; its spec is as it was"
                changes.append(line)
        elif rec["spec"] != was["spec"]:
            changes.append(f"{name}: spec differs from when it was attached")
    return changes


@dataclass
class DetachReport:
    undone: list[str]
    changes: list[str]  # differences from the attach-time record; [] when exactly as found
    harness_caused: list[str]  # the self-undoing faults that moved the Deployment's generation
    where: str

    @property
    def unchanged(self) -> bool:
        """The Deployment and Service are as found, save a generation moved by a self-undoing fault."""
        return all("rolled by the harness's self-undoing" in c for c in self.changes)


def refused_actions(container: Mapping[str, Any], attached: bool, python3: bool | None,
                    pod: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Chaos Toolkit actions that cannot apply to this service, with the reason (checked before any injection).

    ``container`` is the Triton container of the Deployment's template and ``pod`` the template's pod spec;
    ``python3`` whether it can run the harness's in-pod scripts (None: not known, the harness's own image has
    it). The knobs some faults turn (a load delay, a load-time arena, the model repository the harness
    delivers) exist only with the reference model: a service without them would never show the fault, which
    could then only come out void, so it is refused up front with the reason.
    """
    refused: dict[str, str] = {}
    env = {str(e.get("name")) for e in container.get("env") or [] if isinstance(e, dict)}
    if DELAY_ENV not in env:
        slow = (f"the fault sets {DELAY_ENV}, which only the reference model reads; the Triton container "
                f"{container.get('name')!r} does not declare it, so its models would load as fast as ever and the "
                "fault could not land")
        refused["slow_model_load"] = slow
        refused["probe_kills_slow_load"] = slow + " (the probe budget is judged against that slowed load)"
    volumes = [v for v in (pod or {}).get("volumes") or [] if isinstance(v, dict)]
    reference_repo = any((v.get("configMap") or {}).get("name") == MODEL_CONFIGMAP for v in volumes)
    if not reference_repo and pod is not None:
        refused["corrupt_weights_rollout"] = (
            f"the fault corrupts the weights of the model repository the harness delivers (ConfigMap "
            f"{MODEL_CONFIGMAP}); this pod template mounts no such ConfigMap, so there is nothing it can corrupt")
        if ARENA_ENV not in env:
            refused["oom_at_load"] = (
                f"the fault makes the model reserve {ARENA_ENV} MB while it loads, which only the reference model "
                f"does; the Triton container {container.get('name')!r} serves other models, so the limit would not "
                "be crossed at load")
    limits = (container.get("resources") or {}).get("limits") or {}
    no_python = f"the Triton container {container.get('name')!r} has no python3 to run the harness's in-pod scripts"
    if "nvidia.com/gpu" not in limits and "memory" not in limits:
        refused["memory_pressure"] = (
            f"without a GPU the memory-pressure fault holds the container's memory limit minus its usage, and the "
            f"Triton container {container.get('name')!r} has no memory limit (it would starve the node instead)")
    elif python3 is False:
        refused["memory_pressure"] = f"{no_python} (the hog)"
    if python3 is False:
        refused["reload_model"] = f"{no_python} (the model-control call)"
    words = [str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])]]
    explicit = any(w == "--model-control-mode=explicit" or (w == "explicit" and i and words[i - 1] ==
                                                            "--model-control-mode") for i, w in enumerate(words))
    for action in ("unload_model", "bad_version_rollout", "queue_overflow"):  # harness.faults.model_lifecycle
        if python3 is False:
            refused[action] = f"{no_python} (the model-control calls)"
        elif not explicit and pod is not None:
            refused[action] = (f"the Triton container {container.get('name')!r} does not run with "
                               "--model-control-mode=explicit, and Triton accepts model loads and unloads only then")
    if attached:
        not_ours = ("it changes the pod spec of a Deployment the harness did not create; on an attached service "
                    "only the slow-load env patch (undo record in the cluster) may change the Deployment")
        for action in ("rolling_update", "probe_kills_slow_load", "oom_at_load", "corrupt_weights_rollout"):
            refused[action] = not_ours
    return refused
