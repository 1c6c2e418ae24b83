"""The local platform's GPU plan: which GPUs each replica is pinned to, decided once from the settings.

``harness up`` checks the plan before anything starts (a GPU asked for where none is visible, or a GPU
replica without torch, is an ``EnvironmentProblem``: exit 3), and the supervisor applies the same plan.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.deployment import DeploymentSpec
from harness.platforms.local.settings import LocalSettings
from harness.triton.gpus import GpuInfo, assign_gpus, query_gpus

__all__ = ["gpu_plan", "replica_names"]


def replica_names(spec: DeploymentSpec) -> list[str]:
    """Replica i of Deployment ``d`` is ``d-i`` (as the supervisor names them)."""
    return [f"{spec.name}-{i}" for i in range(spec.replicas)]


def gpu_plan(settings: LocalSettings, spec: DeploymentSpec,
             visible: Sequence[GpuInfo] | None = None) -> dict[str, list[GpuInfo]]:
    """Replica name -> its GPUs ([] for CPU replicas). ``visible`` defaults to what nvidia-smi lists."""
    gpus = query_gpus() if visible is None else list(visible)
    per_replica = settings.gpus_per_replica
    if per_replica is None:
        per_replica = 1 if gpus else 0
    return assign_gpus(replica_names(spec), per_replica, gpus)
