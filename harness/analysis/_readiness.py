"""Readiness honesty: for each replica that became ready after the fault, when it really served again.

A readiness probe on ``/v2/health/ready`` says the server has loaded its models; it does not say the
model answers. Users of inference platforms report replicas that are ready while their first requests
fail or time out for minutes (DESIGN.md, "Readiness is not serving"). The platform events give each
replica's ready signal; the request timeline gives, for each request, the replica that answered when the
front says so (the local HAProxy sets ``X-Triton-Replica`` on every response it relays). From both:

- the **gap**: from the ready signal to the start of the first *good* request the replica answered (ok,
  and no slower than the objective's latency), the same request-start convention as TTR;
- the requests the replica answered in that gap that failed or were too slow ("ready but not serving"),
  and beside them the failed requests no replica answered in the gap (a timeout, a reset): they may have
  been routed to this replica, but the timeline cannot say, so they are counted apart, never attributed.

Where the timeline names no replica at all (a Kubernetes Service relays Triton's responses without saying
which pod answered), the gap cannot be measured per replica, and the result says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from harness.analysis._replicas import lane_state
from harness.events import Event, EventKind

__all__ = [
    "DEFAULT_PROBE_PERIOD_S",
    "Readiness",
    "ReplicaReadiness",
    "assess_readiness",
    "readiness_notes",
]

# Kubernetes' readiness probe period when a manifest leaves it out; used only when the ready event does
# not carry the period its probe really had (events written before it did).
DEFAULT_PROBE_PERIOD_S = 10.0

ReplicaState = Literal["serving", "never-served", "no-requests"]

UNKNOWN_REPLICA = ("the timeline does not name the replica that answered (requests went through a front that "
                   "does not say, such as a Kubernetes Service); the ready-to-serving gap cannot be measured "
                   "per replica")


@dataclass(frozen=True)
class ReplicaReadiness:
    """One ready signal of one replica after the fault, and what the replica did once routed to."""

    replica: str
    ready_ns: int
    # Until the replica stopped being ready (a later not-ready, exit or stop event) or observation ended.
    ready_until_ns: int
    probe_period_s: float
    probe_period_assumed: bool  # the event did not say: Kubernetes' default x time scale
    state: ReplicaState
    first_good_ns: int | None  # start of the first good request it answered after the ready signal
    gap_s: float | None  # first good - ready; None unless serving
    gap_lower_bound_s: float | None  # never served while ready: the gap is more than this
    requests_in_gap: int  # requests it answered in [ready, first good) (or the whole ready period)
    failed_in_gap: int
    slow_in_gap: int  # ok but slower than the objective's latency
    unattributed_failed_in_gap: int  # failed requests no replica answered in the same interval

    @property
    def not_serving(self) -> int:
        """Requests routed to it while ready that failed or were too slow."""
        return self.failed_in_gap + self.slow_in_gap

    @property
    def exceeds_probe_period(self) -> bool:
        gap = self.gap_s if self.gap_s is not None else self.gap_lower_bound_s
        return gap is not None and gap > self.probe_period_s

    def display(self) -> str:
        if self.state == "serving":
            gap = f"{self.gap_s:.3f} s"
        elif self.state == "never-served":
            gap = f"> {self.gap_lower_bound_s:.3f} s (no good response while ready)"
        else:
            gap = "n/a (no request reached it while ready)"
        return gap

    def to_json(self, iso: Any) -> dict[str, Any]:
        return {
            "replica": self.replica, "ready_at": iso(self.ready_ns), "ready_until": iso(self.ready_until_ns),
            "state": self.state, "first_good_at": iso(self.first_good_ns),
            "gap_s": None if self.gap_s is None else round(self.gap_s, 6),
            "gap_lower_bound_s": None if self.gap_lower_bound_s is None else round(self.gap_lower_bound_s, 6),
            "probe_period_s": self.probe_period_s, "probe_period_assumed": self.probe_period_assumed,
            "exceeds_probe_period": self.exceeds_probe_period,
            "requests_in_gap": self.requests_in_gap, "failed_in_gap": self.failed_in_gap,
            "slow_in_gap": self.slow_in_gap, "not_serving": self.not_serving,
            "unattributed_failed_in_gap": self.unattributed_failed_in_gap,
        }


@dataclass(frozen=True)
class Readiness:
    """The readiness figures of one repetition. ``known``: whether the timeline names answering replicas;
    when it does not, ``replicas`` still lists the ready signals but no gap is measured."""

    known: bool
    replicas: tuple[ReplicaReadiness, ...]
    ready_signals: tuple[tuple[str, int], ...]  # (replica, ready ns) after the fault, measured or not
    why_unknown: str | None = None

    @property
    def worst(self) -> ReplicaReadiness | None:
        """The replica with the longest gap (a never-served one counts at its lower bound)."""
        rated = [r for r in self.replicas if r.state != "no-requests"]
        return max(rated, key=lambda r: r.gap_s if r.gap_s is not None else r.gap_lower_bound_s or 0.0,
                   default=None)

    def to_json(self, iso: Any) -> dict[str, Any]:
        return {
            "replica_known": self.known,
            "why_unknown": self.why_unknown,
            "ready_after_fault": [{"replica": name, "ready_at": iso(ns)} for name, ns in self.ready_signals],
            "replicas": [r.to_json(iso) for r in self.replicas],
        }


def _ready_signals(events: Sequence[Event], t0_ns: int, end_ns: int) -> list[tuple[Event, int]]:
    """Each ``ready`` event in [t0, end] with the instant its replica stopped being ready (or ``end``)."""
    ordered = sorted((e for e in events if e.replica), key=lambda e: e.ts_ns)
    out: list[tuple[Event, int]] = []
    for i, e in enumerate(ordered):
        if e.kind != EventKind.READY or not t0_ns <= e.ts_ns <= end_ns:
            continue
        until = next((later.ts_ns for later in ordered[i + 1:] if later.replica == e.replica
                      and lane_state(later.kind) not in (None, "ready")), end_ns)
        out.append((e, min(until, end_ns)))
    return out


def _period(event: Event, default_s: float) -> tuple[float, bool]:
    raw = event.details.get("readiness_period_s")
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return float(raw), False
    return default_s, True


def _first(match: Any, lo: int, hi: int) -> int | None:
    """The first index in [lo, hi) where ``match(a, b)`` (a boolean array for the slice) is true, scanning
    slices that double in size: the answer is usually near ``lo``, and comparing strings of a long timeline
    (millions of requests after the fault) all at once would cost more than the rest of the analysis."""
    size, pos = 4096, lo
    while pos < hi:
        end = min(hi, pos + size)
        hits = np.flatnonzero(match(pos, end))
        if len(hits):
            return pos + int(hits[0])
        pos, size = end, size * 2
    return None


def assess_readiness(
    events: Sequence[Event],
    replica: npt.NDArray[Any],
    start_ns: npt.NDArray[np.int64],
    latency_s: npt.NDArray[np.float64],
    ok: npt.NDArray[np.bool_],
    *,
    t0_ns: int,
    observation_end_ns: int,
    slow_s: float,
    default_period_s: float,
) -> Readiness:
    """The readiness figures of a repetition from its events and its timeline.

    ``start_ns`` are the instants requests count at, sorted (``effective_starts``), with ``replica``,
    ``latency_s`` and ``ok`` in the same order; ``slow_s`` is the objective's latency (a slower ok request
    is not a good response); ``default_period_s`` the readiness probe period to assume where a ready event
    does not carry its own. Only the requests after the first ready signal are looked at.
    """
    signals = _ready_signals(events, t0_ns, observation_end_ns)
    names = tuple((e.replica, e.ts_ns) for e, _ in signals)
    if not signals:
        return Readiness(True, (), names)
    lo = int(np.searchsorted(start_ns, min(e.ts_ns for e, _ in signals), side="left"))
    hi = int(np.searchsorted(start_ns, observation_end_ns, side="left"))
    if _first(lambda a, b: replica[a:b] != "", lo, hi) is None:
        return Readiness(False, (), names, UNKNOWN_REPLICA)
    slow = ok & (latency_s > slow_s)
    good = ok & ~slow
    out: list[ReplicaReadiness] = []
    for event, until in signals:
        a, b = (int(i) for i in np.searchsorted(start_ns, [event.ts_ns, until], side="left"))
        name = event.replica
        first = _first(lambda x, y, name=name: good[x:y] & (replica[x:y] == name), a, b)
        cut = b if first is None else first  # the gap: [ready, first good)
        mine = replica[a:cut] == name
        period, assumed = _period(event, default_period_s)
        requests = int(np.count_nonzero(mine))
        gap = lower = first_ns = None
        if first is not None:
            first_ns = int(start_ns[first])
            gap = (first_ns - event.ts_ns) / 1e9
            state: ReplicaState = "serving"
        elif requests:
            state = "never-served"
            lower = (until - event.ts_ns) / 1e9
        else:
            state = "no-requests"
        out.append(ReplicaReadiness(
            replica=name, ready_ns=event.ts_ns, ready_until_ns=until, probe_period_s=period,
            probe_period_assumed=assumed, state=state, first_good_ns=first_ns, gap_s=gap, gap_lower_bound_s=lower,
            requests_in_gap=requests, failed_in_gap=int(np.count_nonzero(mine & ~ok[a:cut])),
            slow_in_gap=int(np.count_nonzero(mine & slow[a:cut])),
            unattributed_failed_in_gap=int(np.count_nonzero((replica[a:cut] == "") & ~ok[a:cut])),
        ))
    return Readiness(True, tuple(out), names)


def readiness_notes(reps: Sequence[tuple[str, Readiness | None]]) -> list[str]:
    """Tier notes for an experiment: each replica whose ready-to-serving gap exceeded its readiness probe
    period (the probe passed while the model could not serve), and where the gap could not be measured."""
    notes: list[str] = []
    for rep, readiness in reps:
        if readiness is None:
            continue
        if not readiness.known and readiness.ready_signals:
            notes.append(f"rep {rep}: readiness vs serving not measured: {readiness.why_unknown}")
            continue
        for r in readiness.replicas:
            if not r.exceeds_probe_period:
                continue
            assumed = " (assumed: Kubernetes' default, the event did not say)" if r.probe_period_assumed else ""
            notes.append(
                f"readiness is not serving: rep {rep}, replica {r.replica} was ready {r.display()} before its "
                f"first good response, more than its readiness probe period ({r.probe_period_s:g} s{assumed}); "
                f"{r.not_serving} request(s) routed to it in between failed or were too slow"
                + (f", and {r.unattributed_failed_in_gap} failed without any replica answering"
                   if r.unattributed_failed_in_gap else "")
                + ". The probe passed while the model could not serve: a readiness probe that runs an "
                  "inference would keep it out of the Service; TTR and bad time include the gap")
    return notes
