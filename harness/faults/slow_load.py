"""Slow model load: make the next model load take ``delay_s`` and trigger it.

``restart``: restart the replicas with the changed parameter (locally an env override applied at the next
container start; on Kubernetes a Deployment patch, so every pod rolls), and the load happens at startup,
where probes decide what users see. ``reload``: a full config override through Triton's model-control API
over gRPC; the old version keeps serving while the slow load runs.

Landed when the load really took at least ``delay_s``: with ``restart``, the replaced replica was not ready
again before ``delay_s`` had passed; with ``reload``, the load call succeeded and took at least ``delay_s``.
A failed reload is a failed action, never a success.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from harness.errors import FaultError
from harness.faults.family import MAX_FAULT_S, FamilySpec, FaultScope, Landing, Targeting, replica_identity

__all__ = ["DELAY_ENV", "FAMILY", "Args", "Injected", "inject", "undo", "verify"]

NAME = "slow-model-load"
DELAY_ENV = "HARNESS_MODEL_LOAD_DELAY_S"  # read by the reference model's initialize()
DELAY_PARAMETER = "load_delay_s"  # the model config parameter a reload overrides


class Args(Targeting):
    delay_s: float = Field(default=10.0, gt=0, le=MAX_FAULT_S)
    trigger: Literal["restart", "reload"] = "restart"
    model: str = Field(default="mlp", min_length=1)


FAMILY = FamilySpec(name=NAME, action="slow_model_load", args=Args,
                    summary="delay the next model load and trigger it; landed when the load took >= delay_s")


@dataclass
class Injected:
    record: dict[str, Any]  # the platform's undo record ({} for a reload: nothing stays changed)
    before: dict[str, str]  # target -> identity before the restart
    names: frozenset[str]  # every replica before, so a new pod name is recognised
    started: float  # monotonic, when the trigger was sent
    reload_s: dict[str, float] = field(default_factory=dict)  # reload trigger: how long each load took


def inject(scope: FaultScope, targets: list[str], args: Args) -> Injected:
    replicas = scope.replicas()
    before = {n: replica_identity(r) for n, r in replicas.items() if n in targets}
    started = time.monotonic()
    if args.trigger == "restart":
        record = scope.ops.restart_with_env({DELAY_ENV: f"{args.delay_s:g}"}, scope.run_id, targets)
        return Injected(record, before, frozenset(replicas), started)
    injected = Injected({}, before, frozenset(replicas), started)
    failures = []
    for name in targets:
        began = time.monotonic()
        ok, why = scope.ops.reload_model(name, model=args.model, parameters={DELAY_PARAMETER: f"{args.delay_s:g}"})
        injected.reload_s[name] = round(time.monotonic() - began, 3)
        if not ok:
            failures.append(f"{name}: {why}")
    if failures:
        raise FaultError(f"the slow model load was not triggered: the reload failed on {'; '.join(failures)}")
    return injected


def verify(scope: FaultScope, targets: list[str], injected: Injected, args: Args) -> Landing:
    check = f"the model load took at least {args.delay_s:g}s"
    if args.trigger == "reload":
        short = {n: s for n, s in injected.reload_s.items() if s < args.delay_s}
        if short:
            return Landing(NAME, tuple(targets), check, False,
                           "the reload finished early (" + ", ".join(f"{n}: {s:g}s" for n, s in short.items())
                           + f" < {args.delay_s:g}s): the delay parameter did not take effect",
                           {"load_s": injected.reload_s})
        return Landing(NAME, tuple(targets), check, True,
                       "reload took " + ", ".join(f"{n}: {s:g}s" for n, s in injected.reload_s.items()),
                       {"load_s": injected.reload_s})
    return _verify_restart(scope, targets, injected, args, check)


def _verify_restart(scope: FaultScope, targets: list[str], injected: Injected, args: Args, check: str) -> Landing:
    """Watch each target go down and come back; it must not serve again before ``delay_s`` has passed."""
    went_down: set[str] = set()
    ready_after: dict[str, float] = {}
    deadline = args.delay_s + 0.5
    while True:
        elapsed = time.monotonic() - injected.started
        now = scope.replicas()
        newcomers = [r for n, r in now.items() if n not in injected.names]
        for name in targets:
            if name in ready_after:
                continue
            current = now.get(name)
            if current is None:  # rolled: a new pod under another name plays this target
                went_down.add(name)
                if any(r.ready for r in newcomers):
                    ready_after[name] = elapsed
            elif not current.ready or replica_identity(current) not in (injected.before.get(name), "None"):
                went_down.add(name)
                if current.ready and replica_identity(current) != injected.before.get(name):
                    ready_after[name] = elapsed
        if len(ready_after) == len(targets) or elapsed >= deadline:
            break
        time.sleep(0.1)
    measured = {"not_ready_s": {n: round(ready_after[n], 3) if n in ready_after else f"> {elapsed:.3f}"
                                for n in targets}}
    never_down = sorted(set(targets) - went_down)
    early = sorted(n for n, s in ready_after.items() if s < args.delay_s)
    if never_down:
        return Landing(NAME, tuple(targets), check, False,
                       f"{', '.join(never_down)} never restarted (still the same process, ready)", measured)
    if early:
        return Landing(NAME, tuple(targets), check, False,
                       f"{', '.join(early)} served again after "
                       + ", ".join(f"{ready_after[n]:.2f}s" for n in early)
                       + f", before the {args.delay_s:g}s delay: the delay did not take effect", measured)
    return Landing(NAME, tuple(targets), check, True,
                   "not ready for " + ", ".join(f"{n}: {measured['not_ready_s'][n]}s" for n in targets), measured)


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    """Drop the changed parameter (the next restart loads at normal speed); a reload left nothing behind."""
    if record:
        scope.ops.restore_env(record)
