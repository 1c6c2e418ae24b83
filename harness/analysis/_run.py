"""A whole run directory (reports/<run_id>/) analysed: every experiment, every repetition, the tiers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.analysis._aggregate import FigureStats, TierVerdict, figure_stats, judge_tiers
from harness.analysis._budget import ErrorBudget, error_budget
from harness.analysis._readiness import readiness_notes
from harness.analysis._repetition import RepetitionResult, analyse_repetition, read_experiment
from harness.analysis._server import compare_with_client, find_prometheus_url, server_figures
from harness.analysis._settings import AnalysisSettings, Evidence, Gate, Settings, check_analysis
from harness.errors import ConfigError
from harness.service import service_scope

__all__ = ["ExperimentAnalysis", "RunAnalysis", "analyse_run", "read_run_json"]


@dataclass
class ExperimentAnalysis:
    name: str
    title: str
    fault: str
    reps: list[RepetitionResult]
    stats: dict[str, FigureStats]
    tiers: dict[str, TierVerdict]
    required_tier: str | None
    incidents_per_month: float
    analysis: AnalysisSettings
    notes: list[str] = field(default_factory=list)

    evidence: Evidence = field(default_factory=Evidence)
    # Each tier's error budget against this fault's incidents (None: no repetition injected a fault).
    error_budget: ErrorBudget | None = None

    @property
    def gate(self) -> Gate:
        return self.evidence.gate

    @property
    def required_failed(self) -> bool:
        """The required tier's verdict does not pass the gate (supported, or also indicative)."""
        return self.required_tier is not None and not self.tiers[self.required_tier].passes(self.gate)

    @property
    def failed_repetitions(self) -> list[str]:
        """Repetitions that did not complete, or whose steady-state hypothesis deviated after the fault
        (void ones are listed by ``void_repetitions`` instead)."""
        return [f"{r.repetition}: {r.info.status}" + (", deviated" if r.info.deviated else "")
                for r in self.reps if r.void is None and (not r.complete or r.info.deviated)]

    @property
    def void_repetitions(self) -> list[str]:
        """``"<experiment> #<rep>: <reason>"`` for each void repetition (its fault did not land)."""
        return [f"{self.name} #{r.repetition}: {r.void}" for r in self.reps if r.void is not None]


@dataclass
class RunAnalysis:
    run_dir: Path
    run: dict[str, Any]
    run_id: str
    status: str
    experiments: list[ExperimentAnalysis]
    settings: Settings
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """A run passes only when it completed, no repetition is void, every repetition completed without
        its hypothesis deviating, and every required tier passes the evidence gate."""
        return self.status == "completed" and not any(
            e.required_failed or e.failed_repetitions or e.void_repetitions for e in self.experiments)

    @property
    def void_repetitions(self) -> list[str]:
        """``"<experiment> #<rep>: <reason>"`` for every void repetition of the run."""
        return [v for e in self.experiments for v in e.void_repetitions]


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.exists():
        if not (run_dir / "experiments").is_dir():
            raise ConfigError(f"{run_dir} is not a run directory: it has neither run.json nor experiments/ "
                              "(give reports/<run_id>)")
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return raw


def _experiment_settings(
    base: AnalysisSettings, configuration: dict[str, Any], where: Path
) -> AnalysisSettings:
    """The experiment's own steady-state objective (``max_error_ratio``, ``max_p99_ms``, as the shipped
    experiments state it) replaces the default objective, so windows are judged like the hypothesis;
    ``configuration.analysis`` may then override window, stability and objective explicitly."""
    try:
        objective = base.objective
        if configuration.get("max_error_ratio") is not None:
            objective = replace(objective, success_ratio=1.0 - float(configuration["max_error_ratio"]))
        if configuration.get("max_p99_ms") is not None:
            objective = replace(objective, p99_latency_s=float(configuration["max_p99_ms"]) / 1000.0)
        raw = configuration.get("analysis")
        changes: dict[str, float] = {}
        if raw is not None and not isinstance(raw, dict):
            raise TypeError(f"analysis must be a mapping, got {raw!r}")
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - {"window_s", "stability_period_s", "objective"}) + sorted(
                f"objective.{k}" for k in set(raw.get("objective") or {}) - {"success_ratio", "p99_latency_s"})
            if unknown:  # a typo (stabilty_s) would otherwise be ignored and the default used
                raise ValueError(f"unknown keys {unknown}")
            obj_raw = raw.get("objective") or {}
            objective = replace(objective, **{k: float(v) for k, v in obj_raw.items()
                                              if k in ("success_ratio", "p99_latency_s")})
            changes = {k: float(raw[k]) for k in ("window_s", "stability_period_s") if k in raw}
        return replace(base, objective=objective, **changes)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: the experiment's objective or configuration.analysis is invalid ({exc}); "
                          "expected max_error_ratio, max_p99_ms, analysis.window_s, analysis.stability_period_s "
                          "and analysis.objective {success_ratio, p99_latency_s}") from exc


def _figures(reps: list[RepetitionResult]) -> dict[str, FigureStats]:
    """Each figure over the (non-void) repetitions; a censored value counts as "more than" its bound."""
    ttr = [r.ttr_value() for r in reps]
    return {
        "time_to_impact_s": figure_stats([r.time_to_impact_s for r in reps]),
        "time_to_recover_s": figure_stats([None if t is None else t[0] for t in ttr],
                                          [t is not None and t[1] for t in ttr]),
        # Bad time of a repetition that did not recover is a lower bound: the outage went on.
        "bad_time_s": figure_stats([r.bad_time_s if r.t0_ns is not None else None for r in reps],
                                   [r.state in ("censored", "inconclusive") for r in reps]),
        "capacity_recovery_s": figure_stats(
            [None if r.capacity is None else (r.capacity.seconds if r.capacity.recovered
                                              else r.capacity.lower_bound_s) for r in reps],
            [r.capacity is not None and not r.capacity.recovered for r in reps]),
        "availability_time": figure_stats([r.availability_time for r in reps]),
        "availability_requests": figure_stats([r.availability_requests for r in reps]),
    }


def _rep_dirs(exp_dir: Path) -> list[Path]:
    reps = [p for p in exp_dir.iterdir() if p.is_dir() and (p / "experiment.json").exists()]
    return sorted(reps, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def analyse_run(
    run_dir: Path,
    settings: Settings,
    *,
    required_tier: str | None = None,
    prometheus_url: str | None = None,
    query_server: bool = True,
    overrides: dict[str, float] | None = None,
) -> RunAnalysis:
    """Analyse every experiment of ``run_dir``; ``overrides`` (window_s, stability_period_s from the
    command line) win over the settings file and the experiment's own values."""
    run = read_run_json(run_dir)
    notes: list[str] = []
    if required_tier is not None:
        settings.tier(required_tier)  # unknown names fail before any work
    exp_root = run_dir / "experiments"
    names = [str(n) for n in run.get("experiments") or []]
    if exp_root.is_dir():
        names += sorted(p.name for p in exp_root.iterdir() if p.is_dir() and p.name not in names)
    url = prometheus_url or find_prometheus_url(run)
    experiments: list[ExperimentAnalysis] = []
    for name in names:
        exp_dir = exp_root / name
        reps_dirs = _rep_dirs(exp_dir) if exp_dir.is_dir() else []
        if not reps_dirs:
            notes.append(f"experiment {name} has no repetition directory (it never ran)")
            continue
        first = read_experiment(reps_dirs[0])
        analysis = _experiment_settings(settings.analysis, first.configuration, first.path)
        if overrides:
            analysis = replace(analysis, window_s=overrides.get("window_s", analysis.window_s),
                               stability_period_s=overrides.get("stability_period_s",
                                                                analysis.stability_period_s))
        check_analysis(analysis, str(first.path))
        reps = [analyse_repetition(d, analysis) for d in reps_dirs]
        for r in reps:
            if query_server and r.void is None:
                rep_url = url
                scope = None
                for record in ("experiment.json", "settings.json"):  # the repetition's own record
                    if (r.directory / record).exists():
                        try:
                            doc = json.loads((r.directory / record).read_text())
                            rep_url = rep_url or find_prometheus_url(doc)
                            scope = scope or doc.get("metrics_scope") or service_scope(doc)
                        except (ValueError, AttributeError):
                            pass
                scope = scope or service_scope(run)
                server, problem = server_figures(r.directory, rep_url, r.span[0], r.span[1], scope=scope)
                r.server = server
                if problem:
                    r.notes.append(problem)
                if server:
                    r.notes.extend(compare_with_client(server, r.requests_total - r.requests_failed,
                                                       r.requests_failed))
        required = required_tier or first.required_tier
        if required is not None:
            settings.tier(required)
        exp_notes: list[str] = []
        if first.analogue:
            exp_notes.append(f"the fault used an analogue: {first.analogue}")
        if first.time_scale != 1:
            exp_notes.append(f"probe periods and back-off were scaled by {first.time_scale:g}")
        if first.retries:
            exp_notes.append("the front retried failed requests (like a mesh); a plain Service does not")
        if first.configuration.get("harness_connections") == "per-request":  # the client kind changes the figures
            exp_notes.append("the load opened a new connection for every request (harness_connections: "
                             "per-request); a pooled client (kept, the default) can see a partial fault differently")
        voids = sum(1 for r in reps if r.void is not None)
        if voids:
            exp_notes.append(f"{voids} of {len(reps)} repetition(s) void (the fault did not land): left out of "
                             "every figure and verdict")
        stats = _figures([r for r in reps if r.void is None])
        exp_notes.extend(readiness_notes([(r.repetition, r.readiness) for r in reps if r.void is None]))
        experiments.append(ExperimentAnalysis(
            name=name, title=first.title, fault=first.fault, reps=reps, stats=stats,
            tiers=judge_tiers(first.fault, reps, settings, required), required_tier=required,
            incidents_per_month=settings.incidents_for(first.fault), analysis=analysis, notes=exp_notes,
            evidence=settings.evidence,
            error_budget=error_budget([r.incident for r in reps if r.void is None and r.incident is not None],
                                      settings.tiers, settings.incidents_for(first.fault)),
        ))
    status = str(run.get("status") or "unknown")
    if status != "completed":
        notes.append(f"the run's status is {status!r}: it is recorded as such, never as a pass")
    scale = (run.get("settings") or {}).get("time_scale") if isinstance(run.get("settings"), dict) else None
    if isinstance(scale, int | float) and scale != 1:
        notes.append(f"probe periods and back-off were scaled by {scale:g}")
    return RunAnalysis(run_dir=run_dir, run=run, run_id=str(run.get("run_id") or run_dir.name), status=status,
                       experiments=experiments, settings=settings, notes=notes)

