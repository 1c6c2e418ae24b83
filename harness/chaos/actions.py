"""Chaos Toolkit actions: the four faults of the mission, plus the model reload that triggers loads.

Each action selects its targets by ``mode`` (one, count, percent, all) or explicit ``names``, checks
its arguments before touching anything, records what it injected in the run directory, and leaves the
undo to ``harness.chaos.rollbacks`` (and, if those never run, the watchdog and ``harness cleanup``).
"""

from __future__ import annotations

import random
import signal as signals
from collections.abc import MutableMapping, Sequence
from typing import Any, Literal

from harness.chaos.context import RunContext, positive
from harness.errors import ConfigError, FaultError

__all__ = [
    "FAULT_ACTIONS",
    "block_network",
    "kill_replicas",
    "memory_pressure",
    "reload_model",
    "select_replicas",
    "slow_model_load",
]

Mode = Literal["one", "count", "percent", "all"]
Trigger = Literal["restart", "reload"]
Configuration = MutableMapping[str, Any]

# Activities whose start is the fault start t0 (DESIGN.md): the first of these in a run's method.
FAULT_ACTIONS = ("kill_replicas", "block_network", "memory_pressure", "slow_model_load")
MAX_FAULT_S = 3600.0


def select_replicas(
    available: Sequence[str],
    mode: Mode = "one",
    count: int | None = None,
    percent: float | None = None,
    names: Sequence[str] | None = None,
    seed: int | None = None,
) -> list[str]:
    """Pick targets. Explicit names win; otherwise a seeded random choice of the given size."""
    pool = sorted(available)
    if not pool:
        raise FaultError("the platform has no replicas to target")
    if names:
        unknown = sorted(set(names) - set(pool))
        if unknown:
            raise ConfigError(f"names {unknown} match no replica (replicas: {pool})")
        return sorted(set(names))
    if mode == "all":
        size = len(pool)
    elif mode == "one":
        size = 1
    elif mode == "count":
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"mode 'count' needs count >= 1, got {count!r}")
        if count > len(pool):
            raise ConfigError(f"count {count} is more than the {len(pool)} replicas there are")
        size = count
    elif mode == "percent":
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100:
            raise ConfigError(f"mode 'percent' needs 0 < percent <= 100, got {percent!r}")
        size = max(1, round(len(pool) * percent / 100))
    else:
        raise ConfigError(f"mode must be one of one, count, percent, all; got {mode!r}")
    return sorted(random.Random(seed).sample(pool, size))


def _ops(ctx: RunContext) -> Any:
    platform = ctx.platform()
    fault_ops = getattr(platform, "fault_ops", None)
    return fault_ops() if callable(fault_ops) else platform


def _targets(ctx: RunContext, mode: Mode, count: int | None, percent: float | None,
             names: Sequence[str] | None, seed: int | None) -> tuple[Any, list[str]]:
    platform = ctx.platform()
    available = [r.name for r in platform.status().replicas]
    return _ops(ctx), select_replicas(available, mode, count, percent, names, seed)


def kill_replicas(
    mode: Mode = "one",
    count: int | None = None,
    percent: float | None = None,
    names: list[str] | None = None,
    signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL",
    grace_s: float = 0.0,
    seed: int | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Pod kill: SIGKILL the selected replicas, or SIGTERM with ``grace_s`` (pod deletion with grace)."""
    if signal not in ("SIGKILL", "SIGTERM"):
        raise ConfigError(f"signal must be SIGKILL or SIGTERM, got {signal!r}")
    if isinstance(grace_s, bool) or not isinstance(grace_s, int | float) or not 0 <= grace_s <= 300:
        raise ConfigError(f"grace_s must be within 0..300, got {grace_s!r}")
    ctx = RunContext.from_configuration(configuration)
    ops, targets = _targets(ctx, mode, count, percent, names, seed)
    grace = 0.0 if signal == "SIGKILL" else float(grace_s) or 0.001
    ctx.note_injection("pod-kill", targets, {}, signal=signal, grace_s=grace)
    for name in targets:
        ops.kill_replica(name, grace)
    return {"killed": targets, "signal": signals.Signals[signal].name}


def block_network(
    mode: Mode = "all",
    count: int | None = None,
    percent: float | None = None,
    names: list[str] | None = None,
    max_duration_s: float = 600.0,
    seed: int | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Network-policy block: drop traffic to the selected replicas until the rollback (or the deadline)."""
    positive("max_duration_s", max_duration_s, MAX_FAULT_S)
    ctx = RunContext.from_configuration(configuration)
    ops, targets = _targets(ctx, mode, count, percent, names, seed)
    record = ops.block_network(targets, ctx.run_id, max_duration_s)
    ctx.note_injection("network-policy-block", targets, record)
    return {"blocked": targets, "record": record}


def memory_pressure(
    mode: Mode = "one",
    count: int | None = None,
    percent: float | None = None,
    names: list[str] | None = None,
    leave_free_mb: float = 32.0,
    duration_s: float = 30.0,
    headroom_mb: float = 256.0,
    seed: int | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """GPU memory pressure: hold free memory at ``leave_free_mb`` for ``duration_s`` (top-up loop).

    Without a GPU it is the host-memory analogue, confined to the selected replicas' memory cgroups; the
    result says so (``analogue``) and so do the reports.
    """
    positive("duration_s", duration_s, MAX_FAULT_S)
    if isinstance(leave_free_mb, bool) or not isinstance(leave_free_mb, int | float) or leave_free_mb < 0:
        raise ConfigError(f"leave_free_mb must be a number >= 0, got {leave_free_mb!r}")
    positive("headroom_mb", headroom_mb, 1 << 20)
    if leave_free_mb >= headroom_mb:
        raise ConfigError(f"leave_free_mb ({leave_free_mb}) must be below headroom_mb ({headroom_mb})")
    ctx = RunContext.from_configuration(configuration)
    ops, targets = _targets(ctx, mode, count, percent, names, seed)
    record = ops.memory_pressure(targets, ctx.run_id, float(leave_free_mb), float(duration_s), float(headroom_mb))
    ctx.note_injection("gpu-memory-pressure", targets, record, analogue=record.get("analogue", ""))
    return {"targets": targets, **record}


def slow_model_load(
    mode: Mode = "one",
    count: int | None = None,
    percent: float | None = None,
    names: list[str] | None = None,
    delay_s: float = 10.0,
    trigger: Trigger = "restart",
    seed: int | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Make the next model load take ``delay_s`` and trigger it.

    ``restart``: restart the replicas with the changed parameter (the load happens at startup, so probes
    decide what users see). ``reload``: a config override through the model-control API over gRPC; the
    old version keeps serving while the slow load runs.
    """
    positive("delay_s", delay_s, MAX_FAULT_S)
    if trigger not in ("restart", "reload"):
        raise ConfigError(f"trigger must be 'restart' or 'reload', got {trigger!r}")
    ctx = RunContext.from_configuration(configuration)
    ops, targets = _targets(ctx, mode, count, percent, names, seed)
    if trigger == "restart":
        record = ops.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": f"{delay_s:g}"}, ctx.run_id, targets)
        ctx.note_injection("slow-model-load", targets, record, trigger=trigger, delay_s=delay_s)
        return {"targets": targets, "trigger": trigger, "record": record}
    ctx.note_injection("slow-model-load", targets, {}, trigger=trigger, delay_s=delay_s)
    results = {}
    for name in targets:
        ok, why = ops.reload_model(name, parameters={"load_delay_s": f"{delay_s:g}"})
        results[name] = "reloaded" if ok else f"failed: {why}"
    return {"targets": targets, "trigger": trigger, "results": results}


def reload_model(
    mode: Mode = "all",
    count: int | None = None,
    percent: float | None = None,
    names: list[str] | None = None,
    seed: int | None = None,
    configuration: Configuration | None = None,
) -> dict[str, str]:
    """Unload-and-load the model on the selected replicas (how a load under memory pressure is provoked)."""
    ctx = RunContext.from_configuration(configuration)
    ops, targets = _targets(ctx, mode, count, percent, names, seed)
    out = {}
    for name in targets:
        ok, why = ops.reload_model(name, parameters={"load_delay_s": "0"})
        out[name] = "reloaded" if ok else f"failed: {why}"
    return out
