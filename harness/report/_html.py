"""index.html: one self-contained file (inline CSS and SVG, no script, no external URL)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.analysis import ExperimentAnalysis, RepetitionResult, RunAnalysis, format_duration
from harness.report._gpu import gpu_series
from harness.report._plots import gpu_svg, repetition_svg
from harness.report._serving import budget_html, readiness_html
from harness.report._text import reps_cell
from harness.service import service_summary

__all__ = ["CSS", "page", "render_index"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.yes{background:#e8f5e9}.no{background:#ffebee}.req{font-weight:bold}
.ind{background:#f1f8e9}.inc{background:#fff8e1}.void{background:#eceff1}
.note{color:#8a5a00}.plot svg{max-width:100%;height:auto}code{background:#f6f6f6;padding:0 3px}
"""


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")


_OUTCOME_CLASS = {"supported": "yes", "indicative": "ind", "not supported": "no", "inconclusive": "inc",
                  "void": "void"}
_OUTCOME_MARK = {"supported": "✔", "indicative": "◐", "not supported": "✘", "inconclusive": "?", "void": "∅"}


def _tier_cells(e: ExperimentAnalysis) -> str:
    cells = []
    for v in e.tiers.values():
        req = " req" if v.required else ""
        label = (" (required)" if v.passes(e.gate) else " (required, fails the gate)") if v.required else ""
        cells.append(f"<td class=\"{_OUTCOME_CLASS[v.outcome]}{req}\" title=\"{escape(v.why)}\">"
                     f"{_OUTCOME_MARK[v.outcome]} {escape(v.mark)}{label}</td>")
    return "".join(cells)


def _summary_table(a: RunAnalysis) -> str:
    head = "".join(f"<th>{escape(t.name)}</th>" for t in a.settings.tiers)
    rows = []
    for e in a.experiments:
        s = e.stats
        avail = s["availability_requests"].p50
        rows.append(
            f"<tr><td><a href=\"#exp-{escape(e.name)}\">{escape(e.name)}</a></td><td>{escape(e.fault)}</td>"
            f"<td>{escape(reps_cell(e))}</td><td>{escape(s['time_to_impact_s'].show('p50'))}</td>"
            f"<td>{escape(s['time_to_recover_s'].show('p50'))}</td><td>{escape(s['time_to_recover_s'].show('p95'))}"
            f"</td><td>{escape(s['bad_time_s'].show('p95'))}</td><td>{escape(s['capacity_recovery_s'].show('p95'))}"
            f"</td><td>{'n/a' if avail is None else f'{avail * 100:.3f}%'}</td>{_tier_cells(e)}</tr>")
    return ("<table id=\"summary\"><tr><th>experiment</th><th>fault</th><th>reps</th><th>impact p50</th>"
            "<th>TTR p50</th><th>TTR p95</th><th>bad time p95</th><th>capacity p95</th>"
            "<th>availability (req)</th>"
            f"{head}</tr>{''.join(rows)}</table>")


def _stats_table(e: ExperimentAnalysis) -> str:
    rows = []
    for key, st in e.stats.items():
        unit = "s" if key.endswith("_s") else "ratio"

        def ci(pair: tuple[float, float] | None, unit: str = unit) -> str:
            if pair is None:
                return "n/a"
            return f"[{pair[0]:.3f}, {pair[1]:.3f}]" if unit == "s" else f"[{pair[0]:.5f}, {pair[1]:.5f}]"

        rows.append(f"<tr><td>{escape(key)}</td><td>{st.n}</td><td>{escape(st.show('p50', unit))}</td>"
                    f"<td>{ci(st.p50_ci95)}</td><td>{escape(st.show('p95', unit))}</td>"
                    f"<td>{ci(st.p95_ci95)}</td>"
                    f"<td>{escape(st.show('max', unit))}</td></tr>")
    return ("<table><tr><th>figure</th><th>n</th><th>p50</th><th>p50 95% CI</th><th>p95</th>"
            "<th>p95 95% CI</th>"
            f"<th>max</th></tr>{''.join(rows)}</table>")


def _rep_table(e: ExperimentAnalysis) -> str:
    rows = []
    for r in e.reps:
        if r.void is not None:
            rows.append(f"<tr class=\"void\"><td>{escape(r.repetition)}</td><td>{escape(r.info.status)}</td>"
                        f"<td colspan=\"13\">VOID: {escape(r.void)} (no figures)"
                        f"{_landings(r.info.landings)}</td></tr>")
            continue
        cap = "n/a" if r.capacity is None else (
            f"{r.capacity.seconds:.3f} s" if r.capacity.recovered else f"> {r.capacity.lower_bound_s:.3f} s")
        lat = r.latency
        lat_cells = "".join(
            "<td>" + ("n/a" if lat[p]["p99_s"] is None else
                      f"{float(lat[p]['p50_s'] or 0) * 1000:.1f} / {float(lat[p]['p99_s'] or 0) * 1000:.1f}")
            + "</td>" for p in ("before", "during", "after"))
        errors = ", ".join(f"{k}: {v}" for k, v in r.errors_by_class.items()) or "none"
        server = "missing"
        if r.server:
            gpu = r.server.get("gpu_memory_used_max_bytes")
            server = (f"ok {_count(r.server.get('requests_success'))}, "
                      f"failed {_count(r.server.get('requests_failure'))}, "
                      f"queue {_fmt(r.server.get('queue_time_mean_ms'))} ms, GPU memory max "
                      + (f"{gpu / 2**30:.2f} GiB" if isinstance(gpu, int | float) else "n/a (no GPU)"))
        tti = "none" if r.time_to_impact_s is None else f"{r.time_to_impact_s:.3f} s"
        rows.append(
            f"<tr><td>{escape(r.repetition)}</td><td>{escape(r.info.status)}</td><td>{tti}</td>"
            f"<td>{escape(r.ttr_display())}</td><td>{r.bad_time_s:.3f} s</td><td>{escape(cap)}</td>"
            f"<td>{r.requests_failed}/{r.requests_total}</td>"
            f"<td>{'n/a' if r.availability_time is None else f'{r.availability_time:.5f}'}</td>"
            f"<td>{'n/a' if r.availability_requests is None else f'{r.availability_requests:.5f}'}</td>"
            f"{lat_cells}<td>{escape(errors)}</td><td>{escape(server)}</td></tr>")
    return ("<table><tr><th>rep</th><th>status</th><th>impact</th><th>TTR</th><th>bad time</th>"
            "<th>capacity</th><th>failed/all (client)</th><th>avail (time)</th><th>avail (req)</th>"
            "<th>p50/p99 ms before</th><th>during</th><th>after</th><th>errors by class</th>"
            f"<th>server side (Prometheus)</th></tr>{''.join(rows)}</table>")


def _landings(landings: Sequence[dict[str, Any]]) -> str:
    """The fault-landing checks of a repetition, one line each."""
    if not landings:
        return ""
    items = "".join(
        f"<li>{escape(str(x.get('fault', '?')))} on {escape(', '.join(map(str, x.get('targets') or [])))}: "
        f"{'landed' if x.get('landed') else 'DID NOT LAND'} ({escape(str(x.get('check', '')))}"
        f"{': ' + escape(str(x.get('detail'))) if x.get('detail') else ''})</li>" for x in landings)
    return f"<ul>{items}</ul>"


def _experiment_section(e: ExperimentAnalysis, marks: Sequence[tuple[int, str]] = ()) -> str:
    tiers = "".join(
        f"<li class=\"{_OUTCOME_CLASS[v.outcome]}\"><b>{escape(name)}</b>"
        f"{' (required)' if v.required else ''}: {escape(v.outcome)} — "
        f"{escape(v.why)}</li>" for name, v in e.tiers.items())
    evidence = (f"Verdicts are about TTR p{e.evidence.quantile * 100:g}; <i>supported</i> needs "
                f"{e.evidence.confidence * 100:g}% distribution-free confidence; a required tier passes on "
                f"{'supported or indicative' if e.gate == 'indicative' else 'supported only'}.")
    notes = "".join(f"<li class=\"note\">{escape(n)}</li>" for n in e.notes)
    rep_notes = "".join(f"<li class=\"note\">rep {escape(r.repetition)}: {escape(n)}</li>"
                        for r in e.reps for n in r.notes)
    plots = "".join(
        f"<figure class=\"plot\" id=\"plot-{escape(e.name)}-{escape(r.repetition)}\">"
        f"{repetition_svg(r, f'{e.name} rep {r.repetition}: {e.fault}', marks)}{_gpu_plot(e, r)}</figure>"
        for r in e.reps if r.void is None)
    obj = e.analysis.objective
    return (f"<section id=\"exp-{escape(e.name)}\"><h2>{escape(e.title)} "
            f"<small>({escape(e.fault)})</small></h2>"
            f"<p>Window {e.analysis.window_s:g} s, stability period {e.analysis.stability_period_s:g} s, "
            f"objective: success ratio ≥ {obj.success_ratio:g} and p99 ≤ {obj.p99_latency_s:g} s; "
            f"assumed incidents per month: {e.incidents_per_month:g}.</p>"
            f"<h3>SLA tiers</h3><p>{evidence}</p><ul>{tiers}</ul>{'<ul>' + notes + '</ul>' if notes else ''}"
            f"{budget_html(e)}"
            f"<h3>Figures over repetitions</h3>{_stats_table(e)}<h3>Repetitions</h3>{_rep_table(e)}"
            f"{readiness_html(e)}"
            f"{'<ul>' + rep_notes + '</ul>' if rep_notes else ''}{plots}</section>")


def _gpu_plot(e: ExperimentAnalysis, r: RepetitionResult) -> str:
    """GPU memory and utilisation under the timeline, when the run's Prometheus scraped Triton's GPU gauges."""
    url = r.server.get("url") if isinstance(r.server, dict) else None
    data = gpu_series(r.directory, url if isinstance(url, str) else None, r.span[0], r.span[1])
    if not data:
        return ""
    return gpu_svg(r, data["series"], f"{e.name} rep {r.repetition}: GPU (Triton nv_gpu_* via Prometheus)")


def render_index(a: RunAnalysis) -> str:
    notes = "".join(f"<li class=\"note\">{escape(n)}</li>" for n in a.notes)
    tiers = ", ".join(f"{t.name}: {t.availability * 100:g}% / TTR ≤ "
                      f"{format_duration(t.max_time_to_recover_s)}"
                      f" / {format_duration(t.budget_per_30d_s)} per 30 days" for t in a.settings.tiers)
    voids = "".join(f"<li class=\"void\">VOID {escape(v)}: no figures, and the run does not pass</li>"
                    for v in a.void_repetitions)
    service = service_summary(a.run.get("service"))
    body = (f"<h1>Resilience run {escape(a.run_id)}</h1>"
            f"<p>Status <b>{escape(a.status)}</b>: <b>{'passed' if a.passed else 'not passed'}</b>. "
            f"Tiers: {escape(tiers)}.</p>"
            + (f"<p class=\"service\">{escape(service)}</p>" if service else "")
            + f"{'<ul>' + voids + '</ul>' if voids else ''}"
            f"{'<ul>' + notes + '</ul>' if notes else ''}"
            f"{_summary_table(a)}"
            "<p>TTR: time to recover (censored values show as “&gt; x”); bad time: total duration of bad "
            "windows after the fault start. Definitions: docs/measurement.md; figures: results.json; "
            "hashes: manifest.json (check with <code>harness verify</code>).</p>"
            + _gameday_section(a.run_dir)
            + "".join(_experiment_section(e, _notes(a.run_dir)) for e in a.experiments))
    return page(f"Resilience run {a.run_id}", body)


def _gameday(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "gameday.json"
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except ValueError:
        return {}


def _notes(run_dir: Path) -> list[tuple[int, str]]:
    return [(int(n["ts_ns"]), str(n["text"])) for n in _gameday(run_dir).get("notes", [])]


def _gameday_section(run_dir: Path) -> str:
    """A game day's steps: the team's expected outcome beside the measured one, and their notes."""
    doc = _gameday(run_dir)
    if not doc:
        return ""
    rows = []
    for step in doc.get("steps", []):
        checks = "".join(
            f"<li class=\"{'yes' if c['met'] else 'no'}\">{escape(c['figure'])}: measured "
            f"{escape(_fmt(c['measured']))}, expected ≤ {escape(_fmt(c['expected_max']))}</li>"
            for c in step.get("checks", []))
        rows.append(f"<tr><td>{escape(step['name'])}</td><td>{escape(step.get('experiment') or 'pause')}</td>"
                    f"<td>{escape(step.get('answer', '-'))}</td><td>{escape(step.get('status', '?'))}</td>"
                    f"<td>{escape(step.get('expect', ''))}</td><td><ul>{checks}</ul></td></tr>")
    started = min((int(s["started_ns"]) for s in doc.get("steps", []) if s.get("started_ns")), default=0)
    notes = "".join(
        f"<li>note {i + 1} at +{(int(n['ts_ns']) - started) / 1e9:.1f} s (step {escape(n.get('step', ''))}): "
        f"{escape(n['text'])}</li>" for i, n in enumerate(doc.get("notes", [])))
    return (f"<section id=\"gameday\"><h2>Game day: {escape(doc.get('title', ''))}"
            f"{' (aborted)' if doc.get('aborted') else ''}</h2>"
            "<table><tr><th>step</th><th>experiment</th><th>gate</th><th>status</th><th>expected</th>"
            f"<th>measured</th></tr>{''.join(rows)}</table>"
            f"<h3>Notes</h3><ul>{notes or '<li>none</li>'}</ul></section>")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _count(value: Any) -> str:
    """Prometheus counters come back as floats (increase() extrapolates); show whole requests."""
    return "n/a" if value is None else f"{round(float(value)):,}"
