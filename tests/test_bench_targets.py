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


def test_the_prober_blip_count_and_a_saved_result_say_what_missed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A "no impact" repetition is checked against how long an outage the prober saw (its failed probes after
    t0, from the first one's start to the last one's); a saved result lists a fault over its target as missed,
    not only one that could not be compared (it said "missed": [] beside a MISSED row)."""
    import json

    from harness.bench.accuracy_common import FaultSummary, probe_failure_span, save_summary

    s, t0 = 1_000_000_000, 50_000_000_000
    records = [(t0 - s // 2, t0 - s // 4, False),  # failed before t0: not the fault's
               (t0 + s // 10, t0 + s // 5, False), (t0 + s // 10 + 20_000_000, t0 + s, False),
               (t0 + 3 * s, t0 + 3 * s + 1, False), (t0 + 3 * s + 5, t0 + 3 * s + 9, True)]
    assert probe_failure_span(records, t0) == (3, 2.9)
    assert probe_failure_span(records[:3], t0) == (2, 0.02)
    assert probe_failure_span(records, t0, since_ns=t0 + 2 * s) == (1, 0.0)
    assert probe_failure_span(records[:1], t0) == (0, 0.0)
    path = tmp_path / "acc.json"
    save_summary(path, "local", [FaultSummary("pod-kill", 40.0, 90.0, 3), FaultSummary("memory-pressure", 40.0,
                                                                                        1522.0, 3)], [], "c")
    saved = json.loads(path.read_text())
    assert saved["missed"] == ["memory-pressure"] and saved["met"] is False
    assert saved["faults"]["pod-kill"]["met"] and not saved["faults"]["memory-pressure"]["met"]


def test_a_blip_one_side_did_not_sample_is_agreement_and_a_longer_outage_is_not() -> None:
    """A fault that kills the requests in flight at one instant is seen by whichever side had a request in
    flight: "no impact" on one side agrees with an outage of at most the worst-case tolerance (250 ms) on the
    other; a longer outage the harness called "no impact" is still a miss."""
    from types import SimpleNamespace

    from harness.bench.accuracy_common import _one_missed_a_blip

    s = 1_000_000_000
    no_impact = SimpleNamespace(state="no-impact", impact_ns=None, recovery_ns=None)
    assert _one_missed_a_blip(no_impact, 3, 0.04)  # type: ignore[arg-type]
    assert not _one_missed_a_blip(no_impact, 40, 3.9)  # type: ignore[arg-type]  # a block the harness missed
    blip = SimpleNamespace(state="recovered", impact_ns=5 * s, recovery_ns=5 * s + s // 50)
    assert _one_missed_a_blip(blip, 0, 0.0)  # type: ignore[arg-type]
    assert not _one_missed_a_blip(blip, 2, 0.02)  # type: ignore[arg-type]  # both saw it: compare the figures
    outage = SimpleNamespace(state="recovered", impact_ns=5 * s, recovery_ns=6 * s)
    assert not _one_missed_a_blip(outage, 0, 0.0)  # type: ignore[arg-type]


def test_the_saved_figures_stand_beside_a_missed_fault_too(capsys) -> None:  # type: ignore[no-untyped-def]
    """A Kubernetes run that compared nothing still shows the local figures it is read against."""
    from harness.bench.accuracy_common import FaultSummary, print_summary

    local = {"pod-kill": FaultSummary("pod-kill", 23.0, 90.0, 3),
             "block-all": FaultSummary("block-all", 40.0, 120.0, 3)}
    met = print_summary([FaultSummary("block-all", 30.0, 60.0, 3)], ["pod-kill"], beside=local, beside_label="local")
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert met is False
    assert "local median / worst ms" in rows["fault"]
    assert rows["pod-kill"].split()[-4:] == ["MISSED", "23", "/", "90"]
    assert rows["block-all"].split()[-4:] == ["MET", "40", "/", "120"]
