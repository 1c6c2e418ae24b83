"""Network-policy block: drop traffic to the selected replicas until the block is lifted.

Locally an nftables table of the harness's own; on Kubernetes a NetworkPolicy denying ingress. Landed when
a connection attempt to each blocked replica fails while the block is in place *and* still fails just
before it is lifted (rules removed behind the harness's back void the repetition); lifted when a connection
succeeds again afterwards. A NetworkPolicy that the cluster's network plugin does not enforce lets the
connection through: that is reported as "not enforced", never as a block.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from pydantic import Field

from harness.errors import FaultError
from harness.faults.family import MAX_FAULT_S, FamilySpec, FaultScope, Landing, Mode, Targeting, wait_for

__all__ = ["FAMILY", "Args", "inject", "undo", "verify", "verify_held"]

NAME = "network-policy-block"
CONNECT_TIMEOUT_S = 0.5  # loopback and pod networks answer a SYN in well under a millisecond
LIFT_TIMEOUT_S = 15.0  # on Kubernetes the probe is an exec into another pod: seconds each under load


class Args(Targeting):
    default_mode: ClassVar[Mode] = "all"
    max_duration_s: float = Field(default=600.0, gt=0, le=MAX_FAULT_S)


FAMILY = FamilySpec(name=NAME, action="block_network", args=Args,
                    summary="drop traffic to replicas; landed when connections to each fail, during and at the end")


def inject(scope: FaultScope, targets: list[str], args: Args) -> dict[str, Any]:
    """Block the targets; the platform writes its undo record before the first rule exists."""
    return scope.ops.block_network(targets, scope.run_id, args.max_duration_s)


def _probe_all(scope: FaultScope, targets: list[str]) -> dict[str, bool | None]:
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        results = list(pool.map(lambda n: scope.ops.connect_probe(n, CONNECT_TIMEOUT_S), targets))
    return dict(zip(targets, results, strict=True))


def _judge(targets: list[str], results: Mapping[str, bool | None], check: str, when: str) -> Landing:
    through = sorted(n for n, ok in results.items() if ok is True)
    unknown = sorted(n for n, ok in results.items() if ok is None)
    measured = {"connect": {n: ("connected" if ok else "unknown" if ok is None else "failed")
                            for n, ok in results.items()}}
    if through:
        return Landing(NAME, tuple(targets), check, False,
                       f"not enforced: connections to {', '.join(through)} succeeded {when}", measured)
    if unknown:
        return Landing(NAME, tuple(targets), check, False,
                       f"could not verify the block: no connection test to {', '.join(unknown)} is possible from "
                       "here", measured)
    return Landing(NAME, tuple(targets), check, True,
                   f"connections to {', '.join(targets)} failed {when}", measured)


def verify(scope: FaultScope, targets: list[str]) -> Landing:
    """Right after injection: every blocked replica refuses or drops a new connection."""
    return _judge(targets, _probe_all(scope, targets), "a connection to each blocked replica fails",
                  "while the block was in place")


def verify_held(scope: FaultScope, targets: list[str]) -> Landing:
    """Just before lifting: the block is still there (rules removed behind the harness's back void it)."""
    return _judge(targets, _probe_all(scope, targets), "the block still held when it was lifted",
                  "just before the block was lifted")


def undo(scope: FaultScope, record: Mapping[str, Any], targets: list[str]) -> Landing:
    """Lift the block and check that connections succeed again (a block that stays is an undo failure)."""
    scope.ops.unblock_network(record)
    started = time.monotonic()

    def reachable() -> dict[str, bool | None] | None:
        results = _probe_all(scope, targets)
        return results if all(ok is not False for ok in results.values()) else None

    results = wait_for(reachable, LIFT_TIMEOUT_S, 0.1)
    if results is None:
        raise FaultError(f"the block of {', '.join(targets)} was removed but connections still fail "
                         f"{LIFT_TIMEOUT_S:g}s later; check 'nft list ruleset' (or the NetworkPolicies) and run "
                         "'harness cleanup'")
    return Landing(NAME, tuple(targets), "connections succeed after the block was lifted", True,
                   f"lifted: connections to {', '.join(targets)} succeed again",
                   {"waited_s": round(time.monotonic() - started, 3)})
