"""Refusing, before anything runs, the experiments a platform cannot perform.

A platform that cannot do some faults (an attached service the harness did not start cannot have its
pods killed) offers ``refused_actions() -> {action: reason}``; every command that runs experiments checks
each activity against it after validating the experiments and before the first injection, and reports
every refusal at once, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.platforms.base import Platform

__all__ = ["refusals", "refuse_unsupported"]

_ACTIONS_MODULE = "harness.chaos.actions"


def refusals(platform: Platform, path: Path, experiment: Mapping[str, Any]) -> list[str]:
    """Why each activity of ``experiment`` cannot run on ``platform`` (empty: all can)."""
    refused_of = getattr(platform, "refused_actions", None)
    refused: Mapping[str, str] = refused_of() if callable(refused_of) else {}
    if not refused:
        return []
    problems = []
    for section in ("method", "rollbacks"):
        for activity in experiment.get(section) or []:
            provider = (activity.get("provider") or {}) if isinstance(activity, dict) else {}
            func = str(provider.get("func") or "")
            if provider.get("module") == _ACTIONS_MODULE and func in refused:
                problems.append(f"{path}: {section} activity {activity.get('name', '?')!r} ({func}) cannot run on the "
                                f"{platform.name} platform: {refused[func]}")
    return problems


def refuse_unsupported(platform: Platform, experiments: Iterable[tuple[Path, Mapping[str, Any]]]) -> None:
    """``ConfigError`` listing every activity the platform refuses; nothing has been injected yet."""
    problems = [p for path, experiment in experiments for p in refusals(platform, path, experiment)]
    if problems:
        raise ConfigError("these experiments cannot run here; nothing was injected:\n  - " + "\n  - ".join(problems))
