"""``harness bench NAME``: run one benchmark (or ``all``) from ``harness.bench.benchmarks()``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.bench import Benchmark

__all__ = ["register", "run_all"]


def _cmd_all(args: argparse.Namespace) -> int:
    from harness.bench import benchmarks

    return run_all(benchmarks())


def run_all(benches: Mapping[str, Benchmark]) -> int:
    """Every benchmark with its defaults; the worst exit code, so ``make bench`` fails when one misses."""
    worst = 0
    missed = []
    for name, bench in benches.items():
        print(f"== bench {name}", flush=True)
        parser = argparse.ArgumentParser()
        if bench.add_arguments:
            bench.add_arguments(parser)
        code = bench.run(parser.parse_args([]))
        if code:
            missed.append(f"{name} (exit {code})")
        worst = max(worst, code)
    print("bench: " + (f"MISSED: {', '.join(missed)}" if missed else "every target met"))
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
