"""History of reported runs in SQLite (reports/history.sqlite) and the trend page over it.

Rebuilding a run's report replaces that run's rows, so the store holds one row set per run. A run that
did not complete is stored with its status and is never counted as a pass or used as a baseline.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Literal

from harness.analysis import RunAnalysis, format_duration
from harness.errors import ConfigError

__all__ = [
    "HISTORY_FILE", "TREND_FIGURES", "Regression", "TrendResult", "parse_threshold", "record_run", "trend",
]

HISTORY_FILE = "history.sqlite"
TREND_FIGURES = ("time_to_recover_s", "bad_time_s", "time_to_impact_s", "capacity_recovery_s")
_REGRESSION_FIGURES = ("time_to_recover_s", "bad_time_s")
MIN_CHANGE_S = 0.1  # smaller changes are measurement noise (about a request spacing), never a regression

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, started_ns INTEGER, status TEXT NOT NULL, kind TEXT, passed INTEGER NOT NULL,
  harness_version TEXT, git_revision TEXT, recorded_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS figures (
  run_id TEXT NOT NULL, experiment TEXT NOT NULL, fault TEXT NOT NULL, figure TEXT NOT NULL, n INTEGER,
  p50 REAL, p95 REAL, max REAL, p95_censored INTEGER NOT NULL, PRIMARY KEY (run_id, experiment, figure));
CREATE TABLE IF NOT EXISTS tiers (
  run_id TEXT NOT NULL, experiment TEXT NOT NULL, tier TEXT NOT NULL, supported INTEGER NOT NULL,
  required INTEGER NOT NULL, why TEXT, PRIMARY KEY (run_id, experiment, tier));
"""


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.executescript(_SCHEMA)
        with conn:
            yield conn


def record_run(a: RunAnalysis, db_path: Path, git_revision: str) -> None:
    from harness import __version__

    started = a.run.get("started_ns")
    with _db(db_path) as conn:
        for table in ("runs", "figures", "tiers"):
            conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (a.run_id,))
        conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?)", (
            a.run_id, int(started) if isinstance(started, int | float) else None, a.status,
            str(a.run.get("kind") or ""), int(a.passed), __version__, git_revision,
            datetime.now(tz=UTC).isoformat(timespec="seconds")))
        for e in a.experiments:
            for figure, st in e.stats.items():
                conn.execute("INSERT INTO figures VALUES (?,?,?,?,?,?,?,?,?)", (
                    a.run_id, e.name, e.fault, figure, st.n, st.p50, st.p95, st.max, int(st.p95_censored)))
            for tier, v in e.tiers.items():
                conn.execute("INSERT INTO tiers VALUES (?,?,?,?,?,?)",
                             (a.run_id, e.name, tier, int(v.supported), int(v.required), v.why))


def parse_threshold(text: str) -> float:
    """'20%' or '0.2' -> 0.2."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise ConfigError(f"regression threshold {text!r} is not a number or a percentage "
                          "such as 20%") from exc
    if value < 0:
        raise ConfigError(f"regression threshold must not be negative, got {text!r}")
    return value


@dataclass(frozen=True)
class Regression:
    experiment: str
    figure: str
    run_id: str
    value: float | None
    censored: bool
    baseline: float
    message: str


@dataclass
class TrendResult:
    page: Path
    runs: int
    regressions: list[Regression] = field(default_factory=list)
    incomplete_latest: list[str] = field(default_factory=list)


def trend(
    reports_dir: Path, threshold: float | None, baseline: Literal["last", "median"] = "last"
) -> TrendResult:
    from harness.report._html import page
    from harness.report._plots import trend_svg

    db_path = reports_dir / HISTORY_FILE
    if not db_path.exists():
        raise ConfigError(f"no run history at {db_path}: build reports first (harness run / harness report)")
    with _db(db_path) as conn:
        runs = conn.execute("SELECT run_id, status, passed FROM runs ORDER BY COALESCE(started_ns, 0), run_id"
                            ).fetchall()
        rows = conn.execute("SELECT run_id, experiment, fault, figure, p95, p95_censored FROM figures"
                            ).fetchall()
    order = {r[0]: i for i, r in enumerate(runs)}
    status = {r[0]: r[1] for r in runs}
    data: dict[str, dict[str, dict[str, tuple[float | None, bool]]]] = {}
    faults: dict[str, str] = {}
    for run_id, exp, fault, figure, p95, cens in rows:
        data.setdefault(exp, {}).setdefault(figure, {})[run_id] = (p95, bool(cens))
        faults[exp] = fault
    result = TrendResult(page=reports_dir / "trend.html", runs=len(runs))
    sections = []
    for exp in sorted(data):
        exp_runs = sorted({rid for fig in data[exp].values() for rid in fig},
                          key=lambda rid: order.get(rid, 0))
        latest = exp_runs[-1]
        if status.get(latest) != "completed":
            result.incomplete_latest.append(f"{exp}: latest run {latest} is {status.get(latest)}, not a pass")
        completed_before = [rid for rid in exp_runs[:-1] if status.get(rid) == "completed"]
        for figure in _REGRESSION_FIGURES:
            series = data[exp].get(figure, {})
            if threshold is None or latest not in series or status.get(latest) != "completed":
                continue
            history: list[float] = []
            for rid in completed_before:
                past, past_censored = series.get(rid, (None, True))
                if past is not None and not past_censored:
                    history.append(past)
            if not history:
                continue
            base = history[-1] if baseline == "last" else float(statistics.median(history))
            value, cens = series[latest]
            worse = cens or (value is not None and value > base * (1 + threshold)
                             and value - base > MIN_CHANGE_S)
            if worse:
                shown = "censored (not recovered)" if cens else format_duration(value or 0.0)
                result.regressions.append(Regression(
                    exp, figure, latest, value, cens, base,
                    f"{exp} ({faults[exp]}): {figure} p95 {shown} vs {baseline} baseline "
                    f"{format_duration(base)}"
                    f" (threshold +{threshold * 100:g}%)"))
        plots = []
        for figure in TREND_FIGURES:
            series = data[exp].get(figure, {})
            values = [series.get(rid, (None, False))[0] for rid in exp_runs]
            if any(v is not None for v in values):
                censored = [series.get(rid, (None, False))[1] for rid in exp_runs]
                title = f"{exp} ({faults[exp]}): {figure} p95"
                statuses = [str(status.get(rid)) for rid in exp_runs]
                plots.append(trend_svg(title, exp_runs, values, censored, statuses, "s"))
        rows_html = "".join(f"<tr><td>{escape(rid)}</td><td>{escape(str(status.get(rid)))}</td></tr>"
                            for rid in exp_runs)
        sections.append(f"<section><h2>{escape(exp)} ({escape(faults[exp])})</h2>{''.join(plots)}"
                        f"<table><tr><th>run</th><th>status</th></tr>{rows_html}</table></section>")
    flagged = "".join(f"<li class=\"no\">{escape(r.message)}</li>" for r in result.regressions)
    flagged += "".join(f"<li class=\"no\">{escape(m)}</li>" for m in result.incomplete_latest)
    body = (f"<h1>Resilience trend</h1><p>{len(runs)} runs in {escape(str(db_path.name))}; baseline: "
            f"{escape(baseline)} completed run(s).</p><ul>{flagged or '<li>no regressions flagged</li>'}</ul>"
            + "".join(sections))
    result.page.write_text(page("Resilience trend", body), encoding="utf-8")
    return result
