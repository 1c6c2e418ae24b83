"""The fault families the harness can inject: one explicit mapping, nothing registered at import time.

Adding a fault means adding one family module (argument model, inject, verify, undo) and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.faults import (
    bad_version_rollout,
    corrupt_weights_rollout,
    memory_pressure,
    model_unload,
    network_block,
    oom_at_load,
    pod_kill,
    probe_kills_slow_load,
    queue_overflow,
    rolling_update,
    slow_load,
)
from harness.faults.family import FamilySpec

__all__ = ["BY_ACTION", "FAMILIES", "FAULT_ACTIONS"]

FAMILIES: Mapping[str, FamilySpec] = {
    spec.name: spec for spec in (
        pod_kill.FAMILY,
        network_block.FAMILY,
        slow_load.FAMILY,
        memory_pressure.FAMILY,
        probe_kills_slow_load.FAMILY,
        oom_at_load.FAMILY,
        rolling_update.FAMILY,
        corrupt_weights_rollout.FAMILY,
        model_unload.FAMILY,
        bad_version_rollout.FAMILY,
        queue_overflow.FAMILY,
    )
}
BY_ACTION: Mapping[str, FamilySpec] = {spec.action: spec for spec in FAMILIES.values()}
# Activities whose start is the fault start t0 (DESIGN.md): the first of these in a run's method.
FAULT_ACTIONS: tuple[str, ...] = tuple(BY_ACTION)
