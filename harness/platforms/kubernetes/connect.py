"""Build the API client for the chosen kubeconfig and context, after the safety checks.

The context name is checked against the production pattern before a client exists, so a refused
context never receives a single request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.platforms.kubernetes.api import KubeApi
from harness.platforms.kubernetes.settings import KubernetesSettings

__all__ = ["Target", "connect", "kubeconfig_path"]


@dataclass(frozen=True)
class Target:
    kubeconfig: str
    context: str
    cluster: str
    server: str


def kubeconfig_path(settings: KubernetesSettings) -> str:
    return os.path.expanduser(settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config")


def resolve(settings: KubernetesSettings) -> Target | None:
    """The context and cluster the settings point at (None in dry-run when there is no kubeconfig)."""
    from kubernetes import config

    path = kubeconfig_path(settings)
    if not Path(path).exists():
        if settings.dry_run:
            return None
        raise ConfigError(f"no kubeconfig at {path}; pass --kubeconfig FILE or set KUBECONFIG")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except config.ConfigException as exc:
        raise ConfigError(f"kubeconfig {path}: {exc}") from exc
    name = settings.context or (active or {}).get("name", "")
    chosen = [c for c in contexts or [] if c.get("name") == name]
    if not chosen:
        known = ", ".join(c.get("name", "?") for c in contexts or [])
        raise ConfigError(f"kubeconfig {path} has no context {name!r} (has: {known}); pass --context NAME")
    cluster = str((chosen[0].get("context") or {}).get("cluster", ""))
    raw: dict[str, Any] = {}
    try:
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, ValueError):
        pass
    server = next(
        (
            str((c.get("cluster") or {}).get("server", ""))
            for c in raw.get("clusters") or []
            if c.get("name") == cluster
        ),
        "",
    )
    return Target(path, name, cluster, server)


def connect(settings: KubernetesSettings) -> tuple[KubeApi, Target | None]:
    target = resolve(settings)
    if target is not None:
        settings.check_context(target.context, target.cluster)
    if settings.dry_run:
        return KubeApi(None, dry_run=True), target
    assert target is not None
    from kubernetes import config

    try:
        client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=target.kubeconfig, context=target.context, persist_config=False
        )
    except config.ConfigException as exc:
        raise ConfigError(f"kubeconfig {target.kubeconfig} context {target.context!r}: {exc}") from exc
    return KubeApi(client), target
