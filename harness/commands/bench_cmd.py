"""``harness bench NAME`` and ``harness bench all``: run the benchmarks in ``harness.bench.BENCHMARKS``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from harness.bench import BENCHMARKS

__all__ = ["register"]


def _function(name: str) -> Any:
    module, _, func = BENCHMARKS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def _cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    worst = 0
    for name in names:
        print(f"== bench {name}", flush=True)
        worst = max(worst, int(_function(name)(args)))
    return worst


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="run benchmarks (numbers beside a baseline, with ratios)",
                       description="Run one benchmark, or all of them in order: " + ", ".join(BENCHMARKS))
    p.add_argument("benchmark", choices=("all", *BENCHMARKS), help="which benchmark")
    for target in BENCHMARKS.values():
        module = importlib.import_module(target.partition(":")[0])
        add = getattr(module, "add_arguments", None)
        if add is not None:
            add(p)
    p.set_defaults(handler=_cmd_bench)
