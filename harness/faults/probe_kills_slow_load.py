"""Probe kills slow load: a startup (or liveness) budget shorter than the model's load time.

The deployment guide's CrashLoopBackOff: a new pod spec gives the probe ``budget_s`` (period 1 s x
failureThreshold) while the model takes ``load_s`` to load, so the probe kills every start before the
model is ready, and the kubelet backs off longer each time. Locally the probe override and the load
delay apply at the replica's next start (a Deployment patch on Kubernetes), and the replica is restarted.

Landed when the events show, for every target, the probe killing the server during its load (the probe
as the reason) twice, or once and a CrashLoopBackOff; the landing names the probe, its budget, the load time,
the kills and the back-off delays. Undo drops both overrides; a crash-looping replica then starts at once
(a changed pod spec ends its back-off, as a fixed Deployment makes a new pod).

On Kubernetes the Deployment's template gets the load delay and the probe budget, the controller rolls it out
as its strategy allows, and the kubelet's probe kills the new pods (``Unhealthy`` Events, CrashLoopBackOff
with its real back-off); landed when every pod of the new template crash-loops that way. With
maxUnavailable 0 that is the surge pod alone and the old pods keep serving (the rollout stalls).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.faults.family import MAX_FAULT_S, FamilySpec, FaultScope, Landing, Targeting
from harness.faults.podspec import CrashLoop, native_spec, spec_ops, undo_spec, wait_for_crash_loops
from harness.faults.slow_load import DELAY_ENV

__all__ = ["FAMILY", "NAME", "Args", "inject", "undo", "verify"]

NAME = "probe-kills-slow-load"


class Args(Targeting):
    probe: Literal["startup", "liveness"] = "startup"
    budget_s: int = Field(default=2, ge=1, le=600)  # period 1 s x failureThreshold budget_s, no initial delay
    load_s: float = Field(default=6.0, gt=0, le=MAX_FAULT_S)
    verify_timeout_s: float = Field(default=60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _budget_below_load(self) -> Args:
        if self.budget_s >= self.load_s:
            raise ValueError(f"budget_s {self.budget_s} is not shorter than load_s {self.load_s:g}: the probe would "
                             "let the load finish and nothing would crash-loop; make load_s longer than budget_s")
        return self


FAMILY = FamilySpec(name=NAME, action="probe_kills_slow_load", args=Args,
                    summary="a probe budget shorter than the model load; landed when the probe killed each load "
                            "and CrashLoopBackOff followed")


def _probes(args: Args) -> dict[str, dict[str, float] | None]:
    budget = {"initial_delay_s": 0.0, "period_s": 1.0, "failure_threshold": float(args.budget_s)}
    if args.probe == "startup":
        return {"startup": budget}
    return {"startup": None, "liveness": budget}  # without a startup probe, liveness runs from the start


def inject(scope: FaultScope, targets: list[str], args: Args) -> dict[str, Any]:
    native = native_spec(scope)
    if native is not None:  # Kubernetes: the patched template rolls out and the kubelet's probe does the killing
        native.require_every_pod(targets, "probe kills slow load")
        return native.patch_spec(scope.run_id, {"env": {DELAY_ENV: f"{args.load_s:g}"}, "probes": _probes(args)})
    ops = spec_ops(scope)
    since_ns = time.time_ns()
    record = ops.set_revision(targets, scope.run_id, env={DELAY_ENV: f"{args.load_s:g}"}, probes=_probes(args))
    for name in targets:
        ops.kill_replica(name, 1.0)  # the rollout of the new spec, in place
    return {**record, "since_ns": since_ns}


def _looping(loop: CrashLoop) -> bool:
    """Killed by the probe again and again, or killed and backed off. A long grace period hides the back-off: the
    kubelet restarts at once when the back-off delay (10 s, then 20 s...) has passed while the container took its
    grace to die (the reference's 30 s: kills 37 s apart and no CrashLoopBackOff within a minute)."""
    return len(loop.probe_kills) >= 2 or (bool(loop.probe_kills) and bool(loop.backoff_s))


def verify(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args) -> Landing:
    native = native_spec(scope)
    if native is not None:  # the pods that crash-loop are those of the new template, as the controller made them
        loops = wait_for_crash_loops(native, int(record["since_ns"]), lambda: native.new_pods(record),
                                     args.verify_timeout_s, _looping)
        targets = sorted(loops)
    else:
        loops = wait_for_crash_loops(spec_ops(scope), int(record["since_ns"]), targets, args.verify_timeout_s,
                                     _looping)
    check = (f"the {args.probe} probe (budget {args.budget_s}s) killed each {args.load_s:g}s model load: again, "
             "or CrashLoopBackOff followed")
    measured = {"probe": args.probe, "budget_s": args.budget_s, "load_s": args.load_s,
                "replicas": {n: loop.to_json() for n, loop in loops.items()}}
    missing = sorted(n for n, loop in loops.items() if not _looping(loop))
    if not loops:
        return Landing(NAME, tuple(targets), check, False,
                       f"no pod of the new pod spec appeared within {args.verify_timeout_s:g}s", measured)
    if missing:
        why = "; ".join(f"{n}: {len(loops[n].probe_kills)} probe kill(s), {len(loops[n].backoff_s)} back-off(s)"
                        for n in missing)
        return Landing(NAME, tuple(targets), check, False,
                       f"no crash loop by the probe within {args.verify_timeout_s:g}s ({why})", measured)
    detail = "; ".join(f"{n}: killed by the {args.probe} probe {len(loop.probe_kills)}x during the load "
                       f"({loop.probe_kills[0]}), CrashLoopBackOff "
                       + (", ".join(f"{b:g}s" for b in loop.backoff_s) or "not yet")
                       for n, loop in loops.items())
    return Landing(NAME, tuple(targets), check, True, detail, measured)


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    undo_spec(scope, record)
