"""The local platform's ``LoadClock`` (``harness.faults.slow_load_landing``): a replica's starts as its
supervisor recorded them, and its model loads as its own Triton logged them.

The baseline is each target's last *plain* start that became ready: one without a fault's override of its
pod spec (the event lists them), since an env override is undone without a restart and the replica's last
start may still be the slowed one of an earlier repetition.

A start is a ``started``/``restarted`` event (the server process spawned, with its pid) and the first
``ready`` event of the same pid after it (the readiness probe passed, so HAProxy routes to it again), both to
the nanosecond; the readiness probe's period is the same for every start, so it cancels out against the
baseline. The load is read from the replica's ``tritonserver.log`` (appended by every start) for that pid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.events import Event, EventKind, read_events
from harness.platforms.base import LoadStart
from harness.triton.loadlog import load_seconds

__all__ = ["LocalLoadClock"]

_STARTS = (EventKind.STARTED, EventKind.RESTARTED)
_LOG_TAIL = 4 * 2**20  # the last starts' lines are at the end of the log; older ones are not needed


class LocalLoadClock:
    signals = "supervisor events (process start, first ready probe) and Triton's log of the load"
    precision_s = 0.0

    def __init__(self, state: Path) -> None:
        self.state = state

    def _events(self) -> list[Event]:
        return list(read_events(self.state / "events.jsonl"))

    def _log(self, name: str) -> str:
        path = self.state / "replicas" / name / "tritonserver.log"
        try:
            with path.open("rb") as fh:
                fh.seek(max(0, path.stat().st_size - _LOG_TAIL))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _start(self, events: Sequence[Event], name: str, begun: Event, model: str) -> LoadStart:
        pid = int(begun.details.get("pid") or 0)
        ready = next((e.ts_ns for e in events if e.replica == name and e.kind == EventKind.READY
                      and e.ts_ns >= begun.ts_ns and int(e.details.get("pid") or 0) == pid), None)
        later = [e for e in events if e.replica == name and e.ts_ns > begun.ts_ns and e.kind not in _STARTS]
        last = f"{later[-1].kind.value}: {later[-1].reason}".rstrip(": ") if later and ready is None else ""
        load = load_seconds(self._log(name), model, pid) if pid and ready is not None else None
        return LoadStart(name, str(pid), begun.ts_ns, ready, load, last)

    def baseline(self, targets: Sequence[str], model: str) -> dict[str, LoadStart]:
        events = self._events()
        out = {}
        for name in targets:
            plain = [e for e in events if e.replica == name and e.kind in _STARTS and not e.details.get("overrides")]
            for begun in reversed(plain):  # the last plain start that became ready
                start = self._start(events, name, begun, model)
                if start.ready_ns is not None:
                    out[name] = start
                    break
        return out

    def last_load(self, target: str, model: str) -> float | None:
        started = [e for e in self._events() if e.replica == target and e.kind in _STARTS]
        pid = int(started[-1].details.get("pid") or 0) if started else 0
        return load_seconds(self._log(target), model, pid) if pid else None

    def restarted(self, targets: Sequence[str], record: Mapping[str, Any], since_ns: int,
                  model: str) -> dict[str, LoadStart | None]:
        events = self._events()
        out: dict[str, LoadStart | None] = {}
        for name in targets:
            begun = next((e for e in events if e.replica == name and e.kind in _STARTS and e.ts_ns >= since_ns), None)
            out[name] = self._start(events, name, begun, model) if begun is not None else None
        return out
