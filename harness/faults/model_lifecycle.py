"""What the model-lifecycle faults share: the replica's model control, their undo record, Triton's view.

The three families (``model_unload``, ``bad_version_rollout``, ``queue_overflow``) change a model inside a
running Triton (its loaded state, its version directories, its config) through the model-control API in
explicit mode. Each writes one undo record per target *before* it changes anything: the model's full config
as Triton served it, and the version directory to remove, if any. Undoing removes that directory (and makes
Triton forget the failed version, which would otherwise keep a strict-readiness server unready), loads the
model with that config (an override replaces the whole config, so the full one is sent back), then waits
until Triton lists the model ready and the server reports ready; a load that fails is a failed undo, never
a silent one.
The rollback, the watchdog (owner gone or deadline passed) and ``harness cleanup`` undo through the same
function, ``restore``, reached through each platform's undoer of its record kind (``ModelControl.undo_kind``).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.errors import FaultError
from harness.faults.family import MAX_FAULT_S, FaultScope, Targeting
from harness.faults.undo import Undoer, UndoRecord, UndoStore
from harness.platforms.base import ModelControl

__all__ = ["ModelArgs", "control", "record_change", "restore", "states", "undo_injection"]

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
UNLOADED = "unloaded"  # Triton's reason for a version it unloaded on request


class ModelArgs(Targeting):
    model: str = Field(default="mlp", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    verify_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_duration_s: float = Field(default=600.0, gt=0, le=MAX_FAULT_S)  # the watchdog undoes it after this


def control(scope: FaultScope, name: str) -> ModelControl:
    """The replica's model control, or a FaultError before anything is changed where the platform has none."""
    found = scope.ops.model_control(name)
    if found is None:
        raise FaultError(f"this platform ({type(scope.ops).__name__}) offers no access to Triton's model-control "
                         "API and model repository; the model-lifecycle faults run on the local and the "
                         "Kubernetes platform")
    return found


def states(ctl: ModelControl, model: str) -> dict[str, dict[str, str]]:
    """Triton's repository index for ``model``, by version: ``{version: {state, reason}}``."""
    return {str(e.get("version", "")): {"state": str(e.get("state", "")), "reason": str(e.get("reason", ""))}
            for e in ctl.index(model)}


def record_change(ctl: ModelControl, run_id: str, model: str, config: Mapping[str, Any], max_s: float,
                  what: str, remove_version: str = "", clear_with: str = "") -> dict[str, Any]:
    """Write the undo record of one change on one replica; call it *before* changing anything."""
    record = UndoRecord(kind=ctl.undo_kind, run_id=run_id, owner_pid=os.getpid(),
                        deadline_ns=time.time_ns() + int(max_s * 1e9),
                        payload={"locator": ctl.locator(), "model": model, "config": copy.deepcopy(dict(config)),
                                 "remove_version": remove_version, "clear_with": clear_with},
                        description=f"{what} on {ctl.replica}")
    UndoStore(ctl.store_dir(), {}).record(record)  # its watchdog (harness.watchdog) knows every kind
    return {"id": record.id, "store": str(ctl.store_dir()), "replica": ctl.replica}


def undo_injection(scope: FaultScope, record: Mapping[str, Any]) -> None:
    """Undo one injection of a model-lifecycle family (its ``changes``, newest first): each target's model back
    with its original config, an added version removed, Triton ready. A record already undone (by the
    watchdog) is skipped; a failure is raised once every change had its chance."""
    errors = []
    for entry in reversed(list(record.get("changes") or [])):
        try:
            ctl = scope.ops.model_control(str(entry["replica"]))
        except FaultError:
            ctl = None  # the replica is gone: a replaced pod took the change with it
        undoers: dict[str, Undoer] = {ctl.undo_kind: partial(_restore_record, ctl)} if ctl is not None else {}
        store = UndoStore(Path(str(entry["store"])), undoers)
        for rec in store.records():
            if rec.id == entry["id"]:
                if ctl is None:
                    store.path(rec).unlink(missing_ok=True)
                    continue
                try:
                    store.undo(rec)
                except FaultError as exc:
                    errors.append(str(exc))
    if errors:
        raise FaultError("; ".join(errors))


def _restore_record(ctl: ModelControl, record: UndoRecord) -> None:
    restore(ctl, record.payload)


def restore(ctl: ModelControl, payload: Mapping[str, Any]) -> None:
    """What a ``model`` undo record asks (each platform's undoer reaches the replica and calls this): remove the
    added version, make Triton forget it, load the saved config, wait until the model and the server are ready."""
    model = str(payload["model"])
    config = payload.get("config") or None
    version = str(payload.get("remove_version") or "")
    if version:
        ctl.remove_version(model, version)
        _clear_failed_version(ctl, model, version, str(payload.get("clear_with") or ""), config)
    ok, why = ctl.load(model, config)
    if not ok:
        raise FaultError(f"replica {ctl.replica}: loading {model} back with its original config failed: {why}")
    deadline = time.monotonic() + 60
    while True:
        now = states(ctl, model)
        if _settled(now) and ctl.server_ready():
            return
        if time.monotonic() > deadline:
            raise FaultError(f"replica {ctl.replica}: {model} was loaded back but Triton lists {now} "
                             f"(server ready: {ctl.server_ready()})")
        time.sleep(0.2)


def _settled(now: Mapping[str, Mapping[str, str]]) -> bool:
    """Some version ready and every other one unloaded: what strict readiness accepts."""
    return any(s["state"] == READY for s in now.values()) and all(
        s["state"] == READY or (s["state"] == UNAVAILABLE and s["reason"] == UNLOADED) for s in now.values())


def _clear_failed_version(ctl: ModelControl, model: str, version: str, clear_with: str,
                          config: Mapping[str, Any] | None) -> None:
    """Make Triton forget a version that failed to load.

    Triton 2.51 keeps a failed version in its repository index (UNAVAILABLE, with the error as its reason)
    through every later load and unload of the model, and with ``--strict-readiness`` the server stays not
    ready for as long: measured, removing the directory and reloading left the replica unready for good.
    Only a successful load of that version number clears it, so a plain copy of the old version goes in under
    that number and is loaded (the old version serves until it is ready, and it answers the same), then is
    removed again and the model loaded back: the version ends UNAVAILABLE "unloaded", as strict readiness
    accepts.
    """
    stale = states(ctl, model).get(version)
    if stale is None or stale["state"] == READY or stale["reason"] == UNLOADED or not clear_with:
        return
    ctl.add_version(model, version, "copy", clear_with)
    try:
        ok, why = ctl.load(model, config)
    finally:
        ctl.remove_version(model, version)
    if not ok:
        raise FaultError(f"replica {ctl.replica}: a clean copy of version {clear_with} under version {version} "
                         f"did not load either ({why}); Triton still lists the failed version")
