"""One repetition directory (run layout contract) turned into figures.

Reads ``experiment.json``, the request timeline (``harness.timeline.read_timeline``), the platform
events and the Chaos Toolkit journal, and applies the definitions in ``_windows`` and ``_replicas``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis._replicas import CapacityRecovery, Interval, capacity_recovery, replica_lanes
from harness.analysis._settings import AnalysisSettings
from harness.analysis._windows import FloatArray, make_windows, phase_percentiles, recovery, window_series
from harness.errors import ConfigError
from harness.events import Event, read_events
from harness.timeline import read_timeline

__all__ = ["ExperimentInfo", "RepetitionResult", "analyse_repetition", "iso_utc", "read_experiment"]


def iso_utc(ns: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``, as results.json writes instants."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _opt_int(raw: dict[str, Any], key: str, problems: list[str]) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{key} must be an integer (ns) or null, got {value!r}")
        return None
    return int(value)


@dataclass(frozen=True)
class ExperimentInfo:
    """experiment.json, checked once."""

    path: Path
    name: str
    title: str
    fault: str
    status: str
    deviated: bool
    analogue: str
    time_scale: float
    retries: bool
    replicas: tuple[str, ...]
    required_tier: str | None
    load_start_ns: int | None
    fault_start_ns: int | None
    fault_end_ns: int | None
    observation_end_ns: int | None
    load_end_ns: int | None
    configuration: dict[str, Any] = field(default_factory=dict)


def read_experiment(rep_dir: Path) -> ExperimentInfo:
    path = rep_dir / "experiment.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}; is {rep_dir} a repetition directory "
                          "(experiments/<name>/<rep>/ of a run)?") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    problems: list[str] = []
    for key in ("name", "fault"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            problems.append(f"{key} must be a non-empty string")
    ints = {k: _opt_int(raw, k, problems) for k in
            ("load_start_ns", "fault_start_ns", "fault_end_ns", "observation_end_ns", "load_end_ns")}
    replicas = raw.get("replicas") or []
    if not isinstance(replicas, list):
        problems.append("replicas must be a list of replica names")
        replicas = []
    scale = raw.get("time_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
        problems.append(f"time_scale must be a positive number, got {scale!r}")
        scale = 1.0
    required = raw.get("required_tier")
    if required is not None and not isinstance(required, str):
        problems.append(f"required_tier must be a tier name or null, got {required!r}")
        required = None
    config = raw.get("configuration") or {}
    if problems:
        raise ConfigError(f"invalid {path}:\n  - " + "\n  - ".join(problems)
                          + "\n  (the run layout contract lists the fields experiment.json must have)")
    return ExperimentInfo(
        path=path, name=str(raw["name"]), title=str(raw.get("title") or raw["name"]), fault=str(raw["fault"]),
        status=str(raw.get("status") or "completed"), deviated=bool(raw.get("deviated", False)),
        analogue=str(raw.get("analogue") or ""), time_scale=float(scale),
        retries=bool(raw.get("retries", False)),
        replicas=tuple(str(r) for r in replicas), required_tier=required or None,
        configuration=config if isinstance(config, dict) else {}, **ints,
    )


def _journal_fault_start(rep_dir: Path) -> int | None:
    """Start of the first method activity in the Chaos Toolkit journal (naive ISO times are UTC)."""
    path = rep_dir / "journal.json"
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        for item in journal.get("run") or []:
            activity = item.get("activity") or {}
            if activity.get("type") == "action" and item.get("start"):
                start = datetime.fromisoformat(str(item["start"]))
                if start.tzinfo is None:
                    start = start.replace(tzinfo=UTC)
                return int(start.timestamp() * 1e9)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return None


@dataclass
class RepetitionResult:
    """The figures of one repetition, plus what plots need (series, lanes), kept out of results.json."""

    info: ExperimentInfo
    repetition: str
    directory: Path
    t0_ns: int | None
    time_to_impact_s: float | None
    time_to_recover_s: float | None  # None when censored or when no fault was injected
    recovered: bool
    ttr_lower_bound_s: float | None  # set when censored: TTR is more than this
    bad_time_s: float
    capacity: CapacityRecovery | None
    requests_total: int
    requests_failed: int
    availability_time: float | None
    availability_requests: float | None
    observed_s: float
    observation_after_fault_s: float | None
    errors_by_class: dict[str, int]
    errors_after_fault_by_class: dict[str, int]
    latency: dict[str, dict[str, float | int | None]]
    impact_ns: int | None
    recovery_ns: int | None
    span: tuple[int, int]
    series: dict[str, FloatArray]
    lanes: list[Interval]
    events: list[Event]
    notes: list[str] = field(default_factory=list)
    server: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.info.status == "completed"

    def ttr_display(self) -> str:
        if self.t0_ns is None:
            return "n/a"
        if not self.recovered:
            return f"> {self.ttr_lower_bound_s:.3f} s"
        return f"{self.time_to_recover_s:.3f} s"


def analyse_repetition(rep_dir: Path, settings: AnalysisSettings) -> RepetitionResult:
    """All figures of one repetition; bad input (missing experiment.json fields) raises ConfigError."""
    info = read_experiment(rep_dir)
    notes: list[str] = []
    frame = read_timeline(rep_dir / "timeline")
    start = frame["start_ns"].to_numpy(dtype=np.int64)
    latency = frame["latency_s"].to_numpy(dtype=np.float64)
    ok = (frame["outcome"] == "ok").to_numpy(dtype=bool)
    events = list(read_events(rep_dir / "events.jsonl"))
    # An events file with no records means no replica changed state (they stayed ready), not "unknown".
    has_events_file = (rep_dir / "events.jsonl").exists()
    if not len(start) and info.load_start_ns is None:
        raise ConfigError(f"{rep_dir}: the timeline is empty and experiment.json has no load_start_ns; "
                          "nothing to analyse")
    span_start = info.load_start_ns if info.load_start_ns is not None else int(start[0])
    span_end = info.load_end_ns if info.load_end_ns is not None else int(start[-1]) + 1
    if span_end <= span_start:
        raise ConfigError(f"{info.path}: load_end_ns ({span_end}) is not after load_start_ns ({span_start})")
    outside = int(np.count_nonzero((start < span_start) | (start >= span_end)))
    if outside:
        notes.append(f"{outside} requests started outside the load period and were left out")
    inside = start[(start >= span_start) & (start < span_end)]
    if len(inside) and inside[0] > span_start:
        # Observation begins with the first request: before it the load generator had asked nothing.
        gap_s = (int(inside[0]) - span_start) / 1e9
        if gap_s > settings.window_s:
            notes.append(f"the first request was sent {gap_s:.3f} s after the load period began; "
                         "the observed period starts there")
        span_start = int(inside[0])
    t0 = info.fault_start_ns
    journal_t0 = _journal_fault_start(rep_dir)
    if t0 is None and journal_t0 is not None and info.fault_end_ns is not None:
        t0 = journal_t0
        notes.append("fault start taken from the Chaos Toolkit journal (experiment.json had none)")
    elif t0 is not None and journal_t0 is not None and abs(journal_t0 - t0) > 1_000_000_000:
        notes.append(f"the journal's first action started {(journal_t0 - t0) / 1e9:+.3f} s "
                     "from fault_start_ns")
    obs_end = info.observation_end_ns if info.observation_end_ns is not None else span_end
    if obs_end > span_end:
        notes.append(f"observation ended {(obs_end - span_end) / 1e9:.3f} s after the load stopped; "
                     "the observation is cut at the end of the load")
        obs_end = span_end
    if t0 is not None and not span_start <= t0 < span_end:
        notes.append("the fault started outside the observed load period; impact and recovery cannot be "
                     "measured")
        t0 = None
    anchor = t0 if t0 is not None else span_start
    w = make_windows(start, latency, ok, anchor_ns=anchor, span=(span_start, span_end),
                     cuts=[obs_end], settings=settings)
    # Availability covers the observed period: from the first request to the end of observation (the
    # load generator's shutdown after it is not observation).
    in_span = slice(int(np.searchsorted(start, span_start)), int(np.searchsorted(start, obs_end)))
    total = int(in_span.stop - in_span.start)
    failed = int(np.count_nonzero(~ok[in_span]))
    observed = w.end_ns <= obs_end
    dur = w.duration_ns
    span_ns = int(dur[observed].sum())
    availability_time = float(dur[observed & w.good].sum() / span_ns) if span_ns else None
    availability_requests = (total - failed) / total if total else None
    fault_end = info.fault_end_ns if info.fault_end_ns is not None else obs_end
    errors = frame["error_class"].iloc[in_span][~ok[in_span]].value_counts()
    errors_by_class = {str(k) or "unclassified": int(v) for k, v in errors.items()}
    tti = ttr = lower = None
    recovered, bad_s, impact_ns, recovery_ns = True, 0.0, None, None
    capacity: CapacityRecovery | None = None
    errors_after: dict[str, int] = {}
    after_s = None
    if t0 is not None:
        rec = recovery(w, start, latency, ok, t0_ns=t0, observation_end_ns=obs_end, settings=settings)
        after_s = rec.observed_after_ns / 1e9
        bad_s = rec.bad_ns / 1e9
        recovered = rec.recovered
        impact_ns = rec.impact_ns
        recovery_ns = rec.recovery_ns
        if rec.impact_ns is not None:
            tti = (rec.impact_ns - t0) / 1e9
        if rec.recovery_ns is None:
            ttr = 0.0
        elif rec.recovered:
            ttr = (rec.recovery_ns - t0) / 1e9
        else:
            lower = (rec.recovery_ns - t0) / 1e9
        if after_s < settings.stability_period_s:
            notes.append(f"observation after the fault ({after_s:.1f} s) is shorter than the stability "
                         f"period ({settings.stability_period_s:g} s)")
        capacity = capacity_recovery(events, info.replicas, t0, obs_end)
        a, b = np.searchsorted(start, [t0, obs_end])
        err_after = frame["error_class"].iloc[a:b][~ok[a:b]].value_counts()
        errors_after = {str(k) or "unclassified": int(v) for k, v in err_after.items()}
        phases = {"before": (span_start, t0), "during": (t0, max(t0, fault_end)),
                  "after": (max(t0, fault_end), obs_end)}
    else:
        notes.append("no fault was injected in this repetition (no fault start)")
        phases = {"before": (span_start, obs_end), "during": (obs_end, obs_end), "after": (obs_end, obs_end)}
    if not events and not has_events_file:
        notes.append("no platform events: replica lanes and capacity recovery are unavailable")
        capacity = None if not info.replicas else capacity
    return RepetitionResult(
        info=info, repetition=rep_dir.name, directory=rep_dir, t0_ns=t0,
        time_to_impact_s=tti, time_to_recover_s=ttr, recovered=recovered, ttr_lower_bound_s=lower,
        bad_time_s=bad_s, capacity=capacity if events or has_events_file else None,
        requests_total=total, requests_failed=failed,
        availability_time=availability_time, availability_requests=availability_requests,
        observed_s=span_ns / 1e9, observation_after_fault_s=after_s,
        errors_by_class=errors_by_class, errors_after_fault_by_class=errors_after,
        latency=phase_percentiles(start, latency, ok, phases),
        impact_ns=impact_ns, recovery_ns=recovery_ns, span=(span_start, span_end),
        series=window_series(w, latency, ok),
        lanes=replica_lanes(events, info.replicas, (span_start, span_end)),
        events=events, notes=notes,
    )
