"""Network-policy block on the local platform: nftables rules in a table of the harness's own.

Each block gets its own table (``inet harness_<id>``), so undoing it is one atomic ``delete table``
and nothing else on the machine is touched. Traffic from the supervisor's probes carries a socket mark
and passes, because on Kubernetes a NetworkPolicy does not stop the kubelet's probes either: a blocked
replica stays "ready" while its clients fail, which is exactly what users see in a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from harness.errors import FaultError
from harness.faults.connect import AGENT_ELSEWHERE
from harness.faults.undo import UndoRecord, UndoStore

__all__ = ["PROBE_MARK", "TABLE_PREFIX", "NftablesRoute", "add_block", "harness_tables", "recorded_block",
           "remove_table", "require_nft", "undo"]

TABLE_PREFIX = "harness_"

# The local supervisor's probe sockets carry this mark and the block's rules let it through, as a Kubernetes
# NetworkPolicy lets the kubelet's probes through (harness.platforms.local.probes sets it).
PROBE_MARK = 0x4854


def require_nft() -> str:
    nft = shutil.which("nft")
    if nft is None:
        raise FaultError("the network-policy block needs nftables: sudo apt-get install -y nftables")
    if os.geteuid() != 0:
        raise FaultError("the network-policy block needs root for nftables (run as root, or in 'unshare -rn')")
    return nft


def _nft(script: str) -> None:
    nft = require_nft()
    proc = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FaultError(f"nft failed: {proc.stderr.strip()}")


def add_block(table: str, targets: Sequence[tuple[str, Sequence[int]]]) -> None:
    """Drop new and established TCP traffic to each (address, ports), except marked probe traffic."""
    rules = "\n".join(
        f"    ip daddr {addr} tcp dport {{ {', '.join(str(p) for p in ports)} }} meta mark != {PROBE_MARK:#x} drop"
        for addr, ports in targets
    )
    _nft(
        f"table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"
        f"{rules}\n  }}\n}}\n"
    )


def recorded_block(store: UndoStore, run_id: str, names: Sequence[str], targets: Sequence[tuple[str, Sequence[int]]],
                   max_s: float, what: str, prefix: str = TABLE_PREFIX) -> dict[str, Any]:
    """Write the undo record, then add the table; a table that could not be added leaves no record.

    Returns the record the platform hands back to ``unblock_network``: the record's id and the table."""
    require_nft()
    table = f"{prefix}{run_id[-8:].replace('-', '')}_{len(store.records())}_{os.getpid() % 10000}"
    record = UndoRecord(kind="nft", run_id=run_id, owner_pid=os.getpid(), deadline_ns=time.time_ns() + int(max_s * 1e9),
                        payload={"table": table, "replicas": list(names)}, description=what)
    store.record(record)
    try:
        add_block(table, targets)
    except FaultError:
        store.path(record).unlink(missing_ok=True)
        raise
    return {"id": record.id, "table": table, "replicas": list(names)}


def harness_tables() -> list[str]:
    nft = shutil.which("nft")
    if nft is None or os.geteuid() != 0:
        return []
    proc = subprocess.run([nft, "list", "tables"], capture_output=True, text=True)
    names = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(TABLE_PREFIX):
            names.append(f"{parts[1]} {parts[2]}")
    return names


def remove_table(table: str) -> None:
    if f"inet {table}" in harness_tables():
        _nft(f"delete table inet {table}\n")


def undo(record: UndoRecord) -> None:
    """Undo kind ``nft`` (see ``harness.faults.undoers``)."""
    remove_table(str(record.payload["table"]))


class NftablesRoute:
    """Fault operations whose network block is the harness's own nftables table (local, attached): the one
    route there. The agent route is the Kubernetes platform's (harness.platforms.kubernetes.netagent)."""

    def block_routes(self) -> tuple[str, ...]:
        return ("nftables",)

    def agent_refusal(self, allowed: bool = False, image: str = "") -> str | None:
        return AGENT_ELSEWHERE

    def block_network_agent(self, names: Sequence[str], run_id: str, max_s: float | None = None,
                            allowed: bool = False, image: str = "") -> dict[str, Any]:
        raise FaultError(AGENT_ELSEWHERE)
