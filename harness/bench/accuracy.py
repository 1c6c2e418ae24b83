"""Accuracy: the harness's time to recover vs an independent prober, over real replica kills.

The local platform (real Triton replicas behind HAProxy) runs; a sequential client using the harness's
own client code records a request timeline, while an independent prober (a raw-socket HTTP client
written here with the standard library only, sharing no harness code) posts an inference to the front
every 20 ms. A replica is SIGKILLed several times; for each kill the harness's TTR (timeline + analysis)
is compared with the prober's (end of its last failed probe after the kill, minus the kill instant).
Target: median difference <= 100 ms, worst <= 250 ms. The harness's Locust load generator can replace the
sequential client once it is on this branch; the analysis being checked is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.timeline import TimelineWriter

__all__ = ["add_arguments", "run", "sequential_load"]

_PROBE_INTERVAL_S = 0.02


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kills", type=int, default=3, help="replica kills (one repetition each)")
    p.add_argument(
        "--time-scale", type=float, default=0.2, help="platform time scale (probe periods, back-off)"
    )
    p.add_argument("--stability", type=float, default=3.0, help="stability period in seconds for this bench")
    p.add_argument("--keep", help="keep the generated run directory here")


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class _Prober(threading.Thread):
    """Independent observer: one raw HTTP/1.1 POST every 20 ms, new connection each time."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        body = json.dumps(
            {"inputs": [{"name": "INPUT", "shape": [1, 16], "datatype": "FP32", "data": [0.1] * 16}]}
        ).encode()
        self.request = (
            f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode() + body
        self.address = (host, port)
        self.stop = threading.Event()
        self.records: list[tuple[int, int, bool]] = []  # start_ns, end_ns, ok

    def _probe(self) -> bool:
        try:
            with socket.create_connection(self.address, timeout=1.0) as sock:
                sock.sendall(self.request)
                data = b""
                while b"\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return data.split(b"\r\n", 1)[0].split()[1] == b"200"
        except (OSError, IndexError):
            return False

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            start = time.time_ns()
            ok = self._probe()
            self.records.append((start, time.time_ns(), ok))
            next_at += _PROBE_INTERVAL_S
            time.sleep(max(0.0, next_at - time.monotonic()))

    def ttr(self, t0_ns: int) -> float:
        failed = [end for start, end, ok in self.records if start >= t0_ns and not ok]
        return (max(failed) - t0_ns) / 1e9 if failed else 0.0


def sequential_load(url: str, writer: TimelineWriter, stop: threading.Event) -> None:
    """One plain client sending requests back to back into a timeline (no Locust, no gevent): the
    harness-side measurement of this benchmark, and of tests that need a timeline in a thread."""
    from harness.triton.client import infer_http, reference_input

    data = reference_input()
    while not stop.is_set():
        start = time.time_ns()
        t = time.perf_counter()
        out = infer_http(url, data, timeout_s=2.0)
        latency = time.perf_counter() - t
        error = "" if out.ok else ("connection_refused" if "Refused" in out.error else "other")
        writer.record(
            start,
            latency,
            "ok" if out.ok else "error",
            error,
            200 if out.ok else -1,
            out.replica,
        )


def run(args: argparse.Namespace) -> int:
    from harness.analysis import analyse_run, load_settings
    from harness.events import read_events
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings
    from harness.timeline import TimelineWriter

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="harness-accuracy-"))
    subnet = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
    front = f"{subnet}.1"
    settings = LocalSettings(
        state_dir=workdir / "state",
        replica_address_base=f"{subnet}.2",
        front_address=front,
        http_port=_free_port(front),
        grpc_port=_free_port(front),
        prometheus_port=_free_port(front),
        stats_port=_free_port(front),
        time_scale=args.time_scale,
        queue_delay_ms=1.0,
        prometheus=False,
    )
    platform = LocalPlatform(settings)
    run_dir = workdir / "20261128T000000Z-bench-accuracy"
    rows: list[tuple[int, float]] = []
    try:
        status = platform.up(replicas=2)
        host, port = front, settings.http_port
        for k in range(args.kills):
            rep = run_dir / "experiments" / "accuracy" / str(k + 1)
            writer = TimelineWriter(rep / "timeline", worker="0")
            stop = threading.Event()
            prober = _Prober(host, port)
            loader = threading.Thread(target=sequential_load, args=(status.endpoints.http, writer, stop), daemon=True)
            load_start = time.time_ns()
            prober.start()
            loader.start()
            time.sleep(2)
            before = platform.status()
            victim = before.replicas[k % len(before.replicas)]
            restarts = victim.restarts
            t0 = time.time_ns()
            os.kill(int(victim.pid or 0), signal.SIGKILL)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                now = platform.status()
                mine = [r for r in now.replicas if r.name == victim.name]
                if now.ready_replicas == len(now.replicas) and mine and mine[0].restarts > restarts:
                    break
                time.sleep(0.1)
            time.sleep(args.stability + 2)
            stop.set()
            prober.stop.set()
            loader.join(10)
            prober.join(10)
            writer.close()
            end = time.time_ns()
            events = [e for e in read_events(platform.events_path()) if load_start <= e.ts_ns <= end]
            (rep / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
            (rep / "experiment.json").write_text(
                json.dumps(
                    {
                        "name": "accuracy",
                        "title": "replica kill vs prober",
                        "fault": "pod-kill",
                        "file": "",
                        "configuration": {"analysis": {"stability_period_s": args.stability}},
                        "load_start_ns": load_start,
                        "fault_start_ns": t0,
                        "fault_end_ns": t0,
                        "observation_end_ns": end,
                        "load_end_ns": end,
                        "status": "completed",
                        "deviated": False,
                        "replicas": [r.name for r in before.replicas],
                        "analogue": "",
                        "time_scale": args.time_scale,
                        "retries": False,
                    }
                )
            )
            rows.append((k + 1, prober.ttr(t0)))
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "schema": 1,
                    "run_id": run_dir.name,
                    "kind": "run",
                    "status": "completed",
                    "experiments": ["accuracy"],
                    "settings": {"time_scale": args.time_scale},
                }
            )
        )
    finally:
        platform.down()
    analysis = analyse_run(run_dir, load_settings(), query_server=False)
    reps = analysis.experiments[0].reps
    diffs = []
    print(f"{'kill':>4} {'harness TTR s':>14} {'prober TTR s':>13} {'diff ms':>8}  harness failed/all")
    for (kill, prober_ttr), r in zip(rows, reps, strict=True):
        harness_ttr = r.time_to_recover_s if r.recovered else None
        diff = None if harness_ttr is None else (harness_ttr - prober_ttr) * 1000
        if diff is not None:
            diffs.append(abs(diff))
        shown = r.ttr_display()
        print(
            f"{kill:>4} {shown:>14} {prober_ttr:>13.3f} {'n/a' if diff is None else f'{diff:+.0f}':>8}  "
            f"{r.requests_failed}/{r.requests_total}"
        )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    if len(diffs) != len(rows):
        print("MISSED: the harness did not find a recovery for every kill")
        return 1
    median, worst = statistics.median(diffs), max(diffs)
    met = median <= 100 and worst <= 250
    print(
        f"median |diff| {median:.0f} ms (target <= 100), worst {worst:.0f} ms (target <= 250): "
        f"{'MET' if met else 'MISSED'}; time scale {args.time_scale:g}, prober every 20 ms"
    )
    return 0 if met else 1
