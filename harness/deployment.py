"""The one description of the reference deployment, read from its Kubernetes manifest.

The local platform plays the same Deployment the Kubernetes platform applies, so probes, replica
count, ports and env mean the same thing on both. Parsing happens once, here, into frozen
dataclasses; nothing deeper looks at raw YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

__all__ = [
    "DEFAULT_MANIFEST",
    "DeploymentSpec",
    "Probe",
    "first_deployment",
    "load_deployment",
    "load_manifest_documents",
]

DEFAULT_MANIFEST = Path(str(resources.files("harness") / "reference" / "kubernetes" / "triton.yaml"))


@dataclass(frozen=True)
class Probe:
    """A Kubernetes HTTP probe, with Kubernetes' defaults for fields the manifest leaves out."""

    kind: str  # startup | readiness | liveness
    path: str
    port: str
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1

    def scaled(self, factor: float) -> Probe:
        """The same probe with every duration multiplied (the local platform's time-scale setting)."""
        return replace(
            self,
            initial_delay_s=self.initial_delay_s * factor,
            period_s=self.period_s * factor,
            timeout_s=max(self.timeout_s * factor, 0.05),
        )


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    replicas: int
    image: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    ports: Mapping[str, int]
    startup: Probe | None
    readiness: Probe | None
    liveness: Probe | None
    termination_grace_s: float = 30.0
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def model_name(self) -> str:
        for arg in self.args:
            if arg.startswith("--load-model="):
                return arg.split("=", 1)[1]
        raise ConfigError(f"{self.source}: container args have no --load-model=<name>; add the model to load")

    def port(self, name: str) -> int:
        try:
            return self.ports[name]
        except KeyError:
            raise ConfigError(
                f"{self.source}: container has no port named {name!r} (has {sorted(self.ports)}); "
                f"name the ports http, grpc and metrics"
            ) from None

    def with_overrides(
        self,
        replicas: int | None = None,
        env: Mapping[str, str] | None = None,
        probes: Mapping[str, Probe | None] | None = None,
    ) -> DeploymentSpec:
        new = self
        if replicas is not None:
            if replicas < 1:
                raise ConfigError(f"replicas must be at least 1, got {replicas}")
            new = replace(new, replicas=replicas)
        if env:
            new = replace(new, env={**new.env, **env})
        if probes:
            new = replace(
                new,
                startup=probes.get("startup", new.startup),
                readiness=probes.get("readiness", new.readiness),
                liveness=probes.get("liveness", new.liveness),
            )
        return new


def load_manifest_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}; pass an existing file") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ConfigError(f"{path}: document {i + 1} is not a Kubernetes object (no 'kind')")
    return docs


def _num(raw: Mapping[str, Any], key: str, default: float, where: str, minimum: float = 0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{where}.{key}: expected a number >= {minimum}, got {value!r}")
    return float(value)


def _probe(kind: str, raw: Any, ports: Mapping[str, int], where: str) -> Probe | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("httpGet"), dict):
        raise ConfigError(f"{where}: only httpGet probes are supported; give httpGet: {{path, port}}")
    http = raw["httpGet"]
    port = http.get("port")
    if isinstance(port, int):
        names = [n for n, p in ports.items() if p == port]
        if not names:
            raise ConfigError(f"{where}.httpGet.port: {port} is not a container port")
        port = names[0]
    if port not in ports:
        raise ConfigError(f"{where}.httpGet.port: {port!r} is not a named container port ({sorted(ports)})")
    return Probe(
        kind=kind,
        path=str(http.get("path", "/")),
        port=str(port),
        initial_delay_s=_num(raw, "initialDelaySeconds", 0, where),
        period_s=_num(raw, "periodSeconds", 10, where, 1),
        timeout_s=_num(raw, "timeoutSeconds", 1, where, 1),
        failure_threshold=int(_num(raw, "failureThreshold", 3, where, 1)),
        success_threshold=int(_num(raw, "successThreshold", 1, where, 1)),
    )


def first_deployment(docs: list[dict[str, Any]], path: Path, why: str) -> tuple[dict[str, Any], str, str]:
    """The first Deployment of a manifest, its name, and how to name it in messages; a ConfigError (ending in
    ``why``) when there is none."""
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if not deployments:
        raise ConfigError(f"{path}: no Deployment object; {why}")
    dep = deployments[0]
    name = str((dep.get("metadata") or {}).get("name", ""))
    return dep, name, f"{path}: Deployment {name!r}"


def load_deployment(path: Path = DEFAULT_MANIFEST) -> DeploymentSpec:
    """Parse the first Deployment in ``path`` and its first container."""
    dep, name, where = first_deployment(load_manifest_documents(path), path, "the reference service needs one")
    try:
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise ConfigError(f"{where}: missing {exc} (spec.template.spec.containers[0])") from exc
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"{where}: spec.replicas must be an integer >= 1, got {replicas!r}")
    ports: dict[str, int] = {}
    for p in container.get("ports") or []:
        if not isinstance(p, dict) or "name" not in p or not isinstance(p.get("containerPort"), int):
            raise ConfigError(f"{where}: every container port needs a name and an integer containerPort")
        ports[str(p["name"])] = int(p["containerPort"])
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}: env entries need a name")
        env[str(item["name"])] = "" if item.get("value") is None else str(item["value"])
    cwhere = f"{where} container {container.get('name', '?')!r}"
    return DeploymentSpec(
        name=name,
        replicas=replicas,
        image=str(container.get("image", "")),
        args=tuple(str(a) for a in container.get("args") or ()),
        env=env,
        ports=ports,
        startup=_probe("startup", container.get("startupProbe"), ports, f"{cwhere}.startupProbe"),
        readiness=_probe("readiness", container.get("readinessProbe"), ports, f"{cwhere}.readinessProbe"),
        liveness=_probe("liveness", container.get("livenessProbe"), ports, f"{cwhere}.livenessProbe"),
        termination_grace_s=_num(pod, "terminationGracePeriodSeconds", 30, where),
        labels=dict((spec.get("selector") or {}).get("matchLabels") or {}),
        source=str(path),
    )
