"""Readiness vs serving and the error budget per fault, as the terminal, summary.md and index.html show them.

The figures come from ``harness.analysis`` (``RepetitionResult.readiness``, ``ExperimentAnalysis.error_budget``);
this module only words and draws them, in one place for every output so they say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from typing import TYPE_CHECKING, Any

from harness.analysis import ExperimentAnalysis, RepetitionResult, format_duration

if TYPE_CHECKING:
    from harness.analysis._readiness import Readiness

__all__ = [
    "NOT_SERVING_COLOUR",
    "budget_html",
    "budget_markdown",
    "mark_not_serving",
    "readiness_html",
    "readiness_lines",
    "terminal_lines",
]

NOT_SERVING_COLOUR = "#8e24aa"  # ready but not serving, hatched over the ready lane


def _ready_reps(e: ExperimentAnalysis) -> Iterator[tuple[RepetitionResult, Readiness, str]]:
    """The non-void repetitions in which a replica became ready after the fault, with the replicas' names."""
    for r in e.reps:
        rd = r.readiness
        if r.void is None and rd is not None and rd.ready_signals:
            yield r, rd, ", ".join(dict.fromkeys(name for name, _ in rd.ready_signals))


def readiness_lines(e: ExperimentAnalysis) -> list[str]:
    """One line per replica that became ready after the fault (or why it could not be measured)."""
    out: list[str] = []
    for r, rd, names in _ready_reps(e):
        if not rd.known:
            out.append(f"rep {r.repetition}: {names} ready after the fault; replica that answered UNKNOWN: "
                       f"{rd.why_unknown}")
            continue
        for x in rd.replicas:
            unattributed = (f"; {x.unattributed_failed_in_gap} failed with no replica answering (not attributed)"
                            if x.unattributed_failed_in_gap else "")
            out.append(f"rep {r.repetition}: {x.replica} ready -> first good response {x.display()} "
                       f"(readiness probe period {x.probe_period_s:g} s"
                       f"{', assumed' if x.probe_period_assumed else ''}); while ready: {x.failed_in_gap} failed, "
                       f"{x.slow_in_gap} too slow of {x.requests_in_gap} it answered{unattributed}")
    return out


def _pct(value: float | None, least: bool) -> str:
    if value is None:
        return "n/a"
    return ("≥ " if least else "") + f"{value * 100:.3g}%"


def _fit(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


def _times(value: float) -> str:
    return f"{value:,.0f}x" if value >= 100 else f"{value:.3g}x"


def _burn(mean: float | None, worst: float | None) -> str:
    return "n/a" if mean is None or worst is None else f"{_times(mean)} / {_times(worst)}"


_BUDGET_HEAD = ("tier", "SLO", "bad time / incident", "time budget spent", "incidents that fit (time)",
                "bad requests / incident", "request budget spent", "incidents that fit (requests)",
                "burn rate mean / max", "assumed / month")


def _budget_rows(e: ExperimentAnalysis) -> list[tuple[str, ...]]:
    b = e.error_budget
    if b is None:
        return []
    rows: list[tuple[str, ...]] = []
    for t in b.tiers.values():
        rows.append((t.tier, f"{t.slo * 100:g}%", format_duration(t.bad_time_per_incident_s),
                     _pct(t.spent_time, t.lower_bound), _fit(t.incidents_fit_time),
                     f"{t.bad_requests_per_incident:.4g}", _pct(t.spent_requests, t.lower_bound),
                     _fit(t.incidents_fit_requests), _burn(t.burn_rate_mean, t.burn_rate_max),
                     f"{t.assumed_incidents:g}" + ("" if t.fits_assumed is not False else " (do not fit)")))
    return rows


def _budget_note(e: ExperimentAnalysis) -> str:
    b = e.error_budget
    if b is None:
        return ""
    ongoing = any(t.lower_bound for t in b.tiers.values())
    return (f"Means over {b.incidents} incident(s), against 30-day budgets: time = bad windows (OpenSLO Timeslices), "
            "requests = failed requests at the load's request rate (Occurrences); burn rate = error ratio during "
            "the incident / (1 - SLO)." + (" An incident went on past the observation: spent figures are lower "
                                            "bounds and the incidents that fit are upper bounds." if ongoing else ""))


def terminal_lines(e: ExperimentAnalysis) -> list[str]:
    """The terminal's lines for one experiment: readiness per replica, then the budget per tier."""
    out = [f"readiness {e.name} {line}" for line in readiness_lines(e)]
    b = e.error_budget
    if b is not None:
        out.append(f"error budget {e.name} (per incident, {b.incidents} incident(s)): "
                   + "; ".join(f"{t.tier} {_pct(t.spent_time, t.lower_bound)} time / "
                               f"{_pct(t.spent_requests, t.lower_bound)} requests, fits "
                               f"{_fit(t.incidents_fit_time)} / {_fit(t.incidents_fit_requests)} a month, burn "
                               f"{_burn(t.burn_rate_mean, t.burn_rate_max)}" for t in b.tiers.values()))
    return out


def budget_markdown(e: ExperimentAnalysis) -> list[str]:
    """summary.md: readiness bullets and the budget table of one experiment."""
    out: list[str] = []
    lines = readiness_lines(e)
    if lines:
        out += ["Readiness vs serving (replicas ready after the fault):", ""]
        out += [f"- {line}" for line in lines] + [""]
    rows = _budget_rows(e)
    if rows:
        out += ["Error budget per incident:", "", "| " + " | ".join(_BUDGET_HEAD) + " |",
                "|" + "---|" * len(_BUDGET_HEAD)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out += ["", _budget_note(e), ""]
    return out


def budget_html(e: ExperimentAnalysis) -> str:
    rows = _budget_rows(e)
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in _BUDGET_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<h3>Error budget per incident</h3><table class=\"budget\"><tr>{head}</tr>{body}</table>"
            f"<p>{escape(_budget_note(e))} <code>harness slo export</code> writes these as an OpenSLO document.</p>")


def readiness_html(e: ExperimentAnalysis) -> str:
    rows: list[str] = []
    for r, rd, names in _ready_reps(e):
        if not rd.known:
            rows.append(f"<tr class=\"inc\"><td>{escape(r.repetition)}</td><td colspan=\"7\">{escape(names)} ready "
                        f"after the fault; replica that answered <b>unknown</b>: {escape(rd.why_unknown or '')}"
                        "</td></tr>")
            continue
        for x in rd.replicas:
            cls = " class=\"no\"" if x.exceeds_probe_period else ""
            rows.append(
                f"<tr{cls}><td>{escape(r.repetition)}</td><td>{escape(x.replica)}</td>"
                f"<td>{escape(x.display())}</td><td>{x.probe_period_s:g} s"
                f"{' (assumed)' if x.probe_period_assumed else ''}</td><td>{x.requests_in_gap}</td>"
                f"<td>{x.failed_in_gap}</td><td>{x.slow_in_gap}</td><td>{x.unattributed_failed_in_gap}</td></tr>")
    if not rows:
        return ""
    return ("<h3>Readiness vs serving</h3><p>For each replica that became ready after the fault: from its ready "
            "signal to the first good response it gave, and the requests it answered in between. Failed requests "
            "that no replica answered are listed apart: they may have been routed to it, the timeline cannot "
            "say. Red: the gap exceeds the readiness probe period.</p>"
            "<table class=\"readiness\"><tr><th>rep</th><th>replica</th><th>ready → first good response</th>"
            "<th>probe period</th><th>answered while not serving</th><th>failed</th><th>too slow</th>"
            f"<th>failed, no replica answered</th></tr>{''.join(rows)}</table>")


def mark_not_serving(ax: Any, r: RepetitionResult, replicas: list[str], origin_ns: int) -> None:
    """Hatch each replica's lane from its ready signal to its first good response (or the end of its ready
    period when it never served), labelled with the gap; on a lane plot whose rows are ``replicas``."""
    rd = r.readiness
    if rd is None:
        return
    if not rd.known and rd.ready_signals:
        ax.text(0.01, 0.02, "replica that answered unknown: no ready-to-serving gap", transform=ax.transAxes,
                fontsize=6, color=NOT_SERVING_COLOUR)
        return
    for x in rd.replicas:
        if x.replica not in replicas or x.state == "no-requests":
            continue
        end = x.first_good_ns if x.first_good_ns is not None else x.ready_until_ns
        left, width = (x.ready_ns - origin_ns) / 1e9, max((end - x.ready_ns) / 1e9, 0.0)
        row = replicas.index(x.replica)
        ax.broken_barh([(left, width)], (row - 0.4, 0.8), facecolors="none", edgecolors=NOT_SERVING_COLOUR,
                       hatch="////", linewidth=0.8)
        ax.annotate(f"ready, not serving {x.display().split(' (')[0]}", (left, row + 0.42), fontsize=6,
                    color=NOT_SERVING_COLOUR, va="bottom")
