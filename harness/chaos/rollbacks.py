"""Chaos Toolkit rollbacks: undo exactly what this run injected (read from the run directory).

Before a block or a memory hog is lifted, its family checks that it still held (a fault removed behind the
harness's back voids the repetition); after a block is lifted, that connections succeed again. They are
safe to run when nothing was injected, and safe to run twice: the second run finds nothing pending.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from types import ModuleType
from typing import Any

from harness.chaos.actions import fault_scope
from harness.chaos.context import RunContext
from harness.faults import (
    bad_version_rollout,
    corrupt_weights_rollout,
    memory_pressure,
    model_unload,
    network_block,
    oom_at_load,
    probe_kills_slow_load,
    queue_overflow,
    rolling_update,
    slow_load,
)

__all__ = ["release_memory_pressure", "restore_model", "restore_model_load", "restore_pod_spec", "rollback_all",
           "unblock_network"]

Configuration = MutableMapping[str, Any]
POD_SPEC_FAMILIES = (probe_kills_slow_load, oom_at_load, rolling_update, corrupt_weights_rollout)
MODEL_FAMILIES = (model_unload, bad_version_rollout, queue_overflow)


def unblock_network(configuration: Configuration | None = None) -> list[str]:
    ctx = RunContext.from_configuration(configuration)
    pending = ctx.pending(network_block.NAME)
    if not pending:
        return []
    scope = fault_scope(ctx)
    done: list[str] = []
    for entry in pending:
        targets = list(entry["targets"])
        ctx.note_landing(network_block.verify_held(scope, targets, entry["record"].get("route", "policy")).to_json())
        ctx.note_landing(network_block.undo(scope, entry["record"], targets).to_json())
        done.extend(targets)
    ctx.mark_undone(network_block.NAME)  # only once every undo succeeded: a failure is retried
    return done


def restore_model_load(configuration: Configuration | None = None) -> list[str]:
    ctx = RunContext.from_configuration(configuration)
    pending = ctx.pending(slow_load.NAME)
    if not pending:
        return []
    scope = fault_scope(ctx)
    done: list[str] = []
    for entry in pending:
        slow_load.undo(scope, entry["record"])
        done.extend(entry["targets"])
    ctx.mark_undone(slow_load.NAME)  # only once every undo succeeded: a failure is retried
    return done


def release_memory_pressure(reload: bool = True, configuration: Configuration | None = None) -> dict[str, str]:
    """Stop the hogs; then reload the model where a load failed under pressure (it would not retry alone)."""
    ctx = RunContext.from_configuration(configuration)
    pending = ctx.pending(memory_pressure.NAME)
    if not pending:
        return {}
    scope = fault_scope(ctx)
    targets: list[str] = []
    for entry in pending:
        args = memory_pressure.Args.model_validate(entry.get("args") or {}, strict=False)
        ctx.note_landing(memory_pressure.verify_held(scope, list(entry["targets"]), entry["record"], args,
                                                     entry.get("restarts_before") or {}).to_json())
        memory_pressure.undo(scope, entry["record"])
        targets.extend(entry["targets"])
    ctx.mark_undone(memory_pressure.NAME)  # only once every undo succeeded: a failure is retried
    out: dict[str, str] = {}
    if reload:
        time.sleep(0.5)
        status = {r.name: r for r in ctx.platform().status().replicas}
        for name in targets:
            replica = status.get(name)
            if replica is not None and not replica.ready and replica.state == "running":
                ok, why = fault_scope(ctx).ops.reload_model(name)
                out[name] = "reloaded" if ok else f"reload failed: {why}"
    return out


def restore_pod_spec(configuration: Configuration | None = None) -> list[str]:
    """Undo the pod-spec faults of this run (probe budget, memory limit, rollouts): ``kubectl rollout undo``."""
    return _undo_families(RunContext.from_configuration(configuration), POD_SPEC_FAMILIES)


def restore_model(configuration: Configuration | None = None) -> list[str]:
    """Undo the model-lifecycle faults of this run: the model loaded back with its original config, an added
    version directory removed, and Triton listing the model ready (a reload that fails fails the rollback)."""
    return _undo_families(RunContext.from_configuration(configuration), MODEL_FAMILIES)


def _undo_families(ctx: RunContext, families: tuple[ModuleType, ...]) -> list[str]:
    """Undo this run's pending injections of these families (each family's ``undo``); the targets undone."""
    done: list[str] = []
    for family in families:
        pending = ctx.pending(family.NAME)
        if not pending:
            continue
        scope = fault_scope(ctx)
        for entry in pending:
            family.undo(scope, entry["record"])
            done.extend(entry["targets"])
        ctx.mark_undone(family.NAME)  # only once every undo succeeded: a failure is retried
    return done


def rollback_all(configuration: Configuration | None = None) -> dict[str, Any]:
    """Undo every fault of this run, whatever its kind."""
    return {
        "network": unblock_network(configuration),
        "model_load": restore_model_load(configuration),
        "memory": release_memory_pressure(True, configuration),
        "pod_spec": restore_pod_spec(configuration),
        "model": restore_model(configuration),
    }
