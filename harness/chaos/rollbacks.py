"""Chaos Toolkit rollbacks: undo exactly what this run injected (read from the run directory).

They are safe to run when nothing was injected, and safe to run twice.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from harness.chaos.actions import _ops
from harness.chaos.context import RunContext

__all__ = ["release_memory_pressure", "restore_model_load", "rollback_all", "unblock_network"]

Configuration = MutableMapping[str, Any]


def unblock_network(configuration: Configuration | None = None) -> list[str]:
    ctx = RunContext.from_configuration(configuration)
    ops = _ops(ctx)
    done = []
    for entry in ctx.injections("network-policy-block"):
        ops.unblock_network(entry["record"])
        done.extend(entry["targets"])
    ctx.mark_undone("network-policy-block")
    return done


def restore_model_load(configuration: Configuration | None = None) -> list[str]:
    ctx = RunContext.from_configuration(configuration)
    ops = _ops(ctx)
    done = []
    for entry in ctx.injections("slow-model-load"):
        if entry["record"]:
            ops.restore_env(entry["record"])
        done.extend(entry["targets"])
    ctx.mark_undone("slow-model-load")
    return done


def release_memory_pressure(reload: bool = True, configuration: Configuration | None = None) -> dict[str, str]:
    """Stop the hogs; then reload the model where a load failed under pressure (it would not retry alone)."""
    ctx = RunContext.from_configuration(configuration)
    ops = _ops(ctx)
    targets: list[str] = []
    for entry in ctx.injections("gpu-memory-pressure"):
        ops.release_memory(entry["record"])
        targets.extend(entry["targets"])
    ctx.mark_undone("gpu-memory-pressure")
    out: dict[str, str] = {}
    if reload:
        time.sleep(0.5)
        status = {r.name: r for r in ctx.platform().status().replicas}
        for name in targets:
            replica = status.get(name)
            if replica is not None and not replica.ready and replica.state == "running":
                ok, why = _ops(ctx).reload_model(name)
                out[name] = "reloaded" if ok else f"reload failed: {why}"
    return out


def rollback_all(configuration: Configuration | None = None) -> dict[str, Any]:
    """Undo every fault of this run, whatever its kind."""
    return {
        "network": unblock_network(configuration),
        "model_load": restore_model_load(configuration),
        "memory": release_memory_pressure(True, configuration),
    }
