"""Figures over repetitions (percentiles that respect censoring) and SLA tier verdicts with their evidence.

Percentiles come from the Kaplan-Meier estimate (``scipy.stats.ecdf`` on ``scipy.stats.CensoredData``): a
censored repetition ("TTR > x") is treated as "more than x", never as x and never as the largest value. A
percentile is reported as measured only when no censored value lies below it, because only then does it not
depend on where a censored value really is; otherwise it is reported censored, as "> x" where x is the
same percentile with every censored value at its lower bound (a sure lower bound). Without censoring the
Kaplan-Meier percentile is the nearest-rank one (the ``ceil(q n)``-th smallest), a value a repetition
really produced.

A tier verdict states its evidence (DESIGN.md): the quantile q of TTR it is about, the number n of
repetitions, and a distribution-free confidence. If every one of n repetitions recovered within the bound,
the q-quantile is within it with confidence 1 - q^n; with k repetitions over the bound, the order-statistic
generalisation P(Binomial(n, q) <= n - k - 1). Outcomes: supported, indicative (all within, too few
repetitions), not supported, inconclusive (a censored or inconclusive repetition could fall either side)
and void (every repetition void: no evidence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from harness.analysis._repetition import RepetitionResult
from harness.analysis._settings import Evidence, Settings, Tier
from harness.ranks import nearest_rank

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "BudgetProjection",
    "FigureStats",
    "Outcome",
    "TierVerdict",
    "budget_projection",
    "confidence",
    "figure_stats",
    "format_duration",
    "judge_tiers",
    "km_quantile",
    "nearest_rank",
    "repetitions_needed",
]

BOOTSTRAP_SEED = 20261128  # fixed: the same inputs always give the same intervals
BOOTSTRAP_RESAMPLES = 2000
_EPS = 1e-9

Outcome = Literal["supported", "indicative", "not supported", "inconclusive", "void"]


def km_quantile(values: Sequence[float], censored: Sequence[bool], q: float) -> float | None:
    """The Kaplan-Meier q-quantile (q in [0, 1]): the smallest observed value where the estimated CDF
    reaches q; None when it never does (the quantile lies beyond the censored values)."""
    measured = [v for v, c in zip(values, censored, strict=True) if not c]
    right = [v for v, c in zip(values, censored, strict=True) if c]
    if not measured:
        return None
    cdf = stats.ecdf(stats.CensoredData(uncensored=measured, right=right)).cdf
    reached = np.flatnonzero(cdf.probabilities >= q - _EPS)
    return float(cdf.quantiles[reached[0]]) if len(reached) else None


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
    censored_n: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "n": self.n, "censored_n": self.censored_n, "p50": self.p50, "p95": self.p95, "max": self.max,
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


def censored_percentile(values: Sequence[float], censored: Sequence[bool], q: float) -> tuple[float, bool]:
    """The q-th percentile (q in (0, 100]) over repetitions: ``(value, censored)``.

    Measured when no censored value lies below the Kaplan-Meier estimate (the estimate then does not
    depend on any censored value); else censored, with the nearest-rank percentile of the values taken
    at their lower bounds, which the true percentile is at least."""
    km = km_quantile(values, censored, q / 100.0)
    if km is not None and not any(c and v < km for v, c in zip(values, censored, strict=True)):
        return km, False
    lower = sorted(values)
    return float(lower[nearest_rank(len(lower), q) - 1]), True


def figure_stats(values: Sequence[float | None], censored: Sequence[bool] | None = None) -> FigureStats:
    """p50/p95/max over repetitions, with 95 % bootstrap intervals when nothing is censored; None values
    (figure not applicable) are left out; a censored value is a lower bound."""
    flags = list(censored) if censored is not None else [False] * len(values)
    pairs = [(float(v), c) for v, c in zip(values, flags, strict=True) if v is not None]
    n = len(pairs)
    if n == 0:
        return FigureStats(0, None, None, None, False, False, False, None, None)
    vals = [v for v, _ in pairs]
    cens = [c for _, c in pairs]
    p50, c50 = censored_percentile(vals, cens, 50)
    p95, c95 = censored_percentile(vals, cens, 95)
    mx, cmax = censored_percentile(vals, cens, 100)
    ci50 = ci95 = None
    if not any(cens):
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        arr = np.array(vals)
        ci50 = _bootstrap(arr, 50, rng)
        ci95 = _bootstrap(arr, 95, rng)
    return FigureStats(n, p50, p95, mx, c50, c95, cmax, ci50, ci95, sum(cens))


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def confidence(n: int, exceeded: int, q: float) -> float:
    """Distribution-free confidence that the q-quantile is within a bound that ``exceeded`` of ``n``
    repetitions went over: 1 - q^n when none did, P(Binomial(n, q) <= n - exceeded - 1) in general."""
    if n <= exceeded:
        return 0.0
    return float(stats.binom.cdf(n - exceeded - 1, n, q))


def repetitions_needed(q: float, level: float) -> int:
    """Repetitions that must all be within a bound for 1 - q^n >= level (22 for 90 % on p90)."""
    return max(1, math.ceil(math.log(1.0 - level) / math.log(q) - _EPS))


@dataclass(frozen=True)
class BudgetProjection:
    """Monthly bad time: mean bad time per incident x incidents per month, with an upper bound.

    The upper bound is the one-sided Student-t upper confidence bound of the mean at the evidence's
    confidence level: the budget multiplies the *mean* bad time per incident, and the t bound is the
    standard bound on a mean, wide when repetitions are few or disagree (n = 2 at 90 %: t = 3.08). It
    needs two repetitions; with one it is None. ``lower_only``: some repetition did not recover within the
    observation, so its bad time (and the mean) is only a lower bound."""

    incidents: float
    n: int
    mean_s: float
    upper_s: float | None
    lower_only: bool

    @property
    def monthly_s(self) -> float:
        return self.mean_s * self.incidents

    @property
    def monthly_upper_s(self) -> float | None:
        return None if self.upper_s is None else self.upper_s * self.incidents

    def describe(self) -> str:
        upper = (f"upper bound {format_duration(self.monthly_upper_s)}" if self.monthly_upper_s is not None
                 else "no upper bound from one repetition")
        lower = "at least " if self.lower_only else ""
        return (f"projected bad time {lower}{self.incidents:g}/month x {format_duration(self.mean_s)} mean "
                f"per incident = {format_duration(self.monthly_s)} ({upper})")


def budget_projection(bad_times: Sequence[float], incidents: float, level: float,
                      lower_only: bool = False) -> BudgetProjection | None:
    n = len(bad_times)
    if n == 0:
        return None
    arr = np.asarray(bad_times, dtype=np.float64)
    mean = float(arr.mean())
    upper = None
    if n >= 2:
        sd = float(arr.std(ddof=1))
        upper = mean + float(stats.t.ppf(level, n - 1)) * sd / math.sqrt(n)
    return BudgetProjection(incidents, n, mean, upper, lower_only)


@dataclass(frozen=True)
class TierVerdict:
    tier: Tier
    outcome: Outcome
    why: str
    required: bool = False
    quantile: float = 0.9
    confidence_level: float = 0.9
    n: int = 0  # repetitions judged (void ones excluded)
    within: int = 0
    exceeded: int = 0
    undecided: int = 0
    confidence: float | None = None  # that the TTR quantile is within the tier's maximum
    more_repetitions_needed: int | None = None  # indicative: how many more, all within, would support it
    deciding_observation_s: float | None = None  # inconclusive: observation after t0 that would decide
    budget: BudgetProjection | None = None

    @property
    def supported(self) -> bool:
        return self.outcome == "supported"

    def passes(self, gate: Literal["supported", "indicative"]) -> bool:
        """Whether this verdict passes a gate that accepts ``supported`` (or also ``indicative``)."""
        return self.outcome == "supported" or (gate == "indicative" and self.outcome == "indicative")

    @property
    def mark(self) -> str:
        """Short cell text: the outcome, with n and confidence when there is evidence."""
        if self.outcome in ("void", "inconclusive") or self.confidence is None:
            return self.outcome
        return f"{self.outcome} ({self.n} reps, {self.confidence * 100:.0f}%)"

    def to_json(self) -> dict[str, object]:
        b = self.budget
        return {"outcome": self.outcome, "supported": self.supported, "why": self.why,
                "required": self.required,
                "max_time_to_recover_s": self.tier.max_time_to_recover_s,
                "budget_per_30d_s": self.tier.budget_per_30d_s,
                "quantile": self.quantile, "confidence_level": self.confidence_level,
                "repetitions": self.n, "within": self.within, "exceeded": self.exceeded,
                "undecided": self.undecided, "confidence": self.confidence,
                "more_repetitions_needed": self.more_repetitions_needed,
                "deciding_observation_s": self.deciding_observation_s,
                "projected_bad_time_per_30d_s": None if b is None else b.monthly_s,
                "projected_bad_time_per_30d_upper_s": None if b is None else b.monthly_upper_s,
                "projected_bad_time_lower_bound_only": None if b is None else b.lower_only}


def _pct(q: float) -> str:
    return f"p{q * 100:g}"


def _classify(r: RepetitionResult, max_s: float) -> tuple[str, float | None]:
    """within / exceeded / undecided for one repetition against a TTR bound, and for an undecided one
    the observation after t0 that would decide it."""
    if r.state in ("recovered", "no-impact"):
        return ("within" if (r.time_to_recover_s or 0.0) <= max_s else "exceeded"), None
    if r.state == "censored" and (r.ttr_lower_bound_s or 0.0) >= max_s:
        return "exceeded", None
    if r.state == "censored":
        return "undecided", max_s + r.stability_period_s
    return "undecided", r.deciding_observation_s()


def _judge_one(tier: Tier, reps: Sequence[RepetitionResult], evidence: Evidence,
               budget: BudgetProjection | None, voids: int, required: bool) -> TierVerdict:
    q, level, max_s = evidence.quantile, evidence.confidence, tier.max_time_to_recover_s
    classes = [(r, *_classify(r, max_s)) for r in reps]
    within = [r for r, c, _ in classes if c == "within"]
    exceeded = [r for r, c, _ in classes if c == "exceeded"]
    undecided = [(r, d) for r, c, d in classes if c == "undecided"]
    n = len(reps)
    # Best case for the undecided ones: they are within. If even that is not supported, it is decided.
    conf = confidence(n, len(exceeded), q)
    bound = format_duration(max_s)
    measured = [r.time_to_recover_s or 0.0 for r in within]
    worst_within = f" (worst {max(measured):.3f} s)" if measured else ""
    # The TTR evidence: against when repetitions over the bound leave too little confidence.
    ttr_against = bool(exceeded) and conf < level
    if exceeded:
        worst = max(exceeded, key=lambda r: r.time_to_recover_s or r.ttr_lower_bound_s or 0.0)
        ttr_text = (f"TTR exceeded {bound} in {len(exceeded)} of {n} repetition(s) (worst: rep "
                    f"{worst.repetition} {worst.ttr_display()}); {_pct(q)} within {bound} with "
                    f"{conf * 100:.0f}% confidence")
    elif undecided:
        ttr_text = (f"{len(within)} of {n} repetition(s) recovered within {bound}{worst_within}, "
                    f"{len(undecided)} undecided")
    else:
        ttr_text = (f"{n} of {n} repetition(s) recovered within {bound}{worst_within}: TTR {_pct(q)} <= "
                    f"{bound} with {conf * 100:.0f}% confidence (1 - {q:g}^{n})")
    budget_against = False
    budget_upper_ok = True
    budget_text = ""
    if budget is not None:
        budget_against = budget.monthly_s > tier.budget_per_30d_s
        budget_upper_ok = budget.monthly_upper_s is not None and budget.monthly_upper_s <= tier.budget_per_30d_s
        budget_text = f"{budget.describe()} vs the {format_duration(tier.budget_per_30d_s)} monthly budget: " + (
            f"over by {format_duration(budget.monthly_s - tier.budget_per_30d_s)}" if budget_against
            else "fits" + ("" if budget_upper_ok else ", but its upper bound does not"))
    texts = [ttr_text] + ([budget_text] if budget_text else [])
    more = deciding = None
    lower_only = budget is not None and budget.lower_only
    if ttr_against or budget_against:
        outcome: Outcome = "not supported"
        # Lead with what decided it.
        texts = [t for t, against in ((ttr_text, ttr_against), (budget_text, budget_against)) if against] + [
            t for t, against in ((ttr_text, ttr_against), (budget_text, budget_against)) if t and not against]
    elif undecided or lower_only:
        outcome = "inconclusive"
        deciding = max((d for _, d in undecided if d is not None), default=None)
        which = ", ".join(f"rep {r.repetition} {r.ttr_display()}" for r, _ in undecided)
        texts.insert(0, f"{which or 'a repetition that did not recover'}: neither for nor against a {bound} "
                        "maximum" + (f"; observing {format_duration(deciding)} after the fault start would "
                                     "decide" if deciding is not None else ""))
    elif conf >= level and budget_upper_ok and not voids:
        outcome = "supported"
    else:
        outcome = "indicative"
        if conf < level and not exceeded:
            more = max(0, repetitions_needed(q, level) - n)
            texts.append(f"{level * 100:g}% confidence needs {repetitions_needed(q, level)} repetitions all "
                         f"within: {more} more")
        if voids:
            texts.append(f"{voids} void repetition(s): the fault did not land every time, so this is at most "
                         "indicative")
    return TierVerdict(tier, outcome, "; ".join(texts), required, q, level, n, len(within), len(exceeded),
                       len(undecided), conf if n and not undecided else None, more, deciding, budget)


def judge_tiers(
    fault: str, reps: Sequence[RepetitionResult], settings: Settings, required: str | None
) -> dict[str, TierVerdict]:
    """Each tier's verdict over the experiment's repetitions; void repetitions are left out (and when
    every repetition is void, no tier can say anything but "void")."""
    evidence = settings.evidence
    voids = [r for r in reps if r.void is not None]
    counted = [r for r in reps if r.void is None]
    out: dict[str, TierVerdict] = {}
    if not counted:
        why = ("every repetition is void: " + "; ".join(f"rep {r.repetition}: {r.void}" for r in voids)
               if voids else "no repetitions to judge")
        for tier in settings.tiers:
            out[tier.name] = TierVerdict(tier, "void" if voids else "not supported", why + " (no evidence)",
                                         required == tier.name, evidence.quantile, evidence.confidence)
        return out
    blockers: list[str] = []
    incomplete = [r.repetition for r in counted if not r.complete]
    if incomplete:
        blockers.append(f"repetition(s) {', '.join(incomplete)} did not complete "
                        f"({', '.join(sorted({r.info.status for r in counted if not r.complete}))})")
    no_fault = [r.repetition for r in counted if r.t0_ns is None]
    if no_fault:
        blockers.append(f"repetition(s) {', '.join(no_fault)} injected no fault")
    judged = [r for r in counted if r.t0_ns is not None]
    lower_only = any(r.state in ("censored", "inconclusive") for r in judged)
    budget = budget_projection([r.bad_time_s for r in judged], settings.incidents_for(fault),
                               evidence.confidence, lower_only)
    for tier in settings.tiers:
        if blockers or not judged:
            out[tier.name] = TierVerdict(tier, "not supported", "; ".join(blockers) or "no repetition to judge",
                                         required == tier.name, evidence.quantile, evidence.confidence,
                                         len(judged), budget=budget)
            continue
        out[tier.name] = _judge_one(tier, judged, evidence, budget, len(voids), required == tier.name)
    return out
