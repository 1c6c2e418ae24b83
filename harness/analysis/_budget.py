"""Error budget per fault, in the terms SLO tools use (DESIGN.md, "Error budgets in SLO tools' terms").

For an SLO (a tier's availability) over 30 days the error budget is ``1 - SLO`` of the window: of its time
when the SLI is judged on time slices (OpenSLO ``Timeslices``: here the analysis windows), of its requests
when it is judged on events (OpenSLO ``Occurrences``). One repetition is one incident of the fault:

- **time**: its bad time against the tier's monthly budget (``budget_per_30d_s``);
- **requests**: its failed requests from the fault start to the end of observation against ``1 - SLO`` of
  the requests a month brings at the repetition's own request rate (the load's rate: the fraction is the
  same for production traffic of the same shape, because both sides scale with the rate);
- **incidents that fit**: how many such incidents the monthly budget holds (the budget over the mean spent
  per incident, rounded down), beside the incidents per month the settings assume for the fault;
- **burn rate**: the error ratio during the incident over ``1 - SLO`` (what Sloth and Pyrra alert on: 1
  spends the budget exactly in the window, 14.4 spends 2 % of 30 days' budget in an hour). The incident runs
  from the fault start to the recovery instant; when the service did not recover (or the repetition is
  inconclusive) to the end of observation, and it is marked as still going on; with no impact it is the
  fault's own duration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.analysis._settings import Tier

__all__ = ["MONTH_S", "ErrorBudget", "Incident", "TierBudget", "error_budget", "incident_figures"]

MONTH_S = 30 * 86400.0  # the tiers' budgets are per 30 days


@dataclass(frozen=True)
class Incident:
    """The tier-independent figures of one repetition's incident."""

    start_ns: int
    end_ns: int
    ongoing: bool  # not recovered (or inconclusive) at the end of observation: it went on
    requests: int  # in [start, end)
    failed: int  # in [start, end)
    bad_requests: int  # failed requests from the fault start to the end of observation
    bad_time_s: float
    request_rate_per_s: float | None  # all requests of the repetition / observed seconds

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def error_ratio(self) -> float | None:
        return self.failed / self.requests if self.requests else None

    def to_json(self, iso: Any) -> dict[str, Any]:
        ratio = self.error_ratio
        return {"start": iso(self.start_ns), "end": iso(self.end_ns), "duration_s": round(self.duration_s, 6),
                "ongoing": self.ongoing, "requests": self.requests, "failed": self.failed,
                "error_ratio": None if ratio is None else round(ratio, 8), "bad_requests": self.bad_requests,
                "bad_time_s": round(self.bad_time_s, 6),
                "request_rate_per_s": None if self.request_rate_per_s is None else round(self.request_rate_per_s, 3)}


def incident_figures(
    start_ns: npt.NDArray[np.int64],
    ok: npt.NDArray[np.bool_],
    *,
    t0_ns: int,
    end_ns: int,
    ongoing: bool,
    observation_end_ns: int,
    bad_time_s: float,
    requests_total: int,
    observed_s: float,
) -> Incident:
    """The incident [t0, end) of a repetition; ``start_ns`` are the instants requests count at, sorted."""
    a, b, c = (int(i) for i in np.searchsorted(start_ns, [t0_ns, max(t0_ns, end_ns), observation_end_ns]))
    failed_cum = np.concatenate([[0], np.cumsum(~ok[a:c], dtype=np.int64)])
    return Incident(
        start_ns=t0_ns, end_ns=max(t0_ns, end_ns), ongoing=ongoing, requests=b - a,
        failed=int(failed_cum[b - a]), bad_requests=int(failed_cum[-1]), bad_time_s=bad_time_s,
        request_rate_per_s=requests_total / observed_s if observed_s > 0 else None,
    )


def _fit(budget: float, spent: float) -> int | None:
    """Whole incidents the budget holds; None when an incident spends nothing (no limit)."""
    return None if spent <= 0 else math.floor(budget / spent + 1e-9)


@dataclass(frozen=True)
class TierBudget:
    """One tier's budget against one experiment's incidents (means over its non-void repetitions)."""

    tier: str
    slo: float
    budget_time_s: float
    bad_time_per_incident_s: float
    spent_time: float | None  # fraction of the monthly time budget one incident spends (None: no budget)
    incidents_fit_time: int | None
    bad_requests_per_incident: float
    requests_per_month: float | None  # at the mean measured request rate
    budget_requests: float | None
    spent_requests: float | None
    incidents_fit_requests: int | None
    burn_rate_mean: float | None
    burn_rate_max: float | None
    assumed_incidents: float
    lower_bound: bool  # an incident went on past the observation: every spent figure is at least this

    @property
    def fits_assumed(self) -> bool | None:
        """Whether the incidents the settings assume per month fit the budgets that are known (an incident
        that spends nothing fits any number); None when neither budget is known."""
        checks = [fit is None or fit >= self.assumed_incidents
                  for spent, fit in ((self.spent_time, self.incidents_fit_time),
                                     (self.spent_requests, self.incidents_fit_requests)) if spent is not None]
        return all(checks) if checks else None

    def describe(self) -> str:
        least = "at least " if self.lower_bound else ""
        req = ("n/a" if self.spent_requests is None else
               f"{least}{self.spent_requests * 100:.3g}% ({self.bad_requests_per_incident:.4g} bad requests)")
        burn = ("n/a" if self.burn_rate_max is None or self.burn_rate_mean is None
                else f"{self.burn_rate_mean:.3g}x mean, {self.burn_rate_max:.3g}x max")
        spent = "n/a" if self.spent_time is None else f"{least}{self.spent_time * 100:.3g}%"
        return (f"{self.tier}: per incident {spent} of the time budget "
                f"({self.bad_time_per_incident_s:.3g} s bad), {req} of the request budget; "
                f"{_fits_text(self.incidents_fit_time, self.incidents_fit_requests)} "
                f"(assumed {self.assumed_incidents:g}); burn rate {burn}")

    def to_json(self) -> dict[str, Any]:
        def rnd(v: float | None, d: int = 9) -> float | None:
            """``d`` significant digits: spent fractions of a large budget are small numbers."""
            return None if v is None else float(f"{v:.{d}g}")

        return {
            "slo": self.slo, "budget_time_s": self.budget_time_s,
            "bad_time_per_incident_s": rnd(self.bad_time_per_incident_s), "spent_time": rnd(self.spent_time),
            "incidents_fit_time": self.incidents_fit_time,
            "bad_requests_per_incident": rnd(self.bad_requests_per_incident),
            "requests_per_month": rnd(self.requests_per_month, 12), "budget_requests": rnd(self.budget_requests),
            "spent_requests": rnd(self.spent_requests), "incidents_fit_requests": self.incidents_fit_requests,
            "burn_rate_mean": rnd(self.burn_rate_mean), "burn_rate_max": rnd(self.burn_rate_max),
            "assumed_incidents_per_month": self.assumed_incidents, "fits_assumed": self.fits_assumed,
            "lower_bound": self.lower_bound,
        }


def _fits_text(by_time: int | None, by_requests: int | None) -> str:
    def one(v: int | None) -> str:
        return "unlimited" if v is None else f"{v:,}"

    return f"incidents that fit a month: {one(by_time)} by time, {one(by_requests)} by requests"


@dataclass(frozen=True)
class ErrorBudget:
    """An experiment's incidents against every tier's budget."""

    incidents: int
    tiers: dict[str, TierBudget]

    def to_json(self) -> dict[str, Any]:
        return {"incidents": self.incidents, "method": "30-day window; time: bad windows (Timeslices), "
                "requests: failed requests (Occurrences); means over non-void repetitions",
                "tiers": {name: t.to_json() for name, t in self.tiers.items()}}


def error_budget(incidents: Sequence[Incident], tiers: Sequence[Tier], assumed_incidents: float) -> ErrorBudget | None:
    """Each tier's budget against the mean incident; None without an incident (void or no fault)."""
    if not incidents:
        return None
    n = len(incidents)
    bad_time = sum(i.bad_time_s for i in incidents) / n
    bad_requests = sum(i.bad_requests for i in incidents) / n
    rates = [i.request_rate_per_s for i in incidents if i.request_rate_per_s]
    per_month = (sum(rates) / len(rates)) * MONTH_S if rates else None
    ratios = [r for r in (i.error_ratio for i in incidents) if r is not None]
    lower = any(i.ongoing for i in incidents)
    out: dict[str, TierBudget] = {}
    for tier in tiers:
        allowed = 1.0 - tier.availability
        spent_time = bad_time / tier.budget_per_30d_s if tier.budget_per_30d_s > 0 else None
        budget_requests = per_month * allowed if per_month else None
        spent_requests = bad_requests / budget_requests if budget_requests else None
        burns = [r / allowed for r in ratios]
        out[tier.name] = TierBudget(
            tier=tier.name, slo=tier.availability, budget_time_s=tier.budget_per_30d_s,
            bad_time_per_incident_s=bad_time, spent_time=spent_time,
            incidents_fit_time=None if spent_time is None else _fit(1.0, spent_time),
            bad_requests_per_incident=bad_requests,
            requests_per_month=per_month, budget_requests=budget_requests, spent_requests=spent_requests,
            incidents_fit_requests=None if spent_requests is None else _fit(1.0, spent_requests),
            burn_rate_mean=sum(burns) / len(burns) if burns else None, burn_rate_max=max(burns, default=None),
            assumed_incidents=assumed_incidents, lower_bound=lower,
        )
    return ErrorBudget(n, out)
