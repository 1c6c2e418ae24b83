"""The explicit mapping from ``--platform`` names to platform factories."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PlatformError
from harness.platforms.base import Platform

__all__ = ["PLATFORMS", "add_dry_run_argument", "add_platform_arguments", "platform_from_args"]


def _state_dir(args: argparse.Namespace) -> Path:
    from harness.platforms.local.settings import default_state_dir

    state_dir = getattr(args, "state_dir", None)
    return Path(state_dir).absolute() if state_dir else default_state_dir()


def _attached(args: argparse.Namespace, for_up: bool) -> Platform:
    """A service started outside the harness, recorded by ``harness attach`` in the local state directory."""
    from harness.platforms.attached.platform import AttachedPlatform
    from harness.platforms.attached.settings import ATTACHED_FILE, AttachedSettings

    state_dir = _state_dir(args)
    if not (state_dir / ATTACHED_FILE).exists():
        raise PlatformError(f"nothing is attached in {state_dir}; run 'harness attach --endpoint URL' first")
    return AttachedPlatform(AttachedSettings.load(state_dir))


def _local(args: argparse.Namespace, for_up: bool) -> Platform:
    """The harness's own local service, or (after ``harness attach``) the attached one in the same slot."""
    from harness.platforms.attached.settings import ATTACHED_FILE
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings

    state_dir = _state_dir(args)
    if (state_dir / ATTACHED_FILE).exists():
        return _attached(args, for_up)  # its up() says to detach first
    if not for_up and (state_dir / "settings.json").exists():
        return LocalPlatform(LocalSettings.load(state_dir))
    values: dict[str, Any] = {"state_dir": state_dir}
    for key in ("manifest", "replicas", "http_port", "grpc_port", "prometheus_port", "stats_port",
                "replica_address_base", "front_address", "time_scale", "queue_delay_ms", "model_instances",
                "model_repository", "gpus_per_replica"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = Path(value).absolute() if key in ("manifest", "model_repository") else value
    if getattr(args, "retries", False):
        values["retries"] = True
    if getattr(args, "no_prometheus", False):
        values["prometheus"] = False
    if getattr(args, "ready_timeout", None) is not None:
        values["ready_timeout_s"] = args.ready_timeout
    return LocalPlatform(LocalSettings(**values))


def _kubernetes(args: argparse.Namespace, for_up: bool) -> Platform:
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import (
        KubernetesSettings,
        default_state_dir,
        load_settings_file,
    )

    values: dict[str, object] = {}
    if getattr(args, "k8s_settings", None):
        values.update(load_settings_file(Path(args.k8s_settings)))
    # --k8s-state-dir; else the generic platform state directory, which is how Chaos Toolkit activities
    # (harness_state_dir) reach the state, and so the settings, that ``up`` saved.
    state = getattr(args, "k8s_state_dir", None) or getattr(args, "state_dir", None)
    base = Path(state).absolute() if state else default_state_dir()
    namespace = getattr(args, "namespace", None)
    if not for_up and namespace and (base / namespace / "settings.json").exists():
        saved = KubernetesSettings.load(base / namespace).to_json()
        values = {**saved, **values}  # what up was given, unless the settings file says otherwise
    if namespace:
        values["namespace"] = namespace
        values["namespace_confirmed"] = True
    values["state_dir"] = base
    for key in ("context", "kubeconfig", "gpus_per_replica", "prometheus_url", "image", "replicas",
                "production_pattern", "service_http", "service_grpc", "agent_image"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    if getattr(args, "manifest", None):
        values["manifest"] = Path(args.manifest).absolute()
    if getattr(args, "ready_timeout", None) is not None:
        values["ready_timeout_s"] = args.ready_timeout
    for flag, key in (("prometheus_operator", "prometheus_operator"), ("dry_run", "dry_run"),
                      ("i_know_this_is_production", "allow_production"),
                      ("allow_privileged_agent", "allow_privileged_agent")):
        if getattr(args, flag, False):
            values[key] = True
    return KubernetesPlatform(KubernetesSettings.from_json({"namespace": "", **values}))


PLATFORMS: dict[str, Callable[[argparse.Namespace, bool], Platform]] = {
    "local": _local,
    "attached": _attached,
    "kubernetes": _kubernetes,
}


def add_platform_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", default="local", choices=sorted(PLATFORMS),
                        help="where the service runs (default: local)")
    parser.add_argument(
        "--state-dir",
        help="the local (or attached) platform's state directory (default: $HARNESS_STATE_DIR or ./.harness/local)",
    )
    k8s = parser.add_argument_group("kubernetes platform (--platform kubernetes)")
    k8s.add_argument("--namespace", help="namespace to act in; naming it here confirms it for the allow-list")
    k8s.add_argument("--context", help="kubeconfig context (default: the current one)")
    k8s.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    k8s.add_argument("--k8s-settings", metavar="FILE",
                     help="YAML settings: allowed_namespaces, prometheus_url, production_pattern, ...")
    k8s.add_argument("--k8s-state-dir", help="local state (events, watcher) (default: ./.harness/kubernetes)")
    k8s.add_argument("--gpus-per-replica", type=int,
                     help="nvidia.com/gpu limit per pod (0 removes it); local: GPUs pinned to each replica "
                          "(CUDA_VISIBLE_DEVICES, round-robin; default 1 when a GPU is visible, else 0)")
    k8s.add_argument("--image", help="Triton image (default: the manifest's NGC image)")
    k8s.add_argument("--prometheus-url", help="the cluster's Prometheus, as reachable from here")
    k8s.add_argument("--service-http", metavar="URL",
                     help="how clients here reach the Service's HTTP port (e.g. through kubectl port-forward)")
    k8s.add_argument("--service-grpc", metavar="HOST:PORT", help="likewise for gRPC")
    k8s.add_argument("--prometheus-operator", action="store_true",
                     help="also apply the ServiceMonitor and PodMonitor (needs the operator's CRDs)")
    k8s.add_argument("--production-pattern", metavar="REGEX",
                     help="context/cluster names to refuse (default: names with a 'prod'/'production' part)")
    k8s.add_argument("--i-know-this-is-production", action="store_true",
                     help="act even on a context that matches the production pattern")
    k8s.add_argument("--allow-privileged-agent", action="store_true",
                     help="let the network block fall back to (or use, block_via: agent) a privileged agent pod in "
                          "the target pod's network namespace where NetworkPolicy is not enforced")
    k8s.add_argument("--agent-image", metavar="IMAGE",
                     help="image of that agent: sh, nsenter, ip and nft (sandbox: harness sandbox agent-image)")


def add_dry_run_argument(parser: argparse.ArgumentParser) -> None:
    """``--dry-run`` for the platform commands (``harness run`` has its own, with its own meaning)."""
    parser.add_argument("--dry-run", action="store_true",
                        help="kubernetes: print every API call it would make, make none")


def platform_from_args(args: argparse.Namespace, for_up: bool = False) -> Platform:
    try:
        factory = PLATFORMS[args.platform]
    except KeyError:
        raise ConfigError(
            f"unknown platform {args.platform!r}; choose one of: {', '.join(sorted(PLATFORMS))}"
        ) from None
    return factory(args, for_up)


def platform_args_for_chaos(args: argparse.Namespace) -> dict[str, Any]:
    """The platform selection that experiments need in their configuration (``harness_<key>``), so the
    Chaos Toolkit functions reach the same platform as the command that runs them. Where the load runs is
    added by the commands that run experiments (``harness.platforms.kubernetes.cluster_load.placement``)."""
    state_dir = getattr(args, "state_dir", None)
    if args.platform == "kubernetes":
        state_dir = getattr(args, "k8s_state_dir", None) or state_dir
    return {
        "platform": args.platform,
        "state_dir": str(Path(state_dir).absolute()) if state_dir else None,
        "namespace": getattr(args, "namespace", None),
        "kube_context": getattr(args, "context", None),
        "allow_privileged_agent": True if getattr(args, "allow_privileged_agent", False) else None,
        "agent_image": getattr(args, "agent_image", None),
    }
