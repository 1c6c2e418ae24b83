"""Replica lanes and capacity recovery from the platform events (harness.events).

Each event moves one replica into a lane state; the report draws the states as lanes and capacity
recovery is the instant every replica is ready again. A replica with no event before the analysed span
is taken as ready: the runner injects a fault only after the steady-state check passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.events import Event, EventKind

__all__ = ["LANE_STATES", "CapacityRecovery", "Interval", "capacity_recovery", "lane_state", "replica_lanes"]

LANE_STATES = ("ready", "not-ready", "restarting", "stopped")

_STATE_OF: dict[EventKind, str] = {
    EventKind.READY: "ready",
    EventKind.NOT_READY: "not-ready",
    EventKind.LIVENESS_FAILED: "not-ready",
    EventKind.STARTUP_FAILED: "not-ready",
    EventKind.KILLED: "restarting",
    EventKind.EXITED: "restarting",
    EventKind.BACKOFF: "restarting",
    EventKind.STARTED: "restarting",
    EventKind.RESTARTED: "restarting",
    EventKind.STOPPED: "stopped",
}


def lane_state(kind: EventKind) -> str | None:
    """The lane state an event moves its replica into; None for events that change no replica."""
    return _STATE_OF.get(kind)


@dataclass(frozen=True)
class Interval:
    replica: str
    start_ns: int
    end_ns: int
    state: str


def _replica_names(events: Sequence[Event], replicas: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(replicas))
    for e in events:
        if e.replica and lane_state(e.kind) is not None and e.replica not in names:
            names.append(e.replica)
    return names


def replica_lanes(events: Sequence[Event], replicas: Iterable[str], span: tuple[int, int]) -> list[Interval]:
    """Lane intervals per replica, clipped to ``span``; consecutive equal states are merged."""
    a, b = span
    out: list[Interval] = []
    ordered = sorted(events, key=lambda e: e.ts_ns)
    for name in _replica_names(ordered, replicas):
        state, since = "ready", a
        for e in ordered:
            new = lane_state(e.kind) if e.replica == name else None
            if new is None:
                continue
            if e.ts_ns <= a:
                state = new
                continue
            if e.ts_ns >= b:
                break
            if new != state:
                out.append(Interval(name, since, e.ts_ns, state))
                state, since = new, e.ts_ns
        out.append(Interval(name, since, b, state))
    return [i for i in out if i.end_ns > i.start_ns]


@dataclass(frozen=True)
class CapacityRecovery:
    recovered: bool
    seconds: float | None  # None when not every replica was ready at the end of observation
    lower_bound_s: float | None  # for a censored value: observation end - t0
    instant_ns: int | None


def capacity_recovery(
    events: Sequence[Event], replicas: Iterable[str], t0_ns: int, observation_end_ns: int
) -> CapacityRecovery:
    """From ``t0`` until as many replicas are ready as there were (the last time that became true, if ever).

    Counting, not naming: on Kubernetes a deleted pod is replaced by one with a new name, and capacity is
    back when the replacement is ready; locally the names stay and this is "every replica ready again".
    """
    ordered = sorted(events, key=lambda e: e.ts_ns)
    initial = list(dict.fromkeys(replicas))
    names = _replica_names(ordered, initial)
    if not names:
        return CapacityRecovery(True, 0.0, None, t0_ns)
    desired = len(initial) or len(names)
    # Replicas at the start were ready (the steady state held); one first seen later is not, until it says so.
    state = {name: "ready" if name in initial or not initial else "absent" for name in names}

    def full() -> bool:
        return sum(1 for s in state.values() if s == "ready") >= desired

    became_ready = t0_ns
    for e in ordered:
        new = lane_state(e.kind)
        if new is None or not e.replica or e.ts_ns > observation_end_ns:
            continue
        before = full()
        state[e.replica] = new
        after = full()
        if e.ts_ns >= t0_ns and after and not before:
            became_ready = e.ts_ns
    if not full():
        return CapacityRecovery(False, None, max(0, observation_end_ns - t0_ns) / 1e9, None)
    return CapacityRecovery(True, max(0, became_ready - t0_ns) / 1e9, None, became_ready)
