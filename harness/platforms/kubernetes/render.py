"""Render the objects ``up`` applies: the reference manifests, the model-repository ConfigMap, our labels.

The manifests stay the one description of the service; this module only adds what depends on the run
(labels, expiry, replica and GPU overrides) and the ConfigMap that carries the model repository into the
pod (see triton.yaml's header for why a ConfigMap plus an init container).
"""

from __future__ import annotations

import base64
import copy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.deployment import load_manifest_documents
from harness.errors import ConfigError
from harness.triton.modelrepo import REFERENCE_REPOSITORY, ModelSettings, render_config

__all__ = [
    "EXPIRES",
    "MANAGED_BY",
    "MANAGED_BY_VALUE",
    "MODEL_CONFIGMAP",
    "RUN_ID",
    "expiry",
    "harness_selector",
    "label",
    "model_repository_configmap",
    "render_service",
    "server_side_apply_ready",
    "slug",
]

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "triton-resilience-harness"
RUN_ID = "harness.run-id"
EXPIRES = "harness/expires-at"
MODEL_CONFIGMAP = "triton-model-repository"
_CONFIGMAP_LIMIT = 1_000_000  # etcd's object limit is ~1.5 MB; stay well below


def slug(text: str, limit: int = 63) -> str:
    """A label value / DNS-1123 label made from ``text`` (run ids contain uppercase T and Z)."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    if not out:
        raise ConfigError(f"cannot make a Kubernetes name from {text!r}")
    return out


def expiry(ttl_s: float, now: datetime | None = None) -> str:
    when = (now or datetime.now(tz=UTC)) + timedelta(seconds=ttl_s)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def harness_selector(run_id: str | None = None) -> str:
    selector = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
    return f"{selector},{RUN_ID}={slug(run_id)}" if run_id else selector


def label(obj: dict[str, Any], run_id: str, expires_at: str) -> dict[str, Any]:
    """The harness's labels and expiry on an object (and on a Deployment's pod template)."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta.setdefault("labels", {}).update({MANAGED_BY: MANAGED_BY_VALUE, RUN_ID: slug(run_id)})
    meta.setdefault("annotations", {})[EXPIRES] = expires_at
    if out.get("kind") == "Deployment":
        tmeta = out["spec"]["template"].setdefault("metadata", {})
        tmeta.setdefault("labels", {}).update({MANAGED_BY: MANAGED_BY_VALUE, RUN_ID: slug(run_id)})
    return out


def _key(rel: str) -> str:
    return rel.replace("/", "__")


def model_repository_configmap(
    gpu: bool, repository: Path = REFERENCE_REPOSITORY, model: str = "mlp"
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The ConfigMap with every file of the repository, and the volume items that map keys to paths.

    config.pbtxt is rendered (CPU or GPU instances) exactly as the local platform renders it.
    """
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    items = []
    for path in sorted(p for p in repository.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(repository).as_posix()
        if rel == f"{model}/config.pbtxt":
            data[_key(rel)] = render_config(ModelSettings(name=model, gpu=gpu))
        else:
            raw = path.read_bytes()
            try:
                if path.suffix == ".npy":
                    raise UnicodeDecodeError("npy", b"", 0, 1, "binary by design")
                data[_key(rel)] = raw.decode("utf-8")
            except UnicodeDecodeError:
                binary[_key(rel)] = base64.b64encode(raw).decode("ascii")
        items.append({"key": _key(rel), "path": rel})
    size = sum(len(v) for v in data.values()) + sum(len(v) for v in binary.values())
    if size > _CONFIGMAP_LIMIT:
        raise ConfigError(
            f"model repository {repository} is {size} bytes, too big for a ConfigMap; deliver it in an image"
        )
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": MODEL_CONFIGMAP, "labels": {"app.kubernetes.io/name": "triton"}},
        "data": data,
    }
    if binary:
        cm["binaryData"] = binary
    return cm, items


def _set_gpus(container: dict[str, Any], gpus: int) -> None:
    resources = container.setdefault("resources", {})
    for section in ("limits", "requests"):
        values = resources.setdefault(section, {})
        if gpus == 0:
            values.pop("nvidia.com/gpu", None)
        elif section == "limits" or "nvidia.com/gpu" in values:
            values["nvidia.com/gpu"] = str(gpus)
        if not values:
            resources.pop(section)


def server_side_apply_ready(doc: dict[str, Any]) -> None:
    """Spell out what server-side apply needs and client-side apply forgave (found on a real 1.20):

    - list entries keyed by ``port``/``containerPort`` *and* ``protocol`` must carry the protocol
      ("associative list with keys has an element that omits key field");
    - resource quantities are strings in the schema (an integer ``nvidia.com/gpu: 1`` is "expected string").
    """
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Service":
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
    pod = ((spec.get("template") or {}).get("spec") or {}) if doc.get("kind") == "Deployment" else spec
    if doc.get("kind") not in ("Deployment", "Pod"):
        return
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for section in (container.get("resources") or {}).values():
            if isinstance(section, dict):
                for key, value in section.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        section[key] = f"{value:g}" if isinstance(value, float) else str(value)


def render_service(
    manifest: Path,
    run_id: str,
    expires_at: str,
    replicas: int | None = None,
    gpus_per_replica: int | None = None,
    image: str = "",
    monitoring: Path | None = None,
) -> list[dict[str, Any]]:
    """Every object ``up`` applies, in apply order (ConfigMap first, the Deployment after its inputs)."""
    docs = load_manifest_documents(manifest)
    if monitoring is not None:
        docs += load_manifest_documents(monitoring)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        raise ConfigError(f"{manifest}: expected exactly one Deployment, found {len(deployments)}")
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if replicas is not None:
        dep["spec"]["replicas"] = replicas
    if gpus_per_replica is not None:
        _set_gpus(container, gpus_per_replica)
    if image:
        container["image"] = image
        for init in pod.get("initContainers") or []:
            init["image"] = image
    gpus = int(((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
    objects: list[dict[str, Any]] = []
    for volume in pod.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name") == MODEL_CONFIGMAP:
            cm, items = model_repository_configmap(gpu=gpus > 0)
            volume["configMap"]["items"] = items
            objects.append(cm)
    order = {"ConfigMap": 0, "Service": 1, "PodDisruptionBudget": 2, "Deployment": 3}
    objects += sorted(docs, key=lambda d: order.get(d["kind"], 4))
    for obj in objects:
        server_side_apply_ready(obj)
    return [label(o, run_id, expires_at) for o in objects]
