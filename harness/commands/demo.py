"""``harness demo``: the main job on the local platform, what ``make demo`` runs.

It brings the reference service up (or uses the one already up), checks it answers over HTTP and gRPC
through the front, runs the demo suite (the four faults, short durations, under steady load), prints the
summary table and where the report is, and takes the service down again if it started it.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

from harness.commands.suite_cmd import run_suite
from harness.doctor import refuse_unrunnable_files
from harness.errors import EnvironmentProblem
from harness.platforms.registry import add_platform_arguments, platform_args_for_chaos, platform_from_args
from harness.suite import find_suite
from harness.triton.client import infer_grpc, infer_http, reference_input

__all__ = ["register", "send_requests"]


def send_requests(http_url: str, grpc_url: str, count: int) -> dict[str, collections.Counter[str]]:
    """Send ``count`` inferences over each protocol through the front; count outcomes per replica."""
    data = reference_input()
    results: dict[str, collections.Counter[str]] = {"http": collections.Counter(), "grpc": collections.Counter()}
    for _ in range(count):
        for proto, outcome in (("http", infer_http(http_url, data)), ("grpc", infer_grpc(grpc_url, data))):
            results[proto][outcome.replica if outcome.ok else f"error: {outcome.error[:60]}"] += 1
    return results


def _skip_what_cannot_run(experiment: Path) -> str:
    """The demo leaves out what this machine cannot inject, with harness doctor's reason (a suite refuses)."""
    try:
        refuse_unrunnable_files([experiment], "local")
    except EnvironmentProblem as exc:
        return str(exc).split(f"{experiment}: ", 1)[-1]
    return ""


def _cmd_demo(args: argparse.Namespace) -> int:
    platform = platform_from_args(args, for_up=True)
    started_here = False
    try:
        status = platform.status()
        print(f"using the running service: http {status.endpoints.http}")
    except Exception:  # noqa: BLE001 - not up (or half dead): start it, up() says why if it cannot
        print(f"starting the reference Triton service ({args.replicas} replicas behind HAProxy, scraped by "
              "Prometheus) ...")
        t0 = time.monotonic()
        status = platform.up(replicas=args.replicas)
        started_here = True
        print(f"ready in {time.monotonic() - t0:.1f}s: http {status.endpoints.http}, grpc {status.endpoints.grpc}, "
              f"prometheus {status.endpoints.prometheus}")
    try:
        results = send_requests(status.endpoints.http, status.endpoints.grpc, 10)
        for proto, counter in results.items():
            print(f"{proto:>5}: " + ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())))
        if args.quick:
            return 0
        platform_args = platform_args_for_chaos(args)
        return run_suite(platform, find_suite(args.suite), Path(args.reports_dir), platform_args,
                         skip=_skip_what_cannot_run)
    finally:
        if started_here and not args.keep:
            print(f"stopping the service: {platform.down().describe()}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the main job on the local platform and print where the report is",
                       description="Start the local service, run the demo suite (the four faults under steady "
                                   "load), print the summary table and the report's path.")
    add_platform_arguments(p)
    p.add_argument("--replicas", type=int, default=2, help="replica count")
    p.add_argument("--suite", default="demo", help="suite to run")
    p.add_argument("--reports-dir", default="reports", help="where the run directory is written")
    p.add_argument("--quick", action="store_true", help="only start the service and send a few requests")
    p.add_argument("--keep", action="store_true", help="leave the service running afterwards")
    p.set_defaults(handler=_cmd_demo)
