"""What the faults that change the pod spec share: the platform operations they need, and reading a
CrashLoopBackOff out of the lifecycle events.

Those faults (rolling update, probe kills slow load, corrupt weights rollout, OOM at load) need
``harness.platforms.base.SpecTarget``; a platform without it gets a clear FaultError before anything is
changed, never a fault that silently did nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import FaultError
from harness.events import Event, EventKind
from harness.faults.family import FaultScope
from harness.platforms.base import SpecTarget

__all__ = ["CrashLoop", "crash_loops", "spec_ops", "wait_for_crash_loops"]


def spec_ops(scope: FaultScope) -> SpecTarget:
    if not isinstance(scope.ops, SpecTarget):
        raise FaultError(f"this platform ({type(scope.ops).__name__}) cannot change the pod spec of a replica "
                         "(rolling update, probes, memory limit, weights); run this experiment on the local "
                         "platform (the Kubernetes side is not wired yet)")
    return scope.ops


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


def wait_for_crash_loops(ops: SpecTarget, since_ns: int, targets: Sequence[str], timeout_s: float,
                         done: Callable[[CrashLoop], bool]) -> dict[str, CrashLoop]:
    """Poll the events until ``done`` holds for every target, or ``timeout_s`` passes; the last reading."""
    deadline = time.monotonic() + timeout_s
    while True:
        loops = crash_loops(ops.events_since(since_ns), targets)
        if all(done(loop) for loop in loops.values()) or time.monotonic() >= deadline:
            return loops
        time.sleep(0.2)
