"""The Kubernetes platform's fault operations (``harness.platforms.base.FaultTarget``): what the Chaos Toolkit
activities call to inject and undo faults in the pods of the Deployment under test.

Kept apart from the platform (``platform.py``: up, status, down, cleanup, attach) as the local platform keeps
``LocalFaultOps`` apart from ``LocalPlatform``, so that the lifecycle and the faults each read on their own.
It receives what it needs explicitly: the platform's public face for the fault mechanics (``AgentHost``: the
client, namespace, selector, settings, Deployment and undo store), and small callables for what only the
platform knows (its connected context, its refusals, its status). It touches only the pods of that Deployment
(deleted, labelled for a network block, exec'd into), its template's env, and objects carrying the harness's
labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.errors import ConfigError, FaultError
from harness.faults.connect import Connect, connected, from_exit_code
from harness.platforms.base import PlatformStatus
from harness.platforms.kubernetes import (
    attach,
    container_kill,
    faults,
    memagent,
    model_ops,
    netagent,
    podscripts,
    rollout,
    spec_ops,
)
from harness.platforms.kubernetes.api import KIND_BY_NAME, KubeApi
from harness.platforms.kubernetes.connect import Target
from harness.platforms.kubernetes.netagent import AgentHost
from harness.platforms.kubernetes.new_template import KubernetesLoadClock
from harness.platforms.kubernetes.render import MANAGED_BY, MANAGED_BY_VALUE, expiry, slug
from harness.platforms.kubernetes.settings import KubernetesSettings

__all__ = ["KubernetesFaultOps"]

_KIND = KIND_BY_NAME


class KubernetesFaultOps:
    """The fault operations on one namespace's Deployment under test, as ``KubernetesPlatform.fault_ops()``
    hands them out: the same names and meanings as the local platform's, so one experiment drives both."""

    def __init__(self, host: AgentHost, *, target: Callable[[], Target | None], attached: bool,
                 refused_actions: Callable[[], Mapping[str, str]], status: Callable[[], PlatformStatus]) -> None:
        self.host = host
        self._target = target  # the kubeconfig context the client was built for (chaosk8s must see the same)
        self.attached = attached  # a Deployment the harness did not create (harness attach)
        self._refused_actions = refused_actions
        self._status = status

    @property
    def api(self) -> KubeApi:
        return self.host.api

    @property
    def namespace(self) -> str:
        return self.host.namespace

    @property
    def selector(self) -> str:
        """The pods of the Deployment under test."""
        return self.host.selector

    @property
    def settings(self) -> KubernetesSettings:
        return self.host.settings

    @property
    def _where(self) -> str:
        return f"{self.namespace}/{self.host.spec.name}"

    @property
    def _deployment_path(self) -> str:
        return f"{_KIND['Deployment'].collection(self.namespace)}/{self.host.spec.name}"

    def _require_replicas(self, names: list[str]) -> None:
        if self.api.dry_run:
            return
        known = set(self.host.replica_names())
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise FaultError(
                f"{', '.join(unknown) or 'no pods given'}: not pods of Deployment "
                f"{self._where} (its pods: {', '.join(sorted(known)) or 'none'}); "
                f"the harness touches no other pods"
            )

    def kill_replica(self, name: str, grace_s: float | None = 0, container: bool = False, allow_agent: bool = False,
                     agent_image: str = "") -> None:
        """Delete the pod (grace 0 = SIGKILL now); its Deployment replaces it. ``container``: stop Triton's
        container instead, from a privileged agent on its node (``container_kill``; only when allowed), and the
        kubelet restarts it in the same pod: its memory cgroup, and what holds memory there, stay."""
        self._require_replicas([name])
        if container:
            container_kill.kill_container(self.host, name, self.host.shape.container, f"ckill-{time.time_ns()}",
                                          grace_s, allow_agent or self.settings.allow_privileged_agent, agent_image)
            return
        faults.kill_pod(self.api, self._target(), self.namespace, self.selector, name, grace_s)

    def block_network(self, names: Sequence[str], run_id: str, max_s: float | None = None) -> dict[str, Any]:
        """Deny ingress to these pods until the rollback, or until ``max_s`` has passed (then cleanup)."""
        self._require_replicas(list(names))
        return faults.block_network(
            self.api, self.namespace, list(names), run_id, expiry(max_s or self.settings.fault_ttl_s)
        )

    def block_network_agent(self, names: Sequence[str], run_id: str, max_s: float | None = None,
                            allowed: bool = False, image: str = "") -> dict[str, Any]:
        """Drop traffic to these pods from inside their network namespaces (a privileged agent pod each), where
        the network plugin ignores NetworkPolicy; only when allowed (harness.platforms.kubernetes.netagent)."""
        self._require_replicas(list(names))
        return netagent.block(self.host, list(names), run_id, max_s or self.settings.fault_ttl_s, allowed, image)

    def block_routes(self) -> tuple[str, ...]:
        return ("policy", "agent")

    def agent_refusal(self, allowed: bool = False, image: str = "") -> str | None:
        """Why the agent route cannot be used (not allowed, no image), with how to allow it; None: it can."""
        return netagent.refusal(self.settings, allowed, image)

    def unblock_network(self, record: Mapping[str, Any]) -> int | None:
        if record.get("kind") == netagent.KIND:
            return netagent.lift(self.host, self._checked(record))[1]
        faults.unblock_network(self.api, self._checked(record))
        return None  # the policy is deleted; when the network plugin stops enforcing it is its own business

    def restart_with_env(
        self,
        env: Mapping[str, str],
        run_id: str,
        names: Sequence[str] | None = None,
        max_s: float | None = None,
        grace_s: float | None = None,
    ) -> dict[str, Any]:
        """Patch the Deployment's env: *every* pod rolls (a Deployment has one template), not only ``names``.

        ``grace_s`` is accepted for the local platform's signature; pods stop with their own grace period.
        """
        if not env:
            raise ConfigError("restart_with_env needs at least one variable")
        dep = self.api.get(self._deployment_path)
        if dep is None and not self.api.dry_run:
            raise FaultError(f"Deployment {self._where} does not exist; run 'harness up' first")
        if (dep is not None and (dep["metadata"].get("labels") or {}).get(MANAGED_BY) != MANAGED_BY_VALUE
                and not self.attached):
            raise FaultError(f"Deployment {self._where} was not created by the harness")
        if self.attached and not self.api.dry_run:
            reason = self._refused_actions().get("slow_model_load")
            if reason:
                raise FaultError(reason)
        record = faults.patch_env(
            self.api,
            self.namespace,
            self.host.spec.name,
            dep,
            dict(env),
            run_id,
            expiry(max_s or self.settings.fault_ttl_s),
            list(names or []),
            container_name=self.host.shape.container,
        )
        if self.attached:
            attach.note_deployment_fault(self.host.state, record)
        return record

    def restore_env(self, record: Mapping[str, Any]) -> None:
        """Patch the env back and follow the roll it starts to the end (``kubectl rollout status``), then until
        the replaced pods have exited: the undo is done when the Deployment is back, not when the patch is
        accepted (the steady-state check after a slow load otherwise met the restore's roll half way, with the
        delayed pods still being replaced), and a replaced pod can fail requests at its end (``rollout.
        wait_terminated``)."""
        checked = self._checked(record)
        faults.restore_env(self.api, checked)
        dep = self.api.get(f"{_KIND['Deployment'].collection(self.namespace)}/{checked['deployment']}")
        if dep is None or self.api.dry_run:
            return  # gone: nothing left to roll back
        rollout.follow_back(self.deployment_spec_ops(), checked["deployment"],
                            int(dep["metadata"].get("generation", 0)), self.settings.ready_timeout_s,
                            f"the env of {self.namespace}/{checked['deployment']}")

    def load_clock(self) -> KubernetesLoadClock:
        """The new template's pods, their starts and model loads (the slow-load fault's check)."""
        return KubernetesLoadClock(self.host)

    def memory_pressure(
        self, names: Sequence[str], run_id: str, leave_free_mb: float, duration_s: float, headroom_mb: float = 256.0,
        allow_agent: bool = False, agent_image: str = "",
    ) -> dict[str, Any]:
        """Hold free memory at ``leave_free_mb`` inside each selected pod for ``duration_s``.

        With GPUs in the pods: the harness's CUDA hog (harness/faults/hog.py) runs in the Triton container
        and holds the GPU's free memory. Without: the container-memory analogue holds the pod's memory
        limit minus its usage (the replica, not the node, runs short), labelled as such in the record.
        ``headroom_mb`` is the local analogue's cgroup size; here the pod's own memory limit plays it.
        Each hog ends by its own deadline even if the harness dies.

        Without GPUs and with the privileged agent allowed, the pod's memory cgroup is held instead, by an agent
        on its node (``memagent``): unlike a hog in the container, that pressure outlives a container restart.
        """
        self._require_replicas(list(names))
        gpu = int(self._status().details.get("gpus_per_replica", 0)) > 0
        if not gpu and (allow_agent or self.settings.allow_privileged_agent):
            return memagent.hold(self.host, list(names), run_id, leave_free_mb, duration_s, True, agent_image)
        tag = f"{slug(run_id, 40)}-{int(time.time() * 1000) % 10**8}"
        status_file = f"/tmp/harness-hog-{tag}.json"
        if gpu:
            args = [
                podscripts.gpu_hog_source(),
                "--target",
                "gpu",
                "--leave-free-mb",
                f"{leave_free_mb:g}",
                "--duration",
                f"{duration_s:g}",
                "--status-file",
                status_file,
                "--tag",
                tag,
            ]
        else:
            args = [podscripts.CONTAINER_HOG, "/sys/fs/cgroup", f"{leave_free_mb:g}", f"{duration_s:g}", status_file]
        launch = f'nohup python3 -c "$0" "$@" >"${{TMPDIR:-/tmp}}/harness-hog-{tag}.log" 2>&1 & echo $!'
        pids: dict[str, int] = {}
        for name in names:
            out = faults.exec_in_pod(self.api, self.namespace, name, ["sh", "-c", launch, *args],
                                     container=self.host.shape.container)
            pids[name] = int(out.strip() or 0)
        return {
            "kind": "memory-pressure",
            "namespace": self.namespace,
            "run_id": run_id,
            "target": "gpu" if gpu else "container",
            "pods": pids,
            "status_file": status_file,
            "analogue": "" if gpu else "container-memory analogue inside the pod's memory limit (no GPU)",
            # the hog is a process of the Triton container: a restart of that container ends the pressure
            "ends_with_container": True,
        }

    def memory_status(self, record: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
        """Each pod's hog status file, read through exec (None where it cannot be read)."""
        if record.get("route") == memagent.ROUTE:
            return memagent.statuses(self.host, record)
        out: dict[str, dict[str, Any] | None] = {}
        for name in dict(record.get("pods") or {}):
            try:
                text = faults.exec_in_pod(self.api, self.namespace, name, ["cat", str(record["status_file"])],
                                          container=self.host.shape.container)
                data = json.loads(text)
            except (FaultError, ValueError, KeyError):
                data = None
            out[str(name)] = data if isinstance(data, dict) else None
        return out

    def release_memory(self, record: Mapping[str, Any]) -> None:
        """Stop the hogs; a pod that is gone took its hog with it."""
        if record.get("route") == memagent.ROUTE:
            memagent.release(self.host, self._checked(record))
            return
        self._checked(record)
        for name, pid in dict(record.get("pods") or {}).items():
            if not pid:
                continue
            try:
                faults.exec_in_pod(self.api, self.namespace, name, ["kill", str(pid)],
                                   container=self.host.shape.container)
            except FaultError:
                continue  # already exited by its deadline, or the pod was replaced

    def reload_model(
        self, name: str, model: str = "mlp", parameters: Mapping[str, str] | None = None, timeout_s: float = 120.0
    ) -> tuple[bool, str]:
        """Unload-and-load through Triton's model-control API, from inside the pod (HTTP on localhost)."""
        self._require_replicas([name])
        if self.api.dry_run:
            faults.exec_in_pod(self.api, self.namespace, name, ["python3", "-c", "<reload script>", model],
                               container=self.host.shape.container)
            return True, ""
        code, out, err = faults.exec_raw(
            self.api,
            self.namespace,
            name,
            ["python3", "-c", podscripts.RELOAD_MODEL, model, json.dumps(dict(parameters or {})), f"{timeout_s:g}"],
            timeout_s=timeout_s + 30,
            container=self.host.shape.container,
        )
        if code == 0:
            return True, ""
        return False, (str(out).strip() or str(err).strip() or f"exit code {code}")[:500]

    def model_control(self, name: str) -> model_ops.KubernetesModelControl:
        """Triton's model-control API and model repository inside pod ``name`` (the model-lifecycle faults)."""
        self._require_replicas([name])
        return model_ops.KubernetesModelControl(self.host, name)

    def deployment_spec_ops(self) -> spec_ops.KubernetesSpecOps:
        """The pod-spec faults as Deployment patches the real controller rolls out (harness.faults.podspec)."""
        return spec_ops.KubernetesSpecOps(self.host)

    def connect_probe(self, name: str, timeout_s: float = 1.0) -> bool | None:
        """``connect_check`` as yes (connected) / no (refused, timed out, unreachable) / None (cannot tell)."""
        return connected(self.connect_check(name, timeout_s))

    def connect_check(self, name: str, timeout_s: float = 1.0) -> Connect | None:
        """Open a TCP connection to pod ``name``'s Triton HTTP port as an in-cluster client would.

        The connection starts inside another pod of the Deployment (exec), so it crosses the pod network
        the way Service traffic does and any NetworkPolicy applies to it; a connection from the node or
        from this machine may be exempt on some network plugins. The outcome (connected, refused, timed
        out, unreachable); None: cannot be checked from here (no other running pod, no pod IP, dry run,
        exec failed), which a verification must report as unknown, never as blocked.
        """
        if self.api.dry_run:
            return None
        pods = {p["metadata"]["name"]: p for p in self.api.list(_KIND["Pod"], self.namespace, self.selector)}
        target = pods.get(name)
        ip = str(((target or {}).get("status") or {}).get("podIP") or "")
        if not ip:
            return None
        clients = sorted(
            n for n, p in pods.items()
            if n != name and not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") == "Running"
        )
        if not clients:
            return None
        try:
            code, _out, _err = faults.exec_raw(
                self.api, self.namespace, clients[0],
                ["python3", "-c", podscripts.CONNECT_PROBE, ip, str(self.host.spec.port("http")), f"{timeout_s:g}"],
                timeout_s=timeout_s + 30, container=self.host.shape.container,
            )
        except FaultError:
            return None
        return from_exit_code(code)

    def exec_in_replica(self, name: str, command: list[str]) -> str:
        self._require_replicas([name])
        return faults.exec_in_pod(self.api, self.namespace, name, command,
                                  container=self.host.shape.container)

    def _checked(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if record.get("namespace") != self.namespace:
            raise FaultError(
                f"undo record is for namespace {record.get('namespace')!r}, this platform acts in "
                f"{self.namespace!r}; run the rollback with --namespace {record.get('namespace')}"
            )
        return dict(record)

