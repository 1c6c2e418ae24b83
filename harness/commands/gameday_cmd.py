"""``harness gameday RUNBOOK``: run a game day with a live view, gates and notes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.doctor import refuse_unrunnable_files
from harness.errors import ConfigError
from harness.gameday.runbook import load_runbook
from harness.gameday.session import compare_expectations, print_steps, run_gameday
from harness.platforms.capabilities import refuse_unsupported
from harness.platforms.kubernetes.cluster_load import add_load_placement_arguments, placement
from harness.platforms.registry import add_platform_arguments, platform_args_for_chaos, platform_from_args
from harness.report import build_report
from harness.run_settings import load_document
from harness.runner import RunOptions
from harness.service import describe_service, record_service

__all__ = ["measured_figures", "register"]


def measured_figures(rep: Any) -> dict[str, float | None]:
    """The figures a runbook step can bound (``expect_max``), from one analysed repetition; none from a
    void one (its fault did not land), so no expectation can be met by it."""
    if getattr(rep, "void", None) is not None:
        return dict.fromkeys(("time_to_impact_s", "time_to_recover_s", "bad_time_s", "capacity_recovery_s",
                              "error_ratio", "p99_ms"))
    during = (rep.latency or {}).get("during") or {}
    p99 = during.get("p99_s")
    return {
        "time_to_impact_s": rep.time_to_impact_s,
        "time_to_recover_s": rep.time_to_recover_s,
        "bad_time_s": rep.bad_time_s,
        "capacity_recovery_s": rep.capacity.seconds if rep.capacity else None,
        "error_ratio": rep.requests_failed / rep.requests_total if rep.requests_total else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
    }


def _experiment(path: Path) -> dict[str, Any]:
    try:
        data = load_document(path)
    except ConfigError:
        return {}  # load_plans reports it, with every other problem
    return data if isinstance(data, dict) else {}


def _cmd_gameday(args: argparse.Namespace) -> int:
    runbook = load_runbook(Path(args.runbook))
    refuse_unrunnable_files([s.experiment for s in runbook.experiment_steps if s.experiment], args.platform)
    platform = platform_from_args(args)
    interactive = not args.yes and sys.stdin.isatty()
    if not args.yes and not interactive:
        print("error: the game day needs a terminal for its gates and keys; use --yes to take every gate "
              "(rehearsals, CI)", file=sys.stderr)
        return 2
    refuse_unsupported(platform, [(step.experiment, _experiment(step.experiment))
                                  for step in runbook.experiment_steps if step.experiment is not None])
    service = describe_service(platform)
    options = RunOptions(reports_dir=Path(args.reports_dir), command=sys.argv)
    platform_args = {**platform_args_for_chaos(args), **placement(args)}  # placement: where the load runs
    result = run_gameday(platform, runbook, options, platform_args, args.yes, interactive)
    record_service(result.run_dir, service)
    passed = not result.aborted
    measured: dict[str, dict[str, float | None]] = {}
    if any(s.get("dir") for s in result.steps):
        report = build_report(result.run_dir)
        for experiment in report.analysis.experiments:
            if experiment.reps:
                measured[experiment.name] = measured_figures(experiment.reps[0])
        steps = compare_expectations(result.run_dir, measured)
        report = build_report(result.run_dir, record_history=False)  # again, to show the comparison
        print(report.table)
        print_steps(steps)
        print(f"report: {report.index_html}")
        passed = passed and all(c["met"] for s in steps for c in s.get("checks", []))
    print(f"game day {'aborted (rolled back)' if result.aborted else 'finished'}; run directory: {result.run_dir}")
    if result.aborted:
        return 130
    return 0 if passed else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gameday", help="run a game day runbook with a live view, gates and notes",
        description="Run a runbook's steps one by one under load with a live view (requests/s, errors, p50/p99, "
                    "replicas, the active fault). Keys: a abort (rolls back), n note; at a gate g/s/a.")
    add_platform_arguments(p)
    add_load_placement_arguments(p)
    p.add_argument("runbook", help="runbook file, e.g. experiments/gamedays/pre-release.yaml")
    p.add_argument("--yes", action="store_true", help="take every gate (rehearsals in CI); no keys, plain lines")
    p.add_argument("--reports-dir", default="reports", help="where the run directory is written")
    p.set_defaults(handler=_cmd_gameday)
