"""``harness bench NAME``: run one benchmark (or ``all``) from ``harness.bench.benchmarks()``."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _cmd_all(args: argparse.Namespace) -> int:
    from harness.bench import benchmarks

    worst = 0
    for name, bench in benchmarks().items():
        print(f"== bench {name}")
        parser = argparse.ArgumentParser()
        if bench.add_arguments:
            bench.add_arguments(parser)
        worst = max(worst, bench.run(parser.parse_args([])))
    return worst


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from harness.bench import benchmarks

    p = sub.add_parser("bench", help="run a benchmark and print its figures beside the baseline",
                       description="Benchmarks print measured figures and the target; they do not assert.")
    names = p.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, bench in benchmarks().items():
        b = names.add_parser(name, help=bench.help, description=bench.help)
        if bench.add_arguments:
            bench.add_arguments(b)
        b.set_defaults(handler=bench.run)
    a = names.add_parser("all", help="run every benchmark with its defaults")
    a.set_defaults(handler=_cmd_all)
