"""``harness attach --platform kubernetes``: test a Deployment the harness did not create, and leave it as it was.

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
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, PlatformError
from harness.events import EventKind, EventLog
from harness.faults.oom_at_load import ARENA_ENV
from harness.jsonfile import write_json_atomic
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.faults import ENV_PATCH, env_patch_record, exec_raw, restore_env
from harness.platforms.kubernetes.render import MODEL_CONFIGMAP
from harness.platforms.kubernetes.usermanifest import ServiceShape, selects, shape_from_live

if TYPE_CHECKING:
    from harness.platforms.kubernetes.platform import KubernetesPlatform

__all__ = [
    "ATTACHED_FILE",
    "FAULT_LOG",
    "Attachment",
    "DetachReport",
    "attach_deployment",
    "compare",
    "detach",
    "note_deployment_fault",
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


def _record(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"name": meta.get("name"), "uid": meta.get("uid"), "generation": meta.get("generation"),
            "labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {}),
            "spec": obj.get("spec") or {}}


def _triton_container(dep: Mapping[str, Any], shape: ServiceShape) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    return dict(next((c for c in containers if c.get("name") == shape.container), containers[0]))


def _find_service(platform: KubernetesPlatform, dep: dict[str, Any], name: str) -> dict[str, Any]:
    ns, api = platform.namespace, platform.api
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


def attach_deployment(platform: KubernetesPlatform, deployment: str, service: str = "") -> Attachment:
    """Record a running Deployment as the service under test and start watching its pods.

    Reads only; the one write to the cluster is none at all. Refused when the namespace already holds an
    attachment or the harness's own service.
    """
    from harness.service import describe_endpoint

    ns, state = platform.namespace, platform.state
    if (state / ATTACHED_FILE).exists():
        current = Attachment.load(state)
        raise PlatformError(f"already attached to {current.where() if current else 'a Deployment'} (state {state}); "
                            f"run 'harness detach --platform kubernetes --namespace {ns}' first")
    if platform._read_state().get("up"):
        raise PlatformError(f"the harness's own service is up in namespace {ns} (state {state}); run 'harness down "
                            f"--platform kubernetes --namespace {ns}' first, or attach in another namespace")
    api = platform.api
    dep = api.get(f"{_KIND['Deployment'].collection(ns)}/{deployment}")
    if dep is None:
        names = sorted(d["metadata"]["name"] for d in api.list(_KIND["Deployment"], ns))
        raise ConfigError(f"no Deployment {deployment!r} in namespace {ns!r} (context "
                          f"{platform._target.context if platform._target else '?'}); the Deployments there: "
                          f"{', '.join(names) or 'none'}. Check the name with: kubectl -n {ns} get deployments")
    svc = _find_service(platform, dep, service)
    shape = shape_from_live(dep, svc, ns)
    platform.use_shape(shape, dep)
    pods = [p for p in api.list(_KIND["Pod"], ns, shape.selector_string())
            if not p["metadata"].get("deletionTimestamp")]
    if not pods:
        raise PlatformError(f"Deployment {ns}/{deployment} has no pods (replicas {dep['spec'].get('replicas')}); "
                            "the harness tests a running service")
    described = describe_endpoint(platform._endpoints([]).http, platform._endpoints([]).grpc, "kubernetes")
    if described["error"] or not described["models"]:
        raise PlatformError(f"Service {ns}/{svc['metadata']['name']} at {described['endpoint']} did not list its "
                            f"models: {described['error'] or 'no models (the repository extension is off?)'}; the "
                            "harness needs the server's model metadata to build its requests")
    try:
        code, _out, _err = exec_raw(api, ns, pods[0]["metadata"]["name"], ["python3", "-c", "pass"], timeout_s=30,
                                      container=shape.container)
        python3 = code == 0
    except Exception:  # noqa: BLE001 - any exec failure means the in-pod scripts cannot run there
        python3 = False
    run_id = "attach-" + datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    attachment = Attachment(namespace=ns, run_id=run_id, attached_ns=time.time_ns(), deployment=_record(dep),
                            service=_record(svc), shape=shape, server=described["server"],
                            models=described["models"], python3=python3)
    platform.settings.save(state)
    attachment.save(state)
    (state / "selector").write_text(shape.selector_string())
    (state / "stopping").unlink(missing_ok=True)
    (state / FAULT_LOG).unlink(missing_ok=True)
    platform._write_state({"run_id": run_id, "up": True, "attached": True, "namespace": ns,
                           "context": platform._target.context if platform._target else "",
                           "deployment": deployment, "created_namespace": False})
    try:
        platform._start_watcher()
    except PlatformError:
        (state / ATTACHED_FILE).unlink(missing_ok=True)
        platform._write_state({"run_id": run_id, "up": False, "namespace": ns})
        raise
    log = EventLog(platform.events_path(), platform="kubernetes")
    log.emit(EventKind.PLATFORM_UP, "", "attached", namespace=ns, run_id=run_id, deployment=deployment)
    log.close()
    platform.attachment = attachment
    return attachment


def note_deployment_fault(state: Path, record: Mapping[str, Any]) -> None:
    """Remember that a fault changed the attached Deployment itself (the env patch), for ``detach``."""
    with (state / FAULT_LOG).open("a") as fh:
        fh.write(json.dumps({"ts_ns": time.time_ns(), "kind": record.get("kind"), "run_id": record.get("run_id"),
                             "env": record.get("env")}, sort_keys=True) + "\n")


def _fault_notes(state: Path) -> list[dict[str, Any]]:
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
        rec = _record(now)
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


def detach(platform: KubernetesPlatform) -> DetachReport:
    """Undo every fault, stop the watcher, compare the Deployment and Service with the record, forget them."""
    attachment = platform.attachment
    if attachment is None:
        raise PlatformError(f"nothing is attached in namespace {platform.namespace} (state {platform.state})")
    state, api, ns = platform.state, platform.api, platform.namespace
    dep_path = f"{_KIND['Deployment'].collection(ns)}/{attachment.deployment['name']}"
    undone: list[str] = []
    dep = api.get(dep_path)
    if dep is not None and (record := env_patch_record(dep)) is not None:
        restore_env(api, record)
        undone.append(f"env patch of deployment {attachment.deployment['name']} (run {record.get('run_id')})")
    platform._write_state({**platform._read_state(), "up": False})  # every run of this attachment is over
    undone += platform.sweep_faults(only_orphaned=False)
    undone += platform._delete_harness_objects(platform._stale)
    if platform._stop_watcher():
        undone.append("event watcher")
    log = EventLog(platform.events_path(), platform="kubernetes")
    log.emit(EventKind.PLATFORM_DOWN, "", "detached", namespace=ns)
    log.close()
    notes = _fault_notes(state)
    changes = compare(attachment, api.get(dep_path),
                      api.get(f"{_KIND['Service'].collection(ns)}/{attachment.service['name']}"), notes)
    (state / ATTACHED_FILE).unlink(missing_ok=True)
    (state / FAULT_LOG).unlink(missing_ok=True)
    return DetachReport(undone=undone, changes=changes,
                        harness_caused=[f"{n.get('kind')} {n.get('env')}" for n in notes], where=attachment.where())


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
