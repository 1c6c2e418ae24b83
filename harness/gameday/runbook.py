"""Runbook files for game days, parsed once into frozen dataclasses with every problem reported at once.

```yaml
title: Pre-release game day
load: {harness_users: 8}            # configuration values given to every experiment
steps:
  - name: baseline
    pause: 10                        # seconds of nothing but load (no experiment)
  - name: kill-one-replica
    experiment: experiments/pod-kill.yaml
    vars: {recovery_wait_s: 10}      # like --var
    gate: Kill one replica now?      # asked before injecting: go / skip / abort
    expect: p99 stays under 200 ms and users are served again within 15 s
    expect_max: {time_to_recover_s: 15, error_ratio: 0.05, p99_ms: 200}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.run_settings import load_document

__all__ = ["EXPECTABLE", "Runbook", "Step", "load_runbook"]

# Figures a step may bound with expect_max, as measured per repetition by the analysis.
EXPECTABLE = ("time_to_impact_s", "time_to_recover_s", "bad_time_s", "capacity_recovery_s", "error_ratio",
              "p99_ms")
_STEP_KEYS = {"name", "pause", "experiment", "vars", "gate", "expect", "expect_max"}


@dataclass(frozen=True)
class Step:
    name: str
    pause_s: float = 0.0
    experiment: Path | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    gate: str = ""
    expect: str = ""
    expect_max: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Runbook:
    path: Path
    title: str
    load: Mapping[str, Any]
    steps: tuple[Step, ...]

    @property
    def experiment_steps(self) -> list[Step]:
        return [s for s in self.steps if s.experiment is not None]


def load_runbook(path: Path) -> Runbook:
    raw = load_document(path, "runbook")  # any depth or size: one clear line
    if not isinstance(raw, dict):
        raise ConfigError(f"runbook {path}: expected a mapping with title and steps")
    problems: list[str] = []
    unknown = sorted(set(raw) - {"title", "description", "load", "steps"})
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: title, description, load, steps)")
    load = raw.get("load") or {}
    if not isinstance(load, dict):
        problems.append("load must be a mapping of configuration values")
        load = {}
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        problems.append("steps must be a non-empty list")
        steps_raw = []
    steps: list[Step] = []
    names: set[str] = set()
    for i, item in enumerate(steps_raw, 1):
        where = f"step {i}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        name = str(item.get("name") or f"step-{i}")
        where = f"step {i} ({name})"
        if name in names:
            problems.append(f"{where}: the name is used twice; step names must be unique")
        names.add(name)
        extra = sorted(set(item) - _STEP_KEYS)
        if extra:
            problems.append(f"{where}: unknown keys {extra} (allowed: {sorted(_STEP_KEYS)})")
        pause = item.get("pause", 0)
        if isinstance(pause, bool) or not isinstance(pause, int | float) or not 0 <= pause <= 3600:
            problems.append(f"{where}: pause must be seconds within 0..3600, got {pause!r}")
            pause = 0
        experiment = item.get("experiment")
        exp_path: Path | None = None
        if experiment is not None:
            exp_path = Path(str(experiment))
            if not exp_path.exists():
                problems.append(f"{where}: experiment {exp_path} does not exist")
        elif not pause:
            problems.append(f"{where}: a step needs an experiment or a pause")
        variables = item.get("vars") or {}
        if not isinstance(variables, dict):
            problems.append(f"{where}: vars must be a mapping")
            variables = {}
        bounds = item.get("expect_max") or {}
        if not isinstance(bounds, dict):
            problems.append(f"{where}: expect_max must be a mapping")
            bounds = {}
        for key, value in bounds.items():
            if key not in EXPECTABLE:
                problems.append(f"{where}: expect_max.{key} is not a measured figure ({', '.join(EXPECTABLE)})")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                problems.append(f"{where}: expect_max.{key} must be a number >= 0, got {value!r}")
        steps.append(Step(name=name, pause_s=float(pause), experiment=exp_path, variables=dict(variables),
                          gate=str(item.get("gate") or ""), expect=str(item.get("expect") or ""),
                          expect_max={str(k): float(v) for k, v in bounds.items()
                                      if isinstance(v, int | float) and not isinstance(v, bool)}))
    if problems:
        raise ConfigError(f"runbook {path} is not valid; nothing was run:\n  - " + "\n  - ".join(problems))
    return Runbook(path=path, title=str(raw.get("title") or path.stem), load=dict(load), steps=tuple(steps))
