"""Analysis speed: analysing and reporting a large timeline vs just reading it (target <= 3x).

Generates a run directory whose one repetition holds a timeline of N requests (default ten million,
10,000 requests/s in one-second Arrow chunks as the load generator writes them) with an outage: 6 s of
refused connections, then 4 s of too-slow answers. Each measurement runs in a fresh Python process, so
its peak memory (ru_maxrss) is its own: (1) ``read_timeline`` alone, (2) ``build_report`` (read +
analyse + every report file + manifest hashes), without Prometheus and without history.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["add_arguments", "generate_run", "measure", "run"]

_BASE_NS = 1_764_300_000 * 1_000_000_000
_RATE = 10_000  # requests per second


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=10_000_000, help="timeline size")
    p.add_argument("--repeat", type=int, default=2,
                   help="measure each side this many times, keep the fastest")
    p.add_argument("--keep", help="generate the run here and keep it (default: a temporary folder)")


def generate_run(run_dir: Path, requests: int, seed: int = 7) -> None:
    """A run directory (run layout contract) with one repetition of ``requests`` requests."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from harness.events import Event, EventKind
    from harness.timeline import SCHEMA

    rng = np.random.default_rng(seed)
    rep = run_dir / "experiments" / "bench-pod-kill" / "1"
    timeline = rep / "timeline"
    timeline.mkdir(parents=True, exist_ok=True)
    step = 1_000_000_000 // _RATE
    duration_s = requests / _RATE
    fault_s = duration_s * 0.3
    for seq, first in enumerate(range(0, requests, _RATE)):
        n = min(_RATE, requests - first)
        idx = np.arange(first, first + n, dtype=np.int64)
        start = _BASE_NS + idx * step + rng.integers(0, step, n)
        t = (start - _BASE_NS) / 1e9
        refused = (t >= fault_s) & (t < fault_s + 6)
        slow = (t >= fault_s + 6) & (t < fault_s + 10)
        latency = np.where(refused, 0.001, rng.lognormal(np.log(0.005), 0.3, n))
        latency = np.where(slow, 1.5, latency)
        outcome = np.where(refused, "error", "ok")
        error = np.where(refused, "connection_refused", "")
        replica = np.where(refused, "", np.where(idx % 2 == 0, "triton-0", "triton-1"))
        batch = pa.record_batch([
            pa.array(start, pa.int64()), pa.array(latency, pa.float64()), pa.array(outcome, pa.string()),
            pa.array(error, pa.string()), pa.array(np.where(refused, -1, 200).astype(np.int32), pa.int32()),
            pa.array(replica, pa.string()), pa.array(np.full(n, "http"), pa.string()),
            pa.array(np.full(n, "0"), pa.string()),
        ], schema=SCHEMA)
        path = timeline / f"part-0-{seq:06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, SCHEMA) as out:
            out.write_batch(batch)

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
    """Child-process side: time one side and print JSON with its seconds and peak RSS."""
    path = Path(run_dir)
    started = time.perf_counter()
    if what == "read":
        from harness.timeline import read_timeline

        rows = len(read_timeline(path / "experiments" / "bench-pod-kill" / "1" / "timeline"))
        extra: dict[str, float | None] = {"rows": rows}
    else:
        from harness.report import build_report

        result = build_report(path, query_server=False, record_history=False)
        r = result.analysis.experiments[0].reps[0]
        extra = {"rows": r.requests_total, "ttr_s": r.time_to_recover_s, "bad_time_s": r.bad_time_s}
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, **extra}))


def _child(what: str, run_dir: Path) -> dict[str, float]:
    code = f"from harness.bench.analysis import measure; measure({what!r}, {str(run_dir)!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child ({what}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="harness-bench-"))
    run_dir = workdir / "20261128T000000Z-bench-analysis"
    try:
        if not (run_dir / "run.json").exists():
            started = time.perf_counter()
            generate_run(run_dir, args.requests)
            took = time.perf_counter() - started
            print(f"generated {args.requests:,} requests in {took:.1f} s at {run_dir}")
        reads, reports = [], []
        for _ in range(max(1, args.repeat)):
            reads.append(_child("read", run_dir))
            reports.append(_child("report", run_dir))
        read = min(reads, key=lambda r: r["seconds"])
        report = min(reports, key=lambda r: r["seconds"])
        size = sum(p.stat().st_size for p in run_dir.rglob("part-*.arrow")) / 2**20
        ratio = report["seconds"] / read["seconds"]
        print(f"timeline: {int(read['rows']):,} requests, {size:.0f} MiB of Arrow chunks")
        print(f"{'side':<34} {'seconds':>8} {'peak RSS MiB':>13}")
        print(f"{'read_timeline only (baseline)':<34} {read['seconds']:>8.2f} {read['peak_rss_mb']:>13.0f}")
        print(f"{'read + analyse + report':<34} {report['seconds']:>8.2f} {report['peak_rss_mb']:>13.0f}")
        print(f"ratio {ratio:.2f}x (target <= 3x): {'MET' if ratio <= 3 else 'MISSED'}; "
              f"fastest of {len(reads)} runs each; TTR found {report.get('ttr_s')} s, "
              f"bad time {report.get('bad_time_s')} s")
        return 0 if ratio <= 3 else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
