"""Figures over repetitions (p50, p95, max with bootstrap intervals) and SLA tier verdicts.

Percentiles over repetitions use the nearest-rank definition (the k-th smallest, k = ceil(q/100 * n)),
so every reported value is one that a repetition really produced. A censored value (TTR not recovered)
counts as larger than every measured one: a statistic that lands on a censored repetition is itself
censored and is reported as "more than" the matching order statistic of the lower bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harness.analysis._repetition import RepetitionResult
from harness.analysis._settings import Settings, Tier

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "FigureStats",
    "TierVerdict",
    "figure_stats",
    "format_duration",
    "judge_tiers",
    "nearest_rank",
]

BOOTSTRAP_SEED = 20261128  # fixed: the same inputs always give the same intervals
BOOTSTRAP_RESAMPLES = 2000


def nearest_rank(n: int, q: float) -> int:
    """1-based rank of the q-th percentile among n values."""
    return max(1, math.ceil(q / 100.0 * n - 1e-9))


@dataclass(frozen=True)
class FigureStats:
    n: int
    p50: float | None
    p95: float | None
    max: float | None
    p50_censored: bool
    p95_censored: bool
    max_censored: bool
    p50_ci95: tuple[float, float] | None
    p95_ci95: tuple[float, float] | None

    def to_json(self) -> dict[str, object]:
        return {
            "n": self.n, "p50": self.p50, "p95": self.p95, "max": self.max,
            "p50_censored": self.p50_censored, "p95_censored": self.p95_censored,
            "max_censored": self.max_censored,
            "p50_ci95": list(self.p50_ci95) if self.p50_ci95 else None,
            "p95_ci95": list(self.p95_ci95) if self.p95_ci95 else None,
        }

    def show(self, which: str = "p95", unit: str = "s") -> str:
        value = getattr(self, which)
        if value is None:
            return "n/a"
        text = format_duration(value) if unit == "s" else f"{value:.5f}"
        return f"> {text}" if getattr(self, f"{which}_censored") else text


def _bootstrap(values: npt.NDArray[np.float64], q: float, rng: np.random.Generator) -> tuple[float, float]:
    n = len(values)
    idx = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    samples = np.sort(values[idx], axis=1)
    stat = samples[:, nearest_rank(n, q) - 1]
    lo, hi = np.percentile(stat, [2.5, 97.5])
    return float(lo), float(hi)


def figure_stats(values: Sequence[float | None], censored: Sequence[bool] | None = None) -> FigureStats:
    """p50/p95/max with 95 % bootstrap intervals; None values (figure not applicable) are left out."""
    flags = list(censored) if censored is not None else [False] * len(values)
    pairs = [(float(v), c) for v, c in zip(values, flags, strict=True) if v is not None]
    n = len(pairs)
    if n == 0:
        return FigureStats(0, None, None, None, False, False, False, None, None)
    lower = np.array(sorted(v for v, _ in pairs))
    measured = sum(1 for _, c in pairs if not c)

    def stat(q: float) -> tuple[float, bool]:
        k = nearest_rank(n, q)
        return float(lower[k - 1]), k > measured

    p50, c50 = stat(50)
    p95, c95 = stat(95)
    mx, cmax = stat(100)
    ci50 = ci95 = None
    if measured == n:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        arr = np.array([v for v, _ in pairs])
        ci50 = _bootstrap(arr, 50, rng)
        ci95 = _bootstrap(arr, 95, rng)
    return FigureStats(n, p50, p95, mx, c50, c95, cmax, ci50, ci95)


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


@dataclass(frozen=True)
class TierVerdict:
    tier: Tier
    supported: bool
    why: str
    required: bool = False
    projected_bad_s_per_month: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"supported": self.supported, "why": self.why, "required": self.required,
                "max_time_to_recover_s": self.tier.max_time_to_recover_s,
                "budget_per_30d_s": self.tier.budget_per_30d_s,
                "projected_bad_time_per_30d_s": self.projected_bad_s_per_month}


def judge_tiers(
    fault: str, reps: Sequence[RepetitionResult], settings: Settings, required: str | None
) -> dict[str, TierVerdict]:
    """Which tiers the experiment supports: TTR p95 within the tier's maximum, and the projected
    monthly bad time (bad time p95 per incident x assumed incidents per month) within its budget."""
    incidents = settings.incidents_for(fault)
    blockers: list[str] = []
    incomplete = [r.repetition for r in reps if not r.complete]
    if not reps:
        blockers.append("no repetitions to judge")
    if incomplete:
        blockers.append(f"repetition(s) {', '.join(incomplete)} did not complete "
                        f"({', '.join(sorted({r.info.status for r in reps if not r.complete}))})")
    no_fault = [r.repetition for r in reps if r.t0_ns is None]
    if no_fault:
        blockers.append(f"repetition(s) {', '.join(no_fault)} injected no fault")
    censored = [r for r in reps if r.t0_ns is not None and not r.recovered]
    ttr = figure_stats([r.time_to_recover_s if r.recovered else r.ttr_lower_bound_s for r in reps],
                       [not r.recovered for r in reps])
    bad = figure_stats([r.bad_time_s if r.t0_ns is not None else None for r in reps])
    projected = bad.p95 * incidents if bad.p95 is not None else None
    out: dict[str, TierVerdict] = {}
    for tier in settings.tiers:
        reasons = list(blockers)
        passes: list[str] = []
        if censored:
            lows = ", ".join(f"rep {r.repetition}: > {format_duration(r.ttr_lower_bound_s or 0.0)}"
                             for r in censored)
            reasons.append(f"TTR censored (not recovered within the observation; {lows}); "
                           "a censored TTR never supports a tier")
        elif ttr.p95 is not None:
            if ttr.p95 > tier.max_time_to_recover_s:
                reasons.append(f"TTR p95 {format_duration(ttr.p95)} exceeds the "
                               f"{format_duration(tier.max_time_to_recover_s)} maximum by "
                               f"{format_duration(ttr.p95 - tier.max_time_to_recover_s)}")
            else:
                passes.append(f"TTR p95 {format_duration(ttr.p95)} <= "
                              f"{format_duration(tier.max_time_to_recover_s)}")
        if projected is not None and bad.p95 is not None:
            calc = f"{incidents:g}/month x {format_duration(bad.p95)} bad time = {format_duration(projected)}"
            if projected > tier.budget_per_30d_s:
                reasons.append(f"projected bad time {calc} exceeds the "
                               f"{format_duration(tier.budget_per_30d_s)} monthly budget by "
                               f"{format_duration(projected - tier.budget_per_30d_s)}")
            else:
                passes.append(f"projected bad time {calc} fits the "
                              f"{format_duration(tier.budget_per_30d_s)} monthly budget")
        supported = not reasons
        why = "; ".join(passes) if supported else "; ".join(reasons)
        out[tier.name] = TierVerdict(tier, supported, why, required == tier.name, projected)
    return out
