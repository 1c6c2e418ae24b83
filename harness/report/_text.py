"""The summary table (terminal and summary.md): one row per experiment, one column per tier."""

from __future__ import annotations

from harness.analysis import ExperimentAnalysis, RunAnalysis

__all__ = ["render_summary_table", "summary_markdown"]


def _row(e: ExperimentAnalysis) -> list[str]:
    s = e.stats
    avail = s["availability_requests"].p50
    cells = [
        e.name, e.fault, str(len(e.reps)),
        s["time_to_impact_s"].show("p50"),
        s["time_to_recover_s"].show("p50"), s["time_to_recover_s"].show("p95"),
        s["bad_time_s"].show("p95"), s["capacity_recovery_s"].show("p95"),
        "n/a" if avail is None else f"{avail * 100:.3f}%",
    ]
    for verdict in e.tiers.values():
        mark = "yes" if verdict.supported else "no"
        if verdict.required:
            mark += " (required)" if verdict.supported else " (REQUIRED)"
        cells.append(mark)
    return cells


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
    lines.append(f"run {a.run_id}: status {a.status}; " + ("PASSED" if a.passed else "NOT PASSED")
                 + " (passes only when every repetition completed, no hypothesis deviated and every required "
                 "tier is supported)")
    lines.extend(f"note: {n}" for n in a.notes)
    return "\n".join(lines)


def summary_markdown(a: RunAnalysis) -> str:
    head = _header(a)
    out = [f"# Resilience run {a.run_id}", "",
           f"Status: **{a.status}**, " + ("**passed**" if a.passed else "**not passed**"), ""]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_row(e)) + " |" for e in a.experiments]
    out.append("")
    for e in a.experiments:
        out += [f"## {e.name} ({e.fault})", ""]
        out += [f"- **{name}**: {'supported' if v.supported else 'not supported'}"
                + (" (required)" if v.required else "") + f" — {v.why}" for name, v in e.tiers.items()]
        out += [f"- note: {n}" for n in e.notes]
        for r in e.reps:
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
