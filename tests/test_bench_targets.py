"""``make bench`` (``harness bench all``) exits non-zero when a benchmark misses its target.

The load and sandbox benchmarks printed a missed target and returned 0, so ``make bench`` passed whatever
they measured.
"""

from __future__ import annotations

import argparse

from harness.bench import Benchmark
from harness.bench import load as load_bench
from harness.bench import sandbox as sandbox_bench
from harness.commands.bench_cmd import run_all


def test_each_benchmark_fails_on_its_missed_target() -> None:
    assert load_bench.verdict(0.85, 0.02) == 0
    assert load_bench.verdict(0.65, 0.02) == 1  # harness below 70 % of wrk
    assert load_bench.verdict(0.85, 0.07) == 1  # the timeline costs 5 % or more
    assert sandbox_bench.verdict(42.0) == 0
    assert sandbox_bench.verdict(75.0) == 1


def test_bench_all_returns_the_worst_exit_code(capsys) -> None:  # type: ignore[no-untyped-def]
    def met(_: argparse.Namespace) -> int:
        return 0

    def missed(_: argparse.Namespace) -> int:
        return 1

    assert run_all({"a": Benchmark("a", met), "b": Benchmark("b", missed), "c": Benchmark("c", met)}) == 1
    assert "MISSED: b (exit 1)" in capsys.readouterr().out
    assert run_all({"a": Benchmark("a", met)}) == 0
