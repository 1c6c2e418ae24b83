"""Analysis in flat memory: analysing a long timeline vs just reading it (target <= 3x, peak RSS <= 1 GB).

For each ``--requests N`` it generates a run directory whose one repetition holds N requests (1,000
requests/s by default: 86 M is a day) with an outage: 6 s of refused connections, then 4 s of too-slow
answers. The timeline is generated vectorised, straight into the compacted format the analysis reads
(``timeline.parquet``, row groups of 2**20 requests), so 86 M take about a minute and 1.5 GB of disk.
Each side runs in a child process of its own, whose peak RSS is read from the kernel when it is reaped
(``os.wait4``): (1) read: every column of every row group, with the analysis's own reader, nothing computed;
(2) analyse: ``analyse_run`` on the run directory (every figure of every repetition, no Prometheus).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "generate_run", "measure", "run"]

_BASE_NS = 1_764_300_000 * 1_000_000_000
RSS_TARGET_MB = 1024.0
RATIO_TARGET = 3.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, nargs="+", default=[10_000_000],
                   help="timeline sizes, e.g. --requests 10000000 86000000 (default ten million)")
    p.add_argument("--rate", type=int, default=1_000, help="generated requests per second (1000)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure each side this many times, keep the fastest (peak RSS: the largest)")
    p.add_argument("--json", action="store_true",
                   help='one JSON line per size: {"requests", "read_s", "analyse_s", "ratio", "peak_rss_mb", '
                        '"cpu_ratio"}')
    p.add_argument("--keep", help="generate the runs here and keep them (default: a temporary folder)")


def generate_run(run_dir: Path, requests: int, seed: int = 7, rate: int = 1_000) -> None:
    """A run directory (run layout contract) with one repetition of ``requests`` requests, compacted."""
    import numpy as np
    import pyarrow as pa

    from harness.events import Event, EventKind
    from harness.timeline import SCHEMA
    from harness.timeline_store import COMPACT_FILE, ROW_GROUP, write_compacted

    rng = np.random.default_rng(seed)
    rep = run_dir / "experiments" / "bench-pod-kill" / "1"
    timeline = rep / "timeline"
    timeline.mkdir(parents=True, exist_ok=True)
    step = 1_000_000_000 // rate
    duration_s = requests / rate
    fault_s = duration_s * 0.3

    def text(codes: Any, values: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(values)).cast(pa.string())

    def batches() -> Iterator[pa.RecordBatch]:
        for first in range(0, requests, ROW_GROUP):
            n = min(ROW_GROUP, requests - first)
            idx = np.arange(first, first + n, dtype=np.int64)
            start = _BASE_NS + idx * step + rng.integers(0, step, n)
            t = (start - _BASE_NS) / 1e9
            refused = (t >= fault_s) & (t < fault_s + 6)
            slow = (t >= fault_s + 6) & (t < fault_s + 10)
            latency = np.where(refused, 0.001, rng.lognormal(np.log(0.005), 0.3, n))
            latency = np.where(slow, 1.5, latency)
            zeros = np.zeros(n, dtype=np.int8)
            yield pa.record_batch([
                pa.array(start, pa.int64()), pa.array(latency, pa.float64()),
                text(refused, ["ok", "error"]), text(refused, ["", "connection_refused"]),
                pa.array(np.where(refused, -1, 200).astype(np.int32), pa.int32()),
                text(np.where(refused, 0, 1 + idx % 2), ["", "triton-0", "triton-1"]),
                text(zeros, ["http"]), text(zeros, ["0"]),
            ], schema=SCHEMA)

    write_compacted(timeline / COMPACT_FILE, batches(), [])

    def at(s: float) -> int:
        return _BASE_NS + int(s * 1e9)

    events = [Event(at(fault_s + 0.01), EventKind.EXITED, "triton-0"),
              Event(at(fault_s + 1), EventKind.RESTARTED, "triton-0"),
              Event(at(fault_s + 8), EventKind.READY, "triton-0")]
    (rep / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    info = {"name": "bench-pod-kill", "title": "generated outage", "fault": "pod-kill", "file": "",
            "configuration": {}, "load_start_ns": _BASE_NS, "fault_start_ns": at(fault_s),
            "fault_end_ns": at(fault_s + 0.05), "observation_end_ns": at(duration_s),
            "load_end_ns": at(duration_s),
            "status": "completed", "deviated": False, "replicas": ["triton-0", "triton-1"], "analogue": "",
            "time_scale": 1.0, "retries": False}
    (rep / "experiment.json").write_text(json.dumps(info))
    (rep / "journal.json").write_text("{}")
    (run_dir / "run.json").write_text(json.dumps({
        "schema": 1, "run_id": run_dir.name, "kind": "run", "started_ns": _BASE_NS,
        "finished_ns": at(duration_s),
        "status": "completed", "command": ["harness", "bench", "analysis"], "platform": "generated",
        "settings": {"prometheus": False}, "experiments": ["bench-pod-kill"]}))


def measure(what: str, run_dir: str) -> None:
    """Child-process side: time one side and print JSON with its seconds (peak RSS: the parent, at reaping)."""
    from harness.analysis import analyse_run
    from harness.analysis._settings import load_settings
    from harness.timeline import SCHEMA
    from harness.timeline_store import COMPACT_FILE, CompactTimeline

    path = Path(run_dir)
    timeline = path / "experiments" / "bench-pod-kill" / "1" / "timeline"
    settings = load_settings()
    started = time.perf_counter()  # imports and settings are not what is measured
    cpu = time.process_time()
    extra: dict[str, float | None]
    if what == "read":
        store = CompactTimeline(timeline / COMPACT_FILE)
        rows = sum(t.num_rows for _, t in store.scan(SCHEMA.names))
        extra = {"rows": rows}
    else:
        result = analyse_run(path, settings, query_server=False)
        r = result.experiments[0].reps[0]
        extra = {"rows": r.requests_total, "ttr_s": r.time_to_recover_s, "bad_time_s": r.bad_time_s}
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, **extra}))


def _child(what: str, run_dir: Path) -> dict[str, float]:
    """One side in a fresh interpreter; its own peak RSS comes from the kernel's accounting at reaping."""
    code = f"from harness.bench.analysis import measure; measure({what!r}, {str(run_dir)!r})"
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child ({what}) failed:\n{err.read()[-3000:]}")
        result: dict[str, float] = json.loads(out.read().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="harness-bench-"))
    met = True
    try:
        if not args.json:
            print(f"{'requests':>12} {'read s':>8} {'analyse s':>10} {'ratio':>6} {'CPU ratio':>9} "
                  f"{'peak RSS MiB':>13} {'read RSS MiB':>13}  TTR / bad time found")
        for requests in args.requests:
            run_dir = workdir / f"20261128T000000Z-bench-analysis-{requests}"
            if not (run_dir / "run.json").exists():
                started = time.perf_counter()
                generate_run(run_dir, requests, rate=args.rate)
                took = time.perf_counter() - started
                if not args.json:
                    size = sum(p.stat().st_size for p in run_dir.rglob("*.parquet")) / 2**20
                    print(f"  (generated {requests:,} requests in {took:.1f} s: {size:.0f} MiB at {run_dir})")
            reads = [_child("read", run_dir) for _ in range(max(1, args.repeat))]
            analyses = [_child("analyse", run_dir) for _ in range(max(1, args.repeat))]
            read = min(r["seconds"] for r in reads)
            analyse = min(r["seconds"] for r in analyses)
            peak = max(r["peak_rss_mb"] for r in analyses)
            ratio = analyse / read
            # CPU seconds of the measured section alone: on a shared machine the wall-clock ratio swings
            # with the load of others, the CPU ratio much less.
            cpu_ratio = min(r["cpu_s"] for r in analyses) / min(r["cpu_s"] for r in reads)
            met = met and ratio <= RATIO_TARGET and peak <= RSS_TARGET_MB
            if args.json:
                print(json.dumps({"requests": requests, "read_s": round(read, 3), "analyse_s": round(analyse, 3),
                                  "ratio": round(ratio, 3), "peak_rss_mb": round(peak, 1),
                                  "cpu_ratio": round(cpu_ratio, 3)}), flush=True)
            else:
                a = analyses[0]
                print(f"{requests:>12,} {read:>8.2f} {analyse:>10.2f} {ratio:>6.2f} {cpu_ratio:>9.2f} {peak:>13.0f} "
                      f"{max(r['peak_rss_mb'] for r in reads):>13.0f}  {a.get('ttr_s')} s / "
                      f"{a.get('bad_time_s')} s", flush=True)
        if not args.json:
            print(f"targets: analysis <= {RATIO_TARGET:g}x the read, peak RSS <= {RSS_TARGET_MB:.0f} MiB: "
                  f"{'MET' if met else 'MISSED'}")
        return 0 if met else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
