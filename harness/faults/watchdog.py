"""Watchdog for one undo record: undoes the fault when its run is gone or its deadline passed.

Started in its own session by ``UndoStore.record``, so it outlives a SIGKILLed harness. It exits as soon
as the record disappears (the normal rollback removed it).

Run: python -m harness.faults.watchdog RECORD.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.faults.undo import UndoRecord, UndoStore
from harness.procs import alive


def main(argv: list[str] | None = None) -> int:
    path = Path((sys.argv[1:] if argv is None else argv)[0])
    store = UndoStore(path.parent)
    while path.exists():
        try:
            record = UndoRecord.from_path(path)
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        if not alive(record.owner_pid) or time.time_ns() > record.deadline_ns:
            if path.exists():
                store.undo(record)
                print(f"watchdog undid {record.kind} {record.id} ({record.description})", file=sys.stderr)
            return 0
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
