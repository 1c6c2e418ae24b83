"""What every fault family has in common: target selection, the landing record, and the family contract.

A fault family (pod kill, network block, slow model load, memory pressure) is one module that reads top
to bottom: its typed argument model ``Args``, ``inject``, ``verify`` (proof that the fault took effect)
and the undo it needs. The same ``Args`` model validates an experiment before anything runs and parses
the arguments at injection, so the two can never disagree. Families are found through the explicit
mapping in ``harness.faults.families``; nothing registers itself at import time.

A fault that did not land measured nothing: its ``Landing`` says so, and the repetition is void.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import ConfigError, FaultError, describe_validation_error
from harness.platforms.base import FaultTarget, PlatformStatus, ReplicaStatus

__all__ = [
    "MAX_FAULT_S",
    "FamilySpec",
    "FaultScope",
    "Landing",
    "Mode",
    "StrictArgs",
    "Targeting",
    "check_args",
    "describe_validation_error",
    "parse_args",
    "replica_identity",
    "select_replicas",
    "wait_for",
]

Mode = Literal["one", "count", "percent", "all"]
MAX_FAULT_S = 3600.0
A = TypeVar("A", bound=BaseModel)
T = TypeVar("T")


class StrictArgs(BaseModel):
    """Unknown names, wrong types and out-of-range values are errors; nothing is coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Targeting(StrictArgs):
    """Which replicas a fault hits: explicit ``names``, or a seeded random pick by ``mode``.

    Every option that a given mode would ignore is refused, so a value the user set is never silently
    dropped (``count: 7`` with ``mode: one`` used to kill one replica and say nothing).
    """

    mode: Mode | None = None  # None: the family's default (all for blocks, one otherwise)
    count: int | None = Field(default=None, ge=1)
    percent: float | None = Field(default=None, gt=0, le=100)
    names: list[str] | None = Field(default=None, min_length=1)
    seed: int | None = None

    default_mode: ClassVar[Mode] = "one"

    @model_validator(mode="after")
    def _consistent(self) -> Targeting:
        if self.names:
            given = [k for k in ("mode", "count", "percent") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"names pick the targets, so {' and '.join(given)} would be ignored; "
                                 "give either names or mode (with count or percent)")
            return self
        mode = self.resolved_mode
        if self.count is not None and mode != "count":
            raise ValueError(f"count {self.count} is ignored with mode {mode!r}; set mode: count to use it, "
                             "or leave count empty (null)")
        if self.percent is not None and mode != "percent":
            raise ValueError(f"percent {self.percent:g} is ignored with mode {mode!r}; set mode: percent to use "
                             "it, or leave percent empty (null)")
        if mode == "count" and self.count is None:
            raise ValueError("mode 'count' needs count (a whole number >= 1)")
        if mode == "percent" and self.percent is None:
            raise ValueError("mode 'percent' needs percent (0 < percent <= 100)")
        return self

    @property
    def resolved_mode(self) -> Mode:
        return self.mode or self.default_mode

    def select(self, available: Sequence[str]) -> list[str]:
        """The targets among ``available``: a ConfigError when they cannot be had."""
        return select_replicas(available, self.resolved_mode, self.count, self.percent, self.names, self.seed)


def select_replicas(
    available: Sequence[str],
    mode: Mode = "one",
    count: int | None = None,
    percent: float | None = None,
    names: Sequence[str] | None = None,
    seed: int | None = None,
) -> list[str]:
    """Pick targets. Explicit names win; otherwise a seeded random choice of the given size."""
    pool = sorted(available)
    if not pool:
        raise FaultError("the platform has no replicas to target")
    if names:
        unknown = sorted(set(names) - set(pool))
        if unknown:
            raise ConfigError(f"names {unknown} match no replica (replicas: {pool})")
        return sorted(set(names))
    sizes = {"all": len(pool), "one": 1}
    if mode == "count":
        if count is None or count < 1:
            raise ConfigError(f"mode 'count' needs count >= 1, got {count!r}")
        if count > len(pool):
            raise ConfigError(f"count {count} is more than the {len(pool)} replicas there are")
        size = count
    elif mode == "percent":
        if percent is None or not 0 < percent <= 100:
            raise ConfigError(f"mode 'percent' needs 0 < percent <= 100, got {percent!r}")
        size = max(1, round(len(pool) * percent / 100))
    elif mode in sizes:
        size = sizes[mode]
    else:
        raise ConfigError(f"mode must be one of one, count, percent, all; got {mode!r}")
    return sorted(random.Random(seed).sample(pool, size))


def check_args(model: type[A], arguments: Mapping[str, Any]) -> tuple[A | None, list[str]]:
    """The parsed arguments, or None and one line per problem (what the runner lists before anything runs)."""
    try:
        return model.model_validate(dict(arguments)), []
    except ValidationError as exc:
        return None, describe_validation_error(exc)


def parse_args(model: type[A], arguments: Mapping[str, Any], where: str = "") -> A:
    """Validate ``arguments`` with the family's model at injection; a ConfigError lists every problem."""
    parsed, problems = check_args(model, arguments)
    if parsed is None:
        prefix = f"{where}: " if where else ""
        raise ConfigError("; ".join(prefix + line for line in problems))
    return parsed


@dataclass(frozen=True)
class Landing:
    """Proof (or disproof) that a fault took effect: what was checked, what was measured, when."""

    fault: str
    targets: tuple[str, ...]
    check: str
    landed: bool
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)
    at_ns: int = field(default_factory=time.time_ns)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets)
        return out


@dataclass(frozen=True)
class FaultScope:
    """What a family needs from the run: the platform's fault operations, its status, the run id."""

    ops: FaultTarget
    status: Callable[[], PlatformStatus]
    run_id: str

    def replicas(self) -> dict[str, ReplicaStatus]:
        return {r.name: r for r in self.status().replicas}


@dataclass(frozen=True)
class FamilySpec:
    """A fault family as the runner sees it: its report name, its Chaos Toolkit entry point, its model.

    Each family module defines one (``FAMILY``); ``harness.faults.families`` maps names to them.
    """

    name: str  # the fault's name in reports (pod-kill, network-policy-block, ...)
    action: str  # the Chaos Toolkit entry point in harness.chaos.actions
    args: type[Targeting]
    summary: str


def replica_identity(replica: ReplicaStatus) -> str:
    """What changes when a replica is replaced: the pod uid on Kubernetes, the server pid locally."""
    uid = getattr(replica, "uid", "")
    return str(uid) if uid else str(replica.pid)


def wait_for(probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.05) -> T | None:
    """Poll ``probe`` until it returns something other than None, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except FaultError:
            value = None
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)
