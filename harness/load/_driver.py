"""Inside the load process (gevent already patched): run a profile locally, as master, or as worker."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from harness.errors import ConfigError, PlatformError
from harness.load.context import LoadContext, attach, load_plan
from harness.load.profile import load_profile
from harness.load.settings import LoadSettings
from harness.procs import parent_death_signal

__all__ = ["run_master_or_local", "run_worker", "say_ready"]

WORKERS_CONNECT_TIMEOUT_S = 60.0


def say_ready(ready: Path | None, **state: Any) -> None:
    if ready is None:
        return
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, ready)


def _environment(profile: str, settings: LoadSettings, with_shape: bool) -> Any:
    from locust.env import Environment

    users, shape_cls = load_profile(Path(profile))
    shape = shape_cls() if with_shape else None  # builds (and checks) the profile's parameters
    # stop_timeout: a user asked to stop finishes its request in flight, so no request goes unrecorded.
    # headless: when the shape ends, the master quits its workers at once instead of first asking them
    # to stop (which parks each worker for stop_timeout before it hears the quit).
    options = argparse.Namespace(headless=True, enable_rebalancing=False, web_base_path="", tags=None,
                                 exclude_tags=None)
    return Environment(user_classes=users, shape_class=shape, host=settings.http_url,
                       stop_timeout=settings.timeout_s + 1.0, parsed_options=options)


class _Live:
    """Once a second: one line for the person watching, one JSON line for whoever analyses the run."""

    def __init__(self, env: Any, stats_path: Path | None, quiet: bool) -> None:
        self.env = env
        self.quiet = quiet
        self.out: IO[str] | None = stats_path.open("a") if stats_path else None
        self.started = time.monotonic()
        self._prev_times: dict[int, int] = {}
        self._prev_requests = 0
        self._prev_failures = 0
        self._prev_t = self.started

    def tick(self) -> None:
        from locust.stats import calculate_response_time_percentile

        total = self.env.stats.total
        now = time.monotonic()
        dt = max(now - self._prev_t, 1e-6)
        times = dict(total.response_times)
        prev = self._prev_times
        diff = {k: v - prev.get(k, 0) for k, v in times.items() if v > prev.get(k, 0)}
        n = total.num_requests - self._prev_requests
        errors = total.num_failures - self._prev_failures
        count = sum(diff.values())
        p50 = calculate_response_time_percentile(diff, count, 0.5) if count else None
        p99 = calculate_response_time_percentile(diff, count, 0.99) if count else None
        users = self.env.runner.user_count if self.env.runner else 0
        t = now - self.started
        if not self.quiet:
            pct = (f"p50 {p50:>5} ms  p99 {p99:>5} ms" if count else "p50     - ms  p99     - ms")
            print(f"{t:6.0f}s  users {users:>4}  rps {n / dt:8.1f}  errors/s {errors / dt:7.1f} "
                  f"(total {total.num_failures})  {pct}", flush=True)
        if self.out is not None:
            self.out.write(json.dumps({"t_s": round(t, 3), "time_ns": time.time_ns(), "users": users,
                                       "requests": total.num_requests, "failures": total.num_failures,
                                       "rps": round(n / dt, 2), "errors_per_s": round(errors / dt, 2),
                                       "p50_ms": p50, "p99_ms": p99}) + "\n")
            self.out.flush()
        self._prev_times, self._prev_requests, self._prev_failures, self._prev_t = (
            times, total.num_requests, total.num_failures, now)

    def forever(self) -> None:
        import gevent

        while True:
            gevent.sleep(1.0 - ((time.monotonic() - self.started) % 1.0))
            self.tick()

    def final(self, dropped: int | None) -> None:
        total = self.env.stats.total
        if self.out is not None:
            self.out.write(json.dumps({"final": True, "requests": total.num_requests,
                                       "failures": total.num_failures, "dropped": dropped,
                                       "elapsed_s": round(time.monotonic() - self.started, 3)}) + "\n")
            self.out.close()


def _on_signals(callback: Any) -> None:
    import gevent

    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, callback)


def run_master_or_local(args: argparse.Namespace, ready: Path | None) -> int:
    import gevent
    import gevent.event
    import locust.runners

    settings = LoadSettings.from_env()
    if args.workers < 0:
        raise ConfigError(f"--workers is {args.workers}; it must be 0 (one process) or more")
    env = _environment(args.profile, settings, with_shape=True)
    plan = load_plan(settings)  # once, before any worker starts: they read it from settings.requests_file
    workers: list[subprocess.Popen[bytes]] = []
    ctx: LoadContext | None = None
    if args.workers == 0:
        ctx = LoadContext.create(settings, plan)
        attach(env, ctx)
        runner = env.create_local_runner()
    else:
        locust.runners.WORKER_REPORT_INTERVAL = 1.0  # this process's live line needs fresh worker numbers
        runner = env.create_master_runner("127.0.0.1", 0)
        workers = _start_workers(args, runner.server.port, settings)
        _wait_workers(runner, workers, args.workers)

    stopped = gevent.event.Event()
    env.events.test_stop.add_listener(lambda **_: stopped.set())
    _on_signals(stopped.set)
    live = _Live(env, Path(args.stats) if args.stats else None, args.quiet)
    say_ready(ready, ok=True, pid=os.getpid())
    reporter = gevent.spawn(live.forever)
    runner.start_shape()
    stopped.wait()
    runner.quit()  # users finish their requests in flight; workers drain and flush
    if ctx is not None:
        ctx.close()
    _reap(workers, settings.timeout_s + 15.0)
    reporter.kill()
    live.tick()
    live.final(ctx.dropped if ctx is not None else None)
    if ctx is not None and ctx.dropped:
        print(f"warning: {ctx.dropped} scheduled requests were not sent: this load process was saturated "
              "(raise --workers or lower --rate)", file=sys.stderr, flush=True)
    return 0


def _start_workers(args: argparse.Namespace, port: int, settings: LoadSettings) -> list[subprocess.Popen[bytes]]:
    # Per process: each worker's in-flight cap is sized to its share of the rate (as the cluster's pods).
    cap = str(settings.for_workers(args.workers).max_inflight)
    procs = []
    for i in range(1, args.workers + 1):
        cmd = [sys.executable, "-m", "harness.load._main", "--worker", "--profile", args.profile,
               "--master-host", "127.0.0.1", "--master-port", str(port)]
        env = {**os.environ, "HARNESS_WORKER_ID": f"w{i}", "HARNESS_MAX_INFLIGHT": cap}
        procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                      preexec_fn=parent_death_signal(signal.SIGTERM)))
    return procs


def _wait_workers(runner: Any, procs: list[subprocess.Popen[bytes]], n: int) -> None:
    import gevent

    deadline = time.monotonic() + WORKERS_CONNECT_TIMEOUT_S
    while runner.worker_count < n:
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            _reap(procs, 0)
            codes = ", ".join(str(p.returncode) for p in dead)
            raise PlatformError(
                f"only {runner.worker_count} of {n} Locust workers connected"
                + (f" (workers exited with {codes}; their errors are above)" if dead else
                   f" within {WORKERS_CONNECT_TIMEOUT_S:g}s")
            )
        gevent.sleep(0.1)


def _reap(procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_worker(args: argparse.Namespace) -> int:
    import gevent
    import locust.runners

    locust.runners.WORKER_REPORT_INTERVAL = 1.0  # the master's live line needs fresh numbers
    settings = LoadSettings.from_env()
    env = _environment(args.profile, settings, with_shape=False)
    ctx = LoadContext.create(settings)
    attach(env, ctx)
    runner = env.create_worker_runner(args.master_host, args.master_port)

    def shutdown() -> None:
        gevent.spawn(lambda: (runner.stop(), runner.greenlet.kill(block=False)))

    _on_signals(shutdown)
    runner.greenlet.join()
    ctx.close()
    if ctx.dropped:
        print(f"warning: worker {settings.worker_id}: {ctx.dropped} scheduled requests were not sent "
              "(this worker was saturated)", file=sys.stderr, flush=True)
    return 0
