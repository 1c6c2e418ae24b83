"""Per-replica overrides that the local supervisor applies at the next container start.

They play what a changed pod spec does on Kubernetes: an env override (the slow-model-load fault's
"restart with a changed parameter") and a memory cgroup that confines the replica (the host-memory
analogue of GPU memory pressure). Each is a file in the replica's work directory, written under an
undo record, so a crash never leaves a replica permanently slowed or confined.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from harness.errors import FaultError
from harness.faults.undo import UndoRecord

__all__ = [
    "CGROUP_FILE",
    "ENV_FILE",
    "MEMORY_CGROUP_ROOT",
    "create_memory_cgroup",
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
MEMORY_CGROUP_ROOT = Path("/sys/fs/cgroup/memory")


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


def memory_cgroups_available() -> bool:
    return (MEMORY_CGROUP_ROOT / "cgroup.procs").exists() and os.access(MEMORY_CGROUP_ROOT, os.W_OK)


def create_memory_cgroup(name: str, limit_bytes: int) -> Path:
    if not memory_cgroups_available():
        raise FaultError(
            "memory pressure without a GPU needs a writable cgroup-v1 memory controller at "
            f"{MEMORY_CGROUP_ROOT} (run as root); no GPU was found either"
        )
    path = MEMORY_CGROUP_ROOT / name
    path.mkdir(exist_ok=True)
    (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
    return path


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


def remove_memory_cgroup(path: Path) -> None:
    """Move whatever still runs inside back to the root group, then remove the group."""
    if not path.exists():
        return
    with contextlib.suppress(OSError):
        (path / "memory.limit_in_bytes").write_text("-1")
    for line in (path / "cgroup.procs").read_text().split() if (path / "cgroup.procs").exists() else ():
        with contextlib.suppress(OSError):
            (MEMORY_CGROUP_ROOT / "cgroup.procs").write_text(line)
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            import time

            time.sleep(0.05)
    raise FaultError(f"could not remove memory cgroup {path}")


def undo_env(record: UndoRecord) -> None:
    """Undo kind ``env`` (see ``harness.faults.undoers``)."""
    (Path(record.payload["workdir"]) / ENV_FILE).unlink(missing_ok=True)


def undo_cgroup(record: UndoRecord) -> None:
    """Undo kind ``cgroup`` (see ``harness.faults.undoers``)."""
    for workdir in record.payload.get("workdirs", []):
        (Path(workdir) / CGROUP_FILE).unlink(missing_ok=True)
    remove_memory_cgroup(Path(record.payload["cgroup"]))
