"""The attached platform: ``Platform`` over a Triton the harness did not start.

``status`` asks the service itself (readiness over a probe-marked connection, so a network block shows as
clients failing while the server stays ready, as on Kubernetes); there is no supervisor, so no restarts
and no lifecycle events (the events file stays empty: replicas stayed ready). ``down`` is ``detach``: undo
every recorded fault, then forget the service, which is never stopped or changed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, PlatformError
from harness.faults.nft import harness_tables
from harness.faults.undo import UndoStore
from harness.faults.undoers import UNDOERS
from harness.platforms.attached.faults import REFUSED, REPLICA, AttachedFaultOps
from harness.platforms.attached.settings import ATTACHED_FILE, AttachedSettings
from harness.platforms.base import CleanupReport, Endpoints, PlatformStatus, ReplicaStatus
from harness.platforms.local.probes import http_probe

__all__ = ["AttachedPlatform", "attach", "compare_snapshots"]

SNAPSHOT_KEYS = ("server", "models")  # what must be the same at detach as at attach


def _snapshot(settings: AttachedSettings) -> dict[str, Any]:
    from harness.service import describe_endpoint

    described = describe_endpoint(settings.http, settings.grpc, "attached")
    if described["error"]:
        raise PlatformError(f"cannot attach to {settings.http}: {described['error']}")
    return {k: described[k] for k in SNAPSHOT_KEYS}


def compare_snapshots(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, in words ("" when the service is as it was)."""
    changes = []
    if before.get("server") != after.get("server"):
        changes.append(f"server metadata was {before.get('server')}, now {after.get('server')}")
    was = {(m["name"], m["version"]): m["state"] for m in before.get("models", [])}
    now = {(m["name"], m["version"]): m["state"] for m in after.get("models", [])}
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            changes.append(f"model {key[0]} v{key[1]}: {was.get(key, 'absent')} -> {now.get(key, 'absent')}")
    return changes


def attach(state_dir: Path, http: str, grpc: str = "") -> AttachedSettings:
    """Check the service answers, record it as it is now, and save the attachment."""
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings

    if (state_dir / ATTACHED_FILE).exists():
        current = AttachedSettings.load(state_dir)
        raise PlatformError(f"already attached to {current.http} (state {state_dir}); run 'harness detach' first")
    if (state_dir / "settings.json").exists() and LocalPlatform(LocalSettings.load(state_dir)).running():
        raise PlatformError(f"the harness's own local service runs in {state_dir}; run 'harness down' first, "
                            "or attach with another --state-dir")
    settings = AttachedSettings(state_dir=state_dir, http=http.rstrip("/"), grpc=grpc, attached_ns=time.time_ns())
    settings = replace(settings, snapshot=_snapshot(settings))
    if not settings.snapshot["models"]:
        raise ConfigError(f"{http} answers but lists no models (the repository extension is off?); the "
                          "harness needs the server's model metadata to build its requests")
    settings.save()
    (state_dir / "events.jsonl").touch()
    return settings


class AttachedPlatform:
    name = "attached"

    def __init__(self, settings: AttachedSettings) -> None:
        self.settings = settings
        self.state = settings.state_dir

    def events_path(self) -> Path:
        return self.state / "events.jsonl"

    def up(self, replicas: int | None = None) -> PlatformStatus:
        raise PlatformError(f"attached to {self.settings.http}, a service the harness did not start; "
                            "'harness detach' first to start the harness's own")

    def status(self) -> PlatformStatus:
        s = self.settings
        ready, reason = http_probe(s.address, s.http_port, "/v2/health/ready", 1.0)
        replica = ReplicaStatus(name=REPLICA, address=s.address, pid=None, ready=ready, restarts=0,
                                reason=reason, state="running" if ready else "unknown",
                                age_s=round((time.time_ns() - s.attached_ns) / 1e9, 3), http=s.http, grpc=s.grpc)
        return PlatformStatus(platform=self.name, up=True, endpoints=Endpoints(http=s.http, grpc=s.grpc, prometheus=""),
                              replicas=(replica,), details={"attached": s.http, "time_scale": 1.0, "retries": False})

    def service_identity(self) -> dict[str, Any]:
        return {"endpoint": self.settings.http, "grpc": self.settings.grpc}

    def refused_actions(self) -> dict[str, str]:
        """Chaos Toolkit actions that cannot run here, with the reason (checked before any injection)."""
        return dict(REFUSED)

    def reset_backoff(self, why: str) -> None:
        return None  # the harness does not supervise a service it did not start

    def refused_arguments(self, func: str, arguments: Mapping[str, Any]) -> str | None:
        return None  # what it cannot do it refuses whole (refused_actions)

    # -- faults --------------------------------------------------------------------------------------
    def fault_ops(self) -> AttachedFaultOps:
        return AttachedFaultOps(self.settings)

    def fault_store(self) -> UndoStore:
        return UndoStore(self.state / "faults", UNDOERS)

    def sweep_faults(self, only_orphaned: bool = True) -> list[str]:
        store = self.fault_store()
        records = store.orphaned() if only_orphaned else store.records()
        return [f"{rec.kind} fault ({rec.description or rec.id})" for rec in store.undo_many(records)]

    def cleanup(self) -> CleanupReport:
        return CleanupReport(removed=self.sweep_faults(only_orphaned=True))

    def down(self) -> CleanupReport:
        """Detach: undo every fault recorded here, check the service is as it was, forget it."""
        ours = {str(r.payload.get("table")) for r in self.fault_store().records() if r.kind == "nft"}
        report = CleanupReport(removed=self.sweep_faults(only_orphaned=False))
        left = [t for t in harness_tables() if t.split()[-1] in ours]
        if left:
            raise PlatformError(f"nftables tables of the harness are still there after undo: {left}; remove them "
                                "with 'nft delete table <family> <name>' and run 'harness detach' again")
        (self.state / ATTACHED_FILE).unlink(missing_ok=True)
        report.removed.append(f"the attachment to {self.settings.http} (the service itself was not touched)")
        return report

    def changes_since_attach(self) -> list[str]:
        """How the service differs from when it was attached (for detach to report; [] when unchanged)."""
        try:
            return compare_snapshots(self.settings.snapshot, _snapshot(self.settings))
        except PlatformError as exc:
            return [str(exc)]
