"""``harness run``: run Chaos Toolkit experiments under load, one after another."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.doctor import refuse_unrunnable_files
from harness.errors import FaultError, PlatformError
from harness.load.settings import CONNECTIONS
from harness.platforms.capabilities import refuse_unsupported
from harness.platforms.kubernetes.cluster_load import add_load_placement_arguments, placement
from harness.platforms.registry import add_platform_arguments, platform_args_for_chaos, platform_from_args
from harness.report import build_report
from harness.runner import RunOptions, RunOutcome, describe_plan, load_plans, parse_vars, run_experiments
from harness.service import describe_service, record_service

__all__ = ["VOID_EXIT", "phase_counts", "register"]

VOID_EXIT = FaultError.exit_code  # 5: a fault did not land; the run is evidence of nothing


def phase_counts(rep_dir: Path) -> dict[str, dict[str, Any]]:
    """Requests and failures (by class) before, during and after the fault window.

    A request counts at the instant the analysis counts it (``effective_starts``): its start, except one
    in flight at the fault start that failed, which counts when it failed (after the fault start)."""
    from harness.analysis._stream import phase_counts as streamed  # flat memory, whatever the load's length

    info = json.loads((rep_dir / "experiment.json").read_text())
    t0 = info.get("fault_start_ns")
    t1 = info.get("fault_end_ns") or t0
    return streamed(rep_dir / "timeline", int(t0) if t0 is not None else None,
                    int(t1) if t1 is not None else None)


def _print_outcome(outcome: RunOutcome) -> None:
    for rep in outcome.repetitions:
        rep_dir = Path(rep["dir"])
        verdict = "interrupted" if rep["status"] == "interrupted" else (
            "DEVIATED" if rep["deviated"] else rep["status"])
        info = json.loads((rep_dir / "experiment.json").read_text())
        why = f" ({info['failure']})" if info.get("failure") else ""
        print(f"{rep['experiment']} #{rep['rep']}: {verdict}{why}")
        for phase, counts in phase_counts(rep_dir).items():
            classes = ", ".join(f"{k}: {v}" for k, v in counts["by_class"].items()) or "-"
            print(f"    {phase:<7} {counts['requests']:>7} requests, {counts['failed']:>5} failed ({classes})")
        for landing in info.get("landings") or []:  # the proof each fault gave (rollouts: errors per phase)
            print(f"    {'landed' if landing.get('landed') else 'NOT LANDED'}: {landing.get('fault')}: "
                  f"{landing.get('detail')}")
    print(f"run directory: {outcome.run_dir}")


def _cmd_run(args: argparse.Namespace) -> int:
    refuse_unrunnable_files([Path(e) for e in args.experiments], args.platform)  # exit 3, as harness doctor says
    platform = platform_from_args(args)
    # Bad input is reported before a platform problem: both stop the run, but only the files are the user's
    # to fix right now, and they are checked without touching anything.
    try:
        replicas = [r.name for r in platform.status().replicas]
        platform_problem: PlatformError | None = None
    except PlatformError as exc:
        replicas, platform_problem = [], exc
    variables = parse_vars(args.var or [])
    flags = {"profile": "harness_profile", "users": "harness_users", "rate": "harness_rate",
             "protocol": "harness_protocol", "observation": "harness_observation_s", "warmup": "harness_warmup_s",
             "connections": "harness_connections"}
    for flag, key in flags.items():
        if getattr(args, flag) is not None:
            variables[key] = getattr(args, flag)
    options = RunOptions(
        reports_dir=Path(args.reports_dir), repeat=args.repeat, variables=variables,
        var_files=[Path(f) for f in args.var_file or []], dry_run=args.dry_run, command=sys.argv,
    )
    plans = load_plans([Path(e) for e in args.experiments], options, replicas)
    if platform_problem is not None:
        raise platform_problem
    refuse_unsupported(platform, [(plan.path, plan.experiment) for plan in plans],
                       {plan.path: plan.configuration for plan in plans})
    if args.dry_run:
        print(describe_plan(plans, replicas, args.repeat))
        return 0
    platform_args = {**platform_args_for_chaos(args), **placement(args)}  # placement: where the load runs
    service = describe_service(platform)
    outcome = run_experiments(platform, plans, options, platform_args)
    record_service(outcome.run_dir, service)
    _print_outcome(outcome)
    passed = not outcome.failed
    if outcome.repetitions:
        report = build_report(outcome.run_dir, required_tier=args.required_tier)
        print(report.table)
        print(f"report: {report.index_html}")
        passed = passed and report.passed
    if outcome.interrupted:
        print("interrupted: rollbacks ran and every fault of this run was removed", file=sys.stderr)
        return 130
    if outcome.void:
        print("void: a fault did not land or an action failed, so these repetitions measured nothing:\n  "
              + "\n  ".join(outcome.void), file=sys.stderr)
        return VOID_EXIT
    return 0 if passed else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run", help="run Chaos Toolkit experiments under load",
        description="Validate every experiment (nothing is injected if any is invalid), then run each under the "
                    "load profile: warm-up, steady-state check, faults, rollbacks, observation.")
    add_platform_arguments(p)
    add_load_placement_arguments(p)
    p.add_argument("experiments", nargs="+", help="experiment files (YAML or JSON), run one after another")
    p.add_argument("--profile", help="load profile file (overrides harness_profile)")
    p.add_argument("--users", type=int, help="concurrent users of the profile (harness_users)")
    p.add_argument("--rate", type=float, help="open-loop target requests/s (harness_rate)")
    p.add_argument("--protocol", choices=("http", "grpc"), help="client protocol (harness_protocol)")
    p.add_argument("--connections", choices=CONNECTIONS,
                   help="HTTP: keep-alive connections in a pool (default) or a new one per request, which a "
                        "Kubernetes Service routes afresh each time (harness_connections)")
    p.add_argument("--observation", type=float, help="seconds of load after the last fault (harness_observation_s)")
    p.add_argument("--warmup", type=float, help="seconds of load before the steady-state check (harness_warmup_s)")
    p.add_argument("--var", action="append", metavar="KEY=VALUE", help="override a configuration value")
    p.add_argument("--var-file", action="append", metavar="FILE", help="YAML/JSON file of configuration values")
    p.add_argument("--repeat", type=int, default=1, help="repetitions of each experiment")
    p.add_argument("--dry-run", action="store_true", help="validate and print what would be injected; inject nothing")
    p.add_argument("--reports-dir", default="reports", help="where run directories are written")
    p.add_argument("--required-tier", help="SLA tier every experiment must support (JUnit fails otherwise)")
    p.set_defaults(handler=_cmd_run)
