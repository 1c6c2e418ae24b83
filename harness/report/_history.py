"""History of reported runs in SQLite (reports/history.sqlite) and the trend page over it.

Rebuilding a run's report replaces that run's rows, so the store holds one row set per run. A run that
did not complete is stored with its status and is never counted as a pass or used as a baseline.

Like with like: each run row carries the identity of the service it tested (``service_key``: endpoint,
namespace/Deployment, image, models and versions from run.json ``service``) and each figure row the
fingerprint of its experiment's configuration (``config_key``: the load and run settings such as rate,
users and profile, the steady-state objective, replicas, time scale, retries; not the fault's arguments).
Trends and regression baselines compare a figure only with runs of the same experiment, service and
configuration, over the last ``window`` of them.

The schema is versioned (``PRAGMA user_version``, ``SCHEMA_VERSION``); an older file is migrated in
place when opened (rows written before version 2 have empty keys: they form their own series). The
database runs in WAL mode and every write is one ``BEGIN IMMEDIATE`` transaction, so two runs that
report at once wait for each other instead of failing or interleaving.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Literal

from harness.analysis import RunAnalysis, format_duration
from harness.errors import ConfigError

__all__ = [
    "HISTORY_FILE", "SCHEMA_VERSION", "TREND_FIGURES", "TREND_WINDOW", "Regression", "TrendResult",
    "config_identity", "parse_threshold", "record_run", "service_identity", "trend",
]

HISTORY_FILE = "history.sqlite"
TREND_FIGURES = ("time_to_recover_s", "bad_time_s", "time_to_impact_s", "capacity_recovery_s")
_REGRESSION_FIGURES = ("time_to_recover_s", "bad_time_s")
# The smallest change of a figure that can be a regression: below it the change is within the figure's resolution
# or the machine's noise. Bad time is counted in whole windows (1 s by default), so one window more (1 s against
# 1 s: +100 %) is its resolution, not a regression (seen in nightly runs here). TTR is resolved by the spacing of
# requests, but a sub-second recovery moves with the machine's load: the nightly's pod kill recovered in p95
# 0.053 s in one run and 0.223 s in the next with the same code on the shared 2-core machine (repetitions 0.016
# to 0.223 s), so 0.25 s; a replica left routed after its death would cost its restart (seconds), still flagged.
MIN_CHANGE_S: dict[str, float] = {"time_to_recover_s": 0.25, "bad_time_s": 1.0}

SCHEMA_VERSION = 2
TREND_WINDOW = 20  # runs of one series a trend shows and a baseline is taken from

# Version 1: the tables as first released (files written then have user_version 0).
_V1 = (
    """CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, started_ns INTEGER, status TEXT NOT NULL, kind TEXT, passed INTEGER NOT NULL,
  harness_version TEXT, git_revision TEXT, recorded_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS figures (
  run_id TEXT NOT NULL, experiment TEXT NOT NULL, fault TEXT NOT NULL, figure TEXT NOT NULL, n INTEGER,
  p50 REAL, p95 REAL, max REAL, p95_censored INTEGER NOT NULL, PRIMARY KEY (run_id, experiment, figure))""",
    """CREATE TABLE IF NOT EXISTS tiers (
  run_id TEXT NOT NULL, experiment TEXT NOT NULL, tier TEXT NOT NULL, supported INTEGER NOT NULL,
  required INTEGER NOT NULL, why TEXT, PRIMARY KEY (run_id, experiment, tier))""",
)
# Version 2: service identity per run, configuration fingerprint per experiment's figures.
_V2 = (
    "ALTER TABLE runs ADD COLUMN service_key TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE runs ADD COLUMN service TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE figures ADD COLUMN config_key TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE figures ADD COLUMN configuration TEXT NOT NULL DEFAULT ''",
)
_MIGRATIONS = {1: _V1, 2: _V2}  # version -> the statements that reach it from the one before


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; the version is read inside the lock
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{path} has history schema {version}, newer than this harness's "
                              f"({SCHEMA_VERSION}); upgrade the harness or use another reports folder")
        if version == 0:
            version = 1 if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() else 0
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA journal_mode = WAL")
        _migrate(conn, path)
        yield conn


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _key(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def service_identity(run: Mapping[str, Any]) -> tuple[str, str]:
    """(key, label) of the service a run tested, from run.json ``service``; ("", "") when unrecorded."""
    service = run.get("service")
    if not isinstance(service, dict):
        return "", ""
    models = sorted(f"{m.get('name', '')}:{m.get('version', '')}" for m in service.get("models") or []
                    if isinstance(m, dict))
    identity = {"endpoint": service.get("endpoint", ""), "namespace": service.get("namespace", ""),
                "deployment": service.get("deployment", ""), "image": service.get("image", ""),
                "models": models}
    where = f"{identity['namespace']}/{identity['deployment']}".strip("/") or identity["endpoint"]
    label = " ".join(x for x in (where, identity["image"], ",".join(models)) if x)
    return _key(identity), label


# Configuration keys that say where a run happened, not what it did (paths, the run's own names).
_VOLATILE = ("harness_run", "harness_experiment_file", "harness_experiment_name", "harness_state",
             "harness_reports")
_OBJECTIVE = ("max_error_ratio", "max_p99_ms", "analysis")  # how windows are judged


def config_identity(configuration: Mapping[str, Any], replicas: int, time_scale: float,
                    retries: bool) -> tuple[str, str]:
    """(key, canonical JSON) of what must match for an experiment's figures to compare: the load and run
    settings (``harness_*``: rate, users, profile, warm-up, observation...), the steady-state objective,
    the number of replicas, time scale and retries. The fault's own arguments are not in it: a fault that
    now takes longer to recover from under the same load is the regression a trend exists to show."""
    kept: dict[str, Any] = {}
    for k, v in configuration.items():
        name = str(k)
        if name.startswith(_VOLATILE) or name.endswith(("_dir", "_path")):
            continue
        if name.startswith("harness_") or name in _OBJECTIVE:
            kept[name] = Path(v).name if name.endswith(("_profile", "_file")) and isinstance(v, str) else v
    doc = {"configuration": kept, "replicas": replicas, "time_scale": time_scale, "retries": retries}
    return _key(doc), json.dumps(doc, sort_keys=True, default=str)


def record_run(a: RunAnalysis, db_path: Path, git_revision: str) -> None:
    from harness import __version__

    started = a.run.get("started_ns")
    service_key, service_label = service_identity(a.run)
    with _db(db_path) as conn, _write(conn):
        for table in ("runs", "figures", "tiers"):
            conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (a.run_id,))
        conn.execute("INSERT INTO runs (run_id, started_ns, status, kind, passed, harness_version, git_revision, "
                     "recorded_at, service_key, service) VALUES (?,?,?,?,?,?,?,?,?,?)", (
                         a.run_id, int(started) if isinstance(started, int | float) else None, a.status,
                         str(a.run.get("kind") or ""), int(a.passed), __version__, git_revision,
                         datetime.now(tz=UTC).isoformat(timespec="seconds"), service_key, service_label))
        for e in a.experiments:
            info = e.reps[0].info if e.reps else None
            config_key, config_json = config_identity(
                info.configuration if info else {}, len(info.replicas) if info else 0,
                info.time_scale if info else 1.0, info.retries if info else False)
            for figure, st in e.stats.items():
                conn.execute("INSERT INTO figures (run_id, experiment, fault, figure, n, p50, p95, max, "
                             "p95_censored, config_key, configuration) VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
                                 a.run_id, e.name, e.fault, figure, st.n, st.p50, st.p95, st.max,
                                 int(st.p95_censored), config_key, config_json))
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
    reports_dir: Path, threshold: float | None, baseline: Literal["last", "median"] = "last",
    window: int = TREND_WINDOW,
) -> TrendResult:
    """Trend page and regressions: one series per experiment, service and configuration, each over its
    last ``window`` runs (the latest compared with the earlier completed ones of the same series)."""
    from harness.report._html import page
    from harness.report._plots import trend_svg

    if window < 2:
        raise ConfigError(f"the trend window must hold at least 2 runs (the latest and a baseline), got {window}")
    db_path = reports_dir / HISTORY_FILE
    if not db_path.exists():
        raise ConfigError(f"no run history at {db_path}: build reports first (harness run / harness report)")
    with _db(db_path) as conn:
        runs = conn.execute("SELECT run_id, status, passed, service_key, service FROM runs "
                            "ORDER BY COALESCE(started_ns, 0), run_id").fetchall()
        rows = conn.execute("SELECT run_id, experiment, fault, figure, p95, p95_censored, config_key "
                            "FROM figures").fetchall()
    order = {r[0]: i for i, r in enumerate(runs)}
    status = {r[0]: r[1] for r in runs}
    service_of = {r[0]: (r[3], r[4]) for r in runs}
    Series = tuple[str, str, str]  # experiment, service key, configuration key
    data: dict[Series, dict[str, dict[str, tuple[float | None, bool]]]] = {}
    faults: dict[Series, str] = {}
    labels: dict[Series, str] = {}
    for run_id, exp, fault, figure, p95, cens, config_key in rows:
        service_key, service_label = service_of.get(run_id, ("", ""))
        key = (exp, service_key, config_key)
        data.setdefault(key, {}).setdefault(figure, {})[run_id] = (p95, bool(cens))
        faults[key] = fault
        labels[key] = (f"service {service_label or 'unrecorded'}, configuration {config_key or 'unrecorded'}")
    several = {k[0] for k in data if sum(1 for o in data if o[0] == k[0]) > 1}
    result = TrendResult(page=reports_dir / "trend.html", runs=len(runs))
    sections = []
    for key in sorted(data):
        exp = key[0]
        # Named by experiment alone while it has one series, so messages stay as they were.
        series_name = f"{exp} [{labels[key]}]" if exp in several else exp
        exp_runs = sorted({rid for fig in data[key].values() for rid in fig},
                          key=lambda rid: order.get(rid, 0))[-window:]
        latest = exp_runs[-1]
        if status.get(latest) != "completed":
            result.incomplete_latest.append(f"{series_name}: latest run {latest} is {status.get(latest)}, not a pass")
        completed_before = [rid for rid in exp_runs[:-1] if status.get(rid) == "completed"]
        for figure in _REGRESSION_FIGURES:
            series = data[key].get(figure, {})
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
                             and value - base > MIN_CHANGE_S[figure])
            if worse:
                shown = "censored (not recovered)" if cens else format_duration(value or 0.0)
                result.regressions.append(Regression(
                    exp, figure, latest, value, cens, base,
                    f"{series_name} ({faults[key]}): {figure} p95 {shown} vs {baseline} baseline "
                    f"{format_duration(base)}"
                    f" (threshold +{threshold * 100:g}%)"))
        plots = []
        for figure in TREND_FIGURES:
            series = data[key].get(figure, {})
            values = [series.get(rid, (None, False))[0] for rid in exp_runs]
            if any(v is not None for v in values):
                censored = [series.get(rid, (None, False))[1] for rid in exp_runs]
                title = f"{series_name} ({faults[key]}): {figure} p95"
                statuses = [str(status.get(rid)) for rid in exp_runs]
                plots.append(trend_svg(title, exp_runs, values, censored, statuses, "s"))
        rows_html = "".join(f"<tr><td>{escape(rid)}</td><td>{escape(str(status.get(rid)))}</td></tr>"
                            for rid in exp_runs)
        sections.append(f"<section><h2>{escape(exp)} ({escape(faults[key])})</h2><p>{escape(labels[key])}; "
                        f"last {len(exp_runs)} run(s) of this series</p>{''.join(plots)}"
                        f"<table><tr><th>run</th><th>status</th></tr>{rows_html}</table></section>")
    flagged = "".join(f"<li class=\"no\">{escape(r.message)}</li>" for r in result.regressions)
    flagged += "".join(f"<li class=\"no\">{escape(m)}</li>" for m in result.incomplete_latest)
    body = (f"<h1>Resilience trend</h1><p>{len(runs)} runs in {escape(str(db_path.name))}; baseline: "
            f"{escape(baseline)} completed run(s).</p><ul>{flagged or '<li>no regressions flagged</li>'}</ul>"
            + "".join(sections))
    result.page.write_text(page("Resilience trend", body), encoding="utf-8")
    return result
