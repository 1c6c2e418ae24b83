"""Checks of an experiment that only the whole plan can answer, made before anything runs.

Each returns its problems as lines (the runner lists every problem at once, exit 2, nothing injected):
- the analysis the run would get (``configuration.analysis`` and the objective from ``max_error_ratio`` /
  ``max_p99_ms``), parsed and checked exactly as the report will parse and check it: a typo such as
  ``stabilty_s``, ``window_s: 0`` or ``max_error_ratio: 1`` used to be found by the report, after the run;
- ``harness_fault``, the label the report, the history and the monthly incident counts use, must name what the
  method injects (a pod-kill experiment labelled network-policy-block would file its figures under the wrong
  fault);
- the observation after the fault must be at least the stability period, or no repetition could ever be
  called recovered (only inconclusive or censored);
- a memory-pressure hog must outlive the method's release step, or the pressure ends before the release
  (the landing would then fail at run time: a void repetition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.faults.families import BY_ACTION
from harness.run_settings import RunSettings

__all__ = ["fault_label_problems", "hog_lifetime_problems", "observation_problems", "planned_analysis"]

_ACTIONS = "harness.chaos.actions"
_ROLLBACKS = "harness.chaos.rollbacks"
_UNDO_FUNCS = ("unblock_network", "release_memory_pressure", "restore_model_load", "restore_pod_spec", "rollback_all")
COMPOUND = "compound"


def _provider(activity: Mapping[str, Any]) -> tuple[str, str]:
    provider = activity.get("provider") or {}
    return str(provider.get("module") or ""), str(provider.get("func") or "")


def _injecting(method: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fault families the method's actions inject, in order."""
    out = []
    for activity in method:
        module, func = _provider(activity)
        if module == _ACTIONS and func in BY_ACTION:
            out.append(BY_ACTION[func].name)
    return out


def planned_analysis(config: Mapping[str, Any], settings: RunSettings, where: str) -> tuple[Any, list[str]]:
    """The analysis settings this experiment's run will be judged with, and every problem with them."""
    from harness.analysis import load_settings
    from harness.analysis._run import _experiment_settings
    from harness.analysis._settings import _analysis_problems

    problems: list[str] = []
    ratio = settings.max_error_ratio
    if ratio is not None and ratio >= 1:
        problems.append(f"{where}: max_error_ratio {ratio:g} makes the objective impossible to miss (a window "
                        "where every request failed would be good, so no fault could show); give a ratio below 1")
    try:
        analysis = _experiment_settings(load_settings(None).analysis, dict(config), Path(where))
    except ConfigError as exc:
        return None, [*problems, str(exc)]
    if not problems:
        problems += [f"{where}: configuration.analysis: {p}" for p in _analysis_problems(analysis)]
    return analysis, problems


def fault_label_problems(experiment: Mapping[str, Any], settings: RunSettings, where: str) -> list[str]:
    """``harness_fault`` must name a family the method injects (or ``compound`` when it injects several)."""
    label = settings.harness_fault
    if not label:
        return []
    method = [a for a in experiment.get("method") or [] if isinstance(a, Mapping)]
    families = _injecting(method)
    if not families:
        return [f"{where}: harness_fault is {label!r} but no method action injects a fault; remove it or add "
                f"the injecting action (one of {sorted(BY_ACTION)})"]
    allowed = set(families) | ({COMPOUND} if len(set(families)) > 1 else set())
    if label not in allowed:
        return [f"{where}: harness_fault is {label!r} but the method injects {', '.join(dict.fromkeys(families))}; "
                f"set harness_fault to {' or '.join(repr(a) for a in sorted(allowed))} (the report, the history "
                "and the monthly incident counts file the figures under it)"]
    return []


def _pause(activity: Mapping[str, Any], key: str, config: Mapping[str, Any]) -> float:
    from chaoslib import substitute

    pauses = substitute(dict(activity.get("pauses") or {}), dict(config), None)
    value = pauses.get(key, 0)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def observation_problems(experiment: Mapping[str, Any], config: Mapping[str, Any], settings: RunSettings,
                         where: str, stability_period_s: float) -> list[str]:
    """At least a stability period must be observed after the fault ends, or recovery can never be shown."""
    method = [a for a in experiment.get("method") or [] if isinstance(a, Mapping)]
    first = next((i for i, a in enumerate(method) if _provider(a)[0] == _ACTIONS and _provider(a)[1] in BY_ACTION),
                 None)
    if first is None:
        return []
    end = next((i for i in range(first + 1, len(method))
                if _provider(method[i])[0] == _ROLLBACKS and _provider(method[i])[1] in _UNDO_FUNCS), None)
    if end is None:  # the fault ends with the last injecting action (or, for a held fault, the rollbacks)
        end = max(i for i, a in enumerate(method) if _provider(a)[0] == _ACTIONS and _provider(a)[1] in BY_ACTION)
    after = _pause(method[end], "after", config) + sum(
        _pause(a, "before", config) + _pause(a, "after", config) for a in method[end + 1:])
    observed = after + settings.harness_observation_s
    if observed < stability_period_s:
        return [f"{where}: only {observed:g}s are observed after the fault ends (pauses after it + "
                f"harness_observation_s) but recovery needs {stability_period_s:g}s of good windows "
                "(stability_period_s): every repetition could only be inconclusive; raise harness_observation_s"]
    return []


def hog_lifetime_problems(experiment: Mapping[str, Any], config: Mapping[str, Any], where: str) -> list[str]:
    """A memory_pressure action's ``duration_s`` must outlive the pauses until the method's release step."""
    from chaoslib import substitute

    method = [a for a in experiment.get("method") or [] if isinstance(a, Mapping)]
    problems = []
    for i, activity in enumerate(method):
        if _provider(activity) != (_ACTIONS, "memory_pressure"):
            continue
        release = next((j for j in range(i + 1, len(method))
                        if _provider(method[j]) in ((_ROLLBACKS, "release_memory_pressure"),
                                                    (_ROLLBACKS, "rollback_all"))), None)
        if release is None:
            continue
        held = _pause(activity, "after", config) + sum(
            _pause(a, "before", config) + _pause(a, "after", config) for a in method[i + 1:release]
        ) + _pause(method[release], "before", config)
        args = substitute(dict((activity.get("provider") or {}).get("arguments") or {}), dict(config), None)
        duration = args.get("duration_s", 30.0)
        if isinstance(duration, int | float) and not isinstance(duration, bool) and duration <= held:
            problems.append(f"{where}: memory_pressure duration_s {duration:g}s ends before the release step, "
                            f"which comes at least {held:g}s later (its pauses): the hog would let go first and "
                            "the repetition be void; give duration_s more than the method holds the pressure")
    return problems
