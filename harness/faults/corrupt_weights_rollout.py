"""Corrupt weights rollout: a new revision whose weights fail the model's SHA-256 check.

Its pods start, the model load fails (Triton stays live but never ready with strict readiness), and the
rollout stalls at its progress deadline. What users lose depends on maxUnavailable: with 0 (and a surge
pod) no old pod is deleted and the service keeps its full capacity; with more, that many old pods were
already replaced by pods that never serve.

Landed when the rollout stalled, no pod of the new revision became ready, and the not-ready reason is the
failed weight check. The landing measures the capacity left (ready replicas at the stall and the minimum
during the rollout, out of the Deployment's replicas). Undo is ``kubectl rollout undo``: the weights and
env are restored, surge pods removed, and the replaced pods restarted on the old revision.

On Kubernetes the revision's pods read the model repository from a ConfigMap of the harness's own with one
weight file corrupted; the real controller rolls it out and reports ``ProgressDeadlineExceeded``, and the
not-ready reason is read from Triton's repository index inside each new pod.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from harness.faults.family import FamilySpec, FaultScope, Landing
from harness.faults.podspec import native_spec, spec_ops, undo_spec
from harness.faults.rollout import Rollout, RolloutArgs, roll_out

__all__ = ["FAMILY", "NAME", "Args", "inject", "undo", "verify"]

NAME = "corrupt-weights-rollout"


class Args(RolloutArgs):
    progress_deadline_s: float = Field(default=15.0, gt=0, le=3600)


FAMILY = FamilySpec(name=NAME, action="corrupt_weights_rollout", args=Args,
                    summary="roll out weights that fail their SHA-256 check; landed when the rollout stalled on the "
                            "failed check; capacity left measured")


def inject(scope: FaultScope, targets: list[str], args: Args) -> Rollout:
    return roll_out(scope, targets, args, corrupt=True)


REASON_WAIT_S = 30.0  # how long a stalled rollout's new pods may take to reach the weight check


def _weight_check(reasons: Mapping[str, str]) -> bool:
    return any("corrupt" in why or "sha256" in why for why in reasons.values())


def verify(scope: FaultScope, targets: list[str], rollout: Rollout, args: Args) -> Landing:
    check = "the rollout stalled: no pod of the corrupt revision became ready, because of the weight check"
    native = native_spec(scope)
    new_pods = sorted(rollout.new_pods) if native is not None else [*rollout.replaced, *rollout.surge]

    def read() -> tuple[list[str], dict[str, str]]:
        now = scope.replicas()
        ready = sorted(n for n in new_pods if (r := now.get(n)) is not None and r.ready)
        if native is not None:  # the pod says "not ready"; Triton's repository index says why
            return ready, {n: native.model_reason(n) for n in new_pods if n in now and not now[n].ready}
        return ready, {n: now[n].reason for n in new_pods if n in now}

    # A deadline shorter than a new pod's start (a loaded machine) stalls the rollout before any pod reached
    # the weight check: its reason is still "connection refused". The stall stands; the pods keep starting, so
    # their reason is read again, up to REASON_WAIT_S, until one shows the check or one became ready.
    started = time.monotonic()
    ready_new, reasons = read()
    while (rollout.stalled and not ready_new and not _weight_check(reasons)
           and time.monotonic() - started < REASON_WAIT_S):
        time.sleep(0.5)
        ready_new, reasons = read()
    measured = {**rollout.to_json(), "new_pod_reasons": reasons,
                "reasons_read_after_s": round(time.monotonic() - started, 3),
                "capacity_lost": max(rollout.replicas - rollout.ready_at_end, 0)}
    if not rollout.stalled or ready_new:
        return Landing(NAME, tuple(targets), check, False,
                       f"pods of the corrupt revision became ready ({ready_new or 'all'}): the weights were not "
                       "corrupted, or the SHA-256 check did not run", measured)
    if native is not None and "ProgressDeadlineExceeded" not in rollout.stalled:
        return Landing(NAME, tuple(targets), check, False,
                       f"the Deployment controller never reported the stall ({rollout.stalled})", measured)
    if not _weight_check(reasons):
        return Landing(NAME, tuple(targets), check, False,
                       f"the rollout stalled, but not on the weight check (reasons: {reasons})", measured)
    plan = rollout.plan
    detail = (f"stalled after {rollout.to_json()['duration_s']:g}s with maxUnavailable {plan['max_unavailable']}, "
              f"maxSurge {plan['max_surge']}: {rollout.ready_at_end} of {rollout.replicas} replicas serving "
              f"(minimum {rollout.min_ready} during the rollout); new pods not ready: "
              + "; ".join(f"{n}: {why[:160]}" for n, why in reasons.items()))
    return Landing(NAME, tuple(targets), check, True, detail, measured)


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    """Restore weights and env, remove the surge pods, then restart the replaced pods on the old revision."""
    if native_spec(scope) is not None:
        undo_spec(scope, record)  # the original template: the controller scales the old ReplicaSet back up
        return
    ops = spec_ops(scope)
    ops.undo_records(record)
    for name in record.get("replaced", []):
        replica = scope.replicas().get(name)
        # a pod of the corrupt revision is live but never ready ("starting" while its startup probe still
        # waits, "running" after); one in back-off restarts by itself now that its pod spec changed
        if replica is not None and not replica.ready and replica.state in ("starting", "running"):
            ops.kill_replica(name, 1.0)
