"""The explicit mapping from ``--platform`` names to platform factories, and ``PlatformRef``: which platform a
run acts on, as one small value that crosses the Chaos Toolkit boundary.

A command opens its platform from its flags; the Chaos Toolkit activities of the same run must reach the
same platform, but Chaos Toolkit hands them only the experiment's ``configuration`` mapping. ``PlatformRef``
is what travels: the command writes it into the configuration (``to_configuration``), the activities read it
back (``from_configuration``, through ``RunSettings.from_configuration``) and open it (``open``). The keys are
the ones experiment files and ``--var`` have always used (``harness_platform``, ``harness_state_dir``,
``harness_namespace``, ``harness_kube_context``, ``harness_kubeconfig``, ``harness_allow_privileged_agent``,
``harness_agent_image``);
this module is the only one that reads them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PlatformError
from harness.platforms.base import Platform

__all__ = ["PERMISSION_KEYS", "PLATFORMS", "PLATFORM_KEYS", "PlatformRef", "add_dry_run_argument",
           "add_platform_arguments", "platform_args_for_chaos", "platform_from_args"]

# An experiment file or --var may name the platform; the agent's permission comes only from the command's own
# flags (--allow-privileged-agent, --agent-image), so a file that sets it is refused as an unknown setting.
PLATFORM_KEYS = frozenset({"harness_platform", "harness_state_dir", "harness_namespace", "harness_kube_context",
                           "harness_kubeconfig"})
PERMISSION_KEYS = frozenset({"harness_allow_privileged_agent", "harness_agent_image"})


@dataclass(frozen=True)
class PlatformRef:
    """A platform by name and where its state is: enough to open the one a command has already set up.

    ``state_dir``: the local (or attached) platform's state directory, or the Kubernetes one (events,
    watcher, the settings ``up`` saved); None: the platform's default. ``allow_privileged_agent`` and
    ``agent_image`` are the run's permission for the network block's agent route (``--allow-privileged-agent``,
    ``--agent-image``); opening the platform does not use them (its saved settings may allow the agent too).
    """

    name: str = "local"
    state_dir: Path | None = None
    namespace: str | None = None
    kube_context: str | None = None
    kubeconfig: str | None = None
    allow_privileged_agent: bool = False
    agent_image: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PlatformRef:
        """The platform a command's flags select (``add_platform_arguments``); Kubernetes keeps its state in
        ``--k8s-state-dir`` when given, else in ``--state-dir``, else in its default (``./.harness/kubernetes``)."""
        state_dir = getattr(args, "state_dir", None)
        if args.platform == "kubernetes":
            from harness.platforms.kubernetes.settings import default_state_dir

            # Named even when it is the default: the Chaos Toolkit activities open the platform from it, and
            # an experiment's own default (the local platform's directory) holds none of what ``up`` saved
            # (the kubeconfig among it), so the control failed with "no kubeconfig at ~/.kube/config".
            state_dir = getattr(args, "k8s_state_dir", None) or state_dir or default_state_dir()
        return cls(name=str(args.platform), state_dir=Path(state_dir).absolute() if state_dir else None,
                   namespace=getattr(args, "namespace", None) or None,
                   kube_context=getattr(args, "context", None) or None,
                   kubeconfig=str(Path(args.kubeconfig).absolute()) if getattr(args, "kubeconfig", None) else None,
                   allow_privileged_agent=bool(getattr(args, "allow_privileged_agent", False)),
                   agent_image=getattr(args, "agent_image", None) or None)

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any]) -> PlatformRef:
        """Read back what ``to_configuration`` wrote. A missing or empty key is the default (``local``, the
        platform's own state directory), so a plain ``chaos run`` of an experiment acts on the local service;
        the agent is allowed only by a real ``true`` (a string "false" must not allow a privileged pod)."""
        def text(key: str) -> str | None:
            value = configuration.get(key)
            return None if value in (None, "") else str(value)

        state_dir = text("harness_state_dir")
        return cls(name=text("harness_platform") or "local", state_dir=Path(state_dir) if state_dir else None,
                   namespace=text("harness_namespace"), kube_context=text("harness_kube_context"),
                   kubeconfig=text("harness_kubeconfig"),
                   allow_privileged_agent=configuration.get("harness_allow_privileged_agent") is True,
                   agent_image=text("harness_agent_image"))

    def to_configuration(self) -> dict[str, Any]:
        """The configuration entries that carry this reference. Unset values are left out, so an experiment's
        own entries are not overwritten with nulls."""
        entries: dict[str, Any] = {
            "harness_platform": self.name,
            "harness_state_dir": str(self.state_dir) if self.state_dir is not None else None,
            "harness_namespace": self.namespace,
            "harness_kube_context": self.kube_context,
            "harness_kubeconfig": self.kubeconfig,
            "harness_allow_privileged_agent": True if self.allow_privileged_agent else None,
            "harness_agent_image": self.agent_image,
        }
        return {key: value for key, value in entries.items() if value is not None}

    def open(self, options: Mapping[str, Any] | None = None, for_up: bool = False) -> Platform:
        """The platform, opened from its saved state (what ``up`` or ``attach`` recorded). ``options``: a
        command's other platform flags (``--manifest``, ``--replicas``, ``--k8s-settings``, ...), by their
        argparse names; the Chaos Toolkit activities give none."""
        try:
            factory = PLATFORMS[self.name]
        except KeyError:
            raise ConfigError(
                f"unknown platform {self.name!r}; choose one of: {', '.join(sorted(PLATFORMS))}"
            ) from None
        return factory(self, options or {}, for_up)


Options = Mapping[str, Any]


def _state_dir(ref: PlatformRef) -> Path:
    from harness.platforms.local.settings import default_state_dir

    return ref.state_dir.absolute() if ref.state_dir else default_state_dir()


def _attached(ref: PlatformRef, options: Options, for_up: bool) -> Platform:
    """A service started outside the harness, recorded by ``harness attach`` in the local state directory."""
    from harness.platforms.attached.platform import AttachedPlatform
    from harness.platforms.attached.settings import ATTACHED_FILE, AttachedSettings

    state_dir = _state_dir(ref)
    if not (state_dir / ATTACHED_FILE).exists():
        raise PlatformError(f"nothing is attached in {state_dir}; run 'harness attach --endpoint URL' first")
    return AttachedPlatform(AttachedSettings.load(state_dir))


def _local(ref: PlatformRef, options: Options, for_up: bool) -> Platform:
    """The harness's own local service, or (after ``harness attach``) the attached one in the same slot."""
    from harness.platforms.attached.settings import ATTACHED_FILE
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings

    state_dir = _state_dir(ref)
    if (state_dir / ATTACHED_FILE).exists():
        return _attached(ref, options, for_up)  # its up() says to detach first
    if not for_up and (state_dir / "settings.json").exists():
        return LocalPlatform(LocalSettings.load(state_dir))
    values: dict[str, Any] = {"state_dir": state_dir}
    for key in ("manifest", "replicas", "http_port", "grpc_port", "prometheus_port", "stats_port",
                "replica_address_base", "front_address", "time_scale", "queue_delay_ms", "model_instances",
                "model_repository", "gpus_per_replica"):
        value = options.get(key)
        if value is not None:
            values[key] = Path(value).absolute() if key in ("manifest", "model_repository") else value
    if options.get("retries", False):
        values["retries"] = True
    if options.get("no_prometheus", False):
        values["prometheus"] = False
    if options.get("ready_timeout") is not None:
        values["ready_timeout_s"] = options["ready_timeout"]
    return LocalPlatform(LocalSettings(**values))


def _kubernetes(ref: PlatformRef, options: Options, for_up: bool) -> Platform:
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import (
        KubernetesSettings,
        default_state_dir,
        load_settings_file,
    )

    values: dict[str, object] = {}
    if options.get("k8s_settings"):
        values.update(load_settings_file(Path(options["k8s_settings"])))
    # --k8s-state-dir, else the generic platform state directory (PlatformRef.from_args), which is how Chaos
    # Toolkit activities (harness_state_dir) reach the state, and so the settings, that ``up`` saved.
    base = ref.state_dir.absolute() if ref.state_dir else default_state_dir()
    namespace = ref.namespace
    if not for_up and namespace and (base / namespace / "settings.json").exists():
        saved = KubernetesSettings.load(base / namespace).to_json()
        values = {**saved, **values}  # what up was given, unless the settings file says otherwise
    if namespace:
        values["namespace"] = namespace
        values["namespace_confirmed"] = True
    values["state_dir"] = base
    if ref.kube_context is not None:
        values["context"] = ref.kube_context
    if ref.kubeconfig is not None:
        values["kubeconfig"] = ref.kubeconfig
    for key in ("kubeconfig", "gpus_per_replica", "prometheus_url", "image", "replicas",
                "production_pattern", "service_http", "service_grpc", "agent_image"):
        value = options.get(key)
        if value is not None:
            values[key] = value
    if options.get("manifest"):
        values["manifest"] = Path(options["manifest"]).absolute()
    if options.get("ready_timeout") is not None:
        values["ready_timeout_s"] = options["ready_timeout"]
    for flag, key in (("prometheus_operator", "prometheus_operator"), ("dry_run", "dry_run"),
                      ("i_know_this_is_production", "allow_production"),
                      ("allow_privileged_agent", "allow_privileged_agent")):
        if options.get(flag, False):
            values[key] = True
    return KubernetesPlatform(KubernetesSettings.from_json({"namespace": "", **values}))


PLATFORMS: dict[str, Callable[[PlatformRef, Options, bool], Platform]] = {
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
    """The platform a command's flags select, with the command's other platform flags as its options."""
    return PlatformRef.from_args(args).open(vars(args), for_up)


def platform_args_for_chaos(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration entries (``harness_platform``, ``harness_state_dir``, ...) that let the Chaos Toolkit
    functions reach the same platform as the command that runs them. Where the load runs is added by the
    commands that run experiments (``harness.platforms.kubernetes.cluster_load.placement``)."""
    return PlatformRef.from_args(args).to_configuration()
