"""The Kubernetes platform: ``up``, ``status``, ``down``, ``cleanup``, ``attach``; its fault operations are
``KubernetesFaultOps`` (``fault_ops.py``), handed out by ``fault_ops()`` as the local platform hands out its own.

Safety holds for every method: the namespace was allowed and the context checked when the client was
built (``connect``), and the only objects changed are those carrying the harness's labels, plus the pods
of the Deployment under test (deleted, labelled for a network block, exec'd into).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from harness.deployment import DEFAULT_MANIFEST, load_manifest_documents
from harness.errors import ConfigError, PlatformError
from harness.events import EventKind, EventLog
from harness.faults.undo import UndoStore
from harness.load.settings import LoadSettings
from harness.platforms.base import CleanupReport, Endpoints, PlatformStatus
from harness.platforms.kubernetes import attach, faults, memagent, model_ops, netagent, spec_ops
from harness.platforms.kubernetes.api import KIND_BY_NAME, SWEPT_KINDS, ApiFailure, KubeApi
from harness.platforms.kubernetes.connect import Target, connect
from harness.platforms.kubernetes.fault_ops import KubernetesFaultOps
from harness.platforms.kubernetes.load import LoadJob, run_distributed_load
from harness.platforms.kubernetes.pods import parse_time, pod_ready, pod_reason, replica_status
from harness.platforms.kubernetes.render import (
    EXPIRES,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    RUN_ID,
    expiry,
    harness_selector,
    label,
    render_service,
    slug,
)
from harness.platforms.kubernetes.settings import MONITORING_MANIFEST, KubernetesSettings
from harness.platforms.kubernetes.usermanifest import (
    ServiceShape,
    deployment_spec,
    manifest_spec,
    shape_from_live,
    template_images,
)
from harness.platforms.kubernetes.watcher import start_watcher, stop_watcher, watcher_pid

__all__ = ["KubernetesPlatform"]

_KIND = KIND_BY_NAME
NAMESPACE_GONE_S = 120.0  # how long up waits for a namespace that down is still deleting


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(self, settings: KubernetesSettings) -> None:
        self.settings = settings
        self.state = settings.state_dir / settings.namespace
        # The service under test: an attached Deployment (harness attach), else the manifest's (up).
        self.attachment = attach.Attachment.load(self.state)
        if self.attachment is not None:
            found = self.attachment.deployment
            self.use_shape(self.attachment.shape, {"metadata": {"name": found["name"]}, "spec": found["spec"]})
        else:
            self.shape, self.spec = manifest_spec(settings.manifest, settings.namespace)
        self._api: KubeApi | None = None
        self._target: Target | None = None
        self._created_namespace = False
        self._service_address: str | None = None

    # -- plumbing ------------------------------------------------------------------------------------
    def use_shape(self, shape: ServiceShape, dep: dict[str, Any]) -> None:
        """Act on this Deployment and Service (``harness attach`` found them in the cluster)."""
        self.shape, self.spec = shape, deployment_spec(dep, shape, shape.source)
        self._service_address = None

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api, self._target = connect(self.settings)
        return self._api

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    @property
    def selector(self) -> str:
        """The pods of the Deployment under test."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.spec.labels.items()))

    def events_path(self) -> Path:
        return self.state / "events.jsonl"

    def _read_state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state / "state.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _write_state(self, data: dict[str, Any]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "state.json").write_text(json.dumps(data, indent=2, sort_keys=True))

    def _deployment_path(self) -> str:
        return f"{_KIND['Deployment'].collection(self.namespace)}/{self.spec.name}"

    def _objects(self, run_id: str) -> list[dict[str, Any]]:
        monitoring = MONITORING_MANIFEST if self.settings.prometheus_operator else None
        return render_service(
            self.settings.manifest,
            run_id,
            expiry(self.settings.ttl_s),
            replicas=self.settings.replicas,
            gpus_per_replica=self.settings.gpus_per_replica,
            image=self.settings.image,
            monitoring=monitoring,
        )

    # -- lifecycle -----------------------------------------------------------------------------------
    def up(self, replicas: int | None = None) -> PlatformStatus:
        if replicas is not None:
            self.settings = KubernetesSettings.from_json({**self.settings.to_json(), "replicas": replicas})
        if self.attachment is not None:
            raise PlatformError(f"attached to {self.attachment.where()}, which the harness did not create; "
                                f"'harness detach --platform kubernetes --namespace {self.namespace}' first")
        run_id = "up-" + datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        objects = self._objects(run_id)
        api = self.api
        if self.settings.dry_run:
            return self._dry_up(objects)
        self._ensure_namespace(run_id)
        foreign = []
        for obj in objects:
            collection = api.resolve(_KIND[obj["kind"]]).collection(self.namespace)
            existing = api.get(f"{collection}/{obj['metadata']['name']}")
            if existing is not None and (existing["metadata"].get("labels") or {}).get(MANAGED_BY) != MANAGED_BY_VALUE:
                foreign.append(f"{obj['kind']} {obj['metadata']['name']}")
        if foreign:
            raise PlatformError(
                f"namespace {self.namespace} already has objects the harness did not create: "
                f"{', '.join(foreign)}; the harness never changes them. "
                f"Use another namespace or remove them yourself"
            )
        self.state.mkdir(parents=True, exist_ok=True)
        self._keep_applied_manifest()
        self.settings.save(self.state)
        (self.state / "selector").write_text(self.selector)
        (self.state / "stopping").unlink(missing_ok=True)
        self._write_state(
            {
                "run_id": run_id,
                "up": True,
                "context": self._target.context if self._target else "",
                "namespace": self.namespace,
                "deployment": self.spec.name,
                "created_namespace": self._read_state().get("created_namespace", False) or self._created_namespace,
            }
        )
        start_watcher(self.state)
        try:
            for obj in objects:
                api.apply(obj, self.namespace)
        except PlatformError as exc:
            stop_watcher(self.state)
            raise PlatformError(
                f"{exc}\nSome objects may have been applied; remove them with: harness down --platform "
                f"kubernetes --namespace {self.namespace}"
            ) from exc
        self.wait_rolled_out(self.settings.ready_timeout_s)
        log = EventLog(self.events_path(), platform="kubernetes")
        log.emit(EventKind.PLATFORM_UP, "", "rolled out", namespace=self.namespace, run_id=run_id)
        log.close()
        return self.status()

    def _keep_applied_manifest(self) -> None:
        """Keep a copy of a user's manifest as applied: later commands (run, status, down) read the copy, so
        editing the file after ``up`` cannot make them disagree with what is in the cluster."""
        if self.settings.manifest == DEFAULT_MANIFEST:
            return
        copy = self.state / "applied-manifest.yaml"
        if self.settings.manifest.resolve() != copy.resolve():
            shutil.copyfile(self.settings.manifest, copy)
        self.settings = KubernetesSettings.from_json({**self.settings.to_json(), "manifest": str(copy)})

    def _ensure_namespace(self, run_id: str) -> None:
        path = f"{_KIND['Namespace'].collection('')}/{self.namespace}"
        found = self.api.get(path)
        deadline = time.monotonic() + NAMESPACE_GONE_S
        # ``down`` deletes the namespace and returns; the API refuses new objects in it until it is gone (403,
        # "being terminated"), so an ``up`` right after a ``down`` failed half applied. Wait for it instead.
        while found is not None and (found.get("status") or {}).get("phase") == "Terminating":
            if time.monotonic() > deadline:
                raise PlatformError(f"namespace {self.namespace} is still being deleted after {NAMESPACE_GONE_S:g}s "
                                    "(a finalizer may hold it: kubectl get namespace -o yaml); try again later")
            time.sleep(1.0)
            found = self.api.get(path)
        if found is not None:
            return
        ns = label(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
            run_id,
            expiry(self.settings.ttl_s),
        )
        self.api.request("POST", _KIND["Namespace"].collection(""), body=ns)
        self._created_namespace = True

    def _dry_up(self, objects: list[dict[str, Any]]) -> PlatformStatus:
        out = self.api.out
        ctx = self._target.context if self._target else "(no kubeconfig)"
        out(f"[dry-run] context {ctx}, namespace {self.namespace}: these calls would be made, none is")
        self.api.get(f"{_KIND['Namespace'].collection('')}/{self.namespace}")
        out(f"[dry-run] POST {_KIND['Namespace'].collection('')} (only when the namespace does not exist yet)")
        for obj in objects:
            self.api.get(f"{self.api.resolve(_KIND[obj['kind']]).collection(self.namespace)}/{obj['metadata']['name']}")
        for obj in objects:
            self.api.apply(obj, self.namespace)
        self.api.request("GET", self._deployment_path())
        out("[dry-run] then: watch pods until the Deployment is rolled out; start the event watcher")
        return PlatformStatus(
            self.name,
            False,
            self._endpoints([]),
            (),
            {"dry_run": True, "namespace": self.namespace, "context": ctx},
        )

    def wait_rolled_out(self, timeout_s: float) -> None:
        """Until every pod runs the current template and is ready (``kubectl rollout status``)."""
        deadline = time.monotonic() + timeout_s
        last = "no status yet"
        while time.monotonic() < deadline:
            dep = self.api.get(self._deployment_path())
            if dep is None:
                raise PlatformError(f"Deployment {self.spec.name} disappeared from {self.namespace}")
            want = int(dep["spec"].get("replicas", 1))
            st = dep.get("status") or {}
            pods = [
                p
                for p in self.api.list(_KIND["Pod"], self.namespace, self.selector)
                if not p["metadata"].get("deletionTimestamp")
            ]  # terminating pods are on their way out
            ready = sum(1 for p in pods if pod_ready(p))
            if (
                st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1)
                and st.get("updatedReplicas") == want
                and st.get("readyReplicas") == want
                and st.get("replicas") == want
                and ready == want
                and len(pods) == want
            ):
                return
            last = f"{ready}/{want} ready, {st.get('updatedReplicas', 0)} updated, {len(pods)} pods: " + "; ".join(
                f"{p['metadata']['name']} {pod_reason(p) or 'starting'}" for p in pods if not pod_ready(p)
            )
            time.sleep(0.2)
        raise PlatformError(
            f"Deployment {self.namespace}/{self.spec.name} was not rolled out within {timeout_s:g}s "
            f"({last}). The objects were left for you to inspect "
            f"(kubectl -n {self.namespace} describe pods); "
            f"remove them with: harness down --platform kubernetes --namespace {self.namespace}"
        )

    # -- attach / detach (harness attach --platform kubernetes) ------------------------------------------
    def attach_deployment(self, deployment: str, service: str = "") -> attach.Attachment:
        """Record a running Deployment as the service under test and start watching its pods.

        Reads only; the one write to the cluster is none at all. Refused when the namespace already holds an
        attachment or the harness's own service.
        """
        from harness.service import describe_endpoint  # it reads Triton through this platform's Service

        ns, state = self.namespace, self.state
        if (state / attach.ATTACHED_FILE).exists():
            current = attach.Attachment.load(state)
            raise PlatformError(f"already attached to {current.where() if current else 'a Deployment'} (state "
                                f"{state}); run 'harness detach --platform kubernetes --namespace {ns}' first")
        if self._read_state().get("up"):
            raise PlatformError(f"the harness's own service is up in namespace {ns} (state {state}); run 'harness down "
                                f"--platform kubernetes --namespace {ns}' first, or attach in another namespace")
        api = self.api
        dep = api.get(f"{_KIND['Deployment'].collection(ns)}/{deployment}")
        if dep is None:
            names = sorted(d["metadata"]["name"] for d in api.list(_KIND["Deployment"], ns))
            raise ConfigError(f"no Deployment {deployment!r} in namespace {ns!r} (context "
                              f"{self._target.context if self._target else '?'}); the Deployments there: "
                              f"{', '.join(names) or 'none'}. Check the name with: kubectl -n {ns} get deployments")
        svc = attach.find_service(api, ns, dep, service)
        shape = shape_from_live(dep, svc, ns)
        self.use_shape(shape, dep)
        pods = [p for p in api.list(_KIND["Pod"], ns, shape.selector_string())
                if not p["metadata"].get("deletionTimestamp")]
        if not pods:
            raise PlatformError(f"Deployment {ns}/{deployment} has no pods (replicas {dep['spec'].get('replicas')}); "
                                "the harness tests a running service")
        described = describe_endpoint(self._endpoints([]).http, self._endpoints([]).grpc, "kubernetes")
        if described["error"] or not described["models"]:
            raise PlatformError(f"Service {ns}/{svc['metadata']['name']} at {described['endpoint']} did not list its "
                                f"models: {described['error'] or 'no models (the repository extension is off?)'}; the "
                                "harness needs the server's model metadata to build its requests")
        try:
            code, _out, _err = faults.exec_raw(api, ns, pods[0]["metadata"]["name"], ["python3", "-c", "pass"],
                                               timeout_s=30, container=shape.container)
            python3 = code == 0
        except Exception:  # noqa: BLE001 - any exec failure means the in-pod scripts cannot run there
            python3 = False
        attachment = attach.new_attachment(ns, dep, svc, shape, described, python3)
        run_id = attachment.run_id
        self.settings.save(state)
        attachment.save(state)
        (state / "selector").write_text(shape.selector_string())
        (state / "stopping").unlink(missing_ok=True)
        (state / attach.FAULT_LOG).unlink(missing_ok=True)
        self._write_state({"run_id": run_id, "up": True, "attached": True, "namespace": ns,
                           "context": self._target.context if self._target else "",
                           "deployment": deployment, "created_namespace": False})
        try:
            start_watcher(self.state)
        except PlatformError:
            (state / attach.ATTACHED_FILE).unlink(missing_ok=True)
            self._write_state({"run_id": run_id, "up": False, "namespace": ns})
            raise
        log = EventLog(self.events_path(), platform="kubernetes")
        log.emit(EventKind.PLATFORM_UP, "", "attached", namespace=ns, run_id=run_id, deployment=deployment)
        log.close()
        self.attachment = attachment
        return attachment

    def detach(self) -> attach.DetachReport:
        """Undo every fault, stop the watcher, compare the Deployment and Service with the record, forget them."""
        attachment = self.attachment
        if attachment is None:
            raise PlatformError(f"nothing is attached in namespace {self.namespace} (state {self.state})")
        state, api, ns = self.state, self.api, self.namespace
        dep_path = f"{_KIND['Deployment'].collection(ns)}/{attachment.deployment['name']}"
        undone: list[str] = []
        dep = api.get(dep_path)
        if dep is not None and (record := faults.env_patch_record(dep)) is not None:
            faults.restore_env(api, record)
            undone.append(f"env patch of deployment {attachment.deployment['name']} (run {record.get('run_id')})")
        self._write_state({**self._read_state(), "up": False})  # every run of this attachment is over
        undone += self.sweep_faults(only_orphaned=False)
        undone += self._delete_harness_objects(self._stale)
        if stop_watcher(self.state):
            undone.append("event watcher")
        log = EventLog(self.events_path(), platform="kubernetes")
        log.emit(EventKind.PLATFORM_DOWN, "", "detached", namespace=ns)
        log.close()
        notes = attach.fault_notes(state)
        changes = attach.compare(attachment, api.get(dep_path),
                          api.get(f"{_KIND['Service'].collection(ns)}/{attachment.service['name']}"), notes)
        (state / attach.ATTACHED_FILE).unlink(missing_ok=True)
        (state / attach.FAULT_LOG).unlink(missing_ok=True)
        return attach.DetachReport(undone=undone, changes=changes,
                            harness_caused=[f"{n.get('kind')} {n.get('env')}" for n in notes], where=attachment.where())

    def down(self) -> CleanupReport:
        if self.attachment is not None:  # never delete what the harness did not create: detach instead
            detached = self.detach()
            verdict = ("exactly as at attach" if not detached.changes else "as at attach" if detached.unchanged
                       else "CHANGED since attach: " + "; ".join(detached.changes))
            return CleanupReport(killed=[u for u in detached.undone if u == "event watcher"],
                                 removed=[*(u for u in detached.undone if u != "event watcher"),
                                          f"the attachment to {detached.where} (left running, {verdict})"])
        report = CleanupReport()
        api = self.api
        if not api.dry_run:
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / "stopping").write_text("down")
        state = self._read_state()
        pods = (
            []
            if api.dry_run
            else [p["metadata"]["name"] for p in api.list(_KIND["Pod"], self.namespace, self.selector)]
        )
        report.removed += self._delete_harness_objects(lambda obj: True)
        if not api.dry_run:
            deadline = time.monotonic() + 120
            while api.list(_KIND["Pod"], self.namespace, self.selector) and time.monotonic() < deadline:
                time.sleep(0.2)
            report.killed += [f"pod {p}" for p in pods]
            self._wait_events_for(pods, deadline=time.monotonic() + 3)
        if not api.dry_run and stop_watcher(self.state):
            report.killed.append("event watcher")
        if state.get("created_namespace"):
            ns = api.get(f"{_KIND['Namespace'].collection('')}/{self.namespace}")
            if api.dry_run or (
                ns is not None and (ns["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGED_BY_VALUE
            ):
                api.delete(f"{_KIND['Namespace'].collection('')}/{self.namespace}")
                report.removed.append(f"namespace {self.namespace}")
                state["created_namespace"] = False
        if not api.dry_run:
            if state:
                log = EventLog(self.events_path(), platform="kubernetes")
                log.emit(EventKind.PLATFORM_DOWN, "", "down", namespace=self.namespace)
                log.close()
            self._write_state({**state, "up": False})
        return report

    def _wait_events_for(self, pods: list[str], deadline: float) -> None:
        """Give the watcher a moment to record the deletions before it is stopped."""
        from harness.events import read_events

        while time.monotonic() < deadline:
            gone = {
                e.replica for e in read_events(self.events_path()) if e.kind in (EventKind.STOPPED, EventKind.KILLED)
            }
            if set(pods) <= gone:
                return
            time.sleep(0.1)

    def _delete_harness_objects(self, wanted: Callable[[dict[str, Any]], bool]) -> list[str]:
        """Delete every harness-labelled object (of the swept kinds) for which ``wanted`` holds.

        Bare pods the harness created (load master and workers) are swept too; pods owned by a
        Deployment are left to their Deployment.
        """
        removed = []
        api = self.api
        for wanted_kind in (*SWEPT_KINDS, _KIND["Pod"]):
            kind = api.resolve(wanted_kind)
            try:
                objs = api.list(kind, self.namespace, harness_selector())
            except ApiFailure as exc:
                if exc.status == 404 and kind.kind in ("ServiceMonitor", "PodMonitor"):
                    continue  # no Prometheus Operator in this cluster
                raise
            for obj in objs:
                labels = obj["metadata"].get("labels") or {}
                if labels.get(MANAGED_BY) != MANAGED_BY_VALUE or not wanted(obj):
                    continue
                if kind.kind == "Pod" and obj["metadata"].get("ownerReferences"):
                    continue
                if api.delete(f"{kind.collection(self.namespace)}/{obj['metadata']['name']}"):
                    removed.append(f"{kind.kind.lower()} {obj['metadata']['name']}")
            if api.dry_run:
                self.api.out(f"[dry-run] ... and DELETE each {kind.kind} that list returns")
        return removed

    def _run_live(self, run_label: str) -> bool:
        """A run is live when it is the current ``up`` or a run directory says it is still running."""
        state = self._read_state()
        if state.get("up") and run_label == slug(str(state.get("run_id", ""))):
            return True
        reports = Path(os.environ.get("HARNESS_REPORTS_DIR") or Path.cwd() / "reports")
        for run_json in reports.glob("*/run.json"):
            with contextlib.suppress(OSError, ValueError):
                raw = json.loads(run_json.read_text())
                if slug(str(raw.get("run_id", ""))) == run_label and raw.get("status") == "running":
                    return True
        return False

    def _stale(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        expires = parse_time(str((meta.get("annotations") or {}).get(EXPIRES, "")))
        if expires is not None and expires < time.time():
            return True
        return not self._run_live(str((meta.get("labels") or {}).get(RUN_ID, "")))

    def cleanup(self) -> CleanupReport:
        report = CleanupReport()
        api = self.api
        report.removed += self._sweep_recorded(self._stale_record)
        report.removed += self._delete_harness_objects(self._stale)
        report.removed += faults.unlabel_orphaned_pods(api, self.namespace, self.selector)
        if not api.dry_run and not self._read_state().get("up") and stop_watcher(self.state):
            report.killed.append("event watcher")
        return report

    def _patchable_deployments(self) -> list[dict[str, Any]]:
        """Deployments an env-patch fault may have changed: the harness's own, and the attached one."""
        deps = self.api.list(_KIND["Deployment"], self.namespace, harness_selector())
        if self.attachment is not None and self.spec.name not in {d["metadata"]["name"] for d in deps}:
            attached = self.api.get(self._deployment_path())
            deps += [attached] if attached is not None else []
        return deps

    def _stale_record(self, record: Mapping[str, Any], expired_only: bool = False) -> bool:
        """A fault record (``run_id``, ``expires_at``) past its expiry, or (unless ``expired_only``) of a run that
        is no longer running."""
        expires = parse_time(str(record.get("expires_at", "")))
        if expires is not None and expires < time.time():
            return True
        return not expired_only and not self._run_live(slug(str(record["run_id"])))

    def _sweep_recorded(self, stale: Callable[[dict[str, Any]], bool]) -> list[str]:
        """Undo the faults recorded on the Deployment and in the undo store for which ``stale`` holds: patched
        Deployments first (restoring them brings the service back), then pod-spec faults, model-lifecycle
        faults whose run died, and network agents (before their pods go: tables first)."""
        done = []
        for dep in self._patchable_deployments():
            record = faults.env_patch_record(dep)
            if record is not None and stale(record):
                faults.restore_env(self.api, record)
                done.append(f"env patch of deployment {dep['metadata']['name']} (run {record['run_id']})")
        done += spec_ops.KubernetesSpecOps(self).sweep(stale)
        done += model_ops.sweep(self)
        return done + netagent.sweep(self, stale) + memagent.sweep(self, stale)

    # -- status --------------------------------------------------------------------------------------
    def _service_host(self) -> str:
        """The Service's cluster DNS name when it resolves here, else its ClusterIP.

        Inside a cluster (and on its nodes) the DNS name works; from a machine routed into the cluster
        network but outside its DNS (the ``harness sandbox`` host) only the ClusterIP does.
        """
        name = f"{self.shape.service}.{self.namespace}.svc.cluster.local"
        if self._service_address is not None:
            return self._service_address
        try:
            socket.getaddrinfo(name, None)
        except (OSError, UnicodeError):
            svc = None if self.api.dry_run else self.api.get(
                f"{_KIND['Service'].collection(self.namespace)}/{self.shape.service}"
            )
            ip = str(((svc or {}).get("spec") or {}).get("clusterIP") or "")
            if not ip or ip == "None":
                return name  # no Service yet: ask again next time
            self._service_address = ip
            return ip
        self._service_address = name
        return name

    def _endpoints(self, pods: list[dict[str, Any]]) -> Endpoints:
        host = self._service_host() if not (self.settings.service_http and self.settings.service_grpc) else ""
        metrics = tuple(
            f"http://{p['status']['podIP']}:{self.spec.port('metrics')}/metrics"
            for p in pods
            if (p.get("status") or {}).get("podIP")
        )
        grpc_port = self.shape.service_ports.get("grpc")
        return Endpoints(
            http=self.settings.service_http or f"http://{host}:{self.shape.service_port('http')}",
            grpc=self.settings.service_grpc or (f"{host}:{grpc_port}" if grpc_port else ""),
            prometheus=self.settings.prometheus_url,
            metrics=metrics,
        )

    def status(self) -> PlatformStatus:
        api = self.api
        dep = api.get(self._deployment_path())
        pods = sorted(api.list(_KIND["Pod"], self.namespace, self.selector), key=lambda p: p["metadata"]["name"])
        details: dict[str, Any] = {
            "namespace": self.namespace,
            "context": self._target.context if self._target else "",
            "deployment": self.spec.name,
            "service": self.shape.service,
            "attached": self.attachment is not None,
            "run_id": self._read_state().get("run_id", ""),
            "event_watcher": f"pid {pid}" if (pid := watcher_pid(self.state)) else "not running (no events recorded)",
            "note": f"cluster DNS names; from outside the cluster: kubectl -n {self.namespace} port-forward "
            f"svc/{self.shape.service} "
            + " ".join(str(p) for p in (self.shape.service_ports.get(r) for r in ("http", "grpc")) if p),
        }
        if dep is not None:
            container: dict[str, Any] = next((c for c in dep["spec"]["template"]["spec"]["containers"]
                                              if c.get("name") == self.shape.container), {})
            limits = (container.get("resources") or {}).get("limits") or {}
            details["gpus_per_replica"] = int(limits.get("nvidia.com/gpu", 0))
            details["desired_replicas"] = int(dep["spec"].get("replicas", 1))
        replicas = tuple(replica_status(p, self.spec) for p in pods)
        return PlatformStatus(self.name, dep is not None, self._endpoints(pods), replicas, details)

    # -- faults: the operations are KubernetesFaultOps (fault_ops.py); here what the contract asks of the platform --
    def replica_names(self) -> list[str]:
        pods = self.api.list(_KIND["Pod"], self.namespace, self.selector)
        return sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))

    def sweep_faults(self, only_orphaned: bool = True) -> list[str]:
        """Undo fault objects left behind: expired ones, and with ``only_orphaned=False`` also those of
        runs that are no longer running. Run by the harness's control before each experiment.

        Expiry alone is the safe test when other harness runs may share the namespace (their run
        directories are on other machines); ``harness cleanup`` adds the run check.
        """
        if self.api.dry_run:
            return []
        stale = partial(self._stale_record, expired_only=only_orphaned)
        done = self._sweep_recorded(stale)
        for policy in self.api.list(_KIND["NetworkPolicy"], self.namespace, harness_selector()):
            meta = policy["metadata"]
            info = {
                "expires_at": (meta.get("annotations") or {}).get(EXPIRES, ""),
                "run_id": (meta.get("labels") or {}).get(RUN_ID, ""),
            }
            if stale(info) and self.api.delete(f"{_KIND['NetworkPolicy'].collection(self.namespace)}/{meta['name']}"):
                done.append(f"networkpolicy {meta['name']}")
        done += faults.unlabel_orphaned_pods(self.api, self.namespace, self.selector)
        return done

    def fault_ops(self) -> KubernetesFaultOps:
        """The fault operations on the Deployment under test as it is now (``KubernetesFaultOps``)."""
        return KubernetesFaultOps(self, target=self._connected_target, attached=self.attachment is not None,
                                  refused_actions=self.refused_actions, status=self.status)

    def _connected_target(self) -> Target | None:
        """The context the client was built for (chaosk8s must read the same kubeconfig to kill a pod)."""
        _ = self.api  # connects on first use
        return self._target

    def reset_backoff(self, why: str) -> None:
        return None  # the kubelet keeps a pod's back-off; the runner records the restart counts instead

    def fault_store(self) -> UndoStore:
        """Local undo records of this namespace's faults (pod-spec patches), undone by the runner's close."""
        store = spec_ops.KubernetesSpecOps(self).store()
        return UndoStore(store.directory, {**store.undoers, model_ops.UNDO_KIND: partial(model_ops.undo_with, self),
                                           netagent.UNDO_KIND: partial(netagent.undo_with, self),
                                           memagent.UNDO_KIND: partial(memagent.undo_with, self)})

    def refused_arguments(self, func: str, arguments: Mapping[str, Any]) -> str | None:
        """Arguments a fault cannot honour here (a pod-template change cannot target some pods; the network
        block's agent route without permission or image)."""
        if func == "block_network" and arguments.get("via") == "agent" and (why := self.fault_ops().agent_refusal()):
            return why
        if func == "kill_replicas" and arguments.get("kill") == "container" and (
                why := self.fault_ops().agent_refusal()):
            return f"kill: container stops Triton's container from a privileged agent on its node: {why}"
        return spec_ops.targeting_refusal(func, arguments)

    # -- distributed load (harness load --platform kubernetes --workers N) ----------------------------
    def load_job(
        self,
        run_id: str,
        workers: int,
        profile: Path,
        image: str,
        settings: LoadSettings,
        env: dict[str, str] | None = None,
        name: str = "",
    ) -> LoadJob:
        """A distributed load aimed at this platform's Service by its cluster DNS name (as clients call it),
        expiring with the fault objects; ``settings`` say what to send, their endpoints are replaced."""
        host = f"{self.shape.service}.{self.namespace}.svc.cluster.local"
        grpc = self.shape.service_ports.get("grpc")
        settings = dataclasses.replace(settings, http_url=f"http://{host}:{self.shape.service_port('http')}",
                                       grpc_target=f"{host}:{grpc}" if grpc else "")
        return LoadJob(run_id=run_id, namespace=self.namespace, workers=workers, image=image, profile=profile,
                       settings=settings, name=name, expires_at=expiry(self.settings.fault_ttl_s),
                       env=dict(env or {}), deadline_s=int(self.settings.fault_ttl_s))

    def run_load(self, job: LoadJob, timeline_dir: Path, timeout_s: float) -> list[Path]:
        """Run it, copy every worker's timeline into ``timeline_dir``, delete its objects whatever happens."""
        if job.namespace != self.namespace:
            raise ConfigError(f"load job is for namespace {job.namespace}, this platform acts in {self.namespace}")
        return run_distributed_load(self.api, job, timeline_dir, timeout_s)

    # -- what the service is, and what it cannot undergo (harness.service, harness.platforms.capabilities) ----
    def service_identity(self) -> dict[str, Any]:
        """The Deployment under test for ``run.json``'s ``service``; models come from Triton itself."""
        images = ", ".join(self.shape.images)
        if not self.api.dry_run and (dep := self.api.get(self._deployment_path())) is not None:
            images = ", ".join(template_images(dep["spec"]["template"]["spec"], self.shape.container))
        return {"deployment": self.spec.name, "namespace": self.namespace, "image": images,
                "service_name": self.shape.service}

    def refused_actions(self) -> dict[str, str]:
        """Chaos Toolkit actions that cannot apply to this Deployment, with the reason (before any injection)."""
        if self.attachment is not None:
            template = self.attachment.deployment["spec"]["template"]
            python3: bool | None = self.attachment.python3
        else:
            template = next(d for d in load_manifest_documents(self.settings.manifest)
                            if d["kind"] == "Deployment")["spec"]["template"]
            python3 = None
        container: dict[str, Any] = next(
            (c for c in template["spec"]["containers"] if c.get("name") == self.shape.container), {})
        if self.attachment is None and self.settings.gpus_per_replica:
            container = {**container, "resources": {"limits": {"nvidia.com/gpu": self.settings.gpus_per_replica}}}
        return attach.refused_actions(container, self.attachment is not None, python3, template["spec"])
