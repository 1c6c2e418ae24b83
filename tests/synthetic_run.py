"""Builds run directories that follow the run layout contract, from requests whose figures are known.

Timelines are written with ``harness.timeline.TimelineWriter`` and events with ``harness.events.Event``
(its JSON form, with chosen timestamps), so the analysis reads exactly what the runner writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.events import Event, EventKind
from harness.timeline import TimelineWriter

S = 1_000_000_000  # ns per second
BASE = 1_764_300_000 * S  # an arbitrary wall-clock origin (2025-11-28)


@dataclass(frozen=True)
class Req:
    """One request: start (seconds after BASE), latency (s), ok or an error class."""

    t: float
    latency: float = 0.01
    error: str = ""
    replica: str | None = None  # the replica that answered; None: triton-0 when ok, unknown when failed

    @property
    def ok(self) -> bool:
        return not self.error


def steady(start: float, end: float, rate: float, latency: float = 0.01, error: str = "") -> list[Req]:
    """Requests every 1/rate seconds in [start, end)."""
    n = round((end - start) * rate)
    return [Req(start + i / rate, latency, error) for i in range(n)]


def ns(t: float) -> int:
    return BASE + round(t * S)


def write_repetition(
    run_dir: Path,
    name: str,
    rep: str,
    requests: Sequence[Req],
    *,
    fault: str = "pod-kill",
    load: tuple[float, float] = (0.0, 60.0),
    fault_start: float | None = 10.0,
    fault_end: float | None = 11.0,
    observation_end: float | None = None,
    replicas: Sequence[str] = ("triton-0", "triton-1"),
    events: Iterable[tuple[float, EventKind, str]] = (),
    status: str = "completed",
    required_tier: str | None = None,
    time_scale: float = 1.0,
    analogue: str = "",
    configuration: dict[str, Any] | None = None,
    chunk: int = 1000,
    void: str | None = None,
    landings: Sequence[dict[str, Any]] | None = None,
) -> Path:
    rep_dir = run_dir / "experiments" / name / rep
    writer = TimelineWriter(rep_dir / "timeline", worker="0", flush_interval_s=1e9, max_buffered=chunk)
    for r in requests:
        writer.record(
            ns(r.t),
            r.latency,
            "ok" if r.ok else "error",
            r.error,
            200 if r.ok else -1,
            r.replica if r.replica is not None else "triton-0" if r.ok else "",
        )
    writer.close()
    info: dict[str, Any] = {
        "name": name,
        "title": f"{name} title",
        "fault": fault,
        "file": f"experiments/{fault}.yaml",
        "configuration": configuration or {},
        "load_start_ns": ns(load[0]),
        "fault_start_ns": None if fault_start is None else ns(fault_start),
        "fault_end_ns": None if fault_end is None else ns(fault_end),
        "observation_end_ns": ns(observation_end if observation_end is not None else load[1]),
        "load_end_ns": ns(load[1]),
        "status": status,
        "deviated": False,
        "replicas": list(replicas),
        "analogue": analogue,
        "time_scale": time_scale,
        "retries": False,
    }
    if required_tier is not None:
        info["required_tier"] = required_tier
    if void is not None or landings is not None:  # written by the control's fault verification
        info["void"] = void
        info["landings"] = list(landings or [])
    (rep_dir / "experiment.json").write_text(json.dumps(info, indent=2))
    lines = [Event(ns(t), kind, replica).to_json() for t, kind, replica in events]
    (rep_dir / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    (rep_dir / "journal.json").write_text(json.dumps({"status": status, "run": []}))
    (rep_dir / "settings.json").write_text(json.dumps({"time_scale": time_scale}))
    return rep_dir


def write_run(
    run_dir: Path,
    experiments: Sequence[str],
    *,
    status: str = "completed",
    started: float = 0.0,
    settings: dict[str, Any] | None = None,
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    run = {
        "schema": 1,
        "run_id": run_dir.name,
        "kind": "run",
        "started_ns": ns(started),
        "finished_ns": ns(started + 60),
        "status": status,
        "command": ["harness", "run"],
        "platform": "local",
        "settings": settings or {"time_scale": 1.0, "retries": False, "prometheus": False},
        "experiments": list(experiments),
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir
