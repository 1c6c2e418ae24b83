"""Pod kill: SIGKILL the selected replicas (or SIGTERM with a grace period, as deleting a pod does).

Landed when every target was replaced: the killed process or pod is gone and a new one runs in its place
(a new pid or pod uid, or the restart count went up); with ``kill: container``, also when the target's
server is seen down (its restart waits for the back-off, which is the effect under test). A kill that hit
nothing (a replica already gone, a signal the process survived) is not a pod kill, and the repetition that
relied on it measured nothing.
Nothing needs undoing: the supervisor (or the Deployment) brings the replica back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from harness.faults.family import FamilySpec, FaultScope, Landing, Targeting, replica_identity, wait_for
from harness.faults.network_block import AgentPermission

__all__ = ["FAMILY", "Args", "Killed", "inject", "verify"]

NAME = "pod-kill"


class Args(Targeting):
    # pod: delete the pod (a new one in its place, as a ReplicaSet makes); container: only the server is
    # killed, and restarted in the same pod (the kubelet's restartPolicy): what the pod holds, such as memory
    # pressure on its cgroup, stays.
    kill: Literal["pod", "container"] = "pod"
    signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"
    grace_s: float | None = Field(default=None, ge=0, le=300)
    verify_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _grace_needs_sigterm(self) -> Args:
        if self.signal == "SIGKILL" and self.grace_s:
            raise ValueError(f"grace_s {self.grace_s:g} is ignored with signal SIGKILL (it kills at once); "
                             "use signal: SIGTERM for a graceful kill, or set grace_s to 0")
        return self

    @property
    def grace(self) -> float:
        """The grace the platform gets: 0 kills at once; SIGTERM always gets a (tiny) grace period."""
        return 0.0 if self.signal == "SIGKILL" else (self.grace_s or 0.001)


FAMILY = FamilySpec(name=NAME, action="kill_replicas", args=Args,
                    summary="kill replicas; landed when each was replaced (new pid or pod, restarts +1)")


@dataclass(frozen=True)
class Killed:
    """What the replicas were before the kill, so ``verify`` can tell a replacement from the original."""

    before: dict[str, tuple[str, int]]  # target -> (identity, restarts)
    names: frozenset[str]  # every replica then, so a new pod name is recognised


def inject(scope: FaultScope, targets: list[str], args: Args, permission: AgentPermission | None = None) -> Killed:
    """Kill the targets (a target the platform cannot kill raises FaultError: the action failed). ``permission``:
    the run's privileged-agent permission, which Kubernetes needs to kill a container (``kill: container``)."""
    permission = permission or AgentPermission()
    replicas = scope.replicas()
    killed = Killed({n: (replica_identity(r), r.restarts) for n, r in replicas.items() if n in targets},
                    frozenset(replicas))
    for name in targets:
        scope.ops.kill_replica(name, args.grace, container=args.kill == "container", allow_agent=permission.allowed,
                               agent_image=permission.image)
    return killed


def verify(scope: FaultScope, targets: list[str], killed: Killed, args: Args) -> Landing:
    """Wait until each target was replaced; a target that never was means the kill did not land."""
    started = time.monotonic()
    before, known = killed.before, killed.names

    def replaced() -> dict[str, str] | None:
        now = scope.replicas()
        newcomers = sorted(set(now) - known)
        out: dict[str, str] = {}
        for name, (identity, restarts) in before.items():
            current = now.get(name)
            if current is None:  # a deleted pod: its Deployment made a new one under another name
                if not newcomers:
                    return None
                out[name] = f"replaced by {newcomers.pop(0)}"
            elif current.restarts > restarts:
                out[name] = f"restarted (restarts {restarts} -> {current.restarts})"
            elif replica_identity(current) not in ("None", "", identity):
                out[name] = f"new process ({identity} -> {replica_identity(current)})"
            elif args.kill == "container" and current.state != "running":
                # the container is down and the kubelet (or supervisor) restarts it when its back-off allows:
                # how long that takes is the effect under test, not part of the kill
                out[name] = f"container stopped ({current.state}: {current.reason or 'no reason given'})"
            else:
                return None
        return out

    result = wait_for(replaced, args.verify_timeout_s, 0.05)
    waited = round(time.monotonic() - started, 3)
    missing = sorted(set(targets) - set(before))
    if result is None or missing:
        why = (f"{', '.join(missing)} did not exist when the kill was sent" if missing else
               f"no replacement seen within {args.verify_timeout_s:g}s (the process or pod was not killed, "
               "or nothing restarted it)")
        return Landing(NAME, tuple(targets), "each target replaced (new pid or pod uid, or restarts +1)", False,
                       why, {"waited_s": waited})
    return Landing(NAME, tuple(targets), "each target replaced (new pid or pod uid, or restarts +1)", True,
                   "; ".join(f"{k}: {v}" for k, v in sorted(result.items())), {"waited_s": waited, **result})
