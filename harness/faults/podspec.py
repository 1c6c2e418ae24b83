"""What the faults that change the pod spec share: the platform operations they need, and reading a
CrashLoopBackOff out of the lifecycle events.

Those faults (rolling update, probe kills slow load, corrupt weights rollout, OOM at load) need
``harness.platforms.base.SpecTarget`` (the harness plays the rollout, locally) or offer
``DeploymentSpecTarget`` (a real Deployment controller does, on Kubernetes); a platform with neither gets a
clear FaultError before anything is changed, never a fault that silently did nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import FaultError
from harness.events import Event, EventKind
from harness.faults.family import FaultScope
from harness.platforms.base import DeploymentSpecTarget, SpecTarget

__all__ = ["CrashLoop", "crash_loops", "native_spec", "spec_ops", "undo_spec", "wait_for_crash_loops"]


def native_spec(scope: FaultScope) -> DeploymentSpecTarget | None:
    """The platform's own Deployment rollout (Kubernetes: the real controller and kubelet), None where the
    harness plays the pod spec itself (``SpecTarget``, the local platform)."""
    return scope.ops.deployment_spec_ops()


def spec_ops(scope: FaultScope) -> SpecTarget:
    if not isinstance(scope.ops, SpecTarget):
        raise FaultError(f"this platform ({type(scope.ops).__name__}) cannot change the pod spec of a replica "
                         "(rolling update, probes, memory limit, weights); run this experiment on the local or "
                         "the Kubernetes platform")
    return scope.ops


def undo_spec(scope: FaultScope, record: Mapping[str, Any]) -> None:
    """Undo a pod-spec change: the original template back and its roll followed to the end (Kubernetes: the
    steady-state check after it then sees the Deployment as it was), or each local override dropped."""
    native = native_spec(scope)
    if native is not None:
        native.restore_spec(record, follow=True)
    else:
        spec_ops(scope).undo_records(record)


@dataclass
class CrashLoop:
    """One replica's crash loop as its events tell it."""

    replica: str
    probe_kills: list[str] = field(default_factory=list)  # the probe's reason for each kill
    exits: list[str] = field(default_factory=list)  # exit reasons (OOMKilled: exit code 137 ...)
    backoff_s: list[float] = field(default_factory=list)  # each CrashLoopBackOff delay

    def to_json(self) -> dict[str, Any]:
        return {"probe_kills": len(self.probe_kills), "exits": self.exits[-5:], "backoff_s": self.backoff_s,
                "last_probe_reason": self.probe_kills[-1] if self.probe_kills else ""}


def crash_loops(events: Sequence[Event], targets: Sequence[str]) -> dict[str, CrashLoop]:
    loops = {name: CrashLoop(name) for name in targets}
    for event in events:
        loop = loops.get(event.replica)
        if loop is None:
            continue
        if event.kind in (EventKind.STARTUP_FAILED, EventKind.LIVENESS_FAILED):
            loop.probe_kills.append(event.reason)
        elif event.kind == EventKind.EXITED:
            loop.exits.append(event.reason)
        elif event.kind == EventKind.BACKOFF:
            loop.backoff_s.append(float(event.details.get("backoff_s", 0) or 0))
    return loops


def wait_for_crash_loops(ops: SpecTarget | DeploymentSpecTarget, since_ns: int,
                         targets: Sequence[str] | Callable[[], Sequence[str]], timeout_s: float,
                         done: Callable[[CrashLoop], bool]) -> dict[str, CrashLoop]:
    """Poll the events until ``done`` holds for every target (at least one), or ``timeout_s`` passes; the last
    reading. ``targets`` may be a callable: on Kubernetes the pods of the new template appear as it rolls."""
    deadline = time.monotonic() + timeout_s
    while True:
        loops = crash_loops(ops.events_since(since_ns), targets() if callable(targets) else targets)
        if (loops and all(done(loop) for loop in loops.values())) or time.monotonic() >= deadline:
            return loops
        time.sleep(0.2)
