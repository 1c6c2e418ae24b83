"""Watchdog for one undo record: undoes the fault when its run is gone or its deadline passed.

Started in its own session by ``UndoStore.record``, so it outlives a SIGKILLed harness. It exits as soon
as the record disappears (the normal rollback removed it). Like the CLI it is an entry point, so it may
know every platform: its table is every kind of record any platform writes.

Run: python -m harness.watchdog RECORD.json
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path

from harness.faults.undo import Undoer, UndoRecord, UndoStore
from harness.faults.undoers import UNDOERS
from harness.procs import alive

__all__ = ["ALL_UNDOERS", "main"]


def _k8s_spec(record: UndoRecord) -> None:
    """A Deployment's pod template patched by a pod-spec fault: reconnect with the settings ``up`` saved and
    restore (imported here, not at the top: a local watchdog needs no Kubernetes client)."""
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import KubernetesSettings
    from harness.platforms.kubernetes.spec_ops import KubernetesSpecOps

    payload = record.payload
    settings = KubernetesSettings.load(Path(str(payload["state_dir"])) / str(payload["namespace"]))
    KubernetesSpecOps(KubernetesPlatform(settings)).restore_spec(payload)


def _local_model(record: UndoRecord) -> None:
    """A model-lifecycle change on a local replica (unload, bad version, queue bound)."""
    from harness.platforms.local.model_ops import undo_record

    undo_record(record)


def _k8s_model(record: UndoRecord) -> None:
    """The same inside a pod: reconnect with the settings ``up`` saved and reach the pod again through exec (a
    pod that is gone took the change with it)."""
    from harness.platforms.kubernetes.model_ops import undo_with
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import KubernetesSettings

    locator = record.payload["locator"]
    settings = KubernetesSettings.load(Path(str(locator["state_dir"])) / str(locator["namespace"]))
    undo_with(KubernetesPlatform(settings), record)


def _k8s_netagent(record: UndoRecord) -> None:
    """A network block by privileged agent pods: reconnect, remove their tables, delete the pods."""
    from harness.platforms.kubernetes.netagent import unblock
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import KubernetesSettings

    payload = record.payload
    settings = KubernetesSettings.load(Path(str(payload["state_dir"])) / str(payload["namespace"]))
    unblock(KubernetesPlatform(settings), payload)


def _k8s_memagent(record: UndoRecord) -> None:
    """Memory pressure by privileged agent pods: reconnect, let go of each pod's memory, delete the agents."""
    from harness.platforms.kubernetes.memagent import release
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import KubernetesSettings

    payload = record.payload
    settings = KubernetesSettings.load(Path(str(payload["state_dir"])) / str(payload["namespace"]))
    release(KubernetesPlatform(settings), payload)


ALL_UNDOERS: Mapping[str, Undoer] = {**UNDOERS, "k8s-spec": _k8s_spec, "model": _local_model, "k8s-model": _k8s_model,
                                     "k8s-netagent": _k8s_netagent, "k8s-memagent": _k8s_memagent}


def main(argv: list[str] | None = None) -> int:
    path = Path((sys.argv[1:] if argv is None else argv)[0])
    store = UndoStore(path.parent, ALL_UNDOERS)
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
