"""Whether a slow model load with the restart trigger landed: judged on the replicas that restarted with the
delay, against a baseline measured from the same signals before the injection.

A restart is slow for many reasons (a loaded node, image pulls, probe periods), so "not ready for
``delay_s``" proves nothing by itself: a replica that restarts in 8 s without any delay would pass a 5 s
check, and a replica that never comes back would pass every check. Here each platform offers a ``LoadClock``
that reads, for a replica's start, when its server started, when it became ready, and how long Triton itself
says the model load took (its log, ``harness.triton.loadlog``):

- locally the supervisor's events (the process start and the first passing readiness probe, to the
  nanosecond) and the replica's own ``tritonserver.log`` lines of that process;
- on Kubernetes the pod's own timestamps (the container's ``startedAt`` and the ``Ready`` condition's
  transition, whole seconds) and the container's log, for the pods of the *new* template only (the
  ReplicaSet whose template carries the patched env): with maxUnavailable 0 the old pods stay ready and say
  nothing about the delay.

The baseline is the same reading of the replicas' last plain start before the injection (the median over the
replicas read). A restarted replica shows the delay when all of these hold:

1. it became ready within the budget (``verify_timeout_s`` from its start);
2. it was not ready before ``delay_s`` had passed since its start (to the clock's precision);
3. Triton's load took at least ``delay_s`` (when its log can be read);
4. both readings are clearly longer than the baseline: by at least half the delay (and two clock ticks).

A replica that never became ready within the budget is a finding of its own ("never ready"): the service lost
that replica for longer than the slow load explains, but nothing shows that the delay caused it (a crash, an
image or scheduling problem look the same), so the repetition is void with that reason, never a landed fault
whose recovery time would be attributed to a slow load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.platforms.base import LoadClock, LoadStart

__all__ = ["Verdict", "judge_restart"]


@dataclass(frozen=True)
class Verdict:
    landed: bool
    detail: str
    measured: dict[str, Any]
    judged: tuple[str, ...]


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}s"


def judge_restart(clock: LoadClock, targets: Sequence[str], record: Mapping[str, Any], baseline: Mapping[str,
                  LoadStart], since_ns: int, delay_s: float, model: str, timeout_s: float | None) -> Verdict:
    """Watch the restarted replicas until each is ready or out of budget, then judge each against the baseline."""
    # the median of the replicas' plain starts: one start slowed by a busy node must not set the bar alone
    readies = [s.ready_s for s in baseline.values() if s.ready_s is not None]
    base_ready = round(statistics.median(readies), 3) if readies else None
    loads = [s.load_s for s in baseline.values() if s.load_s is not None]
    base_load = round(statistics.median(loads), 3) if loads and len(loads) == len(baseline) else None
    budget = timeout_s if timeout_s is not None else max(20.0, 2 * (delay_s + (base_ready or 0.0)) + 10)
    start_allowance = 60.0  # for the new server to start at all (a pod to be scheduled and its init to run)
    margin = max(delay_s / 2, 2 * clock.precision_s)
    measured: dict[str, Any] = {
        "signals": clock.signals, "precision_s": clock.precision_s, "delay_s": delay_s, "budget_s": budget,
        "baseline": {n: s.to_json() for n, s in baseline.items()},
        "baseline_ready_s": base_ready, "baseline_load_s": base_load,
        "landed_when": {"ready_s_at_least": round(max(delay_s - clock.precision_s, (base_ready or 0) + margin), 3),
                        "load_s_at_least": round(max(delay_s, (base_load or 0) + margin), 3)},
    }
    if base_ready is not None and delay_s < base_ready:
        measured["note"] = (f"delay_s {delay_s:g} is shorter than a plain restart ({base_ready:.2f}s): a restart's own "
                            "variation can hide it and void the repetition; a longer delay is told apart reliably")
    check_targets = tuple(targets)
    if base_ready is None:
        measured["verdict"] = "void: no baseline"
        return Verdict(False, "no baseline restart time: no current replica had a recorded start and ready "
                       f"({clock.signals}), so a slow restart cannot be told from a normal one", measured,
                       check_targets)
    deadline = time.monotonic() + budget + start_allowance
    seen: dict[str, LoadStart | None] = {}
    while True:
        seen = clock.restarted(targets, record, since_ns, model)
        now_ns = time.time_ns()
        pending = [n for n, s in seen.items()
                   if s is None or (s.ready_ns is None and (now_ns - s.started_ns) / 1e9 < budget)
                   or (s.ready_ns is not None and s.load_s is None and (now_ns - s.ready_ns) / 1e9 < 2)]
        if (seen and not pending) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    per: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    never: list[str] = []
    for name, start in sorted(seen.items()):
        entry: dict[str, Any] = start.to_json() if start else {"replica": name}
        if start is None:
            entry["verdict"] = "did not restart"
            problems.append(f"{name} did not restart within {budget + start_allowance:g}s")
        elif start.ready_ns is None:
            entry["verdict"] = "never ready"
            never.append(name)
        else:
            why = _shortfalls(start, delay_s, base_ready, base_load, margin, clock.precision_s)
            entry["verdict"] = "slow load" if not why else "not slowed: " + "; ".join(why)
            if why:
                problems.append(f"{name}: " + "; ".join(why))
        per[name] = entry
    measured["replicas"] = per
    judged = tuple(sorted(seen)) or check_targets
    base = f"baseline ready {_fmt(base_ready)}, load {_fmt(base_load)}"
    if not seen:
        measured["verdict"] = "void: nothing restarted"
        return Verdict(False, f"no replica restarted with the delay within {budget + start_allowance:g}s "
                       f"({base})", measured, judged)
    if never:
        measured["verdict"] = "void: never ready"
        measured["finding"] = "never ready"
        lasts = [f"{n}: {start.last}" for n in never if (start := seen[n]) is not None and start.last]
        return Verdict(False, f"finding: {', '.join(never)} never became ready within the {budget:g}s budget after "
                       f"{'its' if len(never) == 1 else 'their'} restart ({base}"
                       + (f"; last seen: {'; '.join(lasts)}" if lasts else "") + "); a replica that does not come "
                       "back is not proof that the delay landed (a crash or a stuck start look the same)",
                       measured, judged)
    if problems:
        measured["verdict"] = "void: not slowed"
        return Verdict(False, "; ".join(problems) + f" ({base}): the delay did not take effect", measured, judged)
    measured["verdict"] = "landed"
    detail = "; ".join(f"{n}: ready {_fmt(s.ready_s)} after its start, Triton's load {_fmt(s.load_s)}"
                       for n, s in sorted(seen.items()) if s is not None)
    return Verdict(True, f"{detail} ({base})", measured, judged)


def _shortfalls(start: LoadStart, delay_s: float, base_ready: float, base_load: float | None, margin: float,
                precision_s: float) -> list[str]:
    """Why this start does not show the delay; empty when it does."""
    ready_s = start.ready_s
    assert ready_s is not None
    why = []
    if ready_s + precision_s <= delay_s:  # ready before the delay had passed, whatever the clock's rounding
        why.append(f"ready {ready_s:.2f}s after its start, before the {delay_s:g}s delay")
    if ready_s < base_ready + margin:
        why.append(f"ready after {ready_s:.2f}s, not clearly longer than the baseline {base_ready:.2f}s "
                   f"(+{margin:g}s needed)")
    if start.load_s is not None:
        if start.load_s < delay_s:
            why.append(f"Triton's load took {start.load_s:.2f}s < {delay_s:g}s")
        elif base_load is not None and start.load_s < base_load + margin:
            why.append(f"Triton's load took {start.load_s:.2f}s, not clearly longer than the baseline "
                       f"{base_load:.2f}s (+{margin:g}s needed)")
    return why
