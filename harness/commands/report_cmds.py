"""``harness report``, ``harness verify`` and ``harness trend``: evidence bundles and their history."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ConfigError

__all__ = ["register"]


def _run_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"run directory {path} does not exist; give reports/<run_id> "
                          "(the folder `harness run` printed)")
    return path


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_report

    result = build_report(
        _run_dir(args.run_dir), tiers_file=Path(args.tiers) if args.tiers else None,
        required_tier=args.required_tier, prometheus_url=args.prometheus_url,
        query_server=not args.no_prometheus, record_history=not args.no_history,
        window_s=args.window, stability_period_s=args.stability_period,
    )
    print(result.table)
    print(f"\nreport: {result.index_html}")
    return 0 if result.passed else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    from harness.report import verify_run

    result = verify_run(_run_dir(args.run_dir))
    print(f"{args.run_dir}: {result.describe()}")
    return 0 if result.ok else 1


def _cmd_trend(args: argparse.Namespace) -> int:
    from harness.report import parse_threshold, trend

    threshold = parse_threshold(args.fail_on_regression) if args.fail_on_regression else None
    result = trend(Path(args.reports), threshold, args.baseline, *([args.window] if args.window else []))
    for r in result.regressions:
        print(f"REGRESSION {r.message}")
    for line in result.incomplete_latest:
        print(f"NOT A PASS {line}")
    print(f"{result.runs} runs; trend page: {result.page}")
    if threshold is not None and (result.regressions or result.incomplete_latest):
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="(re)build the report of a run: index.html, results.json, junit.xml",
                       description="Analyse reports/<run_id> and write its evidence bundle; exit 1 when the "
                                   "run did not complete, a repetition is void, or a required tier does not pass "
                                   "the evidence gate (tiers file: evidence.gate).")
    p.add_argument("run_dir", help="the run directory, reports/<run_id>")
    p.add_argument("--tiers", help="YAML file overriding harness/reference/tiers.yaml (also $HARNESS_TIERS)")
    p.add_argument("--required-tier", help="tier every experiment must support (overrides experiment.json)")
    p.add_argument("--window", type=float, help="window size in seconds (default from the tiers file: 1)")
    p.add_argument("--stability-period", type=float, help="stability period in seconds (default 10)")
    p.add_argument("--prometheus-url", help="Prometheus to read server-side figures from (default: run.json)")
    p.add_argument("--no-prometheus", action="store_true", help="do not query Prometheus")
    p.add_argument("--no-history", action="store_true", help="do not record the run in history.sqlite")
    p.set_defaults(handler=_cmd_report)

    v = sub.add_parser("verify", help="check a report's files against its manifest.json hashes",
                       description="Exit 1 when any file was changed, added or removed since the report "
                                   "was built.")
    v.add_argument("run_dir", help="the run directory, reports/<run_id>")
    v.set_defaults(handler=_cmd_verify)

    t = sub.add_parser("trend", help="history of reported runs; write reports/trend.html, flag regressions",
                       description="Figures per fault over the runs in reports/history.sqlite.")
    t.add_argument("--reports", default="reports", help="folder holding history.sqlite")
    t.add_argument("--fail-on-regression", metavar="PCT",
                   help="exit 1 when the latest run's TTR or bad time p95 is worse than the baseline by more "
                        "than PCT (e.g. 20%%), or the latest run did not complete")
    t.add_argument("--baseline", choices=("last", "median"), default="last",
                   help="previous completed run, or the median of the previous completed runs in the window")
    t.add_argument("--window", type=int, metavar="N",
                   help="last N runs of each series (experiment, service, configuration) (default 20)")
    t.set_defaults(handler=_cmd_trend)
