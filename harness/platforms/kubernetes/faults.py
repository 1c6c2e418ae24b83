"""Cluster-side faults and their undo records.

Every fault returns a JSON-serialisable undo record that the fault runner writes to disk *before* relying
on it, and every fault leaves a trace on the cluster a sweeper can find after a crash: NetworkPolicies
carry the harness labels and an expiry, blocked pods carry a label naming their policy, and a patched
Deployment carries its own undo record in an annotation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.errors import FaultError
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.connect import Target
from harness.platforms.kubernetes.podexec import exit_code
from harness.platforms.kubernetes.render import EXPIRES, MANAGED_BY, MANAGED_BY_VALUE, RUN_ID, slug

__all__ = [
    "BLOCKED_BY",
    "ENV_PATCH",
    "annotation_record",
    "block_network",
    "env_patch_record",
    "exec_in_pod",
    "exec_raw",
    "kill_pod",
    "merged_env",
    "network_policy",
    "patch_env",
    "restore_env",
    "unblock_network",
    "unlabel_orphaned_pods",
]

BLOCKED_BY = "harness.blocked-by"  # pod label: the NetworkPolicy that selects this pod
ENV_PATCH = "harness/env-patch"  # Deployment annotation: the undo record of an env patch
_KIND = KIND_BY_NAME


@contextlib.contextmanager
def _chaosk8s_sees(target: Target | None) -> Iterator[bool]:
    """Whether chaosk8s would load the same kubeconfig as the harness.

    chaosk8s builds its client from ``$KUBECONFIG`` (read when ``kubernetes`` was imported) plus a context
    in its secrets; it cannot be handed a file. Use it only when that resolves to our file.
    """
    if target is None:
        yield False
        return
    from kubernetes.config import kube_config

    default = os.path.expanduser(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    yield Path(default).resolve() == Path(target.kubeconfig).resolve() and os.path.exists(default)


def kill_pod(
    api: KubeApi, target: Target | None, namespace: str, selector: str, name: str, grace_s: float | None
) -> None:
    grace = -1 if grace_s is None else int(grace_s)
    path = f"{_KIND['Pod'].collection(namespace)}/{name}"
    with _chaosk8s_sees(target) as same:
        if same and not api.dry_run and target is not None:
            from chaosk8s.pod.actions import terminate_pods

            deleted = terminate_pods(
                label_selector=selector,
                name_pattern=f"^{name}$",
                all=True,
                grace_period=grace,
                ns=namespace,
                secrets={"KUBERNETES_CONTEXT": target.context},
            )
            if name not in deleted:
                raise FaultError(
                    f"chaosk8s terminate_pods did not delete pod {namespace}/{name} (it deleted {deleted})"
                )
            return
    if not api.delete(path, grace_s=None if grace_s is None else grace):
        raise FaultError(f"pod {namespace}/{name} was already gone")


def _policy_name(run_id: str, names: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:8]
    return f"harness-block-{slug(run_id, 40)}-{digest}"


def network_policy(policy: str, run_id: str, names: list[str], expires_at: str) -> dict[str, Any]:
    """Deny all ingress to the pods labelled for this policy (no ingress rules = nothing allowed in)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, RUN_ID: slug(run_id)},
            "annotations": {EXPIRES: expires_at, "harness/pods": ",".join(sorted(names))},
        },
        "spec": {
            "podSelector": {"matchLabels": {BLOCKED_BY: policy}},
            "policyTypes": ["Ingress"],
            "ingress": [],
        },
    }


def block_network(api: KubeApi, namespace: str, names: list[str], run_id: str, expires_at: str) -> dict[str, Any]:
    """Deny all ingress to these pods: label them, then a NetworkPolicy selecting that label.

    The name is unique per run and pod set (chaosk8s's deny_all_ingress uses one fixed name, so two runs
    would overwrite each other's policy and one rollback would lift both blocks).
    """
    policy = _policy_name(run_id, names)
    record = {
        "kind": "network-block",
        "namespace": namespace,
        "policy": policy,
        "pods": sorted(names),
        "run_id": run_id,
        "expires_at": expires_at,
    }
    body = network_policy(policy, run_id, names, expires_at)
    for name in names:
        api.patch(f"{_KIND['Pod'].collection(namespace)}/{name}", {"metadata": {"labels": {BLOCKED_BY: policy}}})
    try:
        api.apply(body, namespace)
    except Exception:
        unblock_network(api, record)
        raise
    return record


def unblock_network(api: KubeApi, record: dict[str, Any]) -> None:
    namespace = record["namespace"]
    api.delete(f"{_KIND['NetworkPolicy'].collection(namespace)}/{record['policy']}")
    for name in record["pods"]:
        try:
            api.patch(f"{_KIND['Pod'].collection(namespace)}/{name}", {"metadata": {"labels": {BLOCKED_BY: None}}})
        except ApiFailure as exc:
            if exc.status != 404:  # a replaced pod is simply gone
                raise


def unlabel_orphaned_pods(api: KubeApi, namespace: str, selector: str) -> list[str]:
    """Pods still labelled for a policy that no longer exists (a crash between the two undo steps)."""
    if api.dry_run:
        api.list(_KIND["Pod"], namespace, f"{selector},{BLOCKED_BY}")
        return []
    policies = {p["metadata"]["name"] for p in api.list(_KIND["NetworkPolicy"], namespace)}
    done = []
    for pod in api.list(_KIND["Pod"], namespace, f"{selector},{BLOCKED_BY}"):
        if pod["metadata"]["labels"][BLOCKED_BY] not in policies:
            api.patch(
                f"{_KIND['Pod'].collection(namespace)}/{pod['metadata']['name']}",
                {"metadata": {"labels": {BLOCKED_BY: None}}},
            )
            done.append(f"block label of pod {pod['metadata']['name']}")
    return done


def patch_env(
    api: KubeApi,
    namespace: str,
    deployment: str,
    dep: dict[str, Any] | None,
    env: dict[str, str],
    run_id: str,
    expires_at: str,
    replicas: list[str] | None = None,
    container_name: str = "",
) -> dict[str, Any]:
    """Set env vars on the Deployment's Triton container (``container_name``, else the first): the template
    changes, so the pods roll. In a user's pod the first container may be a sidecar.

    The previous env (exactly as it was, None when absent) goes into the undo record, and the record
    into an annotation, so ``harness cleanup`` can restore it after a crash.
    """
    path = f"{_KIND['Deployment'].collection(namespace)}/{deployment}"
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"] if dep else [{"name": "?"}]
    index = next((i for i, c in enumerate(containers) if c.get("name") == container_name), 0)
    container = containers[index]
    previous = container.get("env")
    if dep is not None and ENV_PATCH in (dep["metadata"].get("annotations") or {}):
        raise FaultError(
            f"Deployment {namespace}/{deployment} already carries an env patch "
            f"({json.loads(dep['metadata']['annotations'][ENV_PATCH]).get('run_id')}); restore it first "
            f"(harness cleanup --platform kubernetes --namespace {namespace})"
        )
    new = merged_env(previous, env)
    record = {
        "kind": "env-patch",
        "namespace": namespace,
        "deployment": deployment,
        "container": container["name"],
        "container_index": index,
        "previous_env": previous,
        "env": env,
        "run_id": run_id,
        "expires_at": expires_at,
        "replicas": replicas or [],  # what the experiment selected; the whole Deployment rolls
    }
    api.patch(path, {"metadata": {"annotations": {ENV_PATCH: json.dumps(record, sort_keys=True)}}})
    at = f"/spec/template/spec/containers/{index}"
    ops = [
        {"op": "test", "path": f"{at}/name", "value": container["name"]},  # the container we read, still there
        {"op": "add", "path": f"{at}/env", "value": new},
    ]
    api.patch(path, ops, content_type="application/json-patch+json")
    return record


def merged_env(previous: list[dict[str, Any]] | None, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """A container's env list with ``env`` set: a variable already there (even one from a secret) is replaced
    in place, a new one appended, the rest kept exactly."""
    items = [dict(e) for e in previous or []]
    for key, value in env.items():
        for item in items:
            if item.get("name") == key:
                item.clear()
                item.update({"name": key, "value": str(value)})
                break
        else:
            items.append({"name": key, "value": str(value)})
    return items


def annotation_record(dep: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The undo record a Deployment carries in annotation ``key``; None when it carries none (or garbage)."""
    raw = ((dep.get("metadata") or {}).get("annotations") or {}).get(key)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def env_patch_record(dep: Mapping[str, Any]) -> dict[str, Any] | None:
    return annotation_record(dep, ENV_PATCH)


def restore_env(api: KubeApi, record: dict[str, Any]) -> None:
    path = f"{_KIND['Deployment'].collection(record['namespace'])}/{record['deployment']}"
    at = f"/spec/template/spec/containers/{int(record.get('container_index', 0))}"
    ops: list[dict[str, Any]] = [{"op": "test", "path": f"{at}/name", "value": record["container"]}]
    if record["previous_env"] is None:
        ops.append({"op": "remove", "path": f"{at}/env"})
    else:
        ops.append({"op": "add", "path": f"{at}/env", "value": record["previous_env"]})
    try:
        api.patch(path, ops, content_type="application/json-patch+json")
    except ApiFailure as exc:
        if exc.status == 404:
            return  # the Deployment is gone: nothing left to restore
        raise FaultError(f"cannot restore the env of {record['namespace']}/{record['deployment']}: {exc}") from exc
    api.patch(path, {"metadata": {"annotations": {ENV_PATCH: None}}})


def exec_raw(
    api: KubeApi, namespace: str, name: str, command: list[str], timeout_s: float = 120, binary: bool = False,
    container: str = "",
) -> tuple[int, Any, Any]:
    """Exec over the WebSocket (v4 channel protocol): exit code, stdout, stderr (bytes when ``binary``).

    ``container`` names the Triton container; without it the API server picks the pod's first container,
    which in a user's pod may be a sidecar."""
    from kubernetes import client as k8s
    from kubernetes.stream import stream

    # A client of its own for every exec: ``stream`` swaps the ApiClient's ``request`` for the websocket call
    # while it connects, so two execs at once on a shared client (the network block probes its targets in
    # parallel) can leave it swapped for good, and every later REST call on it (the block's DELETE, found in a
    # CI run) fails with "Handshake status 200 OK".
    own = k8s.ApiClient(api.client.configuration)
    core = k8s.CoreV1Api(own)
    try:
        ws = stream(
            core.connect_get_namespaced_pod_exec,
            name,
            namespace,
            command=command,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
            binary=binary,
            **({"container": container} if container else {}),
        )
    except Exception as exc:
        own.close()  # type: ignore[no-untyped-call]  # the client library is untyped
        raise FaultError(f"exec in pod {namespace}/{name} failed to start: {exc}") from exc
    try:
        ws.run_forever(timeout=timeout_s)
        if ws.is_open():  # an unknown exit status is no success
            raise FaultError(f"exec {command[:3]}... in pod {namespace}/{name} did not finish within {timeout_s:g}s")
        out, err = ws.read_stdout(), ws.read_stderr()
        code = exit_code(ws.read_channel(3), f"pod {namespace}/{name}")  # 3: the status channel
    finally:
        ws.close()
        own.close()  # type: ignore[no-untyped-call]  # the client library is untyped
    return code, out, err


def exec_in_pod(api: KubeApi, namespace: str, name: str, command: list[str], timeout_s: float = 120,
                container: str = "") -> str:
    """Run a command in the pod's ``container``; its stdout, or FaultError with its stderr."""
    if api.dry_run:
        api.out(f"[dry-run] GET (websocket) {_KIND['Pod'].collection(namespace)}/{name}/exec command={command}")
        return ""
    code, out, err = exec_raw(api, namespace, name, command, timeout_s, container=container)
    if code != 0:
        raise FaultError(
            f"command {command[:3]}... in pod {namespace}/{name} exited with {code}: "
            f"{str(err).strip()[:500] or str(out).strip()[:500]}"
        )
    return str(out)
