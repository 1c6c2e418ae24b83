"""A Deployment rollout played on the platform: what the rolling-update and corrupt-weights faults share.

Kubernetes replaces the pods of a Deployment keeping at most ``replicas + maxSurge`` pods and at least
``replicas - maxUnavailable`` available. Here: the new revision (an env change, optionally corrupt weights)
is written for every target; up to ``maxSurge`` surge pods of it start first; then the targets are deleted
in batches as large as the availability budget allows (``maxUnavailable`` plus the ready surge pods), each
deletion as Kubernetes does it (endpoint removed after ``endpoint_lag_s``, SIGTERM after the preStop delay,
SIGKILL after the grace period), and each batch must become ready again within ``progress_deadline_s``
(progressDeadlineSeconds) or the rollout stalls where it is, as a Deployment does. Surge pods are removed
once every target runs the new revision.

The rollout records its phases per pod from the lifecycle events (endpoint lag, shutdown, startup), so the
errors users saw can be attributed to a phase from the request timeline.

On Kubernetes none of that is played: the platform offers its own rollout (``DeploymentSpecTarget``), the
template is patched (the revision's env, the overridden strategy and preStop delay) and the real Deployment
controller replaces the pods while this follows it to completion or to its ``ProgressDeadlineExceeded``
stall; the phases there are ``terminating`` (old pods) and ``new-pod-startup`` (new ones).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from harness.errors import ConfigError
from harness.events import Event, EventKind
from harness.faults.family import FaultScope, Mode, Targeting, replica_identity
from harness.faults.podspec import native_spec, spec_ops
from harness.platforms.base import DeploymentSpecTarget
from harness.timeline import timeline_files

if TYPE_CHECKING:
    from harness.manifest import DeploymentView

__all__ = ["REVISION_ENV", "SURGE_SLOTS", "Rollout", "RolloutArgs", "errors_by_phase", "phases_from_events",
           "roll_out"]

REVISION_ENV = "HARNESS_REVISION"  # the new revision's pod-spec change (harmless to the model)
SURGE_SLOTS = 2  # the local platform's surge pods (harness.platforms.local.supervisor.SURGE_SLOTS)


class RolloutArgs(Targeting):
    max_surge: int | None = Field(default=None, ge=0, le=SURGE_SLOTS)  # None: the Deployment's
    max_unavailable: int | None = Field(default=None, ge=0)  # None: the Deployment's
    prestop_s: float | None = Field(default=None, ge=0, le=300)  # None: the Deployment's preStop delay
    endpoint_lag_s: float = Field(default=1.0, ge=0, le=60)  # deletion -> endpoint removed (kube-proxy sync)
    progress_deadline_s: float = Field(default=60.0, gt=0, le=3600)

    default_mode: ClassVar[Mode] = "all"  # a rollout replaces every replica


@dataclass
class Rollout:
    """What a rollout did: the undo record, its plan, whether it stalled, and the service's ready count."""

    record: dict[str, Any]
    plan: dict[str, Any]
    targets: list[str]
    surge: list[str]
    started_ns: int
    ended_ns: int = 0
    replaced: list[str] = field(default_factory=list)  # targets deleted (running the new revision's spec)
    stalled: str = ""  # why it stalled, "" when it completed
    min_ready: int = 0
    ready_at_end: int = 0
    replicas: int = 0
    new_pods: dict[str, str] = field(default_factory=dict)  # Kubernetes: the new template's pods, last reason

    @property
    def native(self) -> bool:
        """Whether a real Deployment controller rolled it out (Kubernetes), not the harness."""
        return bool(self.plan.get("controller"))

    def to_json(self) -> dict[str, Any]:
        out = {"plan": self.plan, "surge": self.surge, "replaced": self.replaced, "stalled": self.stalled,
               "min_ready": self.min_ready, "ready_at_end": self.ready_at_end, "replicas": self.replicas,
               "duration_s": round((self.ended_ns - self.started_ns) / 1e9, 3)}
        if self.native:
            out["new_pods"] = self.new_pods
        return out


class _ReadyWatch(threading.Thread):
    """Samples the service's ready replicas every 0.1 s while the rollout runs (its capacity)."""

    def __init__(self, scope: FaultScope) -> None:
        super().__init__(daemon=True)
        self.scope = scope
        self.min_ready: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            ready = sum(1 for r in self.scope.replicas().values() if r.ready)
            self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)


def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _strategy(deployment: DeploymentView, args: RolloutArgs) -> tuple[int, int, float]:
    """maxSurge, maxUnavailable and the preStop delay: the experiment's where it sets them, else the
    Deployment's; both budgets 0 is refused, as Kubernetes refuses it."""
    surge = deployment.max_surge if args.max_surge is None else args.max_surge
    unavailable = deployment.max_unavailable if args.max_unavailable is None else args.max_unavailable
    prestop = deployment.prestop_s if args.prestop_s is None else args.prestop_s
    if surge == 0 and unavailable == 0:
        raise ConfigError("maxSurge and maxUnavailable are both 0: no rollout can make progress (Kubernetes "
                          "rejects it); set max_surge or max_unavailable")
    return int(surge), int(unavailable), float(prestop)


def _native_roll_out(native: DeploymentSpecTarget, scope: FaultScope, targets: Sequence[str], args: RolloutArgs,
                     corrupt: bool) -> Rollout:
    """Kubernetes: patch the template (and the strategy the experiment overrides), let the controller roll.

    The kubelet runs the preStop hook of the template a pod was made from, so a preStop delay patched in with
    the revision would only hold the new pods, never the ones this rollout replaces. A ``prestop_s`` other than
    the Deployment's is therefore rolled in first (with the strategy; not measured, its duration in the plan as
    ``prestop_rollout_s``), and the measured rollout then replaces pods that carry the hook (``targets`` of the
    returned rollout). One undo record covers both: the rollback restores the original template. A
    corrupt-weights rollout patches in one step: a delay it sets holds only its new pods, and the plan says
    which delay the replaced pods had (``prestop_replaced_s``)."""
    native.require_every_pod(targets, "a corrupt-weights rollout" if corrupt else "a rolling update")
    deployment = native.deployment()
    surge, unavailable, prestop = _strategy(deployment, args)
    plan: dict[str, Any] = {
        "controller": "kubernetes", "max_surge": surge, "max_unavailable": unavailable, "prestop_s": prestop,
        "grace_s": deployment.termination_grace_s, "progress_deadline_s": args.progress_deadline_s,
        "corrupt_weights": corrupt, "endpoint_lag_s": None}  # the lag is the cluster's own (kube-proxy)
    per_pod = args.progress_deadline_s + max(prestop, deployment.prestop_s) + deployment.termination_grace_s
    timeout_s = per_pod * (deployment.replicas + surge + 1) + 60
    strategy = {"max_surge": args.max_surge, "max_unavailable": args.max_unavailable, "prestop_s": args.prestop_s,
                "progress_deadline_s": args.progress_deadline_s}
    env = {REVISION_ENV: scope.run_id}
    plan["prestop_replaced_s"] = deployment.prestop_s
    if corrupt or args.prestop_s is None or args.prestop_s == deployment.prestop_s:
        record = native.patch_spec(scope.run_id, {"env": env, "corrupt_weights": corrupt, **strategy})
    else:
        record = native.patch_spec(scope.run_id, strategy)
        prepared = native.follow_rollout(record, timeout_s)
        plan["prestop_rollout_s"] = prepared["duration_s"]
        if not prepared["completed"]:
            rollout = Rollout(record, plan, list(targets), [], int(record["since_ns"]), time.time_ns(),
                              stalled=f"rolling in the preStop delay of {prestop:g}s: {prepared['stalled']}",
                              min_ready=int(prepared["min_ready"]), ready_at_end=int(prepared["ready_at_end"]),
                              replicas=int(prepared["replicas"]))
            return rollout
        targets = native.new_pods(record)
        plan["prestop_replaced_s"] = prestop
        record = native.roll_env(record, env)
    rollout = Rollout(record, plan, list(targets), [], int(record["since_ns"]), replicas=deployment.replicas)
    followed = native.follow_rollout(record, timeout_s)
    rollout.ended_ns = time.time_ns()
    rollout.stalled = str(followed["stalled"])
    # the targets it deleted (not a pod of an earlier rollout still terminating, which the list before held)
    rollout.replaced = [p for p in followed["replaced"] if p in rollout.targets]
    rollout.min_ready = int(followed["min_ready"])
    rollout.ready_at_end = int(followed["ready_at_end"])
    rollout.replicas = int(followed["replicas"])
    rollout.new_pods = dict(followed["new_pods"])
    return rollout


def roll_out(scope: FaultScope, targets: Sequence[str], args: RolloutArgs, corrupt: bool) -> Rollout:
    native = native_spec(scope)
    if native is not None:
        return _native_roll_out(native, scope, targets, args, corrupt)
    ops = spec_ops(scope)
    deployment = ops.deployment()
    surge, unavailable, prestop = _strategy(deployment, args)
    capped = min(surge, SURGE_SLOTS)
    plan = {"max_surge": surge, "max_unavailable": unavailable, "prestop_s": prestop,
            "endpoint_lag_s": args.endpoint_lag_s, "grace_s": deployment.termination_grace_s,
            "progress_deadline_s": args.progress_deadline_s, "corrupt_weights": corrupt}
    if capped < surge:
        plan["surge_capped_to"] = capped
    replicas = scope.replicas()
    before = {n: (replica_identity(r), r.restarts) for n, r in replicas.items() if n in targets}
    rollout = Rollout({"ids": []}, plan, list(targets), [], time.time_ns(), replicas=len(replicas))
    revision = {REVISION_ENV: scope.run_id}
    rollout.record["ids"].extend(ops.set_revision(targets, scope.run_id, env=revision, corrupt=corrupt)["ids"])
    watch = _ReadyWatch(scope)
    watch.start()
    surge_ids: list[str] = []
    try:
        for slot in range(capped):
            added = ops.add_surge(slot, scope.run_id, env=revision, corrupt=corrupt)
            surge_ids.extend(added["ids"])
            rollout.surge.append(str(added["name"]))
        rollout.record["ids"].extend(surge_ids)
        surge_ready = 0
        if rollout.surge:
            _wait(lambda: all(scope.replicas().get(n) is not None and scope.replicas()[n].ready
                              for n in rollout.surge), args.progress_deadline_s)
            surge_ready = sum(1 for n in rollout.surge if (r := scope.replicas().get(n)) is not None and r.ready)
        budget = unavailable + surge_ready
        if budget == 0:
            rollout.stalled = (f"the {len(rollout.surge)} surge pod(s) of the new revision were not ready within "
                               f"{args.progress_deadline_s:g}s and maxUnavailable is 0: no old pod may go")
        pending = list(targets)
        while pending and not rollout.stalled:
            batch, pending = pending[:budget], pending[budget:]
            for name in batch:
                ops.delete_replica(name, prestop, args.endpoint_lag_s)
                rollout.replaced.append(name)

            def replaced_and_ready(batch: list[str] = batch) -> bool:
                now = scope.replicas()
                return all((r := now.get(n)) is not None and r.ready and r.restarts > before[n][1] for n in batch)

            if not _wait(replaced_and_ready, args.progress_deadline_s + prestop + deployment.termination_grace_s):
                rollout.stalled = (f"{', '.join(batch)} of the new revision not ready within "
                                   f"{args.progress_deadline_s:g}s (progressDeadlineSeconds)")
        if not rollout.stalled and surge_ids:
            ops.undo_records({"ids": surge_ids})  # every target runs the new revision: the extra pods go
            rollout.record["ids"] = [i for i in rollout.record["ids"] if i not in surge_ids]
            _wait(lambda: not any(n in scope.replicas() for n in rollout.surge), 30)
    finally:
        watch.stop.set()
        watch.join(2)
    rollout.ended_ns = time.time_ns()
    rollout.min_ready = watch.min_ready if watch.min_ready is not None else 0
    rollout.ready_at_end = sum(1 for r in scope.replicas().values() if r.ready)
    return rollout


def phases_from_events(events: Sequence[Event], pods: Sequence[str]) -> list[dict[str, Any]]:
    """Per pod: ``endpoint-lag`` (deleted, still routed), ``shutdown`` (endpoint removed until the container
    exited), ``startup`` (exited until ready again); a surge pod has ``surge-startup``."""
    phases: list[dict[str, Any]] = []
    for pod in pods:
        mine = [e for e in events if e.replica == pod]
        deleted = next((e.ts_ns for e in mine if e.kind == EventKind.KILLED), None)
        if deleted is None:
            started = next((e.ts_ns for e in mine if e.kind == EventKind.STARTED), None)
            ready = next((e.ts_ns for e in mine if e.kind == EventKind.READY and started and e.ts_ns > started), None)
            if started is not None:
                phases.append({"pod": pod, "phase": "surge-startup", "start_ns": started, "end_ns": ready})
            continue
        unrouted = next((e.ts_ns for e in mine if e.kind == EventKind.NOT_READY and e.ts_ns >= deleted), None)
        exited = next((e.ts_ns for e in mine if e.kind == EventKind.EXITED and e.ts_ns >= deleted), None)
        ready = next((e.ts_ns for e in mine if e.kind == EventKind.READY and exited and e.ts_ns > exited), None)
        routed_until = min(x for x in (unrouted, exited) if x is not None) if (unrouted or exited) else None
        phases.append({"pod": pod, "phase": "endpoint-lag", "start_ns": deleted, "end_ns": routed_until})
        if routed_until is not None and exited is not None and exited > routed_until:
            phases.append({"pod": pod, "phase": "shutdown", "start_ns": routed_until, "end_ns": exited})
        if exited is not None:
            phases.append({"pod": pod, "phase": "startup", "start_ns": exited, "end_ns": ready})
    return phases


def errors_by_phase(timeline_dir: Path, phases: Sequence[Mapping[str, Any]], window: tuple[int, int],
                    flush_wait_s: float = 1.5) -> dict[str, dict[str, int]] | None:
    """Requests and failures by rollout phase (by request start; a request in two pods' phases counts in the
    first), ``other`` for the rest of the rollout window. None when there is no request timeline (no load)."""
    if not timeline_dir.exists():
        return None
    time.sleep(flush_wait_s)  # the load writes its timeline about once a second
    if not timeline_files(timeline_dir):
        return None
    from harness.timeline import read_timeline

    frame = read_timeline(timeline_dir)
    start, end = window
    frame = frame[(frame["start_ns"] >= start) & (frame["start_ns"] <= end)]
    out: dict[str, dict[str, int]] = {}
    names = ["endpoint-lag", "shutdown", "startup", "surge-startup", "terminating", "new-pod-startup", "other"]
    for name in [*names, *(p["phase"] for p in phases)]:
        out.setdefault(name, {"requests": 0, "errors": 0})
    for start_ns, outcome in zip(frame["start_ns"].tolist(), frame["outcome"].tolist(), strict=True):
        phase = next((p["phase"] for p in phases
                      if p["start_ns"] <= start_ns <= (p["end_ns"] or end)), "other")
        out[phase]["requests"] += 1
        out[phase]["errors"] += int(outcome != "ok")
    return {k: v for k, v in out.items() if v["requests"] or k == "other"}
