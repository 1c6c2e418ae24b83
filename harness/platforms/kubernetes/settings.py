"""Settings of the Kubernetes platform and the safety checks that run before any API call.

Parsed once at the edge into a frozen dataclass and saved beside the platform's state, so ``status``,
``down`` and the event watcher act on exactly what ``up`` was given. Safety lives here because it must
hold for every command: the harness acts only in allowed namespaces and refuses production contexts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness.deployment import DEFAULT_MANIFEST
from harness.errors import ConfigError
from harness.jsonfile import write_json_atomic

__all__ = [
    "DEFAULT_PRODUCTION_PATTERN",
    "KubernetesSettings",
    "default_state_dir",
    "load_settings_file",
]

DEFAULT_PRODUCTION_PATTERN = r"(^|[-_.:/])prod(uction)?($|[-_.:/])"
MONITORING_MANIFEST = DEFAULT_MANIFEST.parent / "monitoring.yaml"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def default_state_dir() -> Path:
    return Path(os.environ.get("HARNESS_K8S_STATE_DIR") or Path.cwd() / ".harness" / "kubernetes").absolute()


@dataclass(frozen=True)
class KubernetesSettings:
    namespace: str
    # True when the user named the namespace on the command line: that is the confirmation the
    # allow-list asks for. Otherwise the namespace must be in allowed_namespaces.
    namespace_confirmed: bool = False
    allowed_namespaces: tuple[str, ...] = ()
    context: str = ""  # "" = the kubeconfig's current context
    kubeconfig: str = ""  # "" = $KUBECONFIG or ~/.kube/config
    manifest: Path = DEFAULT_MANIFEST
    prometheus_operator: bool = False  # also apply monitoring.yaml (ServiceMonitor, PodMonitor)
    replicas: int | None = None
    gpus_per_replica: int | None = None  # None: the manifest's nvidia.com/gpu limit; 0 removes it
    image: str = ""  # "" = the manifest's image
    prometheus_url: str = ""  # the cluster's Prometheus, reachable from where the harness runs
    # Where the harness's own clients reach the Service when its cluster DNS name does not resolve
    # here (e.g. http://127.0.0.1:8000 behind `kubectl port-forward svc/triton 8000 8001`).
    service_http: str = ""
    service_grpc: str = ""
    # Image of the in-cluster load pods (the harness with Locust); --load-image overrides it.
    load_image: str = ""
    production_pattern: str = DEFAULT_PRODUCTION_PATTERN
    allow_production: bool = False
    dry_run: bool = False
    ttl_s: float = 24 * 3600.0  # expiry written on the objects `up` creates
    fault_ttl_s: float = 2 * 3600.0  # expiry on fault objects (NetworkPolicies, env patches)
    # The network block's agent route (harness.platforms.kubernetes.netagent): the one privileged pod the
    # harness may start, only when allowed here or by --allow-privileged-agent; its image has sh, nsenter, nft.
    allow_privileged_agent: bool = False
    agent_image: str = ""
    ready_timeout_s: float = 600.0
    state_dir: Path = field(default_factory=default_state_dir)

    def __post_init__(self) -> None:
        problems = []
        if not self.namespace:
            problems.append("no namespace: pass --namespace NAME (or set 'namespace' in the settings file)")
        elif not _DNS1123.match(self.namespace) or len(self.namespace) > 63:
            problems.append(f"namespace {self.namespace!r} is not a valid Kubernetes name (lowercase, digits, '-')")
        elif not self.namespace_confirmed and self.namespace not in self.allowed_namespaces:
            problems.append(
                f"namespace {self.namespace!r} is not on the allow-list {list(self.allowed_namespaces)}; "
                f"add it to allowed_namespaces in the settings file or pass --namespace {self.namespace} "
                f"explicitly"
            )
        try:
            re.compile(self.production_pattern)
        except re.error as exc:
            problems.append(f"production context pattern {self.production_pattern!r} is not a regex: {exc}")
        if self.replicas is not None and self.replicas < 1:
            problems.append(f"replicas must be at least 1, got {self.replicas}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            problems.append(f"--gpus-per-replica must be 0 or more, got {self.gpus_per_replica}")
        if self.ttl_s <= 0 or self.fault_ttl_s <= 0 or self.ready_timeout_s <= 0:
            problems.append("ttl, fault ttl and ready timeout must be positive")
        if problems:
            raise ConfigError("invalid kubernetes platform settings:\n  - " + "\n  - ".join(problems))

    def check_context(self, context: str, cluster: str = "") -> None:
        """Refuse a production-looking context (or cluster) name unless explicitly allowed."""
        if self.allow_production:
            return
        pattern = re.compile(self.production_pattern, re.IGNORECASE)
        for what, name in (("context", context), ("cluster", cluster)):
            if name and pattern.search(name):
                raise ConfigError(
                    f"refusing to act on Kubernetes {what} {name!r}: it matches the production pattern "
                    f"{self.production_pattern!r}. Use a staging context (--context), or pass "
                    f"--i-know-this-is-production if you really mean it"
                )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["manifest"] = str(self.manifest)
        out["state_dir"] = str(self.state_dir)
        out["allowed_namespaces"] = list(self.allowed_namespaces)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KubernetesSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["manifest"] = Path(values.get("manifest") or DEFAULT_MANIFEST)
        values["state_dir"] = Path(values.get("state_dir") or default_state_dir())
        values["allowed_namespaces"] = tuple(values.get("allowed_namespaces") or ())
        return cls(**values)

    def save(self, directory: Path) -> Path:
        path = directory / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())
        return path

    @classmethod
    def load(cls, state_dir: Path) -> KubernetesSettings:
        path = state_dir / "settings.json"
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the kubernetes platform's settings at {path}: {exc}") from exc


_FILE_KEYS: dict[str, type | tuple[type, ...]] = {
    "namespace": str,
    "allowed_namespaces": list,
    "context": str,
    "kubeconfig": str,
    "prometheus_url": str,
    "service_http": str,
    "service_grpc": str,
    "production_pattern": str,
    "image": str,
    "load_image": str,
    "gpus_per_replica": int,
    "prometheus_operator": bool,
    "allow_privileged_agent": bool,
    "agent_image": str,
    "ttl_s": (int, float),
    "fault_ttl_s": (int, float),
    "ready_timeout_s": (int, float),
}


def load_settings_file(path: Path) -> dict[str, Any]:
    """A YAML settings file (``kubernetes:`` section or top level); every problem reported at once."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("kubernetes"), dict):
        raw = raw["kubernetes"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    problems = []
    for key, value in raw.items():
        if key not in _FILE_KEYS:
            problems.append(f"unknown key {key!r} (known: {', '.join(sorted(_FILE_KEYS))})")
        elif not isinstance(value, _FILE_KEYS[key]) or (isinstance(value, bool) and _FILE_KEYS[key] is not bool):
            problems.append(f"{key}: wrong type {type(value).__name__}")
    if problems:
        raise ConfigError(f"{path}:\n  - " + "\n  - ".join(problems))
    if "allowed_namespaces" in raw:
        raw["allowed_namespaces"] = tuple(str(n) for n in raw["allowed_namespaces"])
    return raw
