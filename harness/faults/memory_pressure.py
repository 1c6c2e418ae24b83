"""Memory pressure: hold the target's free (GPU) memory at ``leave_free_mb`` with a top-up hog.

On a GPU the hog holds the device's free memory through the CUDA driver API; without one it is the
host-memory analogue, confined to the targets' memory cgroups, and labelled as such everywhere. Landed when
each hog reports the target's free memory at the requested level (within ``tolerance_mb``) soon after it
started, and still held it when it was released (a hog killed behind the harness's back, or one that reached
its own deadline before the release step, voids the repetition). The landing also says what each replica did
under it (restarts, reason).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from harness.faults.family import MAX_FAULT_S, FamilySpec, FaultScope, Landing, Targeting, wait_for
from harness.faults.network_block import AgentPermission

__all__ = ["FAMILY", "Args", "inject", "undo", "verify", "verify_held"]

NAME = "gpu-memory-pressure"
HOLD_TIMEOUT_S = 10.0  # a hog takes its memory in 64 MB chunks; 10 s covers tens of GB
STALE_S = 2.5  # a holding hog reports every 0.5 s
DEADLINE_SLACK_S = 0.5  # a hog whose deadline fell within its report period of the release held until it


class Args(Targeting):
    leave_free_mb: float = Field(default=32.0, ge=0)
    duration_s: float = Field(default=30.0, gt=0, le=MAX_FAULT_S)
    headroom_mb: float = Field(default=256.0, gt=0, le=1 << 20)
    tolerance_mb: float = Field(default=4.0, gt=0, le=1 << 20)

    @model_validator(mode="after")
    def _leave_below_headroom(self) -> Args:
        if self.leave_free_mb >= self.headroom_mb:
            raise ValueError(f"leave_free_mb ({self.leave_free_mb:g}) must be below headroom_mb "
                             f"({self.headroom_mb:g}): nothing would be held")
        return self


FAMILY = FamilySpec(name=NAME, action="memory_pressure", args=Args,
                    summary="hold free memory at a level; landed when each hog held it, from start to release")


def inject(scope: FaultScope, targets: list[str], args: Args,
           permission: AgentPermission | None = None) -> dict[str, Any]:
    """Start the hogs. ``permission``: the run's privileged-agent permission, which Kubernetes without a GPU
    uses to hold the pod's memory from outside its container (a hog inside would end with the container)."""
    permission = permission or AgentPermission()
    return scope.ops.memory_pressure(targets, scope.run_id, args.leave_free_mb, args.duration_s, args.headroom_mb,
                                     allow_agent=permission.allowed, agent_image=permission.image)


def _statuses(scope: FaultScope, record: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    return scope.ops.memory_status(record)


def verify(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args) -> Landing:
    """Wait until every hog reports free memory at the level asked (it fills in chunks)."""
    check = f"free memory held at <= {args.leave_free_mb:g} MB (+{args.tolerance_mb:g})"
    limit = args.leave_free_mb + args.tolerance_mb

    def held() -> dict[str, dict[str, Any] | None] | None:
        statuses = _statuses(scope, record)
        ok = statuses and all(s is not None and float(s.get("free_mb", 1e18)) <= limit for s in statuses.values())
        return statuses if ok else None

    started = time.monotonic()
    statuses = wait_for(held, HOLD_TIMEOUT_S, 0.2)
    measured: dict[str, Any] = {"waited_s": round(time.monotonic() - started, 3),
                                "analogue": str(record.get("analogue", ""))}
    if statuses is None:
        last = _statuses(scope, record)
        measured["hogs"] = last
        if not last:
            why = "no hog status can be read on this platform, so the pressure cannot be verified"
        else:
            why = "; ".join(f"{t}: " + ("no report" if s is None else f"free {float(s.get('free_mb', 0)):.1f} MB, "
                                        f"held {float(s.get('held_mb', 0)):.1f} MB")
                            for t, s in last.items())
            why = f"free memory never reached the level within {HOLD_TIMEOUT_S:g}s ({why})"
        return Landing(NAME, tuple(targets), check, False, why, measured)
    measured["hogs"] = statuses
    return Landing(NAME, tuple(targets), check, True,
                   "; ".join(f"{t}: free {float(s.get('free_mb', 0)):.1f} MB, held {float(s.get('held_mb', 0)):.1f} MB"
                             for t, s in statuses.items() if s is not None), measured)


def verify_held(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args,
                restarts_before: Mapping[str, int]) -> Landing:
    """Before release: each hog still holds, and what the replicas did under it.

    A hog that reached its own deadline (``duration_s``) before the release step let go of the memory then:
    "held until release" would be false, the replicas read here were no longer under pressure, and the fault
    end taken from the release step would overstate the fault. The landing fails, naming the gap, so the
    repetition is void; give the action a ``duration_s`` that outlives the method's release step (the shipped
    experiments use ``pressure_max_s``)."""
    check = "the pressure held until it was released"
    statuses = _statuses(scope, record)
    now = time.time()
    lost = []
    for target, status in statuses.items():
        if status is None:
            lost.append(f"{target}: no report")
        elif status.get("state") == "holding" and now - float(status.get("ts", 0)) > STALE_S:
            lost.append(f"{target}: the hog stopped reporting {now - float(status.get('ts', 0)):.1f}s ago "
                        "(killed?)")
        elif status.get("state") == "released-on-signal":
            lost.append(f"{target}: the hog was stopped by a signal before the release")
        elif status.get("state") == "released-at-deadline" and now - float(status.get("ts", now)) > DEADLINE_SLACK_S:
            lost.append(f"{target}: the hog reached its own deadline (duration_s {args.duration_s:g}s) "
                        f"{now - float(status.get('ts', now)):.1f}s before the release step, so memory was free "
                        "from then on; give memory_pressure a duration_s that outlives the release step")
    replicas = scope.replicas()
    did = {n: {"restarts": r.restarts - restarts_before.get(n, r.restarts), "ready": r.ready,
               "reason": r.reason or r.state} for n, r in replicas.items() if n in targets}
    measured = {"hogs": statuses, "replicas_under_pressure": did}
    behaviour = "; ".join(f"{n}: {d['restarts']} restart(s), {'ready' if d['ready'] else 'not ready'}"
                          + (f" ({d['reason']})" if d["reason"] else "") for n, d in did.items())
    if not statuses:
        return Landing(NAME, tuple(targets), check, False, "no hog status can be read on this platform", measured)
    if lost:
        hint = ("; the hog ran inside the Triton container, so a restart of that container ended it: on Kubernetes "
                "without a GPU pass --allow-privileged-agent (and --agent-image), and the pod's own memory is held "
                "from outside the container" if record.get("ends_with_container") else "")
        return Landing(NAME, tuple(targets), check, False,
                       "pressure lost before the release: " + "; ".join(lost) + hint, measured)
    return Landing(NAME, tuple(targets), check, True, f"held until release; replicas: {behaviour}", measured)


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    scope.ops.release_memory(record)
