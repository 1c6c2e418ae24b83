"""What the harness reads from a Kubernetes manifest, as one pydantic model: ``check-deployment``'s checks,
the platforms' pod-spec faults and the Kubernetes user-manifest reader all read the Deployment through it.

Only the fields the checks need are read; everything else in the manifest is ignored (``extra="ignore"``),
so a real production manifest with sidecars, volumes and annotations parses as well as the reference one.
Kubernetes defaults are filled in where the manifest leaves a field out (probe period 10 s, failure
threshold 3, grace 30 s, maxSurge/maxUnavailable 25 %), because those defaults are what the cluster runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.deployment import first_deployment, load_manifest_documents
from harness.errors import ConfigError, describe_validation_error

__all__ = ["TRITON_PORTS", "DeploymentView", "ProbeView", "parse_quantity_mb", "read_documents", "read_manifest",
           "resolve_rollout", "triton_ports"]

# Triton's own default port numbers by role; a manifest may move them (triton_ports reads where).
TRITON_PORTS: Mapping[str, int] = {"http": 8000, "grpc": 8001, "metrics": 8002}
_ARG_FLAGS = {"http": "--http-port=", "grpc": "--grpc-port=", "metrics": "--metrics-port="}

DEFAULT_EXIT_TIMEOUT_S = 30.0  # tritonserver --exit-timeout-secs


class _K8s(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _HttpGet(_K8s):
    path: str = "/"
    port: int | str = ""


class ProbeView(_K8s):
    """A container probe: how long it tolerates a server that does not answer yet."""

    http_get: _HttpGet | None = Field(default=None, alias="httpGet")
    initial_delay_s: float = Field(default=0, ge=0, alias="initialDelaySeconds")
    period_s: float = Field(default=10, ge=1, alias="periodSeconds")
    timeout_s: float = Field(default=1, ge=1, alias="timeoutSeconds")
    failure_threshold: int = Field(default=3, ge=1, alias="failureThreshold")

    @property
    def budget_s(self) -> float:
        """How long a not-yet-answering server survives this probe: initialDelay + period x failureThreshold."""
        return self.initial_delay_s + self.period_s * self.failure_threshold

    @property
    def path(self) -> str:
        return self.http_get.path if self.http_get else ""


class _Strategy(_K8s):
    type: str = "RollingUpdate"
    rolling_update: dict[str, int | str] = Field(default_factory=dict, alias="rollingUpdate")


class PdbView(_K8s):
    name: str = ""
    min_available: int | str | None = Field(default=None, alias="minAvailable")
    max_unavailable: int | str | None = Field(default=None, alias="maxUnavailable")


class DeploymentView(BaseModel):
    """Everything the checks judge, with Kubernetes' defaults applied."""

    model_config = ConfigDict(frozen=True)

    source: str
    name: str
    replicas: int = Field(ge=0)
    strategy: str
    max_surge: int
    max_unavailable: int
    args: tuple[str, ...]
    startup: ProbeView | None
    readiness: ProbeView | None
    liveness: ProbeView | None
    memory_limit_mb: float | None
    prestop_s: float
    termination_grace_s: float
    anti_affinity: bool
    pdb: PdbView | None

    def arg(self, flag: str) -> str | None:
        """The value of ``--flag=value`` (or ``--flag value``) in the container args, None when absent."""
        for i, a in enumerate(self.args):
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
            if a == flag and i + 1 < len(self.args):
                return self.args[i + 1]
        return None

    @property
    def exit_timeout_s(self) -> float:
        value = self.arg("--exit-timeout-secs")
        try:
            return float(value) if value is not None else DEFAULT_EXIT_TIMEOUT_S
        except ValueError:
            raise ConfigError(f"{self.source}: --exit-timeout-secs={value!r} is not a number") from None

    @property
    def load_budget(self) -> tuple[str, float] | None:
        """Which probe can kill a server that is still loading, and its budget: the startup probe when there
        is one (liveness waits for it), else liveness (readiness never kills)."""
        if self.startup is not None:
            return "startupProbe", self.startup.budget_s
        if self.liveness is not None:
            return "livenessProbe", self.liveness.budget_s
        return None


_UNITS = {"": 1 / 2**20, "k": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20, "T": 1e12 / 2**20,
          "Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0, "Ti": 1024.0**2}


def parse_quantity_mb(value: object, where: str) -> float:
    """A Kubernetes memory quantity (``4Gi``, ``512Mi``, ``1G``, bytes) in MiB."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2) not in _UNITS:
        raise ConfigError(f"{where}: {value!r} is not a memory quantity (e.g. 4Gi, 512Mi, 2G)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _count_or_percent(value: int | str, replicas: int, round_up: bool, where: str) -> int:
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9]+)\s*%\s*", value)
    if not match:
        raise ConfigError(f"{where}: {value!r} is neither a whole number nor a percentage like 25%")
    exact = replicas * int(match.group(1)) / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_rollout(raw: dict[str, int | str], replicas: int, where: str) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts: surge rounds up, unavailability down, as Kubernetes does."""
    surge = _count_or_percent(raw.get("maxSurge", "25%"), replicas, True, f"{where}.maxSurge")
    unavailable = _count_or_percent(raw.get("maxUnavailable", "25%"), replicas, False, f"{where}.maxUnavailable")
    return surge, unavailable


def _prestop_s(container: dict[str, Any]) -> float:
    """The preStop delay: a ``sleep`` hook (Kubernetes 1.29+) or an exec of ``sleep N``; 0 when none."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if isinstance(hook.get("sleep"), dict):
        return float(hook["sleep"].get("seconds", 0))
    command = " ".join(str(c) for c in ((hook.get("exec") or {}).get("command") or []))
    match = re.search(r"\bsleep\s+([0-9.]+)", command)
    return float(match.group(1)) if match else 0.0


def _selects(pdb: dict[str, Any], labels: dict[str, Any]) -> bool:
    wanted = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def read_manifest(path: Path) -> DeploymentView:
    """Parse the first Deployment of ``path`` (its Triton container) and the PodDisruptionBudget selecting it."""
    return read_documents(load_manifest_documents(path), path)


def read_documents(docs: list[dict[str, Any]], path: Path) -> DeploymentView:
    """``read_manifest`` for documents already loaded (a live Deployment read from the cluster: ``path`` then
    names it in messages)."""
    dep, name, where = first_deployment(docs, path, "check-deployment judges a Deployment")
    try:
        spec = dep["spec"]
        pod_meta = spec["template"].get("metadata") or {}
        pod = spec["template"]["spec"]
        containers = pod["containers"]
        # Triton's container, found as the platform finds it (a user's first container may be a sidecar)
        container = next((c for c in containers if isinstance(c, dict) and "http" in triton_ports(c)), containers[0])
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: missing {exc} (spec.template.spec.containers[0])") from exc
    replicas = int(spec.get("replicas", 1))
    strategy = _Strategy.model_validate(spec.get("strategy") or {})
    surge, unavailable = (resolve_rollout(strategy.rolling_update, replicas, f"{where}.spec.strategy.rollingUpdate")
                          if strategy.type == "RollingUpdate" else (0, replicas))
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    affinity = pod.get("affinity") or {}
    labels = pod_meta.get("labels") or {}
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget" and _selects(d, labels)]
    pdb = None
    if pdbs:
        pdb = PdbView.model_validate({"name": (pdbs[0].get("metadata") or {}).get("name", ""),
                                      **(pdbs[0].get("spec") or {})})
    try:
        return DeploymentView(
            source=str(path),
            name=name,
            replicas=replicas,
            strategy=strategy.type,
            max_surge=surge,
            max_unavailable=unavailable,
            args=tuple(str(a) for a in [*(container.get("command") or [])[1:], *(container.get("args") or [])]),
            startup=ProbeView.model_validate(container["startupProbe"]) if container.get("startupProbe") else None,
            readiness=(ProbeView.model_validate(container["readinessProbe"])
                       if container.get("readinessProbe") else None),
            liveness=ProbeView.model_validate(container["livenessProbe"]) if container.get("livenessProbe") else None,
            memory_limit_mb=parse_quantity_mb(limit, f"{where}.resources.limits.memory") if limit else None,
            prestop_s=_prestop_s(container),
            termination_grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
            anti_affinity=bool(affinity.get("podAntiAffinity") or pod.get("topologySpreadConstraints")),
            pdb=pdb,
        )
    except ValidationError as exc:
        raise ConfigError(f"{where}: " + "; ".join(describe_validation_error(exc))) from exc


def _port_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def triton_ports(container: Mapping[str, Any]) -> dict[str, int]:
    """The container's Triton ports by role: a port named ``http``/``grpc``/``metrics``; else the port set
    by ``--http-port=`` (& co.) in its args; else Triton's default number among its declared ports."""
    declared = [p for p in container.get("ports") or [] if isinstance(p, dict)]
    by_name = {str(p.get("name")): n for p in declared if (n := _port_number(p.get("containerPort"))) is not None}
    numbers = set(by_name.values()) | {n for p in declared if (n := _port_number(p.get("containerPort"))) is not None}
    args = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    out: dict[str, int] = {}
    for role, default in TRITON_PORTS.items():
        if role in by_name:
            out[role] = by_name[role]
            continue
        flagged = [a.removeprefix(_ARG_FLAGS[role]) for a in args if a.startswith(_ARG_FLAGS[role])]
        if flagged and flagged[-1].isdigit() and int(flagged[-1]) in numbers:
            out[role] = int(flagged[-1])
        elif default in numbers:
            out[role] = default
    return out
