"""Slow model load: make the next model load take ``delay_s`` and trigger it.

``restart``: restart the replicas with the changed parameter (locally an env override applied at the next
container start; on Kubernetes a Deployment patch, so every pod rolls), and the load happens at startup,
where probes decide what users see. ``reload``: a full config override through Triton's model-control API
over gRPC; the old version keeps serving while the slow load runs.

Landed, with ``reload``, when the load call succeeded and took at least ``delay_s``, and Triton's own log puts
the reload's load at ``delay_s`` or more and clearly longer (by ``delay_s / 2``) than the load before it: on a
busy machine a plain reload can take longer than a short delay, so the call's duration alone proves nothing.
With ``restart``, when the
replicas that restarted with the delay (the targets locally; the pods of the new template on Kubernetes) were
not ready before ``delay_s``, Triton's own load took at least ``delay_s``, and both are clearly longer than a
baseline read from the same signals before the injection (``harness.faults.slow_load_landing``); a replica
that never came back is a finding of its own, and void. A failed reload is a failed action, never a success.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.errors import FaultError
from harness.faults.family import MAX_FAULT_S, FamilySpec, FaultScope, Landing, Targeting
from harness.faults.slow_load_landing import judge_restart
from harness.platforms.base import LoadStart

__all__ = ["DELAY_ENV", "FAMILY", "Args", "Injected", "inject", "undo", "verify"]

NAME = "slow-model-load"
DELAY_ENV = "HARNESS_MODEL_LOAD_DELAY_S"  # read by the reference model's initialize()
DELAY_PARAMETER = "load_delay_s"  # the model config parameter a reload overrides


class Args(Targeting):
    delay_s: float = Field(default=10.0, gt=0, le=MAX_FAULT_S)
    trigger: Literal["restart", "reload"] = "restart"
    model: str = Field(default="mlp", min_length=1)
    # restart: how long each restarted replica may take from its start to ready before it counts as "never
    # ready" (a finding, void); None: twice the baseline restart plus the delay, plus 10 s (at least 20 s)
    verify_timeout_s: float | None = Field(default=None, gt=0, le=MAX_FAULT_S)

    @model_validator(mode="after")
    def _timeout_with_restart(self) -> Args:
        if self.verify_timeout_s is not None and self.trigger != "restart":
            raise ValueError(f"verify_timeout_s is ignored with trigger {self.trigger!r} (the reload call itself "
                             "waits); leave it empty (null) or use trigger: restart")
        return self


FAMILY = FamilySpec(name=NAME, action="slow_model_load", args=Args,
                    summary="delay the next model load and trigger it; landed when the load took >= delay_s (restart: "
                            "on the restarted replicas, clearly longer than a baseline restart)")


@dataclass
class Injected:
    record: dict[str, Any]  # the platform's undo record ({} for a reload: nothing stays changed)
    started_ns: int  # wall clock, when the trigger was sent
    baseline: dict[str, LoadStart] = field(default_factory=dict)  # restart: the last plain start, before it
    reload_s: dict[str, float] = field(default_factory=dict)  # reload trigger: how long each load call took
    # reload trigger, by Triton's log: the load before the reload (the baseline) and the reload's own load
    load_before_s: dict[str, float | None] = field(default_factory=dict)
    load_after_s: dict[str, float | None] = field(default_factory=dict)


def inject(scope: FaultScope, targets: list[str], args: Args) -> Injected:
    if args.trigger == "restart":
        clock = scope.ops.load_clock()
        baseline = clock.baseline(targets, args.model) if clock is not None else {}  # before anything changes
        started_ns = time.time_ns()
        record = scope.ops.restart_with_env({DELAY_ENV: f"{args.delay_s:g}"}, scope.run_id, targets)
        return Injected(record, started_ns, baseline)
    injected = Injected({}, time.time_ns())
    clock = scope.ops.load_clock()
    failures = []
    for name in targets:
        injected.load_before_s[name] = clock.last_load(name, args.model) if clock is not None else None
        began = time.monotonic()
        ok, why = scope.ops.reload_model(name, model=args.model, parameters={DELAY_PARAMETER: f"{args.delay_s:g}"})
        injected.reload_s[name] = round(time.monotonic() - began, 3)
        injected.load_after_s[name] = clock.last_load(name, args.model) if clock is not None else None
        if not ok:
            failures.append(f"{name}: {why}")
    if failures:
        raise FaultError(f"the slow model load was not triggered: the reload failed on {'; '.join(failures)}")
    return injected


def verify(scope: FaultScope, targets: list[str], injected: Injected, args: Args) -> Landing:
    check = f"the model load took at least {args.delay_s:g}s"
    if args.trigger == "reload":
        return _verify_reload(targets, injected, args, check)
    return _verify_restart(scope, targets, injected, args,
                           f"the replicas restarted with the delay were not ready for {args.delay_s:g}s and loaded for "
                           f">= {args.delay_s:g}s, clearly longer than a plain restart")


def _verify_reload(targets: list[str], injected: Injected, args: Args, check: str) -> Landing:
    """The reload call's duration, and Triton's own account of the load against the load before it."""
    measured = {"load_s": injected.reload_s, "triton_load_before_s": injected.load_before_s,
                "triton_load_s": injected.load_after_s}
    margin = args.delay_s / 2
    problems = []
    for name in targets:
        call, before, after = injected.reload_s.get(name, 0.0), injected.load_before_s.get(name), \
            injected.load_after_s.get(name)
        if call < args.delay_s:
            problems.append(f"{name}: the reload finished early ({call:g}s < {args.delay_s:g}s)")
        elif after is None:
            problems.append(f"{name}: Triton's log holds no account of the reload's load, so a slow load cannot be "
                            "told from a slow machine")
        elif after < args.delay_s or (before is not None and after < before + margin):
            problems.append(f"{name}: Triton loaded it in {after:g}s (the load before: "
                            f"{'unknown' if before is None else f'{before:g}s'}); a slow load takes >= "
                            f"{args.delay_s:g}s and {margin:g}s more than the load before")
    if problems:
        return Landing(NAME, tuple(targets), check, False,
                       "; ".join(problems) + ": the delay parameter did not take effect", measured)
    return Landing(NAME, tuple(targets), check, True,
                   "reload took " + ", ".join(f"{n}: {injected.reload_s[n]:g}s (Triton: {injected.load_after_s[n]:g}s, "
                                              f"before {injected.load_before_s[n] or 0:g}s)" for n in targets),
                   measured)


def _verify_restart(scope: FaultScope, targets: list[str], injected: Injected, args: Args, check: str) -> Landing:
    """Judge the replicas that restarted with the delay against the baseline (``slow_load_landing``)."""
    clock = scope.ops.load_clock()
    if clock is None:
        return Landing(NAME, tuple(targets), check, False,
                       f"this platform ({type(scope.ops).__name__}) cannot read when a replica started and became "
                       "ready, so a slow restart cannot be told from a normal one", {})
    verdict = judge_restart(clock, targets, injected.record, injected.baseline, injected.started_ns, args.delay_s,
                            args.model, args.verify_timeout_s)
    return Landing(NAME, verdict.judged, check, verdict.landed, verdict.detail, verdict.measured)


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    """Drop the changed parameter (the next restart loads at normal speed); a reload left nothing behind."""
    if record:
        scope.ops.restore_env(record)
