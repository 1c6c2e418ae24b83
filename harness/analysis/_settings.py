"""Analysis settings and SLA tiers, parsed once from YAML into frozen dataclasses.

The defaults live in ``harness/reference/tiers.yaml`` (DESIGN.md's tiers); a user file overrides any
part of them. Everything deeper than this module sees only validated dataclasses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import ConfigError

__all__ = [
    "DEFAULT_TIERS_FILE",
    "AnalysisSettings",
    "Evidence",
    "Gate",
    "Objective",
    "Settings",
    "Tier",
    "check_analysis",
    "load_settings",
    "parse_evidence",
]

DEFAULT_TIERS_FILE = Path(__file__).resolve().parent.parent / "reference" / "tiers.yaml"
_MONTH_S = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Objective:
    """The steady-state objective a window must meet to be good."""

    success_ratio: float = 0.99
    p99_latency_s: float = 1.0


@dataclass(frozen=True)
class AnalysisSettings:
    window_s: float = 1.0
    stability_period_s: float = 10.0
    objective: Objective = field(default_factory=Objective)

    @property
    def window_ns(self) -> int:
        return round(self.window_s * 1e9)

    @property
    def stability_ns(self) -> int:
        return round(self.stability_period_s * 1e9)


Gate = Literal["supported", "indicative"]


@dataclass(frozen=True)
class Evidence:
    """How strong a tier verdict's evidence must be, and what a required tier must reach to pass.

    ``quantile``: the TTR quantile a tier's maximum is about (0.90: nine incidents in ten recover within
    it). ``confidence``: the distribution-free confidence a verdict needs to be *supported* (0.90 on p90
    needs 22 repetitions all within). ``gate``: a required tier passes on ``supported`` only, or also on
    ``indicative`` (every repetition within, too few of them), which suits a nightly of three repetitions.
    """

    quantile: float = 0.9
    confidence: float = 0.9
    gate: Gate = "indicative"


@dataclass(frozen=True)
class Tier:
    name: str
    availability: float
    max_time_to_recover_s: float
    budget_per_30d_s: float


@dataclass(frozen=True)
class Settings:
    analysis: AnalysisSettings
    tiers: tuple[Tier, ...]
    incidents_per_month: Mapping[str, float]
    sources: tuple[str, ...] = ()
    evidence: Evidence = field(default_factory=Evidence)

    def incidents_for(self, fault: str) -> float:
        return float(self.incidents_per_month.get(fault, self.incidents_per_month.get("default", 1.0)))

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        known = ", ".join(t.name for t in self.tiers)
        raise ConfigError(f"unknown SLA tier {name!r}; known tiers: {known} (see the tiers settings file)")

    def with_analysis(self, **changes: Any) -> Settings:
        """A copy with some analysis values replaced (command-line overrides), validated again."""
        objective = self.analysis.objective
        obj_changes = {k: changes.pop(k) for k in ("success_ratio", "p99_latency_s") if k in changes}
        if obj_changes:
            objective = replace(objective, **obj_changes)
        analysis = replace(self.analysis, objective=objective, **changes)
        check_analysis(analysis, "command line")
        return replace(self, analysis=analysis)

    def with_evidence(self, raw: Mapping[str, Any], where: str = "evidence override") -> Settings:
        """A copy with some evidence values ({quantile, confidence, gate}, a suite file's) replaced."""
        evidence, problems = parse_evidence(dict(raw), where, self.evidence)
        if problems:
            raise ConfigError("invalid evidence settings:\n  - " + "\n  - ".join(problems))
        return replace(self, evidence=evidence)

    def to_json(self) -> dict[str, Any]:
        a = self.analysis
        return {
            "window_s": a.window_s,
            "stability_period_s": a.stability_period_s,
            "objective": {"success_ratio": a.objective.success_ratio,
                          "p99_latency_s": a.objective.p99_latency_s},
            "tiers": [
                {"name": t.name, "availability": t.availability,
                 "max_time_to_recover_s": t.max_time_to_recover_s, "budget_per_30d_s": t.budget_per_30d_s}
                for t in self.tiers
            ],
            "incidents_per_month": dict(self.incidents_per_month),
            "evidence": {"quantile": self.evidence.quantile, "confidence": self.evidence.confidence,
                         "gate": self.evidence.gate},
            "sources": list(self.sources),
        }


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the tiers settings file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"tiers settings file {path} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"tiers settings file {path} must be a mapping with analysis, tiers, "
                          "incidents_per_month")
    return raw


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key == "tiers" and isinstance(value, list) and isinstance(out.get("tiers"), list):
            by_name = {str(t.get("name")): t for t in out["tiers"] if isinstance(t, dict)}
            for tier in value:
                if isinstance(tier, dict):
                    name = str(tier.get("name"))
                    by_name[name] = {**by_name.get(name, {}), **tier}
            out["tiers"] = list(by_name.values())
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _number(
    raw: Mapping[str, Any], key: str, where: str, problems: list[str], default: float | None = None
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{where}.{key} must be a number, got {value!r}")
        return float("nan")
    return float(value)


def _analysis_problems(a: AnalysisSettings) -> list[str]:
    problems = []
    if not a.window_s > 0:
        problems.append(f"window_s must be positive, got {a.window_s}")
    if not a.stability_period_s >= 0:
        problems.append(f"stability_period_s must be zero or more, got {a.stability_period_s}")
    if not 0 < a.objective.success_ratio <= 1:
        problems.append(f"objective success_ratio must be within (0, 1], got {a.objective.success_ratio}")
    if not a.objective.p99_latency_s > 0:
        problems.append(f"objective p99_latency_s must be positive, got {a.objective.p99_latency_s}")
    return problems


def _evidence_problems(e: Evidence) -> list[str]:
    problems = []
    if not 0 < e.quantile < 1:
        problems.append(f"evidence.quantile must be within (0, 1), got {e.quantile}")
    if not 0 < e.confidence < 1:
        problems.append(f"evidence.confidence must be within (0, 1), got {e.confidence}")
    if e.gate not in ("supported", "indicative"):
        problems.append(f"evidence.gate must be supported or indicative, got {e.gate!r}")
    return problems


def parse_evidence(raw: Any, where: str, base: Evidence | None = None) -> tuple[Evidence, list[str]]:
    """An ``evidence`` mapping ({quantile, confidence, gate}) over ``base``; the problems found."""
    base = base or Evidence()
    if raw is None:
        return base, []
    if not isinstance(raw, dict):
        return base, [f"{where}: evidence must be a mapping {{quantile, confidence, gate}}"]
    problems = []
    unknown = sorted(set(raw) - {"quantile", "confidence", "gate"})
    if unknown:
        problems.append(f"{where}: unknown evidence keys {unknown} (expected quantile, confidence, gate)")
    values: dict[str, Any] = {}
    for key in ("quantile", "confidence"):
        if key in raw:
            values[key] = _number(raw, key, "evidence", problems)
    if "gate" in raw:
        values["gate"] = str(raw["gate"])
    evidence = replace(base, **values)
    problems += [f"{where}: {p}" for p in _evidence_problems(evidence)]
    return evidence, problems


def check_analysis(a: AnalysisSettings, where: str) -> None:
    problems = _analysis_problems(a)
    if problems:
        raise ConfigError(f"invalid analysis settings ({where}):\n  - " + "\n  - ".join(problems))


def _parse(raw: dict[str, Any], sources: tuple[str, ...]) -> Settings:
    where = " + ".join(sources)
    problems: list[str] = []
    unknown = set(raw) - {"schema", "analysis", "tiers", "incidents_per_month", "evidence"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)} "
                        "(expected analysis, tiers, incidents_per_month, evidence)")
    evidence, evidence_problems = parse_evidence(raw.get("evidence"), where)
    problems += evidence_problems
    a_raw = raw.get("analysis") or {}
    o_raw = a_raw.get("objective") or {} if isinstance(a_raw, dict) else {}
    if not isinstance(a_raw, dict) or not isinstance(o_raw, dict):
        raise ConfigError(f"{where}: 'analysis' and 'analysis.objective' must be mappings")
    objective = Objective(
        success_ratio=_number(o_raw, "success_ratio", "analysis.objective", problems, 0.99),
        p99_latency_s=_number(o_raw, "p99_latency_s", "analysis.objective", problems, 1.0),
    )
    analysis = AnalysisSettings(
        window_s=_number(a_raw, "window_s", "analysis", problems, 1.0),
        stability_period_s=_number(a_raw, "stability_period_s", "analysis", problems, 10.0),
        objective=objective,
    )
    tiers: list[Tier] = []
    t_raw = raw.get("tiers") or []
    if not isinstance(t_raw, list) or not t_raw:
        problems.append("tiers must be a non-empty list of {name, availability, max_time_to_recover_s}")
        t_raw = []
    for i, t in enumerate(t_raw):
        if not isinstance(t, dict) or not t.get("name"):
            problems.append(f"tiers[{i}] must be a mapping with a name")
            continue
        name = str(t["name"])
        avail = _number(t, "availability", f"tiers[{name}]", problems)
        max_ttr = _number(t, "max_time_to_recover_s", f"tiers[{name}]", problems)
        budget_default = (1.0 - avail) * _MONTH_S if avail == avail else None
        budget = _number(t, "budget_per_30d_s", f"tiers[{name}]", problems, budget_default)
        if avail == avail and not 0 < avail < 1:
            problems.append(f"tiers[{name}].availability must be within (0, 1), got {avail}")
        if max_ttr == max_ttr and max_ttr < 0:
            problems.append(f"tiers[{name}].max_time_to_recover_s must be zero or more")
        tiers.append(Tier(name, avail, max_ttr, budget))
    i_raw = raw.get("incidents_per_month") or {}
    incidents: dict[str, float] = {}
    if not isinstance(i_raw, dict):
        problems.append("incidents_per_month must be a mapping fault -> number")
    else:
        for fault, value in i_raw.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                problems.append(f"incidents_per_month.{fault} must be a number >= 0, got {value!r}")
            else:
                incidents[str(fault)] = float(value)
    problems += _analysis_problems(analysis)
    if problems:
        raise ConfigError(f"invalid tiers settings ({where}):\n  - " + "\n  - ".join(problems)
                          + "\n  (see harness/reference/tiers.yaml for the expected shape)")
    return Settings(analysis, tuple(tiers), incidents, sources, evidence)


def load_settings(override: Path | None = None) -> Settings:
    """The defaults, overridden by ``override`` or else by ``$HARNESS_TIERS`` when set."""
    raw = _read_yaml(DEFAULT_TIERS_FILE)
    sources = [str(DEFAULT_TIERS_FILE)]
    if override is None and os.environ.get("HARNESS_TIERS"):
        override = Path(os.environ["HARNESS_TIERS"])
    if override is not None:
        raw = _merge(raw, _read_yaml(override))
        sources.append(str(override))
    return _parse(raw, tuple(sources))
