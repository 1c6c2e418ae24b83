"""Running a game day: the runbook's steps under the live view, gates decided by people (or ``--yes``).

Everything lands in one run directory: each experiment step as ``experiments/<step>/1/``, the typed notes
in ``notes.jsonl``, and ``gameday.json`` with every step's gate answer, its expected outcome and (once the
report is built) the measured one beside it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from harness.gameday import cluster_figures
from harness.gameday.live import LiveView
from harness.gameday.runbook import Runbook
from harness.jsonfile import write_json_atomic
from harness.platforms.base import Platform
from harness.runner import RunOptions, RunSession, load_plans

__all__ = ["GameDayResult", "compare_expectations", "run_gameday"]


@dataclass
class GameDayResult:
    run_dir: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    aborted: bool = False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def run_gameday(platform: Platform, runbook: Runbook, options: RunOptions, platform_args: Mapping[str, Any],
                assume_yes: bool, interactive: bool, out: IO[str] | None = None) -> GameDayResult:
    replicas = [r.name for r in platform.status().replicas]
    experiment_steps = runbook.experiment_steps
    # Validate every experiment with its step's variables before the first step runs.
    plans = {}
    for step in experiment_steps:
        assert step.experiment is not None
        step_options = RunOptions(reports_dir=options.reports_dir, variables={**runbook.load, **step.variables})
        plans[step.name] = load_plans([step.experiment], step_options, replicas)[0]
    session = RunSession(platform, options, platform_args, f"gameday-{runbook.path.stem}", "gameday",
                         [s.name for s in experiment_steps], extra={"runbook": str(runbook.path),
                                                                    "title": runbook.title})
    result = GameDayResult(session.run_dir)
    view = LiveView(runbook.title, platform.status, lambda: session.current_rep_dir,
                    session.run_dir / "notes.jsonl", interactive=interactive, out=out,
                    cluster_figures=lambda rep: cluster_figures.sample(rep, platform))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    view.start()
    try:
        for step in runbook.steps:
            view.step = step.name
            entry: dict[str, Any] = {"name": step.name, "experiment": str(step.experiment or ""),
                                     "gate": step.gate, "expect": step.expect, "expect_max": dict(step.expect_max),
                                     "pause_s": step.pause_s, "started_ns": time.time_ns()}
            result.steps.append(entry)
            if step.experiment is None:
                session.current_rep_dir = None
                time.sleep(step.pause_s)
                entry["status"] = "paused"
                continue
            answer = view.gate(step.gate or f"Run {step.name} ({step.experiment})?", assume_yes)
            entry["answer"] = answer
            if answer == "skip":
                entry["status"] = "skipped"
                continue
            if answer == "abort":
                entry["status"] = "aborted"
                result.aborted = True
                break
            rep = session.run_repetition(plans[step.name], 1, {**runbook.load, **step.variables}, name=step.name)
            entry.update(status=rep["status"], deviated=rep["deviated"], dir=str(rep["dir"]))
            if step.pause_s:
                time.sleep(step.pause_s)
    except KeyboardInterrupt:
        result.aborted = True
        if result.steps and "status" not in result.steps[-1]:
            result.steps[-1]["status"] = "aborted"
    finally:
        view.stop()
        view.join(3)
        signal.signal(signal.SIGTERM, previous)
        session.close(result.aborted)
        write_json_atomic(session.run_dir / "gameday.json", {"title": runbook.title, "runbook": str(runbook.path),
                                                   "aborted": result.aborted or view.aborted,
                                                   "steps": result.steps, "notes": read_notes(session.run_dir)})
    result.aborted = result.aborted or view.aborted
    return result


def read_notes(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "notes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]




def compare_expectations(run_dir: Path, measured: Mapping[str, Mapping[str, float | None]]) -> list[dict[str, Any]]:
    """Put each step's measured figures beside its expect_max bounds; write them into gameday.json."""
    path = run_dir / "gameday.json"
    doc = json.loads(path.read_text())
    for step in doc["steps"]:
        figures = measured.get(step["name"], {})
        checks = []
        for key, bound in (step.get("expect_max") or {}).items():
            value = figures.get(key)
            checks.append({"figure": key, "expected_max": bound, "measured": value,
                           "met": value is not None and value <= bound})
        step["measured"] = dict(figures)
        step["checks"] = checks
    write_json_atomic(path, doc)
    return list(doc["steps"])


def print_steps(steps: list[dict[str, Any]], out: IO[str] = sys.stdout) -> None:
    for step in steps:
        checks = step.get("checks") or []
        verdict = ", ".join(f"{c['figure']} {c['measured']} {'<=' if c['met'] else '>'} {c['expected_max']}"
                            for c in checks)
        out.write(f"  {step['name']:<24} {step.get('status', '?'):<11} {step.get('expect', '')}"
                  + (f"  [{verdict}]" if verdict else "") + "\n")
