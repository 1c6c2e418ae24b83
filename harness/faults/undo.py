"""Undo records: every fault is written to disk before it is injected and removed when undone.

A record names its kind, the run that made it, the process that owns it and a deadline. Three things
undo it, whichever comes first: the rollback of the run, the watchdog (when the owner is gone or the
deadline passed), and ``harness cleanup`` (which sweeps every record after a crash).

The store knows no kinds of fault: whoever opens one hands it the undoers of the records it writes (each
platform its own; the watchdog, ``harness.watchdog``, every one), as Chaos Toolkit's runner knows no
activity kinds. So this lowest module imports no fault, mechanism or platform.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import FaultError
from harness.procs import alive

__all__ = ["UndoRecord", "UndoStore", "Undoer", "terminate"]


@dataclass(frozen=True)
class UndoRecord:
    kind: str  # nft | hog | env | cgroup ...
    run_id: str
    owner_pid: int
    deadline_ns: int
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_ns: int = field(default_factory=time.time_ns)
    description: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_path(cls, path: Path) -> UndoRecord:
        return cls(**json.loads(path.read_text()))


Undoer = Callable[["UndoRecord"], None]


class UndoStore:
    """The folder of undo records of one platform instance (``<state>/faults``), with the undoers of its kinds."""

    def __init__(self, directory: Path, undoers: Mapping[str, Undoer]) -> None:
        self.directory = directory
        self.undoers = undoers

    def path(self, record: UndoRecord) -> Path:
        return self.directory / f"{record.id}.json"

    def record(self, record: UndoRecord, watchdog: bool = True) -> Path:
        """Write the record durably; call this *before* injecting the fault."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(record)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            fh.write(record.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        if watchdog:
            self._spawn_watchdog(path)
        return path

    def _spawn_watchdog(self, path: Path) -> None:
        subprocess.Popen(
            [sys.executable, "-m", "harness.watchdog", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "watchdog.log").open("ab"),
            start_new_session=True,  # must outlive the run it guards
            close_fds=True,
        )

    def records(self, run_id: str | None = None) -> list[UndoRecord]:
        out = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                rec = UndoRecord.from_path(path)
            except (OSError, ValueError, TypeError):
                continue
            if run_id is None or rec.run_id == run_id:
                out.append(rec)
        return out

    def undo(self, record: UndoRecord) -> None:
        """Undo one fault and drop its record; a record whose fault is already gone is just dropped."""
        try:
            undoer = self.undoers[record.kind]
        except KeyError:
            raise FaultError(f"no undo known here for fault kind {record.kind!r} (record {self.path(record)}; this "
                             f"store undoes {sorted(self.undoers)}): run 'harness cleanup' with the platform that "
                             "made it") from None
        undoer(record)
        self.path(record).unlink(missing_ok=True)

    def undo_many(self, records: list[UndoRecord]) -> list[UndoRecord]:
        """Undo records newest first, like a stack of rollbacks; keep going past failures, report them all."""
        done, errors = [], []
        for rec in sorted(records, key=lambda r: r.created_ns, reverse=True):
            try:
                self.undo(rec)
                done.append(rec)
            except Exception as exc:  # noqa: BLE001 - every record must get its chance
                errors.append(f"{rec.kind} {rec.id}: {exc}")
        if errors:
            raise FaultError("could not undo: " + "; ".join(errors))
        return done

    def orphaned(self) -> list[UndoRecord]:
        """Records whose owner died or whose deadline passed."""
        now = time.time_ns()
        return [r for r in self.records() if not alive(r.owner_pid) or now > r.deadline_ns]


def terminate(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL: used by undoers of faults that are processes (hogs)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
