"""Which fault this machine can inject on which platform, and the refusal `harness run` gives when it cannot.

A fault row answers for the fault's own needs (nftables for the block, a GPU or a writable memory cgroup
for memory pressure); whether the platform itself can start is its own row, checked again by the platform
when it starts. ``refusal`` and ``harness doctor`` use the same checks, so they give the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.doctor import _machine
from harness.doctor._machine import Check
from harness.errors import ConfigError, EnvironmentProblem
from harness.faults.cgroups import HostPaths, MemoryController
from harness.run_settings import RunSettings, load_document

__all__ = ["ACTION_FAULTS", "FAULTS", "PLATFORMS", "Diagnosis", "FaultSupport", "diagnose", "experiment_faults",
           "fault_support", "refusal", "refuse_unrunnable", "refuse_unrunnable_files"]

FAULTS = ("pod-kill", "network-policy-block", "slow-model-load", "gpu-memory-pressure", "rolling-update",
          "probe-kills-slow-load", "corrupt-weights-rollout", "oom-at-load", "model-unload", "bad-version-rollout",
          "queue-overflow")
PLATFORMS = ("local", "kubernetes")
# The injecting actions of harness.chaos.actions, by the fault they inject (a compound experiment has several).
ACTION_FAULTS = {"kill_replicas": "pod-kill", "block_network": "network-policy-block",
                 "slow_model_load": "slow-model-load", "memory_pressure": "gpu-memory-pressure",
                 "rolling_update": "rolling-update", "probe_kills_slow_load": "probe-kills-slow-load",
                 "corrupt_weights_rollout": "corrupt-weights-rollout", "oom_at_load": "oom-at-load",
                 "unload_model": "model-unload", "bad_version_rollout": "bad-version-rollout",
                 "queue_overflow": "queue-overflow"}

_K8S_NOTES = {
    "pod-kill": "deletes pods through the API (chaostoolkit-kubernetes)",
    "network-policy-block": "a NetworkPolicy, probed by each run; where the network plugin ignores it, a "
                            "privileged agent when allowed (--allow-privileged-agent), else void. Enforcement here "
                            "not probed: harness doctor --platform kubernetes --namespace NS",
    "slow-model-load": "patches the Deployment, a rolling restart",
    "gpu-memory-pressure": "a hog exec'd in the pod: GPU memory when the pod has a GPU, else the pod's own memory "
                           "limit",
    # Pod-spec faults (harness.faults.podspec): a template patch the Deployment controller rolls out (mode: all)
    "rolling-update": "patches the pod template (strategy, preStop as asked); the Deployment controller rolls it",
    "probe-kills-slow-load": "patches the probe budget and load delay; the kubelet's probe kills the new pods",
    "corrupt-weights-rollout": "rolls out a model-repository ConfigMap with a corrupt weight file",
    "oom-at-load": "patches resources.limits.memory below the load-time arena; void where the cluster does not "
                   "enforce memory limits",
    # Model-lifecycle faults (harness.faults.model_lifecycle): python3 exec'd in the Triton container
    "model-unload": "unloads the model through the model-control API (exec in the pod, HTTP on localhost)",
    "bad-version-rollout": "writes a failing version into the pod's model repository and loads it (exec in the pod)",
    "queue-overflow": "reloads with max_queue_size and bursts from inside the pod (exec in the pod)",
}


@dataclass(frozen=True)
class FaultSupport:
    fault: str
    platform: str
    ok: bool
    how: str = ""  # for a yes: what the fault will really do here
    reason: str = ""  # for a no
    fix: str = ""

    def message(self) -> str:
        return (f"{self.fault} cannot be injected on the {self.platform} platform here: {self.reason}"
                + (f". Fix: {self.fix}" if self.fix else ""))


def _memory_pressure_local(host: HostPaths) -> FaultSupport:
    gpu = _machine.gpu(host)
    if gpu.ok:
        return FaultSupport("gpu-memory-pressure", "local", True,
                            f"GPU memory held by a CUDA driver hog ({gpu.detail})")
    if (host.root / "dev" / "nvidia0").exists() and _machine.find_program("nvidia-smi")[0]:
        # a visible GPU means replicas are pinned to it by default (--gpus-per-replica), so the fault must use it
        return FaultSupport("gpu-memory-pressure", "local", False, reason=gpu.detail, fix=gpu.fix)
    _, found = _machine.cgroup_memory(host)
    if isinstance(found, MemoryController):
        return FaultSupport("gpu-memory-pressure", "local", True,
                            f"host-memory analogue (no GPU): replicas confined in {found.describe()}")
    return FaultSupport("gpu-memory-pressure", "local", False,
                        reason=f"no usable GPU, and no writable memory cgroup for its host-memory analogue: "
                               f"{found.reason}", fix=found.fix)


def _network_block_k8s(probe: Mapping[str, Any]) -> FaultSupport:
    """The network block on the cluster ``harness doctor --platform kubernetes`` probed (policyprobe)."""
    fault, found = "network-policy-block", str(probe.get("detail", ""))
    if probe.get("enforced") is True:
        return FaultSupport(fault, "kubernetes", True, f"a NetworkPolicy: {found}")
    if probe.get("enforced") is False:
        if not probe.get("agent_refusal"):
            return FaultSupport(fault, "kubernetes", True, f"NetworkPolicy {found}; the block goes through the "
                                                           "privileged agent (allowed, image set)")
        return FaultSupport(fault, "kubernetes", False, reason=f"NetworkPolicy {found}: the block would be void",
                            fix=str(probe["agent_refusal"]))
    return FaultSupport(fault, "kubernetes", False, reason=f"NetworkPolicy enforcement {found}",
                        fix="check the namespace, the image (--image) and the kubeconfig, then run harness doctor "
                            "--platform kubernetes again")


def fault_support(fault: str, platform: str, host: HostPaths | None = None,
                  k8s_probe: Mapping[str, Any] | None = None) -> FaultSupport:
    """Whether ``fault`` can be injected on ``platform`` from this machine (only the checks it needs run);
    ``k8s_probe``: what the NetworkPolicy probe found on the cluster (``harness doctor --platform kubernetes``)."""
    host = host or HostPaths()
    if platform == "kubernetes" and fault == "network-policy-block" and k8s_probe is not None:
        return _network_block_k8s(k8s_probe)
    if platform == "kubernetes":
        return FaultSupport(fault, platform, True, _K8S_NOTES.get(fault, ""))
    if fault == "oom-at-load":
        _, found = _machine.cgroup_memory(host)
        if isinstance(found, MemoryController):
            return FaultSupport(fault, platform, True, f"a per-replica memory limit in {found.describe()}")
        return FaultSupport(fault, platform, False, reason=f"no writable memory cgroup for the limit: {found.reason}",
                            fix=found.fix)
    if fault == "network-policy-block":
        nft = _machine.nftables(host)
        if nft.ok:
            return FaultSupport(fault, platform, True, "nftables rules in a table of the harness's own")
        return FaultSupport(fault, platform, False, reason=nft.detail, fix=nft.fix)
    if fault == "gpu-memory-pressure":
        return _memory_pressure_local(host)
    how = {"pod-kill": "SIGKILL of a replica's process group; the supervisor restarts it",
           "slow-model-load": "restart with a changed parameter (the model loads slowly)",
           "rolling-update": "pods deleted in maxSurge/maxUnavailable batches (endpoint lag, preStop, grace)",
           "probe-kills-slow-load": "a probe override shorter than a slowed model load",
           "corrupt-weights-rollout": "a rollout whose weight files fail the model's SHA-256 check",
           "model-unload": "unload through Triton's model-control API (gRPC); the reload is the recovery",
           "bad-version-rollout": "a failing version directory in the replica's repository, loaded over gRPC",
           "queue-overflow": "a max_queue_size config override (gRPC) and a burst straight to the replica"}
    return FaultSupport(fault, platform, True, how.get(fault, ""))


def refusal(fault: str, platform: str) -> str | None:
    """Why this machine cannot inject ``fault`` on ``platform``, with the fix; None when it can (or when the
    fault is not one the harness knows: it is then the experiment's own business)."""
    if fault not in FAULTS or platform not in PLATFORMS:
        return None
    support = fault_support(fault, platform)
    return None if support.ok else support.message()


def experiment_faults(experiment: Mapping[str, Any]) -> list[str]:
    """The faults an experiment injects: its ``harness_fault`` and the fault of each injecting action."""
    found: list[str] = []
    config = experiment.get("configuration")
    name = RunSettings.parse(config)[0].harness_fault if isinstance(config, Mapping) else None
    if name in FAULTS:
        found.append(name)
    method = experiment.get("method")
    for activity in method if isinstance(method, list) else []:
        provider = activity.get("provider") if isinstance(activity, Mapping) else None
        if isinstance(provider, Mapping) and provider.get("module") == "harness.chaos.actions":
            fault = ACTION_FAULTS.get(str(provider.get("func")))
            if fault and fault not in found:
                found.append(fault)
    return found


def refuse_unrunnable(experiments: Iterable[tuple[str, Mapping[str, Any]]], platform: str) -> None:
    """Raise EnvironmentProblem (exit 3) naming every experiment this machine cannot inject, before anything
    starts; ``experiments`` are (where, experiment) pairs."""
    problems = []
    for where, experiment in experiments:
        for fault in experiment_faults(experiment):
            reason = refusal(fault, platform)
            if reason:
                problems.append(f"{where}: {reason}")
    if problems:
        raise EnvironmentProblem("this machine cannot run these experiments; nothing was started (harness doctor "
                                 "lists what it can run):\n  - " + "\n  - ".join(problems))


def refuse_unrunnable_files(paths: Iterable[Path], platform: str) -> None:
    """``refuse_unrunnable`` for experiment files (unreadable ones are left to the validation that follows)."""
    loaded = []
    for path in paths:
        try:
            experiment = load_document(path)
        except ConfigError:
            continue
        if isinstance(experiment, dict):
            loaded.append((str(path), experiment))
    refuse_unrunnable(loaded, platform)


@dataclass(frozen=True)
class Diagnosis:
    user: str
    faults: list[FaultSupport]
    platforms: dict[str, list[Check]]  # what each platform itself needs
    checks: list[Check]  # everything else this machine has or lacks
    platform_ok: dict[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user,
                "faults": [asdict(f) for f in self.faults],
                "platforms": {name: {"ok": self.platform_ok[name], "checks": [asdict(c) for c in checks]}
                              for name, checks in self.platforms.items()},
                "checks": [asdict(c) for c in self.checks]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def render(self) -> str:
        lines = [f"What this machine can run (as {self.user})", "", "Faults"]
        for f in self.faults:
            lines.append(f"  {'yes' if f.ok else 'NO ':<4}{f.platform:<11} {f.fault:<21} {f.how if f.ok else f.reason}")
            if not f.ok and f.fix:
                lines.append(f"{'':<38}fix: {f.fix}")
        lines += ["", "Platforms (what each needs to start)"]
        for name, checks in self.platforms.items():
            lines.append(f"  {'yes' if self.platform_ok[name] else 'NO ':<4}{name}")
            lines += _render_checks(checks, indent=6)
        lines += ["", "Machine"]
        lines += _render_checks(self.checks, indent=2)
        return "\n".join(lines)


def _render_checks(checks: list[Check], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for c in checks:
        lines.append(f"{pad}{'yes' if c.ok else 'NO ':<4}{c.name:<13} {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{pad}{'':<18}fix: {c.fix}")
    return lines


def diagnose(host: HostPaths | None = None, state_dir: Path | None = None,
             k8s_probe: Mapping[str, Any] | None = None) -> Diagnosis:
    """Everything ``harness doctor`` prints; ``k8s_probe``: the cluster's NetworkPolicy probe, when one ran."""
    import pwd

    host = host or HostPaths()
    try:
        name = pwd.getpwuid(host.euid).pw_name
        user = name if host.who() == name else f"{name}, {host.who()}"
    except KeyError:
        user = host.who()
    faults = [fault_support(fault, platform, host, k8s_probe) for platform in PLATFORMS for fault in FAULTS]
    local = [_machine.python(), _machine.tritonserver(),
             _machine.program("haproxy", "haproxy", "the service front, like a Kubernetes Service"),
             _machine.program("prometheus", "prometheus", "metrics; optional with 'harness up --no-prometheus'"),
             _machine.ports(state_dir)]
    k8s = [_machine.kubernetes_access()]
    platforms = {"local": local, "kubernetes": k8s}
    platform_ok = {"local": all(c.ok for c in local if c.name != "prometheus"), "kubernetes": all(c.ok for c in k8s)}
    cgroup, _ = _machine.cgroup_memory(host)
    checks = [_machine.gpu(host), _machine.nftables(host), cgroup]
    return Diagnosis(user, faults, platforms, checks, platform_ok)
