"""``harness demo``: the main job on the local platform, what ``make demo`` runs."""

from __future__ import annotations

import argparse
import collections
import time

from harness.platforms.registry import add_platform_arguments, platform_from_args
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


def _cmd_demo(args: argparse.Namespace) -> int:
    platform = platform_from_args(args, for_up=True)
    print("starting the reference Triton service (2 replicas behind HAProxy, scraped by Prometheus) ...")
    t0 = time.monotonic()
    status = platform.up(replicas=args.replicas)
    print(f"ready in {time.monotonic() - t0:.1f}s: http {status.endpoints.http}, grpc {status.endpoints.grpc}, "
          f"prometheus {status.endpoints.prometheus}")
    failed = 0
    try:
        results = send_requests(status.endpoints.http, status.endpoints.grpc, args.requests)
        for proto, counter in results.items():
            line = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()))
            print(f"{proto:>5}: {line}")
            failed += sum(v for k, v in counter.items() if k.startswith("error"))
    finally:
        if not args.keep:
            print(f"stopping: {platform.down().describe()}")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the main job on the local platform and print where the report is",
                       description="Start the local service, run the main job, print the outcome.")
    add_platform_arguments(p)
    p.add_argument("--replicas", type=int, default=2, help="replica count")
    p.add_argument("--requests", type=int, default=20, help="requests per protocol")
    p.add_argument("--keep", action="store_true", help="leave the service running afterwards")
    p.set_defaults(handler=_cmd_demo)
