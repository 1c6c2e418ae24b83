"""OOM at load: a memory limit below the model's load-time peak.

The deployment guide's OOMKilled: the model reserves ``arena_mb`` while it loads (a framework's memory
arena), the container's limit is ``limit_mb``, so every load is killed at the limit and the kubelet backs
off. Locally the limit is a per-replica memory cgroup and the arena an env override of the reference
model, both applied at the replica's next start (a Deployment patch of resources.limits on Kubernetes);
a kernel OOM kill inside the container takes the whole container (memory.oom.group semantics).

Landed when the events show, for every target, an exit with reason OOMKilled and at least one
CrashLoopBackOff. Undo drops the limit and the arena; the replica then starts at once.

On Kubernetes the Deployment's template gets the arena and ``resources.limits.memory`` (a memory request
above it comes down to it), the controller rolls it out, and the kernel and the kubelet do the rest: the
reason ``OOMKilled`` comes from the container's ``lastState.terminated``. Where the cluster does not enforce
the limit, nothing is OOMKilled and the landing says it could not verify (the repetition is void), with the
limit the container's cgroup shows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from harness.faults.family import FamilySpec, FaultScope, Landing, Targeting
from harness.faults.podspec import CrashLoop, native_spec, spec_ops, undo_spec, wait_for_crash_loops

__all__ = ["ARENA_ENV", "FAMILY", "NAME", "Args", "inject", "undo", "verify"]

NAME = "oom-at-load"
ARENA_ENV = "HARNESS_MODEL_ARENA_MB"  # read by the reference model's initialize()


class Args(Targeting):
    limit_mb: float = Field(default=384.0, ge=64, le=1 << 20)
    arena_mb: int = Field(default=768, ge=1, le=1 << 20)
    verify_timeout_s: float = Field(default=60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _arena_over_limit(self) -> Args:
        if self.arena_mb <= self.limit_mb:
            raise ValueError(f"arena_mb {self.arena_mb} does not exceed limit_mb {self.limit_mb:g}: the load would "
                             "fit and nothing would be killed; make the arena larger than the limit")
        return self


FAMILY = FamilySpec(name=NAME, action="oom_at_load", args=Args,
                    summary="a memory limit below the load-time peak; landed when each load was OOMKilled and "
                            "CrashLoopBackOff followed")


def inject(scope: FaultScope, targets: list[str], args: Args) -> dict[str, Any]:
    native = native_spec(scope)
    if native is not None:  # Kubernetes: resources.limits.memory in the template; the kubelet and kernel enforce it
        native.require_every_pod(targets, "OOM at load")
        return native.patch_spec(scope.run_id, {"env": {ARENA_ENV: str(args.arena_mb)},
                                                "memory_limit_mb": args.limit_mb})
    ops = spec_ops(scope)
    since_ns = time.time_ns()
    limit = ops.limit_memory(targets, scope.run_id, args.limit_mb)
    revision = ops.set_revision(targets, scope.run_id, env={ARENA_ENV: str(args.arena_mb)})
    for name in targets:
        ops.kill_replica(name, 1.0)  # the rollout of the new spec, in place
    return {"ids": [*limit["ids"], *revision["ids"]], "since_ns": since_ns}


def _oom_looping(loop: CrashLoop) -> bool:
    return any("OOMKilled" in e for e in loop.exits) and bool(loop.backoff_s)


def _oom_restart_loop(loop: CrashLoop) -> bool:
    """Kubernetes: OOMKilled again after the restart, or OOMKilled then a back-off. The kubelet shows
    CrashLoopBackOff for a container that ran longer than its current back-off only later (measured: a probe-
    killed container running ~25 s restarted 3 times at once while the back-off doubled 10, 20, 40 s)."""
    ooms = sum("OOMKilled" in e for e in loop.exits)
    return ooms >= 2 or (ooms >= 1 and bool(loop.backoff_s))


def verify(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args) -> Landing:
    native = native_spec(scope)
    waited_s = args.verify_timeout_s
    if native is not None:  # the pods of the new template, as the controller made them
        # cgroup v1 kills only the biggest process (the python backend's stub holding the arena): Triton stays
        # up without its model until the probe that guards the load kills the container, twice before a
        # back-off; so the wait includes that budget twice.
        budget = native.deployment().load_budget
        waited_s += 2 * (budget[1] if budget else 0.0)
        loops = wait_for_crash_loops(native, int(record["since_ns"]), lambda: native.new_pods(record), waited_s,
                                     _oom_restart_loop)
        targets = sorted(loops)
    else:
        loops = wait_for_crash_loops(spec_ops(scope), int(record["since_ns"]), targets, args.verify_timeout_s,
                                     _oom_looping)
    check = (f"each load (arena {args.arena_mb} MB) was OOMKilled at the {args.limit_mb:g} MB limit, "
             "then CrashLoopBackOff")
    measured = {"limit_mb": args.limit_mb, "arena_mb": args.arena_mb,
                "replicas": {n: {**loop.to_json(), "oom_kills": sum("OOMKilled" in e for e in loop.exits)}
                             for n, loop in loops.items()}}
    looping = _oom_looping if native is None else _oom_restart_loop
    missing = sorted(n for n, loop in loops.items() if not looping(loop))
    if not loops:
        return Landing(NAME, tuple(targets), check, False,
                       f"could not verify: no pod of the new pod spec appeared within {args.verify_timeout_s:g}s",
                       measured)
    if missing:
        why = "; ".join(f"{n}: exits {loops[n].exits[-2:] or 'none'}, {len(loops[n].backoff_s)} back-off(s)"
                        for n in missing)
        if native is not None:  # say whether the limit reached the container at all (cgroup v1 or v2 file)
            measured["limit_in_container"] = {n: native.memory_limit_seen(n) for n in missing}
            why += f"; the container's memory limit as its cgroup shows it: {measured['limit_in_container']}"
        return Landing(NAME, tuple(targets), check, False,
                       f"could not verify an OOMKilled crash loop within {waited_s:g}s ({why})", measured)
    detail = "; ".join(f"{n}: OOMKilled {sum('OOMKilled' in e for e in loop.exits)}x, "
                       + (("CrashLoopBackOff " + ", ".join(f"{b:g}s" for b in loop.backoff_s)) if loop.backoff_s
                          else "restarted at once each time (no back-off shown yet)")
                       for n, loop in loops.items())
    return Landing(NAME, tuple(targets), check, True, detail, measured)


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    undo_spec(scope, record)
