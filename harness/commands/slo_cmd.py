"""``harness slo export``: a run's SLOs and measured error budget as an OpenSLO v1 document."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import ConfigError

__all__ = ["register"]


def _cmd_export(args: argparse.Namespace) -> int:
    from harness.openslo import openslo_documents, read_results, render_yaml

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist; give reports/<run_id> "
                          "(the folder `harness run` printed)")
    results, run = read_results(run_dir)
    text = render_yaml(openslo_documents(results, run, args.budgeting_method))
    if args.out:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
        out.write_text(text, encoding="utf-8")
        print(f"OpenSLO v1 document ({args.budgeting_method}): {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("slo", help="service level objectives: export a run's error budget (OpenSLO)",
                       description="Service level objectives from a run's report.")
    slo_sub = p.add_subparsers(dest="slo_command", metavar="SUBCOMMAND", required=True)
    e = slo_sub.add_parser(
        "export", help="write an OpenSLO v1 document: Service, SLI, one SLO per tier, measured figures",
        description="Write the run's tiers as OpenSLO v1 SLOs (Service, SLI good/all requests, one SLO per tier) "
                    "with what the run measured (budget spent per incident, incidents that fit a month, burn "
                    "rate, TTR, verdict, ready-to-serving gap) as annotations. Reads results.json "
                    "(harness report builds it). docs/measurement.md, \"Error budget per fault\".")
    e.add_argument("run_dir", help="the run directory, reports/<run_id>")
    e.add_argument("--format", choices=["openslo"], default="openslo", help="document format")
    e.add_argument("--budgeting-method", choices=["Occurrences", "Timeslices"], default="Occurrences",
                   help="OpenSLO budgeting method of each SLO: good requests (Occurrences) or good analysis "
                        "windows (Timeslices)")
    e.add_argument("--out", help="file to write (default: standard output)")
    e.set_defaults(handler=_cmd_export)
