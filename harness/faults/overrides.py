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
import shutil
from pathlib import Path

from harness.faults.cgroups import remove_group
from harness.faults.undo import UndoRecord

__all__ = [
    "CGROUP_FILE",
    "DELETE_FILE",
    "ENV_FILE",
    "PROBE_FILE",
    "corrupt_weights",
    "move_to_cgroup",
    "prefer_oom_kill",
    "read_cgroup",
    "read_env_override",
    "read_probe_override",
    "remove_memory_cgroup",
    "restore_weights",
    "take_delete_request",
    "undo_cgroup",
    "undo_env",
    "undo_probes",
    "undo_surge",
    "undo_weights",
    "write_delete_request",
    "write_env_override",
    "write_probe_override",
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


# -- a changed pod spec's probes, a pod deletion, a new revision's weights, surge pods ------------------
PROBE_FILE = "probe-override.json"
DELETE_FILE = "delete-request.json"
WEIGHTS = ("mlp", "1", "weights")


def write_probe_override(workdir: Path, probes: dict[str, dict[str, float] | None]) -> None:
    """Probe fields by kind in manifest units (``period_s``, ``failure_threshold``, ...); None removes it."""
    (workdir / PROBE_FILE).write_text(json.dumps(probes, sort_keys=True))


def read_probe_override(workdir: Path) -> dict[str, dict[str, float] | None]:
    try:
        data = json.loads((workdir / PROBE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): (None if v is None else {str(f): float(x) for f, x in v.items()}) for k, v in data.items()}


def undo_probes(record: UndoRecord) -> None:
    """Undo kind ``probes`` (see ``harness.faults.undoers``)."""
    (Path(record.payload["workdir"]) / PROBE_FILE).unlink(missing_ok=True)


def write_delete_request(workdir: Path, prestop_s: float, endpoint_lag_s: float) -> None:
    """Ask the replica's controller to delete its pod as the kubelet does (read once, then removed)."""
    tmp = workdir / (DELETE_FILE + ".tmp")
    tmp.write_text(json.dumps({"prestop_s": prestop_s, "endpoint_lag_s": endpoint_lag_s}))
    tmp.replace(workdir / DELETE_FILE)


def take_delete_request(workdir: Path) -> dict[str, float] | None:
    path = workdir / DELETE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return {"prestop_s": float(data.get("prestop_s", 0)), "endpoint_lag_s": float(data.get("endpoint_lag_s", 0))}


def corrupt_weights(models: Path) -> str:
    """Flip bytes in one weight file so the SHA-256 check at load fails; returns the file's name."""
    target = models.joinpath(*WEIGHTS) / "w1.npy"
    data = bytearray(target.read_bytes())
    for i in range(len(data) - 64, len(data)):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    return target.name


def restore_weights(models: Path) -> None:
    """Copy the reference weights back (the manifest and the files the SHA-256 check expects)."""
    from harness.triton.modelrepo import REFERENCE_REPOSITORY

    source = REFERENCE_REPOSITORY.joinpath(*WEIGHTS)
    target = models.joinpath(*WEIGHTS)
    if target.parent.exists():
        shutil.copytree(source, target, dirs_exist_ok=True)


def undo_weights(record: UndoRecord) -> None:
    """Undo kind ``weights`` (see ``harness.faults.undoers``)."""
    restore_weights(Path(record.payload["models"]))


def undo_surge(record: UndoRecord) -> None:
    """Undo kind ``surge``: withdraw the request; the supervisor stops the surge pod (with its grace)."""
    Path(record.payload["request"]).unlink(missing_ok=True)
