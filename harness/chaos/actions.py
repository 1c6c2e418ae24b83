"""Chaos Toolkit actions: thin entry points to the fault families in ``harness.faults``.

Each action parses its arguments with its family's model (the same model that validated the experiment
before anything ran), picks the targets, writes down what it injects, injects, and then proves that the
fault landed. A fault that did not land is recorded as such in the run directory and the action fails, so
the repetition is void and can never count as evidence. Undo is left to ``harness.chaos.rollbacks`` (and,
if those never run, the watchdog and ``harness cleanup``).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from types import ModuleType
from typing import Any, ClassVar

from harness.chaos.context import RunContext
from harness.errors import FaultError
from harness.faults import bad_version_rollout as bad_version_family
from harness.faults import corrupt_weights_rollout as corrupt_family
from harness.faults import memory_pressure as memory_family
from harness.faults import model_unload, network_block, pod_kill, slow_load
from harness.faults import oom_at_load as oom_family
from harness.faults import probe_kills_slow_load as probe_family
from harness.faults import queue_overflow as queue_overflow_family
from harness.faults import rolling_update as rolling_family
from harness.faults.families import FAULT_ACTIONS
from harness.faults.family import FaultScope, Landing, Mode, Targeting, parse_args, select_replicas
from harness.platforms.base import Platform

__all__ = [
    "FAULT_ACTIONS",
    "ReloadArgs",
    "bad_version_rollout",
    "block_network",
    "corrupt_weights_rollout",
    "fault_scope",
    "kill_replicas",
    "memory_pressure",
    "oom_at_load",
    "probe_kills_slow_load",
    "queue_overflow",
    "reload_model",
    "rolling_update",
    "select_replicas",
    "slow_model_load",
    "unload_model",
]

Configuration = MutableMapping[str, Any]


def fault_scope(ctx: RunContext, platform: Platform | None = None) -> FaultScope:
    """The platform's fault operations (``fault_ops()`` where it has them), its status, the run id."""
    platform = platform or ctx.platform()
    return FaultScope(ops=platform.fault_ops(), status=platform.status, run_id=ctx.run_id)


def _begin(configuration: Configuration | None, args: Targeting) -> tuple[RunContext, FaultScope, list[str]]:
    ctx = RunContext.from_configuration(configuration)
    scope = fault_scope(ctx)
    return ctx, scope, args.select([r.name for r in scope.status().replicas])


def _agent_permission(ctx: RunContext) -> network_block.AgentPermission:
    """What the run allows a privileged agent (``--allow-privileged-agent``, ``--agent-image``): the network
    block's fallback route, the container kill and memory pressure on Kubernetes."""
    return network_block.AgentPermission(allowed=ctx.settings.platform.allow_privileged_agent,
                                         image=ctx.settings.platform.agent_image or "")


def _landed(ctx: RunContext, landing: Landing, output: dict[str, Any]) -> dict[str, Any]:
    """Record the proof; a fault that did not land fails the action (after it was written down)."""
    ctx.note_landing(landing.to_json())
    if not landing.landed:
        raise FaultError(f"the {landing.fault} fault did not land ({landing.check}): {landing.detail}")
    return {**output, "landing": landing.detail}


def kill_replicas(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Pod kill: SIGKILL the selected replicas, or SIGTERM with ``grace_s`` (arguments: ``pod_kill.Args``)."""
    args = parse_args(pod_kill.Args, arguments, "kill_replicas")
    ctx, scope, targets = _begin(configuration, args)
    ctx.note_injection(pod_kill.NAME, targets, {}, signal=args.signal, grace_s=args.grace)
    killed = pod_kill.inject(scope, targets, args, _agent_permission(ctx))
    return _landed(ctx, pod_kill.verify(scope, targets, killed, args), {"killed": targets, "signal": args.signal})


def block_network(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Network-policy block until the rollback or ``max_duration_s`` (arguments: ``network_block.Args``)."""
    args = parse_args(network_block.Args, arguments, "block_network")
    ctx, scope, targets = _begin(configuration, args)
    record, landing = network_block.block(
        scope, targets, args, _agent_permission(ctx),
        note=lambda rec: ctx.note_injection(network_block.NAME, targets, rec),
        lifted=lambda: ctx.mark_undone(network_block.NAME))
    return _landed(ctx, landing, {"blocked": targets, "record": record, "route": record.get("route")})


def memory_pressure(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Hold free (GPU) memory at ``leave_free_mb`` for ``duration_s`` (arguments: ``memory_pressure.Args``).

    Without a GPU it is the host-memory analogue, confined to the selected replicas' memory cgroups; the
    result says so (``analogue``) and so do the reports.
    """
    args = parse_args(memory_family.Args, arguments, "memory_pressure")
    ctx, scope, targets = _begin(configuration, args)
    restarts = {n: r.restarts for n, r in scope.replicas().items() if n in targets}
    record = memory_family.inject(scope, targets, args, _agent_permission(ctx))
    ctx.note_injection(memory_family.NAME, targets, record, analogue=record.get("analogue", ""),
                       args=args.model_dump(), restarts_before=restarts)
    return _landed(ctx, memory_family.verify(scope, targets, record, args), {"targets": targets, **record})


def slow_model_load(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Make the next model load take ``delay_s`` and trigger it (arguments: ``slow_load.Args``)."""
    args = parse_args(slow_load.Args, arguments, "slow_model_load")
    ctx, scope, targets = _begin(configuration, args)
    injected = slow_load.inject(scope, targets, args)
    ctx.note_injection(slow_load.NAME, targets, injected.record, trigger=args.trigger, delay_s=args.delay_s)
    return _landed(ctx, slow_load.verify(scope, targets, injected, args),
                   {"targets": targets, "trigger": args.trigger, "record": injected.record})


def probe_kills_slow_load(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """A probe budget shorter than the model load, until the rollback (arguments: ``probe_family.Args``)."""
    args = parse_args(probe_family.Args, arguments, "probe_kills_slow_load")
    ctx, scope, targets = _begin(configuration, args)
    record = probe_family.inject(scope, targets, args)
    ctx.note_injection(probe_family.NAME, targets, record, probe=args.probe, budget_s=args.budget_s,
                       load_s=args.load_s)
    return _landed(ctx, probe_family.verify(scope, targets, record, args), {"targets": targets})


def oom_at_load(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """A memory limit below the load-time peak, until the rollback (arguments: ``oom_family.Args``)."""
    args = parse_args(oom_family.Args, arguments, "oom_at_load")
    ctx, scope, targets = _begin(configuration, args)
    record = oom_family.inject(scope, targets, args)
    ctx.note_injection(oom_family.NAME, targets, record, limit_mb=args.limit_mb, arena_mb=args.arena_mb)
    return _landed(ctx, oom_family.verify(scope, targets, record, args), {"targets": targets})


def rolling_update(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Replace every replica under load, as the Deployment's strategy allows (arguments: ``rolling_update.Args``).

    The landing carries each pod's phases and, under load, the errors per phase; the output says them too.
    """
    args = parse_args(rolling_family.Args, arguments, "rolling_update")
    ctx, scope, targets = _begin(configuration, args)
    rollout = rolling_family.inject(scope, targets, args)
    ctx.note_injection(rolling_family.NAME, targets, rollout.record, **rollout.to_json())
    landing = rolling_family.verify(scope, targets, rollout, args, ctx.run_dir / "timeline")
    return _landed(ctx, landing, {"targets": targets, "errors_by_phase": landing.measured.get("errors_by_phase")})


def corrupt_weights_rollout(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Roll out weights that fail their SHA-256 check until the rollback (``corrupt_weights_rollout.Args``)."""
    args = parse_args(corrupt_family.Args, arguments, "corrupt_weights_rollout")
    ctx, scope, targets = _begin(configuration, args)
    rollout = corrupt_family.inject(scope, targets, args)
    ctx.note_injection(corrupt_family.NAME, targets, {**rollout.record, "replaced": rollout.replaced},
                       **rollout.to_json())
    landing = corrupt_family.verify(scope, targets, rollout, args)
    return _landed(ctx, landing, {"targets": targets, "stalled": rollout.stalled,
                                  "capacity_lost": landing.measured.get("capacity_lost")})


def unload_model(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Unload the model through the model-control API until the rollback reloads it (``model_unload.Args``)."""
    ctx, landing, _, targets = _model_fault(model_unload, "unload_model", configuration, arguments)
    return _landed(ctx, landing, {"targets": targets})


def bad_version_rollout(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Add a model version that fails to load and load it, until the rollback (``bad_version_rollout.Args``)."""
    ctx, landing, record, targets = _model_fault(bad_version_family, "bad_version_rollout", configuration, arguments)
    return _landed(ctx, landing, {"targets": targets, "added": record["added"],
                                  "old_version_kept_serving": landing.measured.get("old_version_kept_serving")})


def queue_overflow(configuration: Configuration | None = None, **arguments: Any) -> dict[str, Any]:
    """Bound the model's queue and burst above it, until the rollback (arguments: ``queue_overflow.Args``)."""
    ctx, landing, record, targets = _model_fault(queue_overflow_family, "queue_overflow", configuration, arguments)
    return _landed(ctx, landing, {"targets": targets, "bursts": record["bursts"]})


def _model_fault(family: ModuleType, func: str, configuration: Configuration | None,
                 arguments: dict[str, Any]) -> tuple[RunContext, Landing, dict[str, Any], list[str]]:
    """A model-lifecycle fault's course: parse, pick targets, inject, verify. The run notes every undo record
    the family wrote (each before its change) even when a later target failed, so its rollback finds them."""
    args = parse_args(family.Args, arguments, func)
    ctx, scope, targets = _begin(configuration, args)
    changes: list[dict[str, Any]] = []
    try:
        record: dict[str, Any] = family.inject(scope, targets, args, changes)
    finally:
        ctx.note_injection(family.NAME, targets, {"changes": changes}, args=args.model_dump())
    return ctx, family.verify(scope, targets, record, args), record, targets


class ReloadArgs(Targeting):
    default_mode: ClassVar[Mode] = "all"


def reload_model(configuration: Configuration | None = None, **arguments: Any) -> dict[str, str]:
    """Unload-and-load the model on the selected replicas (how a load under memory pressure is provoked).

    Not a fault of its own; a reload that fails here is a failed action (the caller said it must work).
    """
    args = parse_args(ReloadArgs, arguments, "reload_model")
    _, scope, targets = _begin(configuration, args)
    out = {}
    for name in targets:
        ok, why = scope.ops.reload_model(name, parameters={slow_load.DELAY_PARAMETER: "0"})
        out[name] = "reloaded" if ok else f"failed: {why}"
    failed = {n: v for n, v in out.items() if v != "reloaded"}
    if failed:
        raise FaultError("the model reload failed: " + "; ".join(f"{n}: {v}" for n, v in failed.items()))
    return out
