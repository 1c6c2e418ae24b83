"""What the harness needs to know about a Triton service on Kubernetes, from a manifest or from the cluster.

The harness tests three kinds of service there: its own reference manifest, the user's own manifest
(``harness up --manifest FILE``) and a Deployment that is already running (``harness attach``). All three
come down to the same few facts, a ``ServiceShape``: which Deployment, which pods (the Deployment's own
selector), which container is Triton and on which ports (by name ``http``/``grpc``/``metrics``, else
Triton's default port numbers), and which Service clients call and on which of its ports. Everything is
checked here, once, and every problem is reported at once, before anything is applied: a manifest the
harness cannot use is a clear error, never a half-applied service.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.deployment import DeploymentSpec, load_deployment, load_manifest_documents
from harness.errors import ConfigError
from harness.manifest import TRITON_PORTS, triton_ports
from harness.platforms.kubernetes.api import KIND_BY_NAME

__all__ = [
    "TRITON_PORTS",
    "ServiceShape",
    "deployment_spec",
    "manifest_spec",
    "selector_of",
    "selects",
    "shape_from_documents",
    "shape_from_live",
    "shape_of_manifest",
    "template_images",
    "triton_ports",
]

# Triton's default ports, how a container that does not name its ports is recognised.


@dataclass(frozen=True)
class ServiceShape:
    """The Triton service under test, as the platform acts on it."""

    deployment: str
    service: str
    selector: Mapping[str, str]  # the Deployment's spec.selector.matchLabels: its pods, and only them
    container: str  # the Triton container's name
    ports: Mapping[str, int]  # container ports by role: http, grpc, metrics (those it has)
    service_ports: Mapping[str, int]  # the Service's ports by the role of the container port they target
    images: tuple[str, ...] = ()  # every container's image (init containers after), as the template says
    source: str = ""  # the manifest file, or namespace/name in the cluster

    def selector_string(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))

    def service_port(self, role: str) -> int:
        try:
            return self.service_ports[role]
        except KeyError:
            raise ConfigError(f"{self.source}: Service {self.service!r} has no port that reaches Triton's {role} "
                              f"port (its Triton ports: {dict(self.service_ports)}); add one") from None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["selector"], out["ports"], out["service_ports"] = dict(self.selector), dict(self.ports), dict(
            self.service_ports)
        out["images"] = list(self.images)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ServiceShape:
        return cls(**{**raw, "images": tuple(raw.get("images") or ())})


def selector_of(dep: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, str]:
    selector = (dep.get("spec") or {}).get("selector") or {}
    if selector.get("matchExpressions"):
        problems.append(f"{where}: spec.selector.matchExpressions is not supported (the harness selects pods by "
                        "label equality); use matchLabels")
    labels = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    if not labels:
        problems.append(f"{where}: spec.selector.matchLabels is empty; the harness finds the Deployment's pods by it")
    template = _template_labels(dep)
    if labels and any(template.get(k) != v for k, v in labels.items()):
        problems.append(f"{where}: the pod template's labels {template} do not match spec.selector.matchLabels "
                        f"{labels}")
    return labels


def _template_labels(dep: Mapping[str, Any]) -> dict[str, str]:
    meta = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {})
    return {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}


def selects(svc: Mapping[str, Any], dep: Mapping[str, Any]) -> bool:
    """Whether the Service routes to the Deployment's pods (its selector is within their labels)."""
    selector = (svc.get("spec") or {}).get("selector") or {}
    template = _template_labels(dep)
    return bool(selector) and all(template.get(str(k)) == str(v) for k, v in selector.items())


def _service_ports(svc: Mapping[str, Any], container: Mapping[str, Any], roles: Mapping[str, int]) -> dict[str, int]:
    by_name = {str(p.get("name")): p.get("containerPort") for p in container.get("ports") or [] if isinstance(p, dict)}
    role_of = {number: role for role, number in roles.items()}
    out: dict[str, int] = {}
    for port in (svc.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        number = by_name.get(target) if isinstance(target, str) else target
        role = role_of.get(number) if isinstance(number, int) else None
        if role is not None and isinstance(port.get("port"), int):
            out.setdefault(role, int(port["port"]))
    return out


def _triton_container(dep: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    pod = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in pod.get("containers") or [] if isinstance(c, dict)]
    triton = [c for c in containers if "http" in triton_ports(c)]
    if not triton:
        problems.append(
            f"{where}: no container exposes Triton's HTTP port (containers: "
            f"{', '.join(str(c.get('name')) for c in containers) or 'none'}); declare it in the container's "
            "ports, named http (or containerPort 8000), and grpc/metrics likewise")
        return {}
    return triton[0]


def _shape(dep: Mapping[str, Any], svc: Mapping[str, Any] | None, where: str, problems: list[str],
           source: str) -> ServiceShape | None:
    selector = selector_of(dep, where, problems)
    container = _triton_container(dep, where, problems)
    roles = triton_ports(container) if container else {}
    service_ports: dict[str, int] = {}
    if svc is not None and container:
        service_ports = _service_ports(svc, container, roles)
        if "http" not in service_ports:
            problems.append(f"{where}: Service {svc['metadata'].get('name')!r} has no port whose targetPort is "
                            f"Triton's HTTP port ({roles.get('http')}); the load calls Triton through it")
    if problems or svc is None:
        return None
    images = template_images(dep["spec"]["template"]["spec"], str(container.get("name", "")))
    return ServiceShape(deployment=str(dep["metadata"]["name"]), service=str(svc["metadata"]["name"]),
                        selector=selector, container=str(container.get("name", "")), ports=roles,
                        service_ports=service_ports, images=images, source=source)


def shape_from_documents(docs: Sequence[Mapping[str, Any]], path: Path, namespace: str = "") -> ServiceShape:
    """Check a manifest the harness is to apply, and read its shape; a ``ConfigError`` naming every problem."""
    problems: list[str] = []
    for i, doc in enumerate(docs):
        name = (doc.get("metadata") or {}).get("name")
        if doc["kind"] not in KIND_BY_NAME or doc["kind"] in ("Namespace", "Event", "Pod"):
            allowed = sorted(k for k in KIND_BY_NAME if k not in ("Namespace", "Event", "Pod"))
            problems.append(f"document {i + 1} is a {doc['kind']}, which the harness does not apply "
                            f"(it applies {', '.join(allowed)})")
        if not name:
            problems.append(f"document {i + 1} ({doc['kind']}) has no metadata.name")
        ns = (doc.get("metadata") or {}).get("namespace")
        if ns and namespace and ns != namespace:
            problems.append(f"{doc['kind']} {name!r} says namespace {ns!r}, but the harness deploys into "
                            f"{namespace!r}; remove metadata.namespace")
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        names = ", ".join(str((d.get("metadata") or {}).get("name")) for d in deployments)
        problems.append(f"expected exactly one Deployment (the Triton service under test), found "
                        f"{len(deployments)}{f' ({names})' if names else ''}")
    shape = None
    if len(deployments) == 1:
        dep = deployments[0]
        where = f"Deployment {(dep.get('metadata') or {}).get('name')!r}"
        services = [d for d in docs if d["kind"] == "Service" and selects(d, dep)]
        if not services:
            problems.append(f"no Service selects the pods of {where}; the load reaches Triton through a "
                            "Service, add one whose spec.selector matches the pod template's labels")
        elif len(services) > 1:
            problems.append(f"{len(services)} Services select the pods of {where} "
                            f"({', '.join(s['metadata']['name'] for s in services)}); keep one")
        shape = _shape(dep, services[0] if len(services) == 1 else None, where, problems, str(path))
    if problems or shape is None:
        raise ConfigError(f"{path}: the harness cannot deploy this manifest; nothing was applied:\n  - "
                          + "\n  - ".join(problems))
    return shape


def shape_of_manifest(path: Path, namespace: str = "") -> ServiceShape:
    return shape_from_documents(load_manifest_documents(path), path, namespace)


def shape_from_live(dep: Mapping[str, Any], svc: Mapping[str, Any], namespace: str) -> ServiceShape:
    """The shape of a Deployment and Service found in the cluster (``harness attach``)."""
    problems: list[str] = []
    where = f"Deployment {namespace}/{dep['metadata']['name']}"
    shape = _shape(dep, svc, where, problems, f"{namespace}/{dep['metadata']['name']}")
    if problems or shape is None:
        raise ConfigError("the harness cannot test this Deployment; nothing was changed:\n  - "
                          + "\n  - ".join(problems))
    return shape


def deployment_spec(dep: Mapping[str, Any], shape: ServiceShape, source: str) -> DeploymentSpec:
    """The ``DeploymentSpec`` the platform acts with: ports by role, the Deployment's own selector.

    Probes are read where the reference reader understands them (httpGet); a user's other probe kinds
    (tcpSocket, exec) are the kubelet's business, not the harness's, so they are left out rather than refused.
    """
    container = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c.get("name") == shape.container)
    env = {str(e["name"]): "" if e.get("value") is None else str(e["value"])
           for e in container.get("env") or [] if isinstance(e, dict) and "name" in e}
    grace = float(dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
    return DeploymentSpec(name=shape.deployment, replicas=int(dep["spec"].get("replicas", 1)),
                          image=str(container.get("image", "")),
                          args=tuple(str(a) for a in container.get("args") or ()), env=env, ports=dict(shape.ports),
                          startup=None, readiness=None, liveness=None, termination_grace_s=grace,
                          labels=dict(shape.selector), source=source)


def manifest_spec(path: Path, namespace: str) -> tuple[ServiceShape, DeploymentSpec]:
    """Shape and spec of a manifest; the reference reader's probes kept when it can read them."""
    docs = load_manifest_documents(path)
    shape = shape_from_documents(docs, path, namespace)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    spec = deployment_spec(copy.deepcopy(dep), shape, str(path))
    try:
        strict = load_deployment(path)
    except ConfigError:
        return shape, spec
    return shape, dataclasses.replace(spec, startup=strict.startup, readiness=strict.readiness,
                                      liveness=strict.liveness)


def template_images(pod: Mapping[str, Any], triton: str) -> tuple[str, ...]:
    """Every image of a pod template, Triton's container first (the release a report is evidence about),
    then sidecars, then init containers; each once."""
    containers = [*pod.get("containers", []), *(pod.get("initContainers") or [])]
    ordered = sorted(containers, key=lambda c: c.get("name") != triton)  # stable: the rest keep their order
    return tuple(dict.fromkeys(str(c.get("image", "")) for c in ordered))
