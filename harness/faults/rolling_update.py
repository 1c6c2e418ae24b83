"""Rolling update: replace every replica under load, as ``kubectl rollout restart`` does.

The Deployment's maxSurge / maxUnavailable, preStop delay and grace period decide how (``harness.faults.
rollout``); ``prestop_s`` and ``endpoint_lag_s`` let one experiment compare a rollout with and without a
preStop delay. The errors users see come from the gap between a pod's SIGTERM and its endpoint's removal:
with a preStop delay longer than that lag, Triton is only told to stop once nothing routes to it.

Landed when every target was deleted and came back ready on the new revision (restarts +1) and the rollout
did not stall. The landing carries each pod's phases and, under load, the requests and errors per phase
(endpoint lag, shutdown, startup, surge startup, other). Undo drops the revision's env change (it has no
effect on serving); the surge pods are already gone.

On Kubernetes the Deployment's template gets the revision (and the strategy or preStop delay the experiment
overrides) and the real controller rolls it out (a preStop delay other than the Deployment's is rolled in
first, because a pod runs the hook of the template it was made from: the measured rollout then replaces pods
that carry it); landed when it completed (every pod on the new template,
ready, no old pod left), not when the controller reported ``ProgressDeadlineExceeded``. Undo restores the
original template: the controller rolls back, as ``kubectl rollout undo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.faults.family import FamilySpec, FaultScope, Landing
from harness.faults.podspec import native_spec, spec_ops, undo_spec
from harness.faults.rollout import Rollout, RolloutArgs, errors_by_phase, phases_from_events, roll_out

__all__ = ["FAMILY", "NAME", "Args", "describe_phases", "errors_once_the_timeline_is_back", "inject", "undo", "verify"]

NAME = "rolling-update"


class Args(RolloutArgs):
    pass


FAMILY = FamilySpec(name=NAME, action="rolling_update", args=Args,
                    summary="replace every replica (maxSurge/maxUnavailable, preStop, grace); landed when each came "
                            "back ready on the new revision; errors per rollout phase")


def inject(scope: FaultScope, targets: list[str], args: Args) -> Rollout:
    return roll_out(scope, targets, args, corrupt=False)


NO_TIMELINE = "no load timeline (run it with harness run for errors per phase)"


def describe_phases(errors: Mapping[str, Mapping[str, int]] | None) -> str:
    if errors is None:
        return NO_TIMELINE
    return ", ".join(f"{phase} {v['errors']}/{v['requests']}" for phase, v in errors.items()) + " errors/requests"


def verify(scope: FaultScope, targets: list[str], rollout: Rollout, args: Args, timeline_dir: Path | None) -> Landing:
    targets = list(rollout.targets)  # on Kubernetes, after a preStop delay was rolled in: the pods that carry it
    native = native_spec(scope)
    if native is not None:  # Kubernetes: old pods terminating, new pods starting, from the watcher's events
        phases = native.rollout_phases(rollout.started_ns, targets, sorted(rollout.new_pods))
    else:
        phases = phases_from_events(spec_ops(scope).events_since(rollout.started_ns), [*targets, *rollout.surge])
    errors = errors_by_phase(timeline_dir, phases, (rollout.started_ns, rollout.ended_ns)) if timeline_dir else None
    measured = {**rollout.to_json(), "phases": phases, "errors_by_phase": errors,
                "window_ns": [rollout.started_ns, rollout.ended_ns]}
    check = "every replica deleted and ready again on the new revision, without a stall"
    not_replaced = sorted(set(targets) - set(rollout.replaced))
    if rollout.stalled or not_replaced:
        return Landing(NAME, tuple(targets), check, False, rollout.stalled or f"{not_replaced} were not replaced",
                       measured)
    plan = rollout.plan
    lag = ("the cluster's" if plan["endpoint_lag_s"] is None else f"{plan['endpoint_lag_s']:g}s")
    by = "by the Deployment controller " if rollout.native else ""
    detail = (f"replaced {len(targets)} replica(s) {by}in {rollout.to_json()['duration_s']:g}s (maxSurge "
              f"{plan['max_surge']}, maxUnavailable {plan['max_unavailable']}, preStop {plan['prestop_s']:g}s, "
              f"endpoint lag {lag}); ready replicas never below {rollout.min_ready}; "
              f"{describe_phases(errors)}")
    return Landing(NAME, tuple(targets), check, True, detail, measured)


def errors_once_the_timeline_is_back(landing: Mapping[str, Any], timeline_dir: Path) -> dict[str, Any] | None:
    """The landing with its errors per phase, where it was judged while the load's timeline was elsewhere (the
    in-cluster load's workers hold theirs until the repetition ends); None when there is nothing to add. The
    phases come from the cluster's events, so they hold; only the requests were missing."""
    measured = landing.get("measured") or {}
    if (landing.get("fault") != NAME or measured.get("errors_by_phase") is not None
            or not measured.get("window_ns") or "phases" not in measured):
        return None
    start, end = measured["window_ns"]
    errors = errors_by_phase(timeline_dir, measured["phases"], (int(start), int(end)), flush_wait_s=0)
    if errors is None:
        return None
    detail = str(landing.get("detail", ""))
    return {**landing, "measured": {**measured, "errors_by_phase": errors},
            "detail": detail.replace(NO_TIMELINE, describe_phases(errors) + " (from the in-cluster load's timeline)")}


def undo(scope: FaultScope, record: Mapping[str, Any]) -> None:
    undo_spec(scope, record)
