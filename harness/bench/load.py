"""``harness bench load``: the load generator's throughput beside ``wrk``'s, and the timeline's cost.

Against one local service (its own random loopback subnet and free ports, so it runs beside anything),
each round runs, for the same duration and connection count:
  wrk          C connections, a Lua script POSTing the same binary-tensor request the users send
  timeline on  ``harness load`` machinery (LoadProcess), C closed-loop users, --workers processes
  timeline off the same without the timeline
Throughput is measured the same way for all three, on the server: successful inferences counted by
Triton's statistics API over the run's middle (after a warm-up second), so no tool grades itself.
Targets (issue 3): harness >= 70 % of wrk, timeline cost < 5 %. The machine's cores are shared with
Triton (and on CI with other jobs): read ratios of medians, not single numbers. Because throughput on a
shared machine is noisy, the client's own CPU time per request (on vs off, and vs wrk) is printed too:
it is what the timeline really costs, whatever the neighbours do. The on/off order alternates by round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("load benchmark")
    g.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    g.add_argument("--rounds", type=int, default=3, help="rounds (wrk, timeline on, timeline off each)")
    g.add_argument("--connections", type=int, default=16, help="wrk connections = harness users")
    g.add_argument("--workers", type=int, default=0,
                   help="harness Locust worker processes (0: one process; on 2 cores shared with Triton one "
                        "process offers the most, a master and workers take CPU the service needs)")
    g.add_argument("--replicas", type=int, default=2, help="Triton replicas behind the front")


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _platform(state: Path, replicas: int) -> Any:
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings

    subnet = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
    front = f"{subnet}.1"
    return LocalPlatform(LocalSettings(
        state_dir=state, replicas=replicas, replica_address_base=f"{subnet}.2", front_address=front,
        http_port=_free_port(front), grpc_port=_free_port(front), prometheus_port=_free_port(front),
        stats_port=_free_port(front), prometheus=False, queue_delay_ms=1.0))


def _served(replica_http: list[str]) -> int:
    """Successful inferences so far, summed over replicas (Triton's own statistics)."""
    total = 0
    for url in replica_http:
        with urllib.request.urlopen(f"{url}/v2/models/mlp/stats", timeout=5) as resp:
            for model in json.load(resp)["model_stats"]:
                total += int(model["inference_stats"]["success"]["count"])
    return total


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a group (the client under test)."""
    from harness.platforms.local.procs import group_members

    ticks = 0
    for pid in group_members(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _measure(start: Callable[[], Any], finish: Callable[[Any], None], duration: float,
             replicas: list[str]) -> tuple[float, float]:
    """Over the same window, from 1 s after the start to 0.5 s before the end: (successful requests/s
    counted by the server, the client's CPU microseconds per served request; start-up excluded)."""
    handle = start()
    t_start = time.monotonic()
    time.sleep(1.0)
    n0, t0, c0 = _served(replicas), time.monotonic(), _group_cpu_s(handle.pid)
    time.sleep(max(0.5, duration - 1.5 - (time.monotonic() - t_start - 1.0)))
    n1, t1, c1 = _served(replicas), time.monotonic(), _group_cpu_s(handle.pid)
    finish(handle)
    return (n1 - n0) / (t1 - t0), (c1 - c0) / max(n1 - n0, 1) * 1e6


def _wrk_script(path: Path) -> Path:
    from harness.load.clients import binary_request

    body, json_size = binary_request()
    escaped = "".join(f"\\{b:03d}" for b in body)
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{escaped}"\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        f'wrk.headers["Inference-Header-Content-Length"] = "{json_size}"\n'
    )
    return path


def _wrk(script: Path, url: str, connections: int, duration: float) -> Callable[[], Any]:
    def start() -> Any:
        return subprocess.Popen(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s", "-s", str(script),
             f"{url}/v2/models/mlp/infer"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)

    return start


def _wrk_finish(proc: Any) -> None:
    out, _ = proc.communicate(timeout=60)
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise EnvironmentProblem(f"wrk failed ({proc.returncode}):\n{out}")
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        print("  note: wrk saw non-2xx responses:\n" + out)


def run(args: argparse.Namespace) -> int:
    from harness.load.process import LoadProcess

    if shutil.which("wrk") is None:
        raise EnvironmentProblem("wrk is not installed; install it with: sudo apt-get install -y wrk")
    profile = Path(__file__).resolve().parents[2] / "loadprofiles" / "steady.py"
    if not profile.exists():
        raise EnvironmentProblem(f"the steady profile is missing: {profile}")
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-load-"))
    platform = _platform(tmp / "state", args.replicas)
    print(f"starting a local service ({args.replicas} replicas, queue delay 1 ms) ...", flush=True)
    status = platform.up()
    http = status.endpoints.http
    replicas = [r.http for r in status.replicas]
    script = _wrk_script(tmp / "post.lua")
    results: dict[str, list[float]] = {"wrk": [], "timeline on": [], "timeline off": []}
    cpu: dict[str, list[float]] = {k: [] for k in results}
    c, d, w = args.connections, args.duration, args.workers

    def harness_start(timeline: bool, n: int) -> Callable[[], Any]:
        def start() -> Any:
            return LoadProcess.start(http, status.endpoints.grpc, profile,
                                     tmp / f"timeline-{n}" if timeline else None, users=c, duration_s=d,
                                     workers=w, log_path=tmp / "load.log")
        return start

    def harness_finish(load: Any) -> None:
        if load.wait(d + 30) is None:
            load.stop()

    try:
        for n in range(1, args.rounds + 1):
            order = [("timeline on", True), ("timeline off", False)]
            runs: list[tuple[str, Callable[[], Any], Callable[[Any], None]]] = [
                ("wrk", _wrk(script, http, c, d), _wrk_finish),
                *((name, harness_start(on, n), harness_finish) for name, on in order[:: 1 if n % 2 else -1]),
            ]
            for name, start, finish in runs:
                rps, us = _measure(start, finish, d, replicas)
                results[name].append(rps)
                cpu[name].append(us)
            line = ", ".join(f"{k} {v[-1]:.0f} req/s ({cpu[k][-1]:.0f} us CPU/req)"
                             for k, v in results.items())
            print(f"round {n}: {line}", flush=True)
    finally:
        platform.down()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmedians over {args.rounds} rounds of {d:g}s, {c} connections/users, harness workers {w} "
          "(server-side successful inferences/s):")
    for k, v in med.items():
        print(f"  {k:<13} {v:9.0f} req/s   client CPU {statistics.median(cpu[k]):5.1f} us/request   "
              f"(rounds: {', '.join(f'{x:.0f}' for x in results[k])})")
    on_vs_wrk = med["timeline on"] / med["wrk"] if med["wrk"] else 0.0
    cost = 1 - med["timeline on"] / med["timeline off"] if med["timeline off"] else 0.0
    print(f"  harness (timeline on) / wrk   {on_vs_wrk:6.1%}   target >= 70%")
    print(f"  timeline cost (1 - on / off)  {cost:6.1%}   target < 5%")
    cpu_on, cpu_off = statistics.median(cpu["timeline on"]), statistics.median(cpu["timeline off"])
    print(f"  timeline CPU per request      {cpu_on / cpu_off - 1:+6.1%}   (client CPU on / off - 1)")
    shutil.rmtree(tmp, ignore_errors=True)
    code = verdict(on_vs_wrk, cost)
    print(f"targets: {'MET' if code == 0 else 'MISSED'}")
    return code


def verdict(on_vs_wrk: float, cost: float) -> int:
    """0 when both targets are met (harness >= 70 % of wrk, timeline cost < 5 %), else 1: ``make bench`` fails."""
    return 0 if on_vs_wrk >= 0.70 and cost < 0.05 else 1
