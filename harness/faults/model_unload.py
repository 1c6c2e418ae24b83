"""Model unload under load: unload the model on the selected replicas through Triton's model-control API.

What an operator's stray ``unload`` (or a controller that unloads "idle" models) does to a live service: the
replica stays up and answers, but every request for the model fails. Measured on Triton 2.51: even with
``--strict-readiness``, ``/v2/health/ready`` stays true (a version unloaded on request is excused), so the
front (HAProxy, the Service's endpoints) keeps routing to the replica and its share of requests fails until
the reload; the landing records what the server reported (``server_ready``).
Recovery is the reload: the undo loads the model back with the full config Triton served before (an
override replaces the whole config).

Landed when Triton's repository index lists every version of the model UNAVAILABLE on every target (past
UNLOADING, which still drains the requests in flight).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from harness.errors import FaultError
from harness.faults import model_lifecycle as lifecycle
from harness.faults.family import FamilySpec, FaultScope, Landing, wait_for

__all__ = ["FAMILY", "NAME", "Args", "inject", "undo", "verify"]

NAME = "model-unload"
UNAVAILABLE = "UNAVAILABLE"  # after UNLOADING: in-flight requests drained, the instances gone


class Args(lifecycle.ModelArgs):
    pass


FAMILY = FamilySpec(name=NAME, action="unload_model", args=Args,
                    summary="unload the model through the model-control API; landed when Triton lists it "
                            "unavailable; the reload is the recovery")


def inject(scope: FaultScope, targets: list[str], args: Args, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Record (the full config, for the reload), then unload on each target; a refused unload fails the action.
    ``changes`` receives each target's undo record as it is written (before its change), so the caller keeps
    them even when a later target fails."""
    controls = [lifecycle.control(scope, name) for name in targets]
    configs = {c.replica: c.config(args.model) for c in controls}  # read all first: nothing changed on an error
    failures = []
    for ctl in controls:
        changes.append(lifecycle.record_change(ctl, scope.run_id, args.model, configs[ctl.replica],
                                               args.max_duration_s, f"unload of {args.model}"))
        ok, why = ctl.unload(args.model)
        if not ok:
            failures.append(f"{ctl.replica}: {why}")
    if failures:
        raise FaultError(f"Triton refused to unload {args.model}: {'; '.join(failures)} (the undo records "
                         "are written; the rollback loads the model back)")
    return {"model": args.model}


def verify(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args) -> Landing:
    check = f"Triton's repository index lists every version of {args.model} UNAVAILABLE on every target"
    started = time.monotonic()
    controls = {name: lifecycle.control(scope, name) for name in targets}
    seen: dict[str, dict[str, dict[str, str]]] = {}

    def unloaded() -> bool | None:
        for name, ctl in controls.items():
            seen[name] = lifecycle.states(ctl, args.model)
        gone = all(v and all(s["state"] == UNAVAILABLE for s in v.values()) for v in seen.values())
        return True if gone else None

    landed = wait_for(unloaded, args.verify_timeout_s, 0.1) is not None
    measured: dict[str, Any] = {"index": seen, "waited_s": round(time.monotonic() - started, 3)}
    if not landed:
        still = {n: sorted({s["state"] for s in v.values()}) for n, v in seen.items()
                 if not v or any(s["state"] != UNAVAILABLE for s in v.values())}
        return Landing(NAME, tuple(targets), check, False,
                       f"{args.model} not unavailable after {args.verify_timeout_s:g}s (states {still})", measured)
    measured["server_ready"] = {n: ctl.server_ready() for n, ctl in controls.items()}
    detail = "; ".join(f"{n}: " + ", ".join(f"v{v} {s['state']} ({s['reason'] or 'no reason'})" for v, s in idx.items())
                       + (", server still reports ready" if measured["server_ready"][n] else ", server not ready")
                       for n, idx in seen.items())
    return Landing(NAME, tuple(targets), check, True, detail, measured)


undo = lifecycle.undo_injection  # the model back as it was: see harness.faults.model_lifecycle
