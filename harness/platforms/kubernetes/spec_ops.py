"""Pod-spec faults on Kubernetes: Deployment patches that the real controller and kubelet act on.

The faults from the field (rolling update, probe kills slow load, OOM at load, corrupt weights rollout)
change the Deployment's pod template and, for rollouts, its strategy; the Deployment controller then
replaces the pods as it always does and the kubelet runs the probes, enforces the memory limit and backs
off. Nothing here plays a pod's lifecycle: it patches, follows, and puts back.

The undo record (the template, strategy and progress deadline exactly as they were) is written before the
patch, twice: in the ``harness/spec-patch`` annotation of the Deployment (so ``harness cleanup`` restores
it from the cluster alone after a crash) and in the local undo store (so the watchdog and the runner's
close undo it when the run dies). Restoring puts the original template back in one JSON patch that also
drops the annotation: the template hash matches the old ReplicaSet again and the controller scales that
one back up, as ``kubectl rollout undo`` does. A corrupt-weights revision reads its model repository from
a ConfigMap of its own (harness labels and expiry), deleted on undo.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ConfigError, FaultError
from harness.events import Event, read_events
from harness.faults.undo import UndoRecord, UndoStore
from harness.manifest import DeploymentView, read_documents
from harness.platforms.kubernetes import rollout as k8s_rollout
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.faults import ENV_PATCH, annotation_record, merged_env
from harness.platforms.kubernetes.new_template import TemplateHost
from harness.platforms.kubernetes.render import (
    EXPIRES,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    MODEL_CONFIGMAP,
    RUN_ID,
    expiry,
    slug,
)
from harness.platforms.kubernetes.settings import KubernetesSettings

__all__ = ["SPEC_PATCH", "SPEC_UNDO_KIND", "KubernetesSpecOps", "SpecHost", "spec_patch_record", "targeting_refusal"]


class SpecHost(TemplateHost, Protocol):
    """What the pod-spec faults use of the Kubernetes platform: declared here, so this module reads on its own
    and does not import the platform that uses it (``KubernetesPlatform`` satisfies it)."""

    settings: KubernetesSettings
    state: Path

    def events_path(self) -> Path: ...

    def replica_names(self) -> list[str]: ...

SPEC_PATCH = "harness/spec-patch"  # Deployment annotation: the undo record of a pod-spec fault
SPEC_UNDO_KIND = "k8s-spec"  # its kind in the local undo store (undone by harness.watchdog too)
_KIND = KIND_BY_NAME
_PROBE_FIELDS = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
# The harness.chaos.actions entry points whose fault is a template change (every pod is replaced).
_TEMPLATE_ACTIONS = ("rolling_update", "probe_kills_slow_load", "oom_at_load", "corrupt_weights_rollout")


def targeting_refusal(func: str, arguments: Mapping[str, Any]) -> str | None:
    """Why these (substituted) arguments of a pod-spec action cannot run on Kubernetes, None when they can.

    A Deployment has one pod template: changing it replaces every pod, so a selection of some replicas
    (``mode: one``, a count, a percentage, names) cannot be honoured. Refused before anything runs, with the
    fix, instead of silently hitting every pod."""
    if func not in _TEMPLATE_ACTIONS:
        return None
    if arguments.get("names"):
        return ("names cannot pick pods for a pod-template change: a Deployment has one template and the "
                "controller replaces every pod; remove names and set mode: all")
    mode = arguments.get("mode")
    default = "all" if func in ("rolling_update", "corrupt_weights_rollout") else "one"
    if (mode or default) != "all":
        return (f"mode {mode or default!r} selects some replicas, but a pod-template change replaces every pod "
                "of the Deployment (the controller rolls them all, as its strategy allows); set mode: all "
                "(for the shipped experiments: --var probe_mode=all or --var oom_mode=all)")
    return None


def spec_patch_record(dep: Mapping[str, Any]) -> dict[str, Any] | None:
    """The undo record a Deployment carries in its annotation, None when it carries none (or garbage)."""
    return annotation_record(dep, SPEC_PATCH)


def _env(container: dict[str, Any], env: Mapping[str, str]) -> None:
    container["env"] = merged_env(container.get("env"), env)


def _probes(container: dict[str, Any], probes: Mapping[str, Mapping[str, float] | None]) -> None:
    """A probe budget: the probe's own handler (else readiness's) with the given timing; None removes it."""
    for which, budget in probes.items():
        field = _PROBE_FIELDS[which]
        if budget is None:
            container.pop(field, None)
            continue
        base = copy.deepcopy(container.get(field) or container.get("readinessProbe") or {})
        if not base:
            raise ConfigError(f"the container has no {field} and no readiness probe to borrow a handler from")
        base["initialDelaySeconds"] = int(budget.get("initial_delay_s", 0))
        base["periodSeconds"] = max(1, int(budget.get("period_s", 1)))
        base["failureThreshold"] = max(1, int(budget.get("failure_threshold", 1)))
        if which in ("startup", "liveness"):
            base["successThreshold"] = 1  # Kubernetes requires 1 for these
        container[field] = base


def _memory(container: dict[str, Any], limit_mb: float) -> None:
    """``resources.limits.memory``; a request above it comes down to it (the API refuses request > limit)."""
    from harness.manifest import parse_quantity_mb

    quantity = f"{int(limit_mb)}Mi"
    resources = container.setdefault("resources", {})
    resources.setdefault("limits", {})["memory"] = quantity
    request = (resources.get("requests") or {}).get("memory")
    if request is not None and parse_quantity_mb(request, "resources.requests.memory") > int(limit_mb):
        resources["requests"]["memory"] = quantity


def _prestop(container: dict[str, Any], prestop_s: float) -> None:
    lifecycle = container.setdefault("lifecycle", {})
    if prestop_s <= 0:
        lifecycle.pop("preStop", None)
    else:
        lifecycle["preStop"] = {"exec": {"command": ["sleep", f"{prestop_s:g}"]}}
    if not lifecycle:
        container.pop("lifecycle")


def _corrupt(data: str) -> str:
    """The base64 weight file with its last 64 bytes flipped: its SHA-256 no longer matches the manifest."""
    raw = bytearray(base64.b64decode(data))
    for i in range(max(0, len(raw) - 64), len(raw)):
        raw[i] ^= 0xFF
    return base64.b64encode(bytes(raw)).decode("ascii")


class KubernetesSpecOps:
    """``DeploymentSpecTarget`` for one ``KubernetesPlatform`` (its namespace, Deployment and settings)."""

    def __init__(self, platform: SpecHost) -> None:
        self.platform = platform

    @property
    def namespace(self) -> str:
        return self.platform.namespace

    @property
    def api(self) -> KubeApi:
        return self.platform.api

    @property
    def _path(self) -> str:
        return f"{_KIND['Deployment'].collection(self.namespace)}/{self.platform.spec.name}"

    def store(self) -> UndoStore:
        """This namespace's local undo records; a pod-spec record is undone by restoring through this platform."""
        return UndoStore(self.platform.state / "faults", {SPEC_UNDO_KIND: lambda rec: self.restore_spec(rec.payload)})

    def _live(self) -> dict[str, Any]:
        dep = self.platform.api.get(self._path)
        if dep is None:
            raise FaultError(f"Deployment {self.namespace}/{self.platform.spec.name} does not exist; run 'harness up' "
                             "first")
        if (dep["metadata"].get("labels") or {}).get(MANAGED_BY) != MANAGED_BY_VALUE:
            raise FaultError(f"Deployment {self.namespace}/{self.platform.spec.name} was not created by the harness")
        return dep

    # -- what the faults read ------------------------------------------------------------------------
    def deployment(self) -> DeploymentView:
        dep = self._live()
        return read_documents([{"apiVersion": "apps/v1", "kind": "Deployment", **dep}],
                              Path(f"deployment/{self.namespace}/{self.platform.spec.name}"))

    def events_since(self, since_ns: int) -> list[Event]:
        return [e for e in read_events(self.platform.events_path()) if e.ts_ns >= since_ns]

    def require_every_pod(self, targets: Sequence[str], fault: str) -> None:
        pods = self.platform.replica_names()  # pods being deleted are on their way out and need no targeting
        if set(pods) - set(targets):
            raise ConfigError(f"{fault} on Kubernetes changes the Deployment's pod template, which replaces every "
                              f"pod; the experiment selected {sorted(targets)} of {pods}. Set mode: all")

    def pods(self) -> list[dict[str, Any]]:
        return self.platform.api.list(_KIND["Pod"], self.namespace, self.platform.selector)

    def new_pods(self, record: Mapping[str, Any]) -> list[str]:
        """Pods of the patched template: created after the patch (not among the pods before it)."""
        before = set(record.get("pods_before") or [])
        return sorted(p["metadata"]["name"] for p in self.pods() if p["metadata"]["name"] not in before)

    # -- the patch and its undo ----------------------------------------------------------------------
    def patch_spec(self, run_id: str, change: Mapping[str, Any], max_s: float | None = None) -> dict[str, Any]:
        """Record, then patch. ``change``: ``env``, ``probes``, ``memory_limit_mb``, ``corrupt_weights``,
        ``max_surge``, ``max_unavailable``, ``prestop_s``, ``progress_deadline_s`` (absent or None: as is)."""
        api = self.platform.api
        dep = self._live()
        annotations = dep["metadata"].get("annotations") or {}
        for key in (SPEC_PATCH, ENV_PATCH):
            if key in annotations:
                owner = (json.loads(annotations[key]) if annotations[key].startswith("{") else {}).get("run_id")
                raise FaultError(f"Deployment {self.namespace}/{self.platform.spec.name} already carries a fault "
                                 f"({key}, run {owner}); restore it first (harness cleanup --platform kubernetes "
                                 f"--namespace {self.namespace})")
        spec = dep["spec"]
        original = {"template": spec["template"], "strategy": spec.get("strategy"),
                    "progressDeadlineSeconds": spec.get("progressDeadlineSeconds")}
        template = copy.deepcopy(spec["template"])
        containers = template["spec"]["containers"]  # Triton's by name: a user's first may be a sidecar
        index = next((i for i, c in enumerate(containers) if c.get("name") == self.platform.shape.container), 0)
        container = containers[index]
        if change.get("env"):
            _env(container, change["env"])
        if change.get("probes"):
            _probes(container, change["probes"])
        if change.get("memory_limit_mb") is not None:
            _memory(container, float(change["memory_limit_mb"]))
        if change.get("prestop_s") is not None:
            _prestop(container, float(change["prestop_s"]))
        weights = ""
        if change.get("corrupt_weights"):
            weights = f"harness-weights-{slug(run_id, 40)}"
            volumes = [v for v in template["spec"].get("volumes") or []
                       if (v.get("configMap") or {}).get("name") == MODEL_CONFIGMAP]
            if not volumes:
                raise FaultError(f"the pod template mounts no ConfigMap {MODEL_CONFIGMAP}: the corrupt-weights "
                                 "rollout replaces the model repository the harness delivers")
            volumes[0]["configMap"]["name"] = weights
        strategy = copy.deepcopy(spec.get("strategy") or {"type": "RollingUpdate"})
        if change.get("max_surge") is not None or change.get("max_unavailable") is not None:
            rolling = dict(strategy.get("rollingUpdate") or {})
            for key, arg in (("maxSurge", "max_surge"), ("maxUnavailable", "max_unavailable")):
                if change.get(arg) is not None:
                    rolling[key] = int(change[arg])
            strategy = {"type": "RollingUpdate", "rollingUpdate": rolling}
        deadline = spec.get("progressDeadlineSeconds")
        if change.get("progress_deadline_s") is not None:
            deadline = max(1, math.ceil(float(change["progress_deadline_s"])))
        ttl = max_s or self.platform.settings.fault_ttl_s
        record: dict[str, Any] = {
            "kind": "spec-patch", "namespace": self.namespace, "deployment": self.platform.spec.name,
            "run_id": run_id, "expires_at": expiry(ttl), "original": original, "configmap": weights,
            "change": {k: v for k, v in change.items() if v is not None}, "since_ns": time.time_ns(),
            "pods_before": sorted(p["metadata"]["name"] for p in self.pods()),
            "state_dir": str(self.platform.settings.state_dir),
        }
        undo = UndoRecord(kind=SPEC_UNDO_KIND, run_id=run_id, owner_pid=os.getpid(),
                          deadline_ns=time.time_ns() + int(ttl * 1e9), payload=record,
                          description=f"pod-spec patch of deployment {self.namespace}/{record['deployment']}")
        record["undo_id"] = undo.id
        # 1. the undo record, in the cluster and here, before anything changes
        api.patch(self._path, {"metadata": {"annotations": {SPEC_PATCH: json.dumps(record, sort_keys=True)}}})
        self.store().record(undo)  # its payload is this record (the same dict)
        try:
            if weights:
                self._create_weights(weights, run_id, record["expires_at"])
            ops: list[dict[str, Any]] = [
                {"op": "test", "path": f"/spec/template/spec/containers/{index}/name", "value": container["name"]},
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "add", "path": "/spec/strategy", "value": strategy},
            ]
            if deadline is not None:
                ops.append({"op": "add", "path": "/spec/progressDeadlineSeconds", "value": deadline})
            patched = api.patch(self._path, ops, content_type="application/json-patch+json")
        except Exception:
            self.restore_spec(record)  # nothing half-done stays behind
            raise
        record["generation"] = int(((patched or {}).get("metadata") or {}).get("generation") or 0)
        return record

    def roll_env(self, record: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """A second template change under ``record``'s undo (its ``original`` stays the template before the
        first patch, so ``restore_spec`` still puts back exactly that): ``env`` merged into Triton's container,
        and the controller rolls every pod once more. Returns the record with this rollout's ``since_ns``,
        ``pods_before`` and ``generation``, for ``follow_rollout``."""
        dep = self._live()
        live = spec_patch_record(dep)
        if live is None or live.get("run_id") != record.get("run_id"):
            raise FaultError(f"Deployment {self.namespace}/{self.platform.spec.name} no longer carries run "
                             f"{record.get('run_id')}'s patch: it was restored or changed meanwhile")
        template = copy.deepcopy(dep["spec"]["template"])
        containers = template["spec"]["containers"]
        index = next((i for i, c in enumerate(containers) if c.get("name") == self.platform.shape.container), 0)
        _env(containers[index], env)
        since, pods = time.time_ns(), sorted(p["metadata"]["name"] for p in self.pods())
        patched = self.platform.api.patch(self._path, [
            {"op": "test", "path": f"/spec/template/spec/containers/{index}/name", "value": containers[index]["name"]},
            {"op": "replace", "path": "/spec/template", "value": template}], content_type="application/json-patch+json")
        return {**record, "since_ns": since, "pods_before": pods,
                "generation": int(((patched or {}).get("metadata") or {}).get("generation") or 0)}

    def _create_weights(self, name: str, run_id: str, expires_at: str) -> None:
        """A copy of the model repository ConfigMap with one weight file corrupted, owned by the harness."""
        source = self.platform.api.get(f"{_KIND['ConfigMap'].collection(self.namespace)}/{MODEL_CONFIGMAP}")
        if source is None:
            raise FaultError(f"ConfigMap {self.namespace}/{MODEL_CONFIGMAP} is missing: nothing to corrupt")
        binary = dict(source.get("binaryData") or {})
        keys = sorted(k for k in binary if k.endswith("w1.npy")) or sorted(k for k in binary if k.endswith(".npy"))
        if not keys:
            raise FaultError(f"ConfigMap {MODEL_CONFIGMAP} holds no .npy weights to corrupt")
        binary[keys[0]] = _corrupt(binary[keys[0]])
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {MANAGED_BY: MANAGED_BY_VALUE, RUN_ID: slug(run_id)},
                             "annotations": {EXPIRES: expires_at, "harness/corrupted": keys[0]}},
                "data": dict(source.get("data") or {}), "binaryData": binary}
        self.platform.api.request("POST", _KIND["ConfigMap"].collection(self.namespace), body=body)

    def restore_spec(self, record: Mapping[str, Any], follow: bool = False) -> None:
        """Put the original template, strategy and deadline back and drop the annotation, in one patch; then
        the weights ConfigMap and the local record. Safe twice: a Deployment without this run's annotation
        was already restored.

        ``follow`` (the experiment's own undo): then follow the roll the restore starts to the end, as
        ``kubectl rollout status`` does (FaultError when it does not complete within ``ready_timeout_s``), and
        wait until the replaced pods have exited. The undo is done when the Deployment is back and the old
        pods are gone, not when the patch is accepted: with the reference's 30 s grace the steady-state check
        after a rolling update met the restore's roll half way (replicas not ready: deviated), and the old pods'
        SIGKILL at the end of their grace failed requests in the observation's last seconds (censored).
        ``cleanup``, the watchdog and the sweep only patch."""
        api = self.platform.api
        dep = api.get(self._path)
        live = spec_patch_record(dep) if dep is not None else None
        patched = None  # the restored Deployment, when this call restored it
        if dep is not None and live is not None and live.get("run_id") == record.get("run_id"):
            original = live["original"]  # the cluster's copy is the one written before the patch
            ops: list[dict[str, Any]] = [
                {"op": "replace", "path": "/spec/template", "value": original["template"]},
                {"op": "remove", "path": "/metadata/annotations/" + SPEC_PATCH.replace("~", "~0").replace("/", "~1")},
            ]
            if original.get("strategy") is not None:
                ops.append({"op": "add", "path": "/spec/strategy", "value": original["strategy"]})
            if original.get("progressDeadlineSeconds") is not None:
                ops.append({"op": "add", "path": "/spec/progressDeadlineSeconds",
                            "value": original["progressDeadlineSeconds"]})
            try:
                patched = api.patch(self._path, ops, content_type="application/json-patch+json")
            except ApiFailure as exc:
                if exc.status != 404:
                    raise FaultError(f"cannot restore the pod template of {self.namespace}/{record['deployment']}: "
                                     f"{exc}") from exc
        if record.get("configmap"):
            api.delete(f"{_KIND['ConfigMap'].collection(self.namespace)}/{record['configmap']}")
        if record.get("undo_id"):
            (self.store().directory / f"{record['undo_id']}.json").unlink(missing_ok=True)
        if follow and patched is not None and not api.dry_run:
            generation = int((patched.get("metadata") or {}).get("generation") or 0)
            k8s_rollout.follow_back(self, record["deployment"], generation, self.platform.settings.ready_timeout_s,
                                    f"the pod template of {self.namespace}/{record['deployment']}")

    def sweep(self, stale: Callable[[dict[str, Any]], bool]) -> list[str]:
        """Restore every Deployment whose spec patch is stale (``harness cleanup``, the control's sweep)."""
        done = []
        for dep in self.platform.api.list(_KIND["Deployment"], self.namespace, f"{MANAGED_BY}={MANAGED_BY_VALUE}"):
            record = spec_patch_record(dep)
            if record is not None and record.get("deployment") == dep["metadata"]["name"] and stale(record):
                KubernetesSpecOps(self.platform).restore_spec(record)
                weights = f", configmap {record['configmap']} deleted" if record.get("configmap") else ""
                done.append(f"pod-spec patch of deployment {dep['metadata']['name']} (run {record.get('run_id')}"
                            f"{weights})")
        for rec in self.store().orphaned():  # this machine's records whose run died (restoring twice is safe)
            if rec.kind == SPEC_UNDO_KIND and rec.payload.get("namespace") == self.namespace:
                self.restore_spec(rec.payload)
                (self.store().path(rec)).unlink(missing_ok=True)
                done.append(f"local undo record {rec.id} of run {rec.run_id}")
        return done

    # -- following what the controller and the kubelet do --------------------------------------------
    def follow_rollout(self, record: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        return k8s_rollout.follow(self, record, timeout_s)

    def rollout_phases(self, since_ns: int, old_pods: Sequence[str], new_pods: Sequence[str]) -> list[dict[str, Any]]:
        return k8s_rollout.phases(self.events_since(since_ns), old_pods, new_pods)

    def memory_limit_seen(self, pod: str) -> str:
        from harness.platforms.kubernetes import faults

        command = ["sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]
        try:
            raw = faults.exec_in_pod(self.platform.api, self.namespace, pod, command, 30).strip()
        except FaultError as exc:
            return f"unreadable ({str(exc)[:160]})"
        return f"{int(raw) / 2**20:g} MiB" if raw.isdigit() and int(raw) < 2**60 else f"{raw or '?'} (no limit)"

    def model_reason(self, pod: str, model: str = "mlp") -> str:
        """Why the model is not ready on ``pod``, from Triton's repository index (through exec)."""
        from harness.platforms.kubernetes import faults

        script = ("import json,sys,urllib.request as u\n"
                  "r=u.urlopen(u.Request('http://localhost:8000/v2/repository/index',data=b'{}',method='POST'),"
                  "timeout=5)\n"
                  "print(json.dumps([m for m in json.load(r) if m.get('name')==sys.argv[1]]))")
        try:
            out = faults.exec_in_pod(self.platform.api, self.namespace, pod, ["python3", "-c", script, model], 30)
            models = json.loads(out or "[]")
        except (FaultError, ValueError) as exc:
            return f"cannot read the model state: {str(exc)[:200]}"
        if not models:
            return f"model {model} not in the repository index"
        return f"{models[0].get('state', '?')}: {models[0].get('reason', '')}"
