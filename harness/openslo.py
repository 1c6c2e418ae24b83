"""A run's error budget as an OpenSLO v1 document: what ``harness slo export`` writes.

OpenSLO (https://github.com/OpenSLO/OpenSLO, ``apiVersion: openslo/v1``) is the vendor-neutral form SLO
tools read. The document states the service's SLOs, one per SLA tier of the run's settings, over the SLI
the harness measures (good requests / all requests), so a team can deploy the same objectives it tested;
what the chaos run measured against each of them (budget spent per incident, incidents that fit a month,
burn rate, TTR, verdict, the worst ready-to-serving gap) rides along as annotations, per experiment.

Built from ``results.json`` (schema 2.1 or later), never from the raw run: the export says exactly what the
report says. Names and annotations are shaped to the spec's rules (RFC 1123 names; annotation keys
``prefix/name`` of at most 63 characters; values of at most 63 characters from ``[A-Za-z0-9._-]``), so
figures are written as plain numbers and words joined by ``-``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import ConfigError

__all__ = ["ANNOTATION_PREFIX", "BudgetingMethod", "openslo_documents", "read_results", "render_yaml"]

ANNOTATION_PREFIX = "triton-resilience-harness.dev/"
BudgetingMethod = Literal["Occurrences", "Timeslices"]

_NAME_MAX = 63


def _dns_label(text: str, fallback: str = "triton") -> str:
    """An RFC 1123 label: lowercase alphanumerics and ``-``, at most 63, alphanumeric at both ends."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:_NAME_MAX].strip("-")
    return label or fallback


def _value(value: Any) -> str:
    """An annotation value: at most 63 characters of ``[A-Za-z0-9._-]``, starting alphanumeric."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:_NAME_MAX]
    return text or "none"


def _key(*parts: str) -> str:
    """``prefix/name`` with a name of at most 63 characters (a long experiment name is shortened)."""
    figure = parts[-1]
    head = ".".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-._") for p in parts[:-1])
    room = _NAME_MAX - len(figure) - (1 if head else 0)
    head = head[:room].rstrip("-._")
    return ANNOTATION_PREFIX + (f"{head}.{figure}" if head else figure)


def read_results(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """results.json (schema 2.1 or later) and run.json of a run directory; bad input is a ConfigError."""
    path = run_dir / "results.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} has no results.json; build the report first: harness report {run_dir}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); rebuild it with: harness report {run_dir}") from exc
    version = str(results.get("schema_version", "")) if isinstance(results, dict) else ""
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()) or (int(major), int(minor)) < (2, 1) or int(major) > 2:
        raise ConfigError(f"{path} has schema_version {version or '(none)'}; the export needs 2.x from 2.1 on "
                          f"(which carries the error budget): rebuild it with: harness report {run_dir}")
    run: dict[str, Any] = {}
    if (run_dir / "run.json").exists():
        try:
            loaded = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
            run = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            run = {}
    return results, run


def _service(run: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(name, description, models) of the service under test, from run.json's ``service`` record."""
    raw = run.get("service")
    service: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    name = str(service.get("service_name") or service.get("deployment") or "triton")
    server = service.get("server") if isinstance(service.get("server"), dict) else {}
    version = str((server or {}).get("version") or "")
    models = [str(m.get("name")) for m in service.get("models") or () if isinstance(m, dict) and m.get("name")]
    where = str(service.get("endpoint") or "")
    text = (f"Triton Inference Server{' ' + version if version else ''}"
            f"{' on the ' + str(service['platform']) + ' platform' if service.get('platform') else ''}"
            f"{' at ' + where if where else ''}{', serving ' + ', '.join(models) if models else ''}.")
    return name, text, models


def _metric(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _sli(service: str, models: list[str]) -> dict[str, Any]:
    selector = f'{{model=~"{"|".join(models)}"}}' if models else ""
    good = f"sum(nv_inference_request_success{selector})"
    total = f"sum(nv_inference_request_success{selector}) + sum(nv_inference_request_failure{selector})"
    return {
        "apiVersion": "openslo/v1", "kind": "SLI",
        "metadata": {"name": _dns_label(f"{service}-inference-success"),
                     "displayName": f"{service}: good inference requests / all requests"},
        "spec": {
            "description": (
                "Availability SLI: requests answered with every expected output, over all requests. The chaos "
                "run measured it client-side from the load generator's request timeline; in production the "
                "queries below read Triton's own counters, which can count as successes responses a client "
                "rejected (DESIGN.md), so a client-side or gateway metric is preferable where one exists."),
            "ratioMetric": {"counter": True, "good": _metric(good), "total": _metric(total)},
        },
    }


def _annotations(results: Mapping[str, Any], tier: str) -> dict[str, str]:
    out = {_key("run-id"): _value(results.get("run_id")), _key("run-status"): _value(results.get("run_status")),
           _key("schema-version"): _value(results.get("schema_version"))}
    for exp in results.get("experiments") or ():
        name = str(exp.get("name") or "experiment")
        budget = ((exp.get("error_budget") or {}).get("tiers") or {}).get(tier)
        verdict = (exp.get("tiers") or {}).get(tier) or {}
        ttr = (exp.get("summary") or {}).get("time_to_recover_s") or {}
        figures: dict[str, Any] = {"fault": exp.get("fault"), "verdict": verdict.get("outcome"),
                                   "ttr-p95-s": ttr.get("p95"), "ttr-p95-censored": ttr.get("p95_censored")}
        if budget:
            figures.update({
                "incidents": (exp.get("error_budget") or {}).get("incidents"),
                "bad-time-per-incident-s": budget.get("bad_time_per_incident_s"),
                "budget-spent-time": budget.get("spent_time"),
                "incidents-fit-time": budget.get("incidents_fit_time") if budget.get("spent_time") != 0
                else "unlimited",
                "bad-requests-per-incident": budget.get("bad_requests_per_incident"),
                "budget-spent-requests": budget.get("spent_requests"),
                "incidents-fit-requests": budget.get("incidents_fit_requests") if budget.get("spent_requests") != 0
                else "unlimited",
                "burn-rate-max": budget.get("burn_rate_max"),
                "assumed-incidents-month": budget.get("assumed_incidents_per_month"),
                "fits-assumed": budget.get("fits_assumed"),
                "lower-bound": budget.get("lower_bound"),
            })
        gaps = _readiness_gaps(exp)
        if gaps is not None:
            figures["ready-to-serving-max-s"] = gaps
        for figure, value in figures.items():
            out[_key(name, figure)] = _value(value)
    return out


def _readiness_gaps(exp: Mapping[str, Any]) -> float | str | None:
    """The longest ready-to-serving gap of an experiment; "unknown" where no repetition could measure it."""
    gaps: list[float] = []
    unknown = False
    for run in exp.get("runs") or ():
        readiness = run.get("readiness") or {}
        if readiness and not readiness.get("replica_known", True) and readiness.get("ready_after_fault"):
            unknown = True
        for r in readiness.get("replicas") or ():
            gap = r.get("gap_s") if r.get("gap_s") is not None else r.get("gap_lower_bound_s")
            if isinstance(gap, int | float):
                gaps.append(float(gap))
    if gaps:
        return max(gaps)
    return "unknown" if unknown else None


def _slo(results: Mapping[str, Any], tier: Mapping[str, Any], service: str, sli: str,
         method: BudgetingMethod) -> dict[str, Any]:
    settings = results.get("settings") or {}
    objective: dict[str, Any] = {"displayName": f"tier {tier['name']}", "target": float(tier["availability"])}
    window_s = float(settings.get("window_s") or 1.0)
    slice_target = float((settings.get("objective") or {}).get("success_ratio") or 0.99)
    if method == "Timeslices":
        # A slice is one analysis window; the spec reads a bare number as minutes.
        objective["timeSliceTarget"] = slice_target
        objective["timeSliceWindow"] = f"{int(window_s // 60)}m" if window_s % 60 == 0 else window_s / 60
    budget_s = float(tier.get("budget_per_30d_s") or 0)
    description = (
        f"Tier {tier['name']}: {float(tier['availability']) * 100:g}% of "
        + ("requests good" if method == "Occurrences" else
           f"{window_s:g} s windows good (success ratio >= {slice_target:g})")
        + f" over 30 days, a budget of {budget_s:g} s of bad time a month; time to recover at most "
          f"{float(tier.get('max_time_to_recover_s') or 0):g} s. Measured by triton-resilience-harness run "
          f"{results.get('run_id')}: annotations give, per experiment (fault), the budget one incident spends, "
          "the incidents that fit a month, the burn rate during an incident and the verdict.")
    return {
        "apiVersion": "openslo/v1", "kind": "SLO",
        "metadata": {"name": _dns_label(f"{service}-availability-{tier['name']}"),
                     "displayName": f"{service} availability, tier {tier['name']}",
                     "annotations": _annotations(results, str(tier["name"]))},
        "spec": {"description": description[:1050], "service": _dns_label(service), "indicatorRef": sli,
                 "timeWindow": [{"duration": "30d", "isRolling": True}], "budgetingMethod": method,
                 "objectives": [objective]},
    }


def openslo_documents(results: Mapping[str, Any], run: Mapping[str, Any],
                      method: BudgetingMethod = "Occurrences") -> list[dict[str, Any]]:
    """Service, SLI, and one SLO per tier of the run's settings, in that order."""
    name, description, models = _service(run)
    tiers = (results.get("settings") or {}).get("tiers") or []
    if not tiers:
        raise ConfigError("results.json lists no tiers (settings.tiers); rebuild it with harness report")
    service = {"apiVersion": "openslo/v1", "kind": "Service",
               "metadata": {"name": _dns_label(name), "displayName": f"{name} (Triton)",
                            "annotations": {_key("run-id"): _value(results.get("run_id"))}},
               "spec": {"description": description[:1050]}}
    sli = _sli(name, models)
    return [service, sli, *(_slo(results, t, name, sli["metadata"]["name"], method) for t in tiers)]


def render_yaml(documents: list[dict[str, Any]]) -> str:
    """The documents as one multi-document YAML stream, in the order given."""
    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True, width=120)
