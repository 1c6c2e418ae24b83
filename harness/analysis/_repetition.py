"""One repetition directory (run layout contract) turned into figures.

Reads ``experiment.json``, the request timeline (compacted, then scanned in flat memory by
``_stream.figures_streamed``), the platform
events and the Chaos Toolkit journal, and applies the definitions in ``_windows`` and ``_replicas``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from harness.analysis._budget import Incident, incident_figures
from harness.analysis._readiness import DEFAULT_PROBE_PERIOD_S, Readiness, assess_readiness
from harness.analysis._replicas import CapacityRecovery, Interval, capacity_recovery, replica_lanes
from harness.analysis._settings import AnalysisSettings
from harness.analysis._stream import figures_streamed
from harness.analysis._timeline import TimelineQuestion
from harness.analysis._windows import BoolArray, FloatArray, IntArray, effective_starts
from harness.errors import ConfigError
from harness.events import Event, read_events
from harness.timeline import copied_workers, workers_note
from harness.timeline_store import CompactTimeline, compact

__all__ = [
    "ExperimentInfo",
    "RepetitionResult",
    "TtrState",
    "analyse_repetition",
    "iso_utc",
    "read_experiment",
    "void_repetition",
]


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
    # Written by the Chaos Toolkit control (fault verification): a one-line reason when the fault did not
    # land or a method action failed (the repetition is void: no figures), and each injection's check.
    void: str | None = None
    landings: tuple[dict[str, Any], ...] = ()


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
    void = raw.get("void")
    if void is not None and (not isinstance(void, str) or not void.strip()):
        problems.append(f"void must be null or a one-line reason, got {void!r}")
        void = "void (no reason given)"
    landings = raw.get("landings") or []
    if not isinstance(landings, list) or not all(isinstance(x, dict) for x in landings):
        problems.append("landings must be a list of objects {fault, targets, check, landed, ...}")
        landings = []
    if problems:
        raise ConfigError(f"invalid {path}:\n  - " + "\n  - ".join(problems)
                          + "\n  (the run layout contract lists the fields experiment.json must have)")
    return ExperimentInfo(
        path=path, name=str(raw["name"]), title=str(raw.get("title") or raw["name"]), fault=str(raw["fault"]),
        status=str(raw.get("status") or "completed"), deviated=bool(raw.get("deviated", False)),
        analogue=str(raw.get("analogue") or ""), time_scale=float(scale),
        retries=bool(raw.get("retries", False)),
        replicas=tuple(str(r) for r in replicas), required_tier=required or None,
        configuration=config if isinstance(config, dict) else {},
        void=" ".join(str(void).split()) if void is not None else None, landings=tuple(landings), **ints,
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


# What a repetition says about recovery: the states of ``Recovery`` plus the two without figures.
TtrState = Literal["no-impact", "recovered", "censored", "inconclusive", "no-fault", "void"]


@dataclass
class RepetitionResult:
    """The figures of one repetition, plus what plots need (series, lanes), kept out of results.json."""

    info: ExperimentInfo
    repetition: str
    directory: Path
    t0_ns: int | None
    time_to_impact_s: float | None
    time_to_recover_s: float | None  # None when censored, inconclusive, void or when no fault was injected
    recovered: bool  # recovered or no impact (then TTR 0)
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
    state: TtrState = "recovered"
    # Observation after the fault end (s), and the stability period it had to reach for a conclusion.
    observation_after_fault_end_s: float | None = None
    stability_period_s: float = 0.0
    # Each replica ready after the fault: its ready-to-serving gap (``_readiness``); the incident's
    # tier-independent error-budget figures (``_budget``). None without a fault.
    readiness: Readiness | None = None
    incident: Incident | None = None

    @property
    def complete(self) -> bool:
        return self.info.status == "completed"

    @property
    def void(self) -> str | None:
        """Why the repetition is void (its fault did not land, or a method action failed), else None."""
        return self.info.void

    @property
    def inconclusive(self) -> bool:
        return self.state == "inconclusive"

    @property
    def counts(self) -> bool:
        """Whether the repetition is evidence at all: not void, and a fault was injected."""
        return self.void is None and self.t0_ns is not None

    def ttr_value(self) -> tuple[float, bool] | None:
        """TTR for statistics: ``(value, censored)``; a censored value is a lower bound. Inconclusive
        counts as censored at 0 (TTR is 0 or more: nothing after the fault was seen long enough)."""
        if not self.counts:
            return None
        if self.state in ("recovered", "no-impact"):
            return float(self.time_to_recover_s or 0.0), False
        if self.state == "censored":
            return float(self.ttr_lower_bound_s or 0.0), True
        return 0.0, True

    def ttr_display(self) -> str:
        if self.void is not None:
            return "void"
        if self.t0_ns is None:
            return "n/a"
        if self.state == "inconclusive":
            return "inconclusive"
        if not self.recovered:
            return f"> {self.ttr_lower_bound_s:.3f} s"
        return f"{self.time_to_recover_s:.3f} s"

    def deciding_observation_s(self) -> float | None:
        """For an inconclusive repetition: the observation after the fault start that would decide it."""
        if self.state != "inconclusive" or self.t0_ns is None:
            return None
        fault_end = self.info.fault_end_ns if self.info.fault_end_ns is not None else self.t0_ns
        return max(0.0, (fault_end - self.t0_ns) / 1e9) + self.stability_period_s


def void_repetition(rep_dir: Path, info: ExperimentInfo) -> RepetitionResult:
    """A void repetition: its fault did not land (or a method action failed), so nothing is measured.

    The timeline is not even read: whatever it shows was not caused by the fault under test."""
    return RepetitionResult(
        info=info, repetition=rep_dir.name, directory=rep_dir, t0_ns=None, time_to_impact_s=None,
        time_to_recover_s=None, recovered=False, ttr_lower_bound_s=None, bad_time_s=0.0, capacity=None,
        requests_total=0, requests_failed=0, availability_time=None, availability_requests=None,
        observed_s=0.0, observation_after_fault_s=None, errors_by_class={}, errors_after_fault_by_class={},
        latency={}, impact_ns=None, recovery_ns=None, span=(0, 0), series={}, lanes=[], events=[],
        notes=[f"void: {info.void}; this repetition yields no figures"], state="void",
    )


# Requests that started this long before the fault and were still in flight at it count at their failure; no
# client of the harness waits longer (request timeouts are seconds).
_IN_FLIGHT_MARGIN_NS = 600 * 1_000_000_000
# Readiness and the incident's budget hold the fault window's requests in memory; beyond this many (about 33
# minutes of fault at 1,000 req/s) they are not computed, and the repetition says so, so memory stays flat.
FAULT_WINDOW_LIMIT = 2_000_000


def _fault_window_requests(store: CompactTimeline, t0: int, obs_end: int
                           ) -> tuple[IntArray, FloatArray, BoolArray, npt.NDArray[Any]] | int:
    """The requests that count in [t0, observation end) (instants, latency, ok, replica), sorted by the instant
    they count at: read from the row groups whose statistics overlap it, so memory follows the fault's
    window, not the whole timeline. What readiness and the incident's budget are computed from."""
    import pyarrow as pa

    lo = t0 - _IN_FLIGHT_MARGIN_NS
    columns = ["start_ns", "latency_s", "outcome", "replica"]
    groups = [g for g in store.groups if g.start_max >= lo and g.start_min < obs_end]
    if (rows := sum(g.rows for g in groups)) > FAULT_WINDOW_LIMIT:
        return rows  # too many to hold: the caller notes it
    parts = [store.read(g, columns) for g in groups]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=object)
    table = pa.concat_tables(parts)
    start = table.column("start_ns").to_numpy().astype(np.int64)
    latency = table.column("latency_s").to_numpy().astype(np.float64)
    ok = np.asarray(table.column("outcome").to_pandas().astype(str) == "ok", dtype=bool)
    replica = np.asarray(table.column("replica").to_pandas().astype(str), dtype=object)
    # Row groups hold requests in the order they *ended* (the load writes each when it finishes); the order
    # ``effective_starts`` returns sorts them by the counting instant, which the searches below need.
    instants, order = effective_starts(start, latency, ok, t0)
    instants, latency, ok, replica = instants[order], latency[order], ok[order], replica[order]
    keep = slice(int(np.searchsorted(instants, t0)), int(np.searchsorted(instants, obs_end)))
    return instants[keep], latency[keep], ok[keep], replica[keep]


def analyse_repetition(rep_dir: Path, settings: AnalysisSettings) -> RepetitionResult:
    """All figures of one repetition; bad input (missing experiment.json fields) raises ConfigError.

    A void repetition (experiment.json ``void``: the fault did not land) yields no figures."""
    info = read_experiment(rep_dir)
    if info.void is not None:
        return void_repetition(rep_dir, info)
    notes: list[str] = []
    if (copied := copied_workers(rep_dir / "timeline")) is not None:  # load from Kubernetes worker pods
        notes.append(workers_note(copied))
    events = list(read_events(rep_dir / "events.jsonl"))
    # An events file with no records means no replica changed state (they stayed ready), not "unknown".
    has_events_file = (rep_dir / "events.jsonl").exists()
    t0 = info.fault_start_ns
    journal_t0 = _journal_fault_start(rep_dir)
    if t0 is None and journal_t0 is not None and info.fault_end_ns is not None:
        t0 = journal_t0
        notes.append("fault start taken from the Chaos Toolkit journal (experiment.json had none)")
    elif t0 is not None and journal_t0 is not None and abs(journal_t0 - t0) > 1_000_000_000:
        notes.append(f"the journal's first action started {(journal_t0 - t0) / 1e9:+.3f} s "
                     "from fault_start_ns")
    question = TimelineQuestion(load_start_ns=info.load_start_ns, load_end_ns=info.load_end_ns,
                                observation_end_ns=info.observation_end_ns, t0_ns=t0,
                                fault_end_ns=info.fault_end_ns, where=info.path, rep_dir=rep_dir)
    # The load has stopped: fold its one-second chunks into one file, then scan it in flat memory.
    compacted = compact(rep_dir / "timeline") if (rep_dir / "timeline").is_dir() else None
    store = CompactTimeline(compacted) if compacted else None
    fig = figures_streamed(store, question, settings)
    notes.extend(fig.notes)
    t0, obs_end = fig.t0_ns, fig.obs_end
    span_start, span_end = fig.span
    total, failed = fig.total, fig.failed
    tti = ttr = lower = after_end_s = None
    recovered, bad_s, impact_ns, recovery_ns = True, 0.0, None, None
    state: TtrState = "no-fault"
    capacity: CapacityRecovery | None = None
    readiness: Readiness | None = None
    incident: Incident | None = None
    after_s = None
    rec = fig.recovery
    if t0 is not None and rec is not None:
        after_s = rec.observed_after_ns / 1e9
        after_end_s = rec.observed_after_fault_end_ns / 1e9
        bad_s = rec.bad_ns / 1e9
        state = rec.state
        recovered = rec.recovered
        impact_ns = rec.impact_ns
        recovery_ns = rec.recovery_ns
        if rec.impact_ns is not None:
            tti = (rec.impact_ns - t0) / 1e9
        if rec.state == "no-impact":
            ttr = 0.0
        elif rec.state == "recovered" and rec.recovery_ns is not None:
            ttr = (rec.recovery_ns - t0) / 1e9
        elif rec.state == "censored" and rec.recovery_ns is not None:
            lower = (rec.recovery_ns - t0) / 1e9
        if rec.state == "inconclusive":
            notes.append(f"inconclusive: no bad window, but only {after_end_s:.1f} s were observed after the "
                         f"fault ended, less than the stability period ({settings.stability_period_s:g} s); "
                         "this is not evidence of no impact")
        elif after_s < settings.stability_period_s:
            notes.append(f"observation after the fault ({after_s:.1f} s) is shorter than the stability "
                         f"period ({settings.stability_period_s:g} s)")
        capacity = capacity_recovery(events, info.replicas, t0, obs_end)
        window = _fault_window_requests(store, t0, obs_end) if store is not None else None
        if isinstance(window, int):
            notes.append(f"readiness and error budget not computed: the fault's window holds {window:,} requests "
                         f"(over {FAULT_WINDOW_LIMIT:,}, kept out of memory)")
        elif window is not None:
            fault_end = info.fault_end_ns if info.fault_end_ns is not None else obs_end
            start, latency, ok, replica = window
            readiness = assess_readiness(
                events, replica, start, latency, ok, t0_ns=t0, observation_end_ns=obs_end,
                slow_s=settings.objective.p99_latency_s,
                default_period_s=DEFAULT_PROBE_PERIOD_S * info.time_scale)
            ongoing = rec.state in ("censored", "inconclusive")
            incident_end = (obs_end if ongoing else rec.recovery_ns if rec.state == "recovered" and rec.recovery_ns
                            else max(t0, fault_end))
            incident = incident_figures(start, ok, t0_ns=t0, end_ns=int(incident_end), ongoing=ongoing,
                                        observation_end_ns=obs_end, bad_time_s=bad_s, requests_total=total,
                                        observed_s=fig.observed_ns / 1e9)
    else:
        notes.append("no fault was injected in this repetition (no fault start)")
    if not events and not has_events_file:
        notes.append("no platform events: replica lanes and capacity recovery are unavailable")
        capacity = None if not info.replicas else capacity
    return RepetitionResult(
        info=info, repetition=rep_dir.name, directory=rep_dir, t0_ns=t0,
        time_to_impact_s=tti, time_to_recover_s=ttr, recovered=recovered, ttr_lower_bound_s=lower,
        bad_time_s=bad_s, capacity=capacity if events or has_events_file else None,
        requests_total=total, requests_failed=failed,
        availability_time=fig.availability_time,
        availability_requests=(total - failed) / total if total else None,
        observed_s=fig.observed_ns / 1e9, observation_after_fault_s=after_s,
        errors_by_class=fig.errors_by_class, errors_after_fault_by_class=fig.errors_after_fault_by_class,
        latency=fig.latency,
        impact_ns=impact_ns, recovery_ns=recovery_ns, span=(span_start, span_end),
        series=fig.series,
        lanes=replica_lanes(events, info.replicas, (span_start, span_end)),
        events=events, notes=notes, state=state, observation_after_fault_end_s=after_end_s,
        stability_period_s=settings.stability_period_s, readiness=readiness, incident=incident,
    )
