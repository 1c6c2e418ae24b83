"""Network-policy block: drop traffic to the selected replicas until the block is lifted.

Locally an nftables table of the harness's own. On Kubernetes one of two routes (``via``): a NetworkPolicy
denying ingress (``policy``), or a privileged agent pod that adds an nftables table inside each target pod's
network namespace (``agent``, harness.platforms.kubernetes.netagent), for clusters whose network plugin
ignores NetworkPolicy. ``auto`` tries the policy, probes it, and falls back to the agent when the run allows
it (``--allow-privileged-agent``); without that permission it stays "not enforced" and says how to allow it.

First a baseline: every target must accept a connection before anything is injected (a target that is
already down would otherwise pass for a block that held). Landed when a connection attempt to each blocked
replica fails while the block is in place *and* still fails just before it is lifted (rules removed behind
the harness's back void the repetition); lifted when a connection succeeds again afterwards. Failures are
recorded as "timed out" (dropped) or "refused" (nothing listens) apart: the harness's own tables drop, so
under them a refused connection means the target's own kernel answered, and the block did not hold. A
NetworkPolicy that the cluster does not enforce lets the connection through: reported as "not enforced".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.errors import FaultError
from harness.faults.connect import Connect, connected
from harness.faults.family import MAX_FAULT_S, FamilySpec, FaultScope, Landing, Mode, Targeting, wait_for

__all__ = ["FAMILY", "AgentPermission", "Args", "baseline", "block", "inject", "routes", "undo", "verify",
           "verify_held"]

NAME = "network-policy-block"
CONNECT_TIMEOUT_S = 0.5  # loopback and pod networks answer a SYN in well under a millisecond
LIFT_TIMEOUT_S = 15.0  # on Kubernetes the probe is an exec into another pod: seconds each under load
Via = Literal["auto", "policy", "agent"]
Route = Literal["policy", "agent", "nftables"]
ROUTES: tuple[Route, ...] = ("policy", "agent", "nftables")  # the order auto tries them in, where a platform has them
DROPPING: tuple[Route, ...] = ("agent", "nftables")  # routes whose rules drop: a refusal means they did not hold
ROUTE_WORDS: Mapping[str, str] = {
    "policy": "a NetworkPolicy denying ingress",
    "agent": "a privileged agent's nftables table in each pod's network namespace",
    "nftables": "an nftables table of the harness's own",
}


class Args(Targeting):
    default_mode: ClassVar[Mode] = "all"
    max_duration_s: float = Field(default=600.0, gt=0, le=MAX_FAULT_S)
    # Kubernetes: how the block is made (see the module's docstring). Locally it is always nftables.
    via: Via = "auto"


@dataclass(frozen=True)
class AgentPermission:
    """What the run allows for the agent route: ``--allow-privileged-agent`` and ``--agent-image`` (the
    platform's settings may allow it too)."""

    allowed: bool = False
    image: str = ""


FAMILY = FamilySpec(name=NAME, action="block_network", args=Args,
                    summary="drop traffic to replicas; landed when connections to each fail, during and at the end")


def routes(scope: FaultScope, via: Via) -> list[Route]:
    """The routes to try, in order: Kubernetes has two; elsewhere the block is the harness's nftables table."""
    order: list[Route] = [r for r in ROUTES if r in scope.ops.block_routes()]
    return order if via == "auto" or via not in order else [via]


def inject(scope: FaultScope, targets: list[str], args: Args, route: Route = "policy",
           permission: AgentPermission | None = None) -> dict[str, Any]:
    """Block the targets by ``route``; the platform writes its undo record before the first rule exists."""
    if route == "agent":
        permission = permission or AgentPermission()
        record = scope.ops.block_network_agent(
            targets, scope.run_id, args.max_duration_s, allowed=permission.allowed, image=permission.image)
    else:
        record = scope.ops.block_network(targets, scope.run_id, args.max_duration_s)
    return {**record, "route": route}


def _probe_all(scope: FaultScope, targets: list[str]) -> dict[str, Connect | None]:
    def probe(name: str) -> Connect | None:
        return scope.ops.connect_check(name, CONNECT_TIMEOUT_S)

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        results = list(pool.map(probe, targets))
    return dict(zip(targets, results, strict=True))


def _connect_words(results: Mapping[str, Connect | None]) -> dict[str, str]:
    return {n: outcome or "unknown" for n, outcome in results.items()}


def baseline(scope: FaultScope, targets: list[str]) -> Landing:
    """Before anything is injected: every target accepts a connection (else a dead target would read as blocked)."""
    results = _probe_all(scope, targets)
    measured = {"connect_before": _connect_words(results)}
    down = sorted(n for n, outcome in results.items() if outcome not in ("connected", None))
    unknown = sorted(n for n, outcome in results.items() if outcome is None)
    check = "each target accepts a connection before the block"
    if down:
        return Landing(NAME, tuple(targets), check, False,
                       "nothing was injected: before the block, connections to "
                       + ", ".join(f"{n} were {results[n]}" for n in down)
                       + "; a target that already fails cannot show a block", measured)
    if unknown:
        return Landing(NAME, tuple(targets), check, False,
                       f"nothing was injected: no connection test to {', '.join(unknown)} is possible from here",
                       measured)
    return Landing(NAME, tuple(targets), check, True, "every target accepted a connection", measured)


def _judge(targets: list[str], results: Mapping[str, Connect | None], check: str, when: str,
           route: Route) -> Landing:
    through = sorted(n for n, outcome in results.items() if outcome == "connected")
    unknown = sorted(n for n, outcome in results.items() if outcome is None)
    refused = sorted(n for n, outcome in results.items() if outcome == "refused")
    measured: dict[str, Any] = {"route": route, "connect": _connect_words(results), "through": through}
    how = f"(route: {route}, {ROUTE_WORDS[route]})"
    if through:
        return Landing(NAME, tuple(targets), check, False,
                       f"not enforced: connections to {', '.join(through)} succeeded {when} {how}", measured)
    if unknown:
        return Landing(NAME, tuple(targets), check, False,
                       f"could not verify the block: no connection test to {', '.join(unknown)} is possible from "
                       f"here {how}", measured)
    if refused and route in DROPPING:
        return Landing(NAME, tuple(targets), check, False,
                       f"connections to {', '.join(refused)} were refused {when}, not dropped: the block drops "
                       f"packets, so the target's own kernel answered (it is down, or the rules are gone) {how}",
                       measured)
    outcomes = ", ".join(f"{n} {results[n]}" for n in targets)
    return Landing(NAME, tuple(targets), check, True, f"connections failed {when} ({outcomes}) {how}", measured)


def verify(scope: FaultScope, targets: list[str], route: Route = "policy") -> Landing:
    """Right after injection: every blocked replica drops (or refuses, for a policy) a new connection."""
    return _judge(targets, _probe_all(scope, targets), "a connection to each blocked replica fails",
                  "while the block was in place", route)


def verify_held(scope: FaultScope, targets: list[str], route: Route = "policy") -> Landing:
    """Just before lifting: the block is still there (rules removed behind the harness's back void it)."""
    return _judge(targets, _probe_all(scope, targets), "the block still held when it was lifted",
                  "just before the block was lifted", route)


def block(scope: FaultScope, targets: list[str], args: Args, permission: AgentPermission,
          note: Callable[[Mapping[str, Any]], None], lifted: Callable[[], None]) -> tuple[dict[str, Any], Landing]:
    """Baseline, then each route in turn until one holds: the record of what is in place and its landing.

    ``note`` writes an injection down (before it is relied on), ``lifted`` marks it undone; a policy that
    is not enforced is lifted before the agent is tried, so only one block is ever in place."""
    before = baseline(scope, targets)
    if not before.landed:
        return {}, before
    tried: dict[str, str] = {}
    candidates = routes(scope, args.via)
    record: dict[str, Any] = {}
    landing = before
    for index, route in enumerate(candidates):
        if route == "agent" and tried:  # auto: fall back only when the run allows the agent
            refusal = scope.ops.agent_refusal(permission.allowed, permission.image)
            if refusal:
                detail = f"{landing.detail}; the cluster's network plugin ignores NetworkPolicy. To block anyway: " \
                         f"{refusal}"
                return record, Landing(NAME, tuple(targets), landing.check, False, detail,
                                       {**landing.measured, "tried": tried, **before.measured})
            scope.ops.unblock_network(record)
            lifted()
        record = inject(scope, targets, args, route, permission)
        note(record)
        landing = verify(scope, targets, route)
        more = index + 1 < len(candidates)
        if landing.landed or not more or not landing.measured.get("through"):
            break
        tried[route] = landing.detail
    measured = {**landing.measured, **before.measured, **({"tried": tried} if tried else {})}
    detail = landing.detail + (f"; tried first: {'; '.join(f'{k}: {v}' for k, v in tried.items())}" if tried else "")
    return record, Landing(NAME, tuple(targets), landing.check, landing.landed, detail, measured)


def undo(scope: FaultScope, record: Mapping[str, Any], targets: list[str]) -> Landing:
    """Lift the block and check that connections succeed again (a block that stays is an undo failure)."""
    lifted_ns = scope.ops.unblock_network(record)
    started = time.monotonic()

    def reachable() -> dict[str, Connect | None] | None:
        results = _probe_all(scope, targets)
        return results if all(connected(outcome) is not False for outcome in results.values()) else None

    results = wait_for(reachable, LIFT_TIMEOUT_S, 0.1)
    if results is None:
        raise FaultError(f"the block of {', '.join(targets)} was removed but connections still fail "
                         f"{LIFT_TIMEOUT_S:g}s later; check 'nft list ruleset' (or the NetworkPolicies and agent pods) "
                         "and run 'harness cleanup'")
    return Landing(NAME, tuple(targets), "connections succeed after the block was lifted", True,
                   f"lifted: connections to {', '.join(targets)} succeed again",
                   {"waited_s": round(time.monotonic() - started, 3), "route": record.get("route", "policy"),
                    "lifted_ns": lifted_ns})
