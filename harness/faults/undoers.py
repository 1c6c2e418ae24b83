"""How each kind of undo record of this machine's fault mechanics is undone: one explicit mapping, nothing
registered at import time.

The local and attached platforms open their undo stores with this table; the watchdog (``harness.watchdog``)
adds the Kubernetes platform's kinds to it. A kind a store does not know is an error that names the record,
never a fault silently left in place.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.faults import hog, nft, overrides
from harness.faults.undo import Undoer

__all__ = ["UNDOERS"]

UNDOERS: Mapping[str, Undoer] = {
    "nft": nft.undo,  # a network block's nftables table
    "hog": hog.undo,  # a memory hog process (GPU or host analogue)
    "env": overrides.undo_env,  # a slow-load env override of one replica
    "cgroup": overrides.undo_cgroup,  # the memory cgroup confining a replica
    "probes": overrides.undo_probes,  # a probe override of one replica (probe-kills-slow-load)
    "weights": overrides.undo_weights,  # a replica's corrupted weights (corrupt-weights-rollout)
    "surge": overrides.undo_surge,  # a surge pod of a rolling update
}
