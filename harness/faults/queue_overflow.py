"""Queue overflow: a bounded dynamic-batching queue (``max_queue_size``) and a burst above its capacity.

Triton's dynamic batcher rejects a request that finds the model's queue full ("Exceeds maximum queue
size"), instead of letting latency grow without bound: load shedding, a different failure from an outage
(the server is up and serves what it admits). The fault reloads the model with its full config and
``dynamic_batching.default_queue_policy.max_queue_size`` set (an override replaces the whole config, as
the slow-load fault's), then sends a short burst of ``burst_requests`` from ``burst_concurrency`` clients at
once straight to each target replica: the burst comes from the fault itself, not from a load-profile step,
so the landing knows which replica rejected what. The run's own load keeps going through the front and
meets the same small queue until the rollback; its rejections are the timeline's ``queue_full`` error
class, which the report lists apart from outage errors (refused, reset, timeout, model unavailable).

Landed when every target rejected at least one burst request with Triton's queue-full error. Undo loads
the model with the config it had.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from harness.errors import FaultError
from harness.faults import model_lifecycle as lifecycle
from harness.faults.family import FamilySpec, FaultScope, Landing

__all__ = ["FAMILY", "NAME", "Args", "inject", "queue_config", "undo", "verify"]

NAME = "queue-overflow"


class Args(lifecycle.ModelArgs):
    max_queue_size: int = Field(default=2, ge=1, le=1_000_000)
    burst_requests: int = Field(default=200, ge=1, le=100_000)
    burst_concurrency: int = Field(default=32, ge=2, le=512)
    burst_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _burst_above_capacity(self) -> Args:
        if self.burst_concurrency <= self.max_queue_size:
            raise ValueError(f"burst_concurrency {self.burst_concurrency} cannot overflow a queue of "
                             f"max_queue_size {self.max_queue_size}; make it larger than max_queue_size")
        if self.burst_requests < self.burst_concurrency:
            raise ValueError(f"burst_requests {self.burst_requests} is fewer than burst_concurrency "
                             f"{self.burst_concurrency}: give every client at least one request")
        return self


FAMILY = FamilySpec(name=NAME, action="queue_overflow", args=Args,
                    summary="bound the model's queue (max_queue_size) and burst above it; landed when Triton "
                            "rejected requests with its queue-full error")


def queue_config(config: Mapping[str, Any], max_queue_size: int) -> dict[str, Any]:
    """The full config with the dynamic batcher's default queue policy bounded (FaultError: no batcher)."""
    if "dynamic_batching" not in config:
        raise FaultError(f"model {config.get('name')!r} has no dynamic_batching in its config: max_queue_size is "
                         "a dynamic-batching queue policy; enable dynamic batching, or pick another model")
    changed = copy.deepcopy(dict(config))
    policy = changed["dynamic_batching"].setdefault("default_queue_policy", {})
    policy["max_queue_size"] = str(max_queue_size)  # uint64: a string in protobuf JSON, as Triton serves it
    return changed


def inject(scope: FaultScope, targets: list[str], args: Args, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """``changes`` receives each target's undo record as it is written (before its change), so the caller
    keeps them even when a later target fails."""
    controls = [lifecycle.control(scope, name) for name in targets]
    configs = {c.replica: c.config(args.model) for c in controls}
    bounded = {name: queue_config(config, args.max_queue_size) for name, config in configs.items()}
    loads, bursts = {}, {}
    for ctl in controls:
        changes.append(lifecycle.record_change(ctl, scope.run_id, args.model, configs[ctl.replica],
                                               args.max_duration_s, f"max_queue_size {args.max_queue_size} on "
                                               f"{args.model}"))
        began = time.monotonic()
        ok, why = ctl.load(args.model, bounded[ctl.replica])
        loads[ctl.replica] = round(time.monotonic() - began, 3)
        if not ok:
            raise FaultError(f"replica {ctl.replica}: Triton refused the config with max_queue_size "
                             f"{args.max_queue_size}: {why}")
    for ctl in controls:
        bursts[ctl.replica] = ctl.burst(args.model, args.burst_requests, args.burst_concurrency, args.burst_timeout_s)
    return {"model": args.model, "load_s": loads, "bursts": bursts}


def verify(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args) -> Landing:
    check = ("every target rejected burst requests with Triton's queue-full error "
             f"(max_queue_size {args.max_queue_size})")
    served = {}
    for name in targets:
        config = lifecycle.control(scope, name).config(args.model)
        served[name] = str(((config.get("dynamic_batching") or {}).get("default_queue_policy") or {})
                           .get("max_queue_size", "0"))
    bursts = dict(record["bursts"])
    measured = {"bursts": bursts, "max_queue_size_served": served}
    wrong = sorted(n for n, size in served.items() if size != str(args.max_queue_size))
    if wrong:
        return Landing(NAME, tuple(targets), check, False,
                       f"Triton serves max_queue_size {[served[n] for n in wrong]} on {', '.join(wrong)}, not "
                       f"{args.max_queue_size}: the config override did not take", measured)
    quiet = sorted(n for n in targets if not bursts[n].get("queue_full"))
    if quiet:
        return Landing(NAME, tuple(targets), check, False,
                       f"no queue-full rejection on {', '.join(quiet)} from {args.burst_requests} requests at "
                       f"concurrency {args.burst_concurrency} ("
                       + "; ".join(f"{n}: {bursts[n]}" for n in quiet) + "): the burst did not exceed the queue",
                       measured)
    detail = "; ".join(f"{n}: {b['queue_full']} of {args.burst_requests} rejected queue-full, {b['ok']} ok, "
                       f"{b['error']} other errors in {b['duration_s']}s" for n, b in bursts.items())
    return Landing(NAME, tuple(targets), check, True, detail, measured)


undo = lifecycle.undo_injection  # the model back as it was: see harness.faults.model_lifecycle
