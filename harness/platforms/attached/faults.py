"""Fault operations on an attached service: only what works without owning its processes.

The harness did not start this Triton and must leave it exactly as it found it, so it does not kill,
restart, reconfigure or starve it. What it can do from outside is what a NetworkPolicy does: drop traffic
to the service's address and ports, in an nftables table of its own (``harness.faults.nft``), written to
the undo store first so a rollback, the watchdog or ``detach`` removes it. Probe-marked traffic passes,
as the kubelet's probes pass a NetworkPolicy; ``connect_probe`` uses a plain socket, so it sees the block
the way clients do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import FaultError
from harness.faults.connect import Connect, connected, tcp_connect
from harness.faults.nft import NftablesRoute, recorded_block
from harness.faults.undo import UndoStore
from harness.faults.undoers import UNDOERS
from harness.platforms.attached.settings import AttachedSettings

__all__ = ["REFUSED", "REPLICA", "AttachedFaultOps"]

REPLICA = "attached"  # the one replica name the attached service shows: the endpoint, whatever is behind it

_NOT_OURS = "the attached service was started outside the harness, which must leave it as it found it"
# Chaos Toolkit action -> why it cannot run against an attached service (checked before anything runs).
REFUSED: Mapping[str, str] = {
    "kill_replicas": f"pod kill needs the service's processes or pods and a supervisor to restart them; {_NOT_OURS}",
    "slow_model_load": f"a slow model load restarts or reconfigures the model; {_NOT_OURS}",
    "memory_pressure": f"memory pressure confines the service's processes in a cgroup; {_NOT_OURS}",
    "reload_model": f"a model reload changes what the service serves; {_NOT_OURS}",
    **{action: f"the model-lifecycle faults unload, re-version or reconfigure the served model; {_NOT_OURS}"
       for action in ("unload_model", "bad_version_rollout", "queue_overflow")},
}


class AttachedFaultOps(NftablesRoute):
    def __init__(self, settings: AttachedSettings) -> None:
        self.settings = settings
        self.store = UndoStore(settings.state_dir / "faults", UNDOERS)

    def _check(self, names: Sequence[str]) -> None:
        unknown = sorted(set(names) - {REPLICA})
        if unknown:
            raise FaultError(f"no replica named {unknown}; the attached service shows one, {REPLICA!r}")

    # -- refused -------------------------------------------------------------------------------------
    def kill_replica(self, name: str, grace_s: float | None = 0, container: bool = False, allow_agent: bool = False,
                     agent_image: str = "") -> None:
        raise FaultError(REFUSED["kill_replicas"])

    def restart_with_env(self, env: Mapping[str, str], run_id: str, names: Sequence[str]) -> dict[str, Any]:
        raise FaultError(REFUSED["slow_model_load"])

    def restore_env(self, record: Mapping[str, Any]) -> None:
        """Nothing to restore: ``restart_with_env`` never changed anything here."""

    def load_clock(self) -> None:
        return None  # a slow load is refused here: there is never a restart to judge

    def memory_pressure(self, names: Sequence[str], run_id: str, leave_free_mb: float, duration_s: float,
                        headroom_mb: float = 256.0, allow_agent: bool = False, agent_image: str = "") -> dict[str, Any]:
        raise FaultError(REFUSED["memory_pressure"])

    def model_control(self, name: str) -> None:
        """None: the model-lifecycle faults are refused here (``REFUSED``)."""
        return None

    def release_memory(self, record: Mapping[str, Any]) -> None:
        """Nothing to release: ``memory_pressure`` never started a hog here."""

    def reload_model(self, name: str, model: str = "", parameters: Mapping[str, str] | None = None,
                     timeout_s: float = 120.0) -> tuple[bool, str]:
        return False, REFUSED["reload_model"]

    # -- network-policy block ------------------------------------------------------------------------
    def block_network(self, names: Sequence[str], run_id: str, max_s: float = 600.0) -> dict[str, Any]:
        self._check(names)
        targets = self.settings.targets()
        shown = ", ".join(f"{addr}:{{{','.join(map(str, ports))}}}" for addr, ports in targets)
        return recorded_block(self.store, run_id, names, targets, max_s,
                              f"nftables drop to the attached service {shown}", prefix="harness_att_")

    def unblock_network(self, record: Mapping[str, Any]) -> int | None:
        for rec in self.store.records():
            if rec.id == str(record["id"]):
                self.store.undo(rec)
        return time.time_ns()

    # -- verification --------------------------------------------------------------------------------
    def memory_status(self, record: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
        return {}  # memory pressure is refused here: there is never a hog to read

    def deployment_spec_ops(self) -> None:
        return None  # the pod spec of a service the harness did not start cannot be changed

    def connect_probe(self, name: str, timeout_s: float = 1.0) -> bool | None:
        return connected(self.connect_check(name, timeout_s))

    def connect_check(self, name: str, timeout_s: float = 1.0) -> Connect | None:
        """How a plain TCP connection (no probe mark: what clients see) to the service's HTTP port ends; None
        when ``name`` is not this service's replica."""
        if name != REPLICA:
            return None
        return tcp_connect(self.settings.address, self.settings.http_port, timeout_s)

