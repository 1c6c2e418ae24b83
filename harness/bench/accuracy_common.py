"""What the accuracy benches share, locally and on Kubernetes: the prober's TTR rule, one fault's run, the
comparison with the harness's analysis, the per-fault table, and saved results for ``--compare``.

Its own module so that ``accuracy`` (the ``harness bench accuracy`` entry, which hands ``--platform
kubernetes`` to ``accuracy_k8s``) and ``accuracy_k8s`` both use it without importing each other.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.analysis import RepetitionResult

__all__ = ["PROBE_TIMEOUT_S", "ROOT", "TARGET_MEDIAN_MS", "TARGET_WORST_MS", "FaultRun", "FaultSummary",
           "compare_runs", "load_summary", "print_summary", "probe_failure_span", "probe_ttr", "save_summary"]

ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 1.0


def probe_ttr(records: Iterable[tuple[int, int, bool]], t0_ns: int, since_ns: int = 0,
              until_ns: int | None = None) -> float:
    """Start of the first ok probe after the last failed one (failed after t0), minus t0; 0: none failed.
    Only probes started within ``[since_ns, until_ns)`` count: one repetition of a run. The same rule for
    the local prober thread and the prober pod on Kubernetes (``accuracy_k8s``)."""
    ordered = sorted(r for r in records if since_ns <= r[0] and (until_ns is None or r[0] < until_ns))
    failed = [i for i, (_, end, ok) in enumerate(ordered) if not ok and end >= t0_ns]
    if not failed:
        return 0.0
    later = [start for start, _, ok in ordered[failed[-1] + 1:] if ok]
    if not later:
        return float("inf")
    return (later[0] - t0_ns) / 1e9


def probe_failure_span(records: Iterable[tuple[int, int, bool]], t0_ns: int, since_ns: int = 0,
                       until_ns: int | None = None) -> tuple[int, float]:
    """How many probes failed after t0, and the seconds from the first one's start to the last one's: how
    long an outage the prober saw, for a repetition where the harness reports no impact."""
    starts = sorted(start for start, end, ok in records
                    if not ok and end >= t0_ns and since_ns <= start and (until_ns is None or start < until_ns))
    return len(starts), ((starts[-1] - starts[0]) / 1e9 if starts else 0.0)


@dataclass(frozen=True)
class FaultRun:
    """One ``harness run`` of a fault: its run directory, exit code and output, and the prober's TTR per
    repetition (measured from that repetition's journal t0, on the prober's own records), with the failed
    probes and their span (``probe_failure_span``)."""

    run_dir: Path | None
    code: int
    output: str
    prober_ttr: dict[str, float]
    prober_failures: dict[str, tuple[int, float]] = field(default_factory=dict)


TARGET_MEDIAN_MS = 100.0
TARGET_WORST_MS = 250.0


@dataclass(frozen=True)
class FaultSummary:
    """One fault's agreement between the harness and the prober over its repetitions."""

    fault: str
    median_ms: float
    worst_ms: float
    reps: int

    @property
    def met(self) -> bool:
        return self.median_ms <= TARGET_MEDIAN_MS and self.worst_ms <= TARGET_WORST_MS


def _one_missed_a_blip(r: RepetitionResult, prober_failed: int, prober_span_s: float) -> bool:
    """Whether the two disagree only because one of them did not sample an outage shorter than the bench's
    worst-case tolerance: the harness reports no impact (what failed stayed within the objective: no bad
    window) while every probe that failed started within that tolerance of the others, or the prober saw no
    failure while the harness's impact-to-recovery span is within it. A fault killing the requests in flight
    at one instant is such a blip; which requests were in flight is luck. A longer outage either missed is
    a miss."""
    tolerance_s = TARGET_WORST_MS / 1000
    if r.state == "no-impact":
        return prober_span_s <= tolerance_s
    if prober_failed == 0 and r.state == "recovered" and r.impact_ns is not None and r.recovery_ns is not None:
        return (r.recovery_ns - r.impact_ns) / 1e9 <= tolerance_s
    return False


def compare_runs(runs: Mapping[str, FaultRun], second: Mapping[str, Mapping[str, float]] | None = None,
                 second_label: str = "") -> tuple[list[FaultSummary], list[str], list[FaultSummary]]:
    """Print each repetition's harness TTR beside the prober's; the per-fault summaries, the faults that
    could not be compared (a failed run, a repetition without a recovery on either side), and the summaries
    against a second prober's TTRs (``second``: fault -> repetition -> TTR; shown, not judged)."""
    from harness.analysis import analyse_run, load_settings

    def diff_ms(harness: float | None, prober: float) -> float | None:
        return None if harness is None or prober != prober or prober == float("inf") else (harness - prober) * 1000

    head = f"{'fault':<16} {'rep':>3} {'harness TTR':>12} {'prober TTR':>11} {'diff ms':>8}"
    if second is not None:
        head += f" {second_label + ' TTR':>16} {'diff ms':>8}"
    print(head + "  harness failed/all, state")
    summary: list[FaultSummary] = []
    other: list[FaultSummary] = []
    missed: list[str] = []
    for fault, fault_run in runs.items():
        if fault_run.run_dir is None or fault_run.code not in (0, 1):
            tail = "\n".join(fault_run.output.strip().splitlines()[-5:])
            print(f"{fault}: MISSED: harness run exited {fault_run.code}:\n{tail}")
            missed.append(fault)
            continue
        diffs, diffs2 = [], []
        agreed_no_impact = 0
        exp = analyse_run(fault_run.run_dir, load_settings(), query_server=False).experiments[0]
        for r in exp.reps:
            prober = fault_run.prober_ttr.get(r.repetition, float("nan"))
            harness = r.time_to_recover_s if r.recovered else None
            diff = diff_ms(harness, prober)
            failed, span_s = fault_run.prober_failures.get(r.repetition, (None, None))
            if diff and span_s is not None and _one_missed_a_blip(r, failed or 0, span_s):
                agreed_no_impact += 1
                shown = "agreed"
            else:
                shown = "n/a" if diff is None else f"{diff:+.0f}"
                if diff is not None:
                    diffs.append(abs(diff))
            line = f"{fault:<16} {r.repetition:>3} {r.ttr_display():>12} {prober:>9.3f} s {shown:>8}"
            if second is not None:
                prober2 = second.get(fault, {}).get(r.repetition, float("nan"))
                diff2 = diff_ms(harness, prober2)
                if diff2 is not None:
                    diffs2.append(abs(diff2))
                line += f" {prober2:>14.3f} s {'n/a' if diff2 is None else f'{diff2:+.0f}':>8}"
            print(f"{line}  {r.requests_failed}/{r.requests_total}  {r.state}"
                  + ("" if span_s is None else f", prober: {failed} failed within {span_s * 1000:.0f} ms"))
        if len(diffs) + agreed_no_impact != len(exp.reps) or not diffs:
            print(f"{fault}: MISSED: no recovery to compare in every repetition")
            missed.append(fault)
            continue
        summary.append(FaultSummary(fault, statistics.median(diffs), max(diffs), len(diffs)))
        if diffs2:
            other.append(FaultSummary(fault, statistics.median(diffs2), max(diffs2), len(diffs2)))
    return summary, missed, other


def print_summary(summary: Sequence[FaultSummary], missed: Sequence[str],
                  beside: Mapping[str, FaultSummary] | None = None, beside_label: str = "") -> bool:
    """The per-fault table (with a saved result's figures beside it, e.g. the local bench's next to the
    Kubernetes one); whether every fault met the targets (a missed fault counts as a miss)."""
    print()
    head = f"{'fault':<16} {'reps':>4} {'median |diff| ms':>17} {'worst ms':>9}"
    if beside is not None:
        head += f"   {beside_label + ' median / worst ms':>28}"
    print(head)
    met = not missed
    for row in summary:
        met = met and row.met
        line = f"{row.fault:<16} {row.reps:>4} {row.median_ms:>17.0f} {row.worst_ms:>9.0f}  " \
               f"{'MET' if row.met else 'MISSED'}"
        print(line + _beside(beside, row.fault))
    for fault in missed:
        print(f"{fault:<16} {'-':>4} {'-':>17} {'-':>9}  MISSED{_beside(beside, fault)}")
    return met


def _beside(beside: Mapping[str, FaultSummary] | None, fault: str) -> str:
    """The saved run's figures for one fault, as the column beside the table shows them (also on a MISSED row:
    the reader compares the platforms whether or not this run met its targets)."""
    if beside is None:
        return ""
    other = beside.get(fault)
    return f" {'-' if other is None else f'{other.median_ms:.0f} / {other.worst_ms:.0f}':>28}"


def save_summary(path: Path, platform: str, summary: Sequence[FaultSummary], missed: Sequence[str],
                 conditions: str, extra: Mapping[str, Any] | None = None) -> None:
    """The bench's figures as JSON, for ``--compare`` of a later run (e.g. local beside Kubernetes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        **(extra or {}), "platform": platform, "conditions": conditions,
        # every fault that missed: not compared, or over a target (the table's MISSED rows)
        "missed": [*missed, *(r.fault for r in summary if not r.met)],
        "met": not missed and all(r.met for r in summary),
        "faults": {r.fault: {"median_ms": round(r.median_ms, 1), "worst_ms": round(r.worst_ms, 1), "reps": r.reps,
                             "met": r.met} for r in summary},
    }, indent=2) + "\n")


def load_summary(path: Path) -> tuple[str, dict[str, FaultSummary]]:
    """A saved result (``--save``): its platform and per-fault figures; ConfigError when unreadable."""
    from harness.errors import ConfigError

    try:
        raw = json.loads(path.read_text())
        return str(raw["platform"]), {name: FaultSummary(name, float(f["median_ms"]), float(f["worst_ms"]),
                                                         int(f["reps"])) for name, f in raw["faults"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--compare {path}: not a result saved by harness bench accuracy --save ({exc}); "
                          "run harness bench accuracy --save FILE first") from exc
