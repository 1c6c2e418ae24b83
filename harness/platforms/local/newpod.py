"""A new pod in place of a replica: what a pod delete does on Kubernetes, played by the local supervisor.

On Kubernetes a deleted pod is replaced at once by a new pod (its ReplicaSet), whatever CrashLoopBackOff the
old one was in: the new pod has no back-off history. The local platform keeps one controller per replica, so
the kill writes a marker in the replica's work directory first; the controller takes it when the container
exits (or while it sits in a back-off) and starts the new "pod" at once with a fresh back-off. Without it a pod
kill of a replica that had crash-looped earlier (memory pressure does that) waited out 40 s or more of back-off,
or found no process at all, and the repetition was void for a reason Kubernetes does not have.

A suite also drops the back-off history between repetitions (``reset`` markers, no kill): each repetition
starts from a steady state, not from the back-off an earlier repetition's fault left behind. A reset ends a
back-off in progress, and the next crash restarts at once, as a container with no history would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NEW_POD_FILE", "PodRequest", "request_history_reset", "request_new_pod", "take_request"]

NEW_POD_FILE = "new-pod.json"


@dataclass(frozen=True)
class PodRequest:
    new_pod: bool  # True: the pod was deleted (its next start is a new pod's first); False: history dropped only
    why: str


def _write(workdir: Path, new_pod: bool, why: str) -> None:
    tmp = workdir / (NEW_POD_FILE + ".tmp")
    tmp.write_text(json.dumps({"new_pod": new_pod, "why": why, "ts_ns": time.time_ns()}))
    tmp.replace(workdir / NEW_POD_FILE)


def request_new_pod(workdir: Path, why: str) -> None:
    """The replica's next start is a new pod (written before the kill, read once by its controller)."""
    _write(workdir, True, why)


def request_history_reset(workdir: Path, why: str) -> None:
    """Drop the replica's back-off history; a pending new-pod request is kept (it says more)."""
    current = _read(workdir / NEW_POD_FILE)
    if current is None or not current.new_pod:
        _write(workdir, False, why)


def _read(path: Path) -> PodRequest | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return PodRequest(bool(data.get("new_pod", True)), str(data.get("why") or "new pod"))


def take_request(workdir: Path) -> PodRequest | None:
    """The pending request, once; None when there is none."""
    path = workdir / NEW_POD_FILE
    request = _read(path)
    if request is not None:
        path.unlink(missing_ok=True)
    return request
