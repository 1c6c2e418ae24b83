"""The summary table (terminal and summary.md): one row per experiment, one column per tier."""

from __future__ import annotations

from harness.analysis import ExperimentAnalysis, RunAnalysis
from harness.report._serving import budget_markdown, terminal_lines
from harness.service import service_summary

__all__ = ["render_summary_table", "reps_cell", "summary_markdown"]


def _row(e: ExperimentAnalysis) -> list[str]:
    s = e.stats
    avail = s["availability_requests"].p50
    cells = [
        e.name, e.fault, reps_cell(e),
        s["time_to_impact_s"].show("p50"),
        s["time_to_recover_s"].show("p50"), s["time_to_recover_s"].show("p95"),
        s["bad_time_s"].show("p95"), s["capacity_recovery_s"].show("p95"),
        "n/a" if avail is None else f"{avail * 100:.3f}%",
    ]
    for verdict in e.tiers.values():
        mark = verdict.mark
        if verdict.required:
            mark += " (required)" if verdict.passes(e.gate) else " (REQUIRED, fails the gate)"
        cells.append(mark)
    return cells


def reps_cell(e: ExperimentAnalysis) -> str:
    """Repetitions, with how many were void (those count for nothing)."""
    void = len(e.void_repetitions)
    return f"{len(e.reps)} ({void} void)" if void else str(len(e.reps))


def _void_lines(a: RunAnalysis) -> list[str]:
    return [f"VOID {v} (no figures; the run does not pass)" for v in a.void_repetitions]


def _header(a: RunAnalysis) -> list[str]:
    return ["experiment", "fault", "reps", "impact p50", "TTR p50", "TTR p95", "bad p95", "capacity p95",
            "avail (req)", *[t.name for t in a.settings.tiers]]


def render_summary_table(a: RunAnalysis) -> str:
    """Fixed-width table for the terminal; censored figures show as '> x'."""
    rows = [_header(a), *[_row(e) for e in a.experiments]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(line for e in a.experiments for line in terminal_lines(e))
    lines.extend(_void_lines(a))
    lines.append(f"run {a.run_id}: status {a.status}; " + ("PASSED" if a.passed else "NOT PASSED")
                 + " (passes only when no repetition is void, every repetition completed, no hypothesis "
                 "deviated and every required tier passes its evidence gate)")
    lines.extend(f"note: {n}" for n in a.notes)
    if service := service_summary(a.run.get("service")):
        lines.append(service)
    return "\n".join(lines)


def summary_markdown(a: RunAnalysis) -> str:
    head = _header(a)
    out = [f"# Resilience run {a.run_id}", "",
           f"Status: **{a.status}**, " + ("**passed**" if a.passed else "**not passed**"), ""]
    if service := service_summary(a.run.get("service")):
        out += [service, ""]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_row(e)) + " |" for e in a.experiments]
    out.append("")
    out += [f"- {line}" for line in _void_lines(a)]
    if a.void_repetitions:
        out.append("")
    for e in a.experiments:
        out += [f"## {e.name} ({e.fault})", ""]
        out += [f"- **{name}**: {v.outcome}" + (" (required)" if v.required else "") + f" — {v.why}"
                for name, v in e.tiers.items()]
        out += [f"- note: {n}" for n in e.notes]
        out += ["", *budget_markdown(e)]
        for r in e.reps:
            if r.void is not None:
                out += [f"- rep {r.repetition}: VOID ({r.void}); no figures"]
                continue
            impact = "none" if r.time_to_impact_s is None else f"{r.time_to_impact_s:.3f} s"
            out += [f"- rep {r.repetition}: impact {impact}, TTR {r.ttr_display()}, "
                    f"bad time {r.bad_time_s:.3f} s, "
                    f"{r.requests_failed}/{r.requests_total} failed"]
            out += [f"  - {n}" for n in r.notes]
        out.append("")
    out += [f"Note: {n}" for n in a.notes]
    out += ["", "Definitions: docs/measurement.md. Machine-readable figures: results.json "
            "(schema: docs/results-schema.md)."]
    return "\n".join(out) + "\n"
