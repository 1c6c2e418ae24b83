"""``harness run``: validate every experiment, then run each under load through Chaos Toolkit.

The runner owns cleanup: whatever Chaos Toolkit does on errors and signals, every fault recorded for
this run is undone in ``finally``; SIGTERM interrupts the run like SIGINT (rollbacks run), which Chaos
Toolkit alone does not do.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.chaos import interrupts
from harness.chaos.context import new_run_id
from harness.errors import ConfigError, HarnessError, PlatformError
from harness.faults.families import BY_ACTION, FAULT_ACTIONS
from harness.faults.family import Targeting, check_args, parse_args
from harness.jsonfile import write_json_atomic
from harness.plan_checks import fault_label_problems, hog_lifetime_problems, observation_problems, planned_analysis
from harness.platforms.base import Platform
from harness.run_settings import RunSettings, check_run_settings, load_document, safe_yaml_value

__all__ = [
    "ExperimentPlan",
    "RunOptions",
    "RunOutcome",
    "RunSession",
    "describe_plan",
    "load_plans",
    "parse_vars",
    "run_experiments",
    "wait_all_ready",
]

_CONTROL_MODULE = "harness.chaos.control"
_HARNESS_MODULES = ("harness.chaos.actions", "harness.chaos.probes", "harness.chaos.rollbacks")


@dataclass(frozen=True)
class RunOptions:
    reports_dir: Path = Path("reports")
    repeat: int = 1
    variables: Mapping[str, Any] = field(default_factory=dict)
    var_files: Sequence[Path] = ()
    dry_run: bool = False
    ready_timeout_s: float = 180.0
    command: Sequence[str] = ()


@dataclass(frozen=True)
class ExperimentPlan:
    path: Path
    name: str
    experiment: dict[str, Any]
    configuration: dict[str, Any]  # resolved values (defaults, var files, --var): what Chaos Toolkit is given
    fault: str
    settings: RunSettings = field(default_factory=RunSettings)  # the configuration, parsed (run_settings.py)


@dataclass
class RunOutcome:
    run_dir: Path
    repetitions: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return any(r["status"] != "completed" or r["deviated"] or r.get("void") for r in self.repetitions)

    @property
    def void(self) -> list[str]:
        """Repetitions that measured nothing (the fault did not land, or an action failed), with why."""
        return [f"{r['experiment']} #{r['rep']}: {r['void']}" for r in self.repetitions if r.get("void")]


def parse_vars(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are read as YAML scalars so numbers stay numbers."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--var {pair!r}: expected KEY=VALUE")
        out[key.strip()] = safe_yaml_value(value) if value else ""
    return out


def _var_file(path: Path) -> dict[str, Any]:
    try:
        data = load_document(path, "--var-file")
    except ConfigError as exc:
        raise ConfigError(f"--var-file {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--var-file {path}: expected a mapping (optionally under 'configuration')")
    config = data.get("configuration", data)
    return dict(config) if isinstance(config, dict) else {}


def _resolve(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in overrides:
            out[key] = overrides[key]
        elif isinstance(value, dict) and value.get("type") == "env":
            out[key] = os.environ.get(str(value.get("key")), value.get("default"))
        else:
            out[key] = value
    for key, value in overrides.items():
        out.setdefault(key, value)
    return out


def _action_model(func: str) -> type[Targeting] | None:
    """The argument model of a harness action: its fault family's, or the reload helper's."""
    if func in BY_ACTION:
        return BY_ACTION[func].args
    if func == "reload_model":
        from harness.chaos.actions import ReloadArgs

        return ReloadArgs
    return None


def _check_activity(where: str, activity: Mapping[str, Any], config: Mapping[str, Any],
                    replicas: Sequence[str]) -> list[str]:
    """The harness's own argument checks, on substituted values, before anything runs."""
    import importlib
    import inspect

    from chaoslib import substitute

    provider = activity.get("provider") or {}
    module, func = provider.get("module"), provider.get("func")
    if provider.get("type") != "python" or module not in _HARNESS_MODULES:
        return []
    target = getattr(importlib.import_module(str(module)), str(func), None)
    if target is None or str(func).startswith("_"):
        return [f"{where}: {module} has no function {func!r}"]
    args = substitute(dict(provider.get("arguments") or {}), dict(config), None)
    unresolved = [f"{k}={v}" for k, v in args.items() if isinstance(v, str) and "${" in v]
    if unresolved:
        return [f"{where}: arguments refer to configuration keys that do not exist: {unresolved}"]
    model = _action_model(str(func)) if module == "harness.chaos.actions" else None
    if model is None:
        try:
            inspect.signature(target).bind(**args)
        except TypeError as exc:
            return [f"{where}: {func}: {exc} (arguments: {sorted(args)})"]
        return []
    parsed, problems = check_args(model, args)
    if parsed is None:
        return [f"{where}: {func}: {line}" for line in problems]
    if replicas:
        try:
            parsed.select(replicas)
        except ConfigError as exc:
            return [f"{where}: {func}: {exc}"]
    return []


def _check_pauses(where: str, activity: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    from chaoslib import substitute

    pauses = substitute(dict(activity.get("pauses") or {}), dict(config), None)
    return [f"{where}: pause {key} must be a number of seconds within 0..86400, got {value!r}"
            for key, value in pauses.items()
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400]


def load_plans(paths: Sequence[Path], options: RunOptions, replicas: Sequence[str]) -> list[ExperimentPlan]:
    """Load and check every experiment; raise one ConfigError that lists every problem found."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    overrides: dict[str, Any] = {}
    for vf in options.var_files:
        overrides.update(_var_file(vf))
    overrides.update(options.variables)
    plans, problems = [], []
    if options.repeat < 1:
        problems.append(f"--repeat must be at least 1, got {options.repeat}")
    imported: dict[Path, str | None] = {}
    for path in paths:
        try:
            experiment = load_document(path)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if not isinstance(experiment, dict):
            problems.append(f"{path}: not a Chaos Toolkit experiment (expected a mapping)")
            continue
        # Chaos Toolkit's validation stops at its first problem; the harness's own checks below still run,
        # so the user sees every problem at once.
        try:
            ensure_experiment_is_valid(experiment)
        except ChaosException as exc:
            problems.append(f"{path}: {exc}")
        except RecursionError:
            problems.append(f"{path}: nested too deeply to be an experiment")
        except Exception as exc:  # noqa: BLE001 - chaoslib raises assorted errors on malformed input
            problems.append(f"{path}: invalid experiment: {exc.__class__.__name__}: {exc}")
        try:
            plan, found = _check_experiment(path, experiment, overrides, replicas, imported)
        except (AttributeError, TypeError, ValueError) as exc:
            problems.append(f"{path}: not shaped like a Chaos Toolkit experiment ({exc}); compare it with "
                            "experiments/pod-kill.yaml")
            continue
        problems.extend(found)
        plans.append(plan)
    if problems:
        raise ConfigError("the experiments are not valid; nothing was injected:\n  - " + "\n  - ".join(problems))
    return plans


def _check_experiment(path: Path, experiment: dict[str, Any], overrides: Mapping[str, Any],
                      replicas: Sequence[str], imported: dict[Path, str | None]) -> tuple[ExperimentPlan, list[str]]:
    """The harness's own checks of one experiment that parsed: control, settings, every activity."""
    problems: list[str] = []
    controls = [c for c in experiment.get("controls") or [] if (c.get("provider") or {}).get("module")
                == _CONTROL_MODULE]
    if not controls:
        problems.append(f"{path}: declares no '{_CONTROL_MODULE}' control, so no load would run; add it under "
                        "'controls' (see experiments/pod-kill.yaml)")
    raw_config = experiment.get("configuration") or {}
    if not isinstance(raw_config, dict):
        problems.append(f"{path}: 'configuration' must be a mapping of names to values")
        raw_config = {}
    config = _resolve(raw_config, overrides)
    settings, setting_problems = check_run_settings(config, str(path), imported)
    problems.extend(setting_problems)
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    sections = {"steady-state-hypothesis": hypothesis.get("probes") if isinstance(hypothesis, dict) else None,
                "method": experiment.get("method"), "rollbacks": experiment.get("rollbacks")}
    activities = [(section, a) for section, items in sections.items() if isinstance(items, list)
                  for a in items if isinstance(a, dict)]
    for section, activity in activities:
        where = f"{path}: {section} activity {activity.get('name', '?')!r}"
        problems.extend(_check_activity(where, activity, config, replicas))
        problems.extend(_check_pauses(where, activity, config))
    analysis, found = planned_analysis(config, settings, str(path))
    problems.extend(found)
    problems.extend(fault_label_problems(experiment, settings, str(path)))
    if analysis is not None and not found:
        problems.extend(observation_problems(experiment, config, settings, str(path), analysis.stability_period_s))
    problems.extend(hog_lifetime_problems(experiment, config, str(path)))
    fault = settings.harness_fault or _fault_of(experiment) or path.stem
    return ExperimentPlan(path, path.stem, experiment, config, fault, settings), problems


def _fault_of(experiment: Mapping[str, Any]) -> str:
    for activity in experiment.get("method") or []:
        func = (activity.get("provider") or {}).get("func")
        if func in FAULT_ACTIONS:
            return str(func)
    return ""


def describe_plan(plans: Sequence[ExperimentPlan], replicas: Sequence[str], repeat: int) -> str:
    from chaoslib import substitute

    lines = []
    for plan in plans:
        lines.append(f"{plan.path} ({plan.fault}), {repeat} repetition(s): {plan.experiment.get('title', '')}")
        for activity in plan.experiment.get("method") or []:
            provider = activity.get("provider") or {}
            args = substitute(dict(provider.get("arguments") or {}), plan.configuration, None)
            targets = ""
            model = _action_model(str(provider.get("func"))) if provider.get("module") == "harness.chaos.actions" \
                else None
            if model is not None:
                picked = parse_args(model, args).select(replicas)
                targets = f" -> targets {picked}" + (" (random pick)" if args.get("seed") is None
                                                      and not args.get("names") else "")
            pause = (activity.get("pauses") or {}).get("after")
            pause_s = substitute({"p": pause}, plan.configuration, None)["p"] if pause is not None else None
            lines.append(f"    {activity.get('type')} {activity.get('name')}: {provider.get('func')}"
                         f"({', '.join(f'{k}={v}' for k, v in args.items())}){targets}"
                         + (f", then wait {pause_s}s" if pause_s is not None else ""))
        lines.append(f"    observation after the fault: {plan.settings.harness_observation_s:g}s under "
                     f"{plan.settings.harness_profile}")
    lines.append("dry run: nothing was injected")
    return "\n".join(lines)


def wait_all_ready(platform: Platform, timeout_s: float, interval_s: float = 0.5) -> None:
    """Until every replica is ready (before each repetition, and between a benchmark's faults)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if platform.status().all_ready:
            return
        time.sleep(interval_s)
    raise PlatformError(f"replicas were not all ready within {timeout_s:g}s before the next repetition")




class RunSession:
    """One run directory (``reports/<run_id>``) in which repetitions of experiments run one by one.

    ``harness run`` and ``harness suite`` drive one session through their plans; a game day drives one
    through its runbook, step by step. Closing the session undoes every fault still recorded for it.
    ``platform_args``: the configuration entries that take the activities to the same platform and say where
    the load runs (``platform_args_for_chaos``, that is ``PlatformRef.to_configuration()``, and ``placement``).
    """

    def __init__(self, platform: Platform, options: RunOptions, platform_args: Mapping[str, Any], slug: str,
                 kind: str, experiments: Sequence[str], extra: Mapping[str, Any] | None = None) -> None:
        self.platform = platform
        self.options = options
        self.platform_args = dict(platform_args)
        self.run_id = new_run_id(slug)
        self.run_dir = options.reports_dir / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.current_rep_dir: Path | None = None
        status = platform.status()
        self.meta: dict[str, Any] = {
            "schema": 1, "run_id": self.run_id, "kind": kind,
            "started_ns": time.time_ns(), "finished_ns": None, "status": "running",
            "command": list(options.command), "platform": platform.name,
            "settings": {**status.details, "endpoints": status.to_json()["endpoints"]},
            "experiments": list(experiments), "repeat": options.repeat, **(extra or {}),
        }
        write_json_atomic(self.run_dir / "run.json", self.meta)
        self.outcome = RunOutcome(self.run_dir)

    def run_repetition(self, plan: ExperimentPlan, rep: int, variables: Mapping[str, Any] | None = None,
                       name: str | None = None) -> dict[str, Any]:
        """Run one repetition; raises KeyboardInterrupt when it was interrupted (SIGINT/SIGTERM)."""
        from chaoslib.experiment import run_experiment

        name = name or plan.name
        start = self._steady_start(f"{name} repetition {rep}")
        rep_dir = self.run_dir / "experiments" / name / str(rep)
        rep_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(rep_dir / "start.json", start)
        self.current_rep_dir = rep_dir
        config = {
            **plan.configuration,
            **(variables or {}),
            **self.platform_args,  # PlatformRef.to_configuration() and where the load runs
            "harness_run_id": self.run_id,
            "harness_run_dir": str(rep_dir),
            "harness_experiment_name": name,
            "harness_experiment_file": str(plan.path),
            "harness_fault": plan.fault,
        }
        settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
        print(f"== {name} repetition {rep}/{self.options.repeat}: {plan.experiment.get('title', '')}", flush=True)
        # Chaos Toolkit's experiment_vars only override keys the experiment declares, so the run's
        # values go into the experiment's configuration itself.
        try:
            journal = run_experiment({**plan.experiment, "configuration": config}, settings=settings)
        finally:
            interrupts.disarm()
        info_path = rep_dir / "experiment.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        error = rep_dir / "control.error"
        interrupted = journal.get("status") == "interrupted" or info.get("status") == "interrupted"
        # The control never started the load: it refused (Chaos Toolkit records that as an interrupted run, but it
        # is an error to report, not a Ctrl-C), or it did not run at all.
        if "load_start_ns" not in info and (error.exists() or not interrupted):
            why = error.read_text() if error.exists() else (
                "it did not run: Chaos Toolkit skips a control that fails to load, logging it only at DEBUG")
            raise HarnessError(f"the harness control failed for {plan.path}: {why}; the run is void "
                               f"(nothing stays injected). Files: {rep_dir}")
        if interrupted:
            self.outcome.repetitions.append({"experiment": name, "rep": rep, "dir": rep_dir, "status": "interrupted",
                                             "deviated": False, "void": info.get("void")})
            raise KeyboardInterrupt("the experiment was interrupted")
        result = {"experiment": name, "rep": rep, "dir": rep_dir,
                  "status": info.get("status", journal.get("status")), "deviated": bool(journal.get("deviated")),
                  "void": info.get("void")}
        self.outcome.repetitions.append(result)
        if result["void"]:
            print(f"   VOID: {result['void']}", flush=True)
        return result

    def _steady_start(self, what: str) -> dict[str, Any]:
        """Bring the service to a steady state before a repetition and say what it was: every replica ready,
        and (where the platform can, locally) the CrashLoopBackOff history of earlier faults dropped, so one
        repetition's crash loop does not decide the next one's recovery. Where it cannot (Kubernetes keeps a
        pod's back-off), the restart counts at the start are recorded instead."""
        before = self.platform.reset_backoff(f"steady state before {what}")
        wait_all_ready(self.platform, self.options.ready_timeout_s)
        replicas = {r.name: {"restarts": r.restarts, "state": r.state, "ready": r.ready}
                    for r in self.platform.status().replicas}
        if before:
            looping = [f"{n} ({b['state']}, restarts {b['restarts']})" for n, b in before.items()
                       if not b.get("ready") or b.get("state") not in ("running", "")]
            if looping:
                print(f"   steady state: {', '.join(looping)} not ready before {what}; back-off history "
                      "dropped, all ready now", flush=True)
        return {"backoff_reset": before is not None, "before": before or {}, "replicas": replicas}

    def close(self, interrupted: bool) -> RunOutcome:
        self.outcome.interrupted = self.outcome.interrupted or interrupted
        try:
            store = self.platform.fault_store()
            store.undo_many(list(store.records(self.run_id)))
        finally:
            self.meta.update(finished_ns=time.time_ns(),
                             status="interrupted" if self.outcome.interrupted else "completed")
            write_json_atomic(self.run_dir / "run.json", self.meta)
        return self.outcome


def run_experiments(platform: Platform, plans: Sequence[ExperimentPlan], options: RunOptions,
                    platform_args: Mapping[str, Any], slug: str | None = None,
                    variables: Mapping[str, Mapping[str, Any]] | None = None) -> RunOutcome:
    """Run every plan ``options.repeat`` times in one session; SIGTERM interrupts like SIGINT."""
    session = RunSession(platform, options, platform_args,
                         slug or (plans[0].name if len(plans) == 1 else "suite"),
                         "run" if len(plans) == 1 else "suite", [p.name for p in plans])
    previous = interrupts.install()
    interrupted = False
    try:
        for plan in plans:
            for rep in range(1, options.repeat + 1):
                session.run_repetition(plan, rep, (variables or {}).get(plan.name))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        interrupts.restore(previous)
        session.close(interrupted)
    return session.outcome
