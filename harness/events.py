"""Platform lifecycle events: one schema for the local supervisor and the Kubernetes watcher.

Reports draw the per-replica lanes and capacity recovery from these records, so both platforms must
write exactly the same shape. The file is JSON Lines, appended and flushed per record, so a crash
loses nothing already written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

__all__ = ["Event", "EventKind", "EventLog", "read_events"]


class EventKind(StrEnum):
    """What happened to a replica (or to the platform as a whole, when ``replica`` is empty)."""

    STARTED = "started"
    READY = "ready"
    NOT_READY = "not_ready"
    STARTUP_FAILED = "startup_failed"
    LIVENESS_FAILED = "liveness_failed"
    EXITED = "exited"
    BACKOFF = "backoff"
    RESTARTED = "restarted"
    KILLED = "killed"
    STOPPED = "stopped"
    PLATFORM_UP = "platform_up"
    PLATFORM_DOWN = "platform_down"
    FAULT = "fault"


@dataclass(frozen=True)
class Event:
    """One lifecycle change. ``ts_ns`` is wall-clock nanoseconds, comparable with timeline records."""

    ts_ns: int
    kind: EventKind
    replica: str = ""
    reason: str = ""
    platform: str = "local"
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ts(self) -> str:
        return datetime.fromtimestamp(self.ts_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")

    def to_json(self) -> str:
        record = asdict(self)
        record["kind"] = self.kind.value
        record["details"] = dict(self.details)
        record["ts"] = self.ts
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Event:
        raw = json.loads(line)
        return cls(
            ts_ns=int(raw["ts_ns"]),
            kind=EventKind(raw["kind"]),
            replica=str(raw.get("replica", "")),
            reason=str(raw.get("reason", "")),
            platform=str(raw.get("platform", "local")),
            details=dict(raw.get("details") or {}),
        )


class EventLog:
    """Appends events to a JSON Lines file; each record is flushed before ``emit`` returns."""

    def __init__(self, path: Path, platform: str = "local") -> None:
        self.path = path
        self.platform = platform
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("a", encoding="utf-8")

    def emit(self, kind: EventKind, replica: str = "", reason: str = "", **details: Any) -> Event:
        event = Event(time.time_ns(), kind, replica, reason, self.platform, details)
        self._fh.write(event.to_json() + "\n")
        self._fh.flush()
        return event

    def close(self) -> None:
        self._fh.close()


def read_events(path: Path) -> Iterator[Event]:
    """Yield the events of a file in the order they were written; a torn last line is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield Event.from_json(line)
            except (ValueError, KeyError):
                continue
