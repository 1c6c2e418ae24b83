"""Per-replica overrides that the local supervisor applies at the next container start.

They play what a changed pod spec does on Kubernetes: an env override (the slow-model-load fault's
"restart with a changed parameter") and a memory cgroup that confines the replica (the host-memory
analogue of GPU memory pressure). Each is a file in the replica's work directory, written under an
undo record, so a crash never leaves a replica permanently slowed or confined. The cgroup itself, v1 or
v2, is ``harness.faults.cgroups``'s business.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from harness.faults.cgroups import remove_group
from harness.faults.undo import UndoRecord

__all__ = [
    "CGROUP_FILE",
    "ENV_FILE",
    "move_to_cgroup",
    "prefer_oom_kill",
    "read_cgroup",
    "read_env_override",
    "remove_memory_cgroup",
    "undo_cgroup",
    "undo_env",
    "write_env_override",
]

ENV_FILE = "env-override.json"
CGROUP_FILE = "cgroup"


def write_env_override(workdir: Path, env: dict[str, str]) -> None:
    (workdir / ENV_FILE).write_text(json.dumps(env, sort_keys=True))


def read_env_override(workdir: Path) -> dict[str, str]:
    try:
        data = json.loads((workdir / ENV_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def read_cgroup(workdir: Path) -> str:
    try:
        return (workdir / CGROUP_FILE).read_text().strip()
    except OSError:
        return ""


def prefer_oom_kill(pid: int | str) -> None:
    """Make ``pid`` the OOM killer's first choice in its group (raising needs no privilege)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")


def move_to_cgroup(path: Path, pids: list[int]) -> None:
    """Move a replica's processes into the group, marked as what the OOM killer should pick."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, OSError):
            prefer_oom_kill(pid)
            (path / "cgroup.procs").write_text(str(pid))


def remove_memory_cgroup(path: Path, home: str | None = None) -> None:
    """Move whatever still runs inside back to ``home`` (where it came from), then remove the group."""
    remove_group(path, Path(home) if home else None)


def undo_env(record: UndoRecord) -> None:
    """Undo kind ``env`` (see ``harness.faults.undoers``)."""
    (Path(record.payload["workdir"]) / ENV_FILE).unlink(missing_ok=True)


def undo_cgroup(record: UndoRecord) -> None:
    """Undo kind ``cgroup`` (see ``harness.faults.undoers``)."""
    for workdir in record.payload.get("workdirs", []):
        (Path(workdir) / CGROUP_FILE).unlink(missing_ok=True)
    remove_memory_cgroup(Path(record.payload["cgroup"]), record.payload.get("home"))
