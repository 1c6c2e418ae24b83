"""Benchmarks, run by ``harness bench NAME`` (``harness bench all`` runs each in turn).

Performance targets are checked here, printed beside their baseline, never as timed unit tests. A
benchmark is a plain function of its parsed options returning an exit code; ``benchmarks()`` is the
explicit mapping of names to benchmarks (built on call, so nothing is registered at import time).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Benchmark", "benchmarks"]


@dataclass(frozen=True)
class Benchmark:
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def benchmarks() -> dict[str, Benchmark]:
    from harness.bench import accuracy, analysis, load, sandbox

    return {
        "load": Benchmark(_summary(load.__doc__), load.run, load.add_arguments),
        "analysis": Benchmark(_summary(analysis.__doc__), analysis.run, analysis.add_arguments),
        "accuracy": Benchmark(_summary(accuracy.__doc__), accuracy.run, accuracy.add_arguments),
        "sandbox": Benchmark(_summary(sandbox.__doc__), sandbox.run, sandbox.add_arguments),
    }


def _summary(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""
