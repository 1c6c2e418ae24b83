"""How each kind of undo record is undone: one explicit mapping, nothing registered at import time.

The watchdog and ``harness cleanup`` run in fresh processes and find every undoer here; a kind that is
missing is an error that names the record, never a fault silently left in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from harness.faults import hog, nft, overrides
from harness.faults.undo import UndoRecord

__all__ = ["UNDOERS"]

def _k8s_spec(record: UndoRecord) -> None:
    """A Kubernetes pod-spec patch: reconnect with the settings ``up`` saved and restore the template
    (imported here, not at the top: the local watchdog needs no Kubernetes client)."""
    from harness.platforms.kubernetes.spec_ops import undo_from_store

    undo_from_store(record)


def _k8s_netagent(record: UndoRecord) -> None:
    """A network block by agent pods (Kubernetes): remove their tables, delete the pods."""
    from harness.platforms.kubernetes.netagent import undo_from_store

    undo_from_store(record)


UNDOERS: Mapping[str, Callable[[UndoRecord], None]] = {
    "nft": nft.undo,  # a network block's nftables table
    "hog": hog.undo,  # a memory hog process (GPU or host analogue)
    "env": overrides.undo_env,  # a slow-load env override of one replica
    "cgroup": overrides.undo_cgroup,  # the memory cgroup confining a replica
    "probes": overrides.undo_probes,  # a probe override of one replica (probe-kills-slow-load)
    "weights": overrides.undo_weights,  # a replica's corrupted weights (corrupt-weights-rollout)
    "surge": overrides.undo_surge,  # a surge pod of a rolling update
    "k8s-spec": _k8s_spec,  # a Deployment's pod template patched by a pod-spec fault (Kubernetes)
    "k8s-netagent": _k8s_netagent,  # a network block by privileged agent pods (Kubernetes)
}
