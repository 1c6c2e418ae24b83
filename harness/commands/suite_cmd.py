"""``harness suite NAME``: a suite of experiments with required tiers and a regression gate.

It always writes the report, the JUnit file and the trend page; it exits non-zero only when a required
tier's verdict does not pass the evidence gate (``evidence.gate``: supported, or also indicative), a
repetition is void (its fault did not land), a figure regressed beyond the suite's rule, or the run did
not complete (an interrupted or crashed run is recorded as such in history, never as a pass).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.analysis import load_settings
from harness.commands.run_cmd import VOID_EXIT, _print_outcome
from harness.doctor import refuse_unrunnable_files
from harness.errors import ConfigError, HarnessError
from harness.jsonfile import write_json_atomic
from harness.platforms.base import Platform
from harness.platforms.capabilities import refuse_unsupported
from harness.platforms.kubernetes.cluster_load import add_load_placement_arguments, placement
from harness.platforms.registry import (
    PlatformRef,
    add_platform_arguments,
    platform_args_for_chaos,
    platform_from_args,
)
from harness.report import build_report, parse_threshold, trend
from harness.runner import RunOptions, RunOutcome, load_plans, parse_vars, run_experiments
from harness.service import describe_service, record_service
from harness.suite import find_suite, load_suite

__all__ = ["register", "run_suite"]


def run_suite(platform: Platform, suite_file: Path, reports_dir: Path, platform_args: dict[str, Any],
              repeat: int | None = None, variables: dict[str, Any] | None = None,
              fail_on_regression: str | None = None, tiers: Path | None = None,
              skip: Callable[[Path], str] | None = None) -> int:
    """Run a suite end to end (experiments, report, trend) and return the exit code the CLI should use.

    ``skip`` may name a reason to leave an experiment out (the demo skips what this machine cannot inject);
    any other experiment this machine cannot inject stops the suite before anything starts (exit 3).
    """
    settings = load_settings(tiers)
    suite = load_suite(suite_file, {t.name for t in settings.tiers})
    settings.with_evidence(suite.evidence, f"suite {suite_file}")  # checked before anything runs
    refuse_unrunnable_files([e.file for e in suite.entries if not (skip and skip(e.file))],
                            PlatformRef.from_configuration(platform_args).name)  # exit 3 now, as harness doctor says
    replicas = [r.name for r in platform.status().replicas]
    repeat = repeat or suite.repeat
    threshold = parse_threshold(fail_on_regression) if fail_on_regression else suite.threshold
    plans, per_plan = [], {}
    problems: list[str] = []
    for entry in suite.entries:
        reason = skip(entry.file) if skip else ""
        if reason:
            print(f"skipping {entry.file}: {reason}")
            continue
        entry_vars: dict[str, Any] = {**suite.load, **entry.variables, **(variables or {})}
        if entry.required_tier:
            entry_vars["harness_required_tier"] = entry.required_tier
        options = RunOptions(reports_dir=reports_dir, repeat=repeat, variables=entry_vars)
        try:
            plan = load_plans([entry.file], options, replicas)[0]
        except ConfigError as exc:  # every entry is checked before anything runs, and all problems shown
            problems.extend(line for line in str(exc).splitlines()[1:])
            continue
        plans.append(plan)
        per_plan[plan.name] = entry_vars
    if problems:
        raise ConfigError(f"the suite {suite_file} is not valid; nothing was injected:\n" + "\n".join(problems))
    refuse_unsupported(platform, [(plan.path, plan.experiment) for plan in plans],
                       {plan.path: plan.configuration for plan in plans})
    service = describe_service(platform)
    options = RunOptions(reports_dir=reports_dir, repeat=repeat, command=sys.argv)
    crashed: HarnessError | None = None
    outcome: RunOutcome | None = None
    try:
        outcome = run_experiments(platform, plans, options, platform_args, slug=suite.name, variables=per_plan)
    except HarnessError as exc:  # recorded as crashed below, never as a pass
        crashed = exc
    run_dir = outcome.run_dir if outcome else _latest_run(reports_dir)
    if run_dir is not None and outcome is not None:
        record_service(run_dir, service)
    if crashed is not None and run_dir is not None:
        _mark(run_dir, "crashed", str(crashed))
    if outcome is not None:
        _print_outcome(outcome)
    if run_dir is None:
        raise crashed or HarnessError("the suite produced no run directory")
    report = build_report(run_dir, tiers_file=tiers, evidence=suite.evidence)
    print(report.table)
    result = trend(reports_dir, threshold, suite.baseline)
    for reg in result.regressions:
        print(f"REGRESSION: {reg.message}")
    missed = [f"{e.name}: required tier {e.required_tier} is {e.tiers[e.required_tier].outcome} (the gate "
              f"needs {'supported or indicative' if e.gate == 'indicative' else 'supported'})"
              for e in report.analysis.experiments if e.required_tier and e.required_failed]
    for line in missed:
        print(f"FAILED: {line}")
    for line in report.void_repetitions:
        print(f"VOID: {line}")
    print(f"report: {report.index_html}\njunit: {report.junit_xml}\ntrend: {result.page}")
    if crashed is not None:
        print(f"error: the suite crashed: {crashed}", file=sys.stderr)
        return crashed.exit_code
    if outcome is not None and outcome.interrupted:
        return 130
    if report.void_repetitions:  # listed above with VOID:
        return VOID_EXIT
    return 1 if missed or result.regressions else 0


def _cmd_suite(args: argparse.Namespace) -> int:
    platform = platform_from_args(args)
    platform_args = {**platform_args_for_chaos(args), **placement(args)}  # placement: where the load runs
    suite_file = find_suite(args.suite, platform.name)
    if suite_file.stem != args.suite and not Path(args.suite).exists():
        print(f"suite {args.suite} on {platform.name}: {suite_file} (the same faults, sized for {platform.name})")
    return run_suite(platform, suite_file, Path(args.reports_dir), platform_args, args.repeat,
                     parse_vars(args.var or []), args.fail_on_regression, Path(args.tiers) if args.tiers else None)


def _latest_run(reports: Path) -> Path | None:
    runs = sorted((p for p in reports.glob("*/run.json")), key=lambda p: p.stat().st_mtime)
    return runs[-1].parent if runs else None


def _mark(run_dir: Path, status: str, why: str) -> None:
    path = run_dir / "run.json"
    meta = json.loads(path.read_text())
    meta.update(status=status, error=why, finished_ns=time.time_ns())
    write_json_atomic(path, meta)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "suite", help="run a suite (experiments/suites/NAME.yaml) with tier and regression gates",
        description="Run every experiment of a suite with its repetitions, load and required tier; write the "
                    "report, JUnit and trend page; exit 1 only on a missed required tier or a regression.")
    add_platform_arguments(p)
    add_load_placement_arguments(p)
    p.add_argument("suite", help="suite name (experiments/suites/NAME.yaml) or file")
    p.add_argument("--repeat", type=int, help="override the suite's repetitions")
    p.add_argument("--var", action="append", metavar="KEY=VALUE", help="configuration value for every experiment")
    p.add_argument("--fail-on-regression", metavar="PCT", help="override the suite's regression threshold")
    p.add_argument("--tiers", help="SLA tiers settings file (default: the shipped tiers)")
    p.add_argument("--reports-dir", default="reports", help="where run directories and history are kept")
    p.set_defaults(handler=_cmd_suite)
