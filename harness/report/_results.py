"""results.json: the machine-readable answer, with a versioned schema (docs/results-schema.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from harness import __version__
from harness.analysis import ExperimentAnalysis, RepetitionResult, RunAnalysis, iso_utc

__all__ = ["SCHEMA_VERSION", "results_document"]

# Bump the major part on any change a consumer could trip over (renamed/removed field, changed unit).
# 2.0: tier outcomes with evidence, mean-based budget, void repetitions; 2.1: readiness, incident, error_budget
SCHEMA_VERSION = "2.1"


def _rnd(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


_FIGURES = ("time_to_impact_s", "time_to_recover_s", "time_to_recover_lower_bound_s", "bad_time_s",
            "capacity_recovery_s", "capacity_recovered", "capacity_recovery_lower_bound_s", "requests_total",
            "requests_failed", "availability_time", "availability_requests", "observed_s",
            "observation_after_fault_s", "observation_after_fault_end_s")


def _void_entry(r: RepetitionResult) -> dict[str, Any]:
    """A void repetition yields no figures: only what it is, why it is void and the landing checks."""
    return {
        "repetition": r.repetition, "status": r.info.status, "deviated": r.info.deviated,
        "void": r.void, "landings": list(r.info.landings), "ttr_state": "void",
        "fault_start": iso_utc(r.info.fault_start_ns), "fault_end": iso_utc(r.info.fault_end_ns),
        "observation_end": iso_utc(r.info.observation_end_ns),
        **{key: None for key in _FIGURES}, "recovered": None, "time_to_recover_display": "void",
        "errors_by_class": {}, "errors_after_fault_by_class": {}, "latency_s": {}, "server": None,
        "readiness": None, "incident": None, "notes": r.notes,
    }


def _run_entry(r: RepetitionResult) -> dict[str, Any]:
    if r.void is not None:
        return _void_entry(r)
    cap = r.capacity
    return {
        "repetition": r.repetition,
        "status": r.info.status,
        "deviated": r.info.deviated,
        "void": None,
        "landings": list(r.info.landings),
        "ttr_state": r.state,
        "fault_start": iso_utc(r.t0_ns),
        "fault_end": iso_utc(r.info.fault_end_ns),
        "observation_end": iso_utc(r.info.observation_end_ns),
        "time_to_impact_s": _rnd(r.time_to_impact_s),
        "time_to_recover_s": _rnd(r.time_to_recover_s) if r.recovered else None,
        "recovered": r.recovered,
        "time_to_recover_lower_bound_s": _rnd(r.ttr_lower_bound_s) if r.state == "censored" else None,
        "time_to_recover_display": r.ttr_display(),
        "bad_time_s": _rnd(r.bad_time_s),
        "capacity_recovery_s": _rnd(cap.seconds) if cap is not None else None,
        "capacity_recovered": cap.recovered if cap is not None else None,
        "capacity_recovery_lower_bound_s": _rnd(cap.lower_bound_s) if cap is not None else None,
        "requests_total": r.requests_total,
        "requests_failed": r.requests_failed,
        "availability_time": _rnd(r.availability_time, 8),
        "availability_requests": _rnd(r.availability_requests, 8),
        "observed_s": _rnd(r.observed_s),
        "observation_after_fault_s": _rnd(r.observation_after_fault_s),
        "observation_after_fault_end_s": _rnd(r.observation_after_fault_end_s),
        "errors_by_class": r.errors_by_class,
        "errors_after_fault_by_class": r.errors_after_fault_by_class,
        "latency_s": r.latency,
        "server": r.server,
        "readiness": None if r.readiness is None else r.readiness.to_json(iso_utc),
        "incident": None if r.incident is None else r.incident.to_json(iso_utc),
        "notes": r.notes,
    }


def _experiment_entry(e: ExperimentAnalysis) -> dict[str, Any]:
    first = e.reps[0].info
    return {
        "name": e.name,
        "title": e.title,
        "fault": e.fault,
        "file": str(first.configuration.get("file", "")) or None,
        "analogue": first.analogue or None,
        "time_scale": first.time_scale,
        "retries": first.retries,
        "required_tier": e.required_tier,
        "incidents_per_month": e.incidents_per_month,
        "analysis": {"window_s": e.analysis.window_s, "stability_period_s": e.analysis.stability_period_s,
                     "objective": {"success_ratio": e.analysis.objective.success_ratio,
                                   "p99_latency_s": e.analysis.objective.p99_latency_s}},
        "evidence": {"quantile": e.evidence.quantile, "confidence": e.evidence.confidence,
                     "gate": e.evidence.gate},
        "void_repetitions": e.void_repetitions,
        "runs": [_run_entry(r) for r in e.reps],
        "summary": {k: v.to_json() for k, v in e.stats.items()},
        "tiers": {name: v.to_json() for name, v in e.tiers.items()},
        "error_budget": None if e.error_budget is None else e.error_budget.to_json(),
        "notes": e.notes,
    }


def results_document(a: RunAnalysis) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": a.run_id,
        "run_status": a.status,
        "passed": a.passed,
        "void_repetitions": a.void_repetitions,
        "generated_at": datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "harness_version": __version__,
        "settings": a.settings.to_json(),
        "notes": a.notes,
        "experiments": [_experiment_entry(e) for e in a.experiments],
    }
