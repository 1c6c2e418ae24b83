"""Accuracy: the harness's time to recover vs an independent prober, for every fault.

The local platform (two real Triton replicas behind HAProxy, no retries) runs under the harness's own load
generator (Locust, open loop) recording the request timeline, while an independent prober written here
with the standard library only (raw sockets, sharing no harness code) sends one inference every 20 ms,
each on its own thread with its own 1 s timeout, so a probe that hangs on a dropped packet delays no
other. Each fault is injected through the platform's own fault operations (``platform.fault_ops()``, the
calls the Chaos Toolkit actions make): pod kill, network block of every replica and of one of two, slow
model load (every replica restarted with a slow load) and memory pressure (the host-memory analogue in a
memory cgroup without a GPU: pressure, then the replica restarted under it, then released).

For each repetition the harness's TTR (timeline + ``harness.analysis``, with the platform's events) is
compared with the prober's: the start of its first successful probe after its last failed probe, minus
the fault start. Target: median |difference| <= 100 ms and worst <= 250 ms for every fault.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.platforms.local.platform import LocalPlatform
    from harness.timeline import TimelineWriter

__all__ = ["FAULTS", "Prober", "add_arguments", "run", "run_repetition", "sequential_load"]

PROBE_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 1.0
FAULTS = ("pod-kill", "block-all", "block-one", "slow-load", "memory-pressure")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reps", type=int, default=3, help="repetitions of each fault")
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {', '.join(FAULTS)}")
    p.add_argument("--time-scale", type=float, default=0.2, help="platform time scale (probe periods, back-off)")
    p.add_argument("--stability", type=float, default=3.0, help="stability period in seconds for this bench")
    p.add_argument("--rate", type=float, default=100.0, help="the harness's open-loop requests/s")
    p.add_argument("--hold", type=float, default=3.0, help="seconds a block, slow load or pressure lasts")
    p.add_argument("--keep", help="keep the generated run directory here")


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class Prober:
    """Independent open-loop observer: one raw HTTP/1.1 POST every 20 ms on a new connection, each probe
    on its own thread with its own deadline, so a hanging probe delays no other."""

    def __init__(self, host: str, port: int) -> None:
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
        self._lock = threading.Lock()
        self._scheduler = threading.Thread(target=self._schedule, daemon=True)

    def _probe(self) -> None:
        start = time.time_ns()
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        ok = False
        try:
            with socket.create_connection(self.address, timeout=PROBE_TIMEOUT_S) as sock:
                sock.sendall(self.request)
                data = b""
                while b"\r\n" not in data:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    sock.settimeout(left)
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                ok = b"\r\n" in data and data.split(b"\r\n", 1)[0].split()[1] == b"200"
        except (OSError, IndexError):
            ok = False
        end = time.time_ns()
        ok = ok and (end - start) <= PROBE_TIMEOUT_S * 1e9
        with self._lock:
            self.records.append((start, end, ok))

    def _schedule(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            threading.Thread(target=self._probe, daemon=True).start()
            next_at += PROBE_INTERVAL_S
            time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._scheduler.start()

    def finish(self) -> None:
        self.stop.set()
        self._scheduler.join(5)
        time.sleep(PROBE_TIMEOUT_S + 0.2)  # the last probes end by their own deadline

    def ttr(self, t0_ns: int) -> float:
        """Start of the first ok probe after the last failed one (failed after t0), minus t0; 0: none failed."""
        with self._lock:
            records = sorted(self.records)
        failed = [i for i, (_, end, ok) in enumerate(records) if not ok and end >= t0_ns]
        if not failed:
            return 0.0
        later = [start for start, _, ok in records[failed[-1] + 1:] if ok]
        if not later:
            return float("inf")
        return (later[0] - t0_ns) / 1e9


def sequential_load(url: str, writer: TimelineWriter, stop: threading.Event) -> None:
    """One plain client sending requests back to back into a timeline (no Locust, no gevent), for tests
    that need a timeline in a thread."""
    from harness.triton.client import infer_http, reference_input

    data = reference_input()
    while not stop.is_set():
        start = time.time_ns()
        t = time.perf_counter()
        out = infer_http(url, data, timeout_s=2.0)
        latency = time.perf_counter() - t
        error = "" if out.ok else ("connection_refused" if "Refused" in out.error else "other")
        writer.record(start, latency, "ok" if out.ok else "error", error, 200 if out.ok else -1, out.replica)


@dataclass(frozen=True)
class Injected:
    """What a fault did: when it started (t0) and ended, the fault name reports use, any analogue."""

    t0_ns: int
    end_ns: int
    fault: str
    analogue: str = ""


def _wait_ready(platform: LocalPlatform, timeout_s: float = 120.0) -> None:
    from harness.runner import wait_all_ready

    wait_all_ready(platform, timeout_s, 0.1)


def _wait_restarted(platform: LocalPlatform, name: str, restarts: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mine = [r for r in platform.status().replicas if r.name == name]
        if mine and mine[0].restarts > restarts:
            return
        time.sleep(0.05)


def _inject(platform: LocalPlatform, fault: str, k: int, run_id: str, hold_s: float) -> Injected:
    """Inject one fault through the platform's fault operations, hold it, undo it."""
    before = platform.status()
    names = [r.name for r in before.replicas]
    victim = before.replicas[k % len(before.replicas)]
    if fault == "pod-kill":
        t0 = time.time_ns()
        platform.fault_ops().kill_replica(victim.name, 0)
        return Injected(t0, time.time_ns(), "pod-kill")
    if fault in ("block-all", "block-one"):
        targets = names if fault == "block-all" else [victim.name]
        ops = platform.fault_ops()
        t0 = time.time_ns()
        record = ops.block_network(targets, run_id, 120.0)
        try:
            time.sleep(hold_s)
        finally:
            ops.unblock_network(record)
        return Injected(t0, time.time_ns(), "network-policy-block")
    if fault == "slow-load":
        ops = platform.fault_ops()
        t0 = time.time_ns()
        record = ops.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": f"{hold_s:g}"}, run_id, names)
        end = time.time_ns()
        try:
            for r in before.replicas:
                _wait_restarted(platform, r.name, r.restarts)
            _wait_ready(platform)
        finally:
            platform.fault_ops().restore_env(record)
        return Injected(t0, end, "slow-model-load")
    if fault == "memory-pressure":
        ops = platform.fault_ops()
        t0 = time.time_ns()
        record = ops.memory_pressure([victim.name], run_id, 8.0, hold_s + 30, 96.0)
        try:
            time.sleep(1.0)
            platform.fault_ops().kill_replica(victim.name, 0)  # restarted under the pressure, like the experiment
            time.sleep(hold_s)
        finally:
            platform.fault_ops().release_memory(record)
        return Injected(t0, time.time_ns(), "gpu-memory-pressure", str(record.get("analogue") or ""))
    raise ValueError(f"unknown fault {fault!r}; faults are {', '.join(FAULTS)}")


def run_repetition(
    platform: LocalPlatform, fault: str, rep_dir: Path, run_id: str, *, k: int = 0, rate: float = 100.0,
    hold_s: float = 3.0, stability_s: float = 3.0, warmup_s: float = 2.0,
) -> float:
    """One repetition of ``fault`` under the harness's open-loop load and the prober; writes the
    repetition directory (timeline, events, experiment.json) and returns the prober's TTR."""
    from harness.events import read_events
    from harness.load.process import LoadProcess

    status = platform.status()
    host, port = status.endpoints.http.removeprefix("http://").rsplit(":", 1)
    prober = Prober(host, int(port))
    profile = Path(__file__).resolve().parents[2] / "loadprofiles" / "steady.py"
    load_start = time.time_ns()
    load = LoadProcess.start(status.endpoints.http, status.endpoints.grpc, profile, rep_dir / "timeline",
                             users=10, rate=rate, timeout_s=2.0, log_path=rep_dir / "load.log")
    try:
        prober.start()
        time.sleep(warmup_s)
        injected = _inject(platform, fault, k, run_id, hold_s)
        _wait_ready(platform)
        time.sleep(stability_s + 2.0)
        observation_end = time.time_ns()
    finally:
        load.stop()
        prober.finish()
    load_end = time.time_ns()
    events = [e for e in read_events(platform.events_path()) if load_start <= e.ts_ns <= load_end]
    (rep_dir / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    info: dict[str, Any] = {
        "name": fault, "title": f"{fault} vs the independent prober", "fault": injected.fault, "file": "",
        "configuration": {"analysis": {"stability_period_s": stability_s}},
        "load_start_ns": load_start, "fault_start_ns": injected.t0_ns, "fault_end_ns": injected.end_ns,
        "observation_end_ns": observation_end, "load_end_ns": load_end, "status": "completed",
        "deviated": False, "replicas": [r.name for r in status.replicas], "analogue": injected.analogue,
        "time_scale": platform.settings.time_scale, "retries": False,
    }
    (rep_dir / "experiment.json").write_text(json.dumps(info))
    (rep_dir / "prober.json").write_text(json.dumps({"t0_ns": injected.t0_ns, "records": sorted(prober.records)}))
    return prober.ttr(injected.t0_ns)


def run(args: argparse.Namespace) -> int:
    from harness.analysis import analyse_run, load_settings
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings

    faults = [f.strip() for f in str(args.faults).split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        print(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
        return 2
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="harness-accuracy-"))
    subnet = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
    front = f"{subnet}.1"
    settings = LocalSettings(
        state_dir=workdir / "state", replica_address_base=f"{subnet}.2", front_address=front,
        http_port=_free_port(front), grpc_port=_free_port(front), prometheus_port=_free_port(front),
        stats_port=_free_port(front), time_scale=args.time_scale, queue_delay_ms=1.0, prometheus=False,
    )
    platform = LocalPlatform(settings)
    run_dir = workdir / "20261128T000000Z-bench-accuracy"
    prober_ttr: dict[tuple[str, str], float] = {}
    try:
        platform.up(replicas=2)
        for fault in faults:
            for k in range(args.reps):
                rep_dir = run_dir / "experiments" / fault / str(k + 1)
                rep_dir.mkdir(parents=True, exist_ok=True)
                prober_ttr[fault, str(k + 1)] = run_repetition(
                    platform, fault, rep_dir, run_dir.name, k=k, rate=args.rate, hold_s=args.hold,
                    stability_s=args.stability)
        (run_dir / "run.json").write_text(json.dumps(
            {"schema": 1, "run_id": run_dir.name, "kind": "run", "status": "completed", "experiments": faults,
             "settings": {"time_scale": args.time_scale}}))
    finally:
        platform.down()
    analysis = analyse_run(run_dir, load_settings(), query_server=False)
    print(f"{'fault':<16} {'rep':>3} {'harness TTR':>12} {'prober TTR':>11} {'diff ms':>8}  harness failed/all")
    summary: list[tuple[str, float, float, int]] = []
    met = True
    for exp in analysis.experiments:
        diffs = []
        for r in exp.reps:
            prober = prober_ttr[exp.name, r.repetition]
            harness = r.time_to_recover_s if r.recovered else None
            diff = None if harness is None else (harness - prober) * 1000
            if diff is not None:
                diffs.append(abs(diff))
            print(f"{exp.name:<16} {r.repetition:>3} {r.ttr_display():>12} {prober:>9.3f} s "
                  f"{'n/a' if diff is None else f'{diff:+.0f}':>8}  {r.requests_failed}/{r.requests_total}")
        if len(diffs) != len(exp.reps):
            print(f"{exp.name}: MISSED: the harness did not find a recovery in every repetition")
            met = False
            continue
        summary.append((exp.name, statistics.median(diffs), max(diffs), len(diffs)))
    print()
    print(f"{'fault':<16} {'reps':>4} {'median |diff| ms':>17} {'worst ms':>9}")
    for name, median, worst, n in summary:
        ok = median <= 100 and worst <= 250
        met = met and ok
        print(f"{name:<16} {n:>4} {median:>17.0f} {worst:>9.0f}  {'MET' if ok else 'MISSED'}")
    print(f"targets: median <= 100 ms and worst <= 250 ms for every fault: {'MET' if met else 'MISSED'}; "
          f"time scale {args.time_scale:g}, harness open loop {args.rate:g} req/s, prober every 20 ms "
          f"(1 s timeout each)")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if met else 1
