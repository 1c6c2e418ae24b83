"""A real single-node Kubernetes for tests and demos, built from Debian's source (``harness sandbox``).

The submodules are imported on first use, so ``python -m harness.sandbox.build`` runs without importing
the cluster code first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.sandbox.cluster import Sandbox, SandboxStatus

__all__ = ["Sandbox", "SandboxStatus"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness.sandbox import cluster

        return getattr(cluster, name)
    raise AttributeError(name)
