"""Refusing, before anything runs, the experiments a platform cannot perform.

A platform that cannot do some faults (an attached service the harness did not start cannot have its
pods killed) says so in ``refused_actions() -> {action: reason}`` (every platform declares it); every
command that runs experiments checks each activity against it after validating the experiments and before
the first injection, and reports every refusal at once, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.platforms.base import Platform

__all__ = ["refusals", "refuse_unsupported"]

_ACTIONS_MODULE = "harness.chaos.actions"


def refusals(platform: Platform, path: Path, experiment: Mapping[str, Any],
             config: Mapping[str, Any] | None = None) -> list[str]:
    """Why each activity of ``experiment`` cannot run on ``platform`` (empty: all can).

    A platform may also refuse some arguments of an action it can run (``refused_arguments(func, arguments)
    -> reason | None``: Kubernetes cannot target some pods with a pod-template change); the arguments are
    substituted with ``config`` (the experiment's resolved configuration, --var included) first."""
    refused: Mapping[str, str] = platform.refused_actions()
    problems = []
    for section in ("method", "rollbacks"):
        for activity in experiment.get(section) or []:
            provider = (activity.get("provider") or {}) if isinstance(activity, dict) else {}
            func = str(provider.get("func") or "")
            if provider.get("module") != _ACTIONS_MODULE:
                continue
            name = activity.get("name", "?")
            where = f"{path}: {section} activity {name!r} ({func}) cannot run on the {platform.name}"
            if func in refused:
                problems.append(f"{where} platform: {refused[func]}")
            elif why := platform.refused_arguments(func, _substituted(provider.get("arguments") or {}, experiment,
                                                                       config)):
                problems.append(f"{where} platform with these arguments: {why}")
    return problems


def _substituted(arguments: Mapping[str, Any], experiment: Mapping[str, Any],
                 config: Mapping[str, Any] | None) -> dict[str, Any]:
    from chaoslib import substitute

    resolved = config if config is not None else (experiment.get("configuration") or {})
    return dict(substitute(dict(arguments), dict(resolved), None))


def refuse_unsupported(platform: Platform, experiments: Iterable[tuple[Path, Mapping[str, Any]]],
                       configs: Mapping[Path, Mapping[str, Any]] | None = None) -> None:
    """``ConfigError`` listing every activity the platform refuses; nothing has been injected yet.
    ``configs``: each experiment's resolved configuration (its defaults are used where none is given)."""
    problems = [p for path, experiment in experiments
                for p in refusals(platform, path, experiment, (configs or {}).get(path))]
    if problems:
        raise ConfigError("these experiments cannot run here; nothing was injected:\n  - " + "\n  - ".join(problems))
