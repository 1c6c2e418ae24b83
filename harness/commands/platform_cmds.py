"""``harness up``, ``status``, ``down`` and ``cleanup``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from harness.platforms.base import PlatformStatus
from harness.platforms.registry import add_dry_run_argument, add_platform_arguments, platform_from_args

__all__ = ["format_status", "register"]


def _up_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicas", type=int, help="replica count (default: the Deployment's spec.replicas)")
    p.add_argument("--manifest", help="Kubernetes manifest with the Deployment to play (default: the reference)")
    p.add_argument("--model-repository", metavar="DIR",
                   help="local: serve your own Triton model repository (every model in it) instead of the "
                        "reference model; refused, naming model and backend, when the bundled tritonserver "
                        "lacks a backend it needs (it ships python)")
    p.add_argument("--front-address", help="loopback address HAProxy and Prometheus listen on (127.0.0.1)")
    p.add_argument("--replica-address-base", help="first replica's address; the next get .+1 (127.0.0.2)")
    p.add_argument("--http-port", type=int, help="front HTTP port (8000)")
    p.add_argument("--grpc-port", type=int, help="front gRPC port (8001)")
    p.add_argument("--prometheus-port", type=int, help="Prometheus port (9090)")
    p.add_argument("--stats-port", type=int, help="HAProxy stats and metrics port (8404)")
    p.add_argument("--time-scale", type=float,
                   help="multiply probe periods and back-off (e.g. 0.1 for tests; reports say so) (1.0)")
    p.add_argument("--retries", action="store_true", help="let the front retry failed requests, like a mesh")
    p.add_argument("--queue-delay-ms", type=float, help="dynamic batching queue delay of the model (50)")
    p.add_argument("--model-instances", type=int, help="model instances per replica (1)")
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    p.add_argument("--ready-timeout", type=float, help="seconds to wait for every replica to be ready (180)")


def format_status(status: PlatformStatus) -> str:
    ep = status.endpoints
    lines = [
        f"platform {status.platform}: {'up' if status.up else 'down'}, "
        f"{status.ready_replicas}/{len(status.replicas)} replicas ready",
        f"  http        {ep.http}",
        f"  grpc        {ep.grpc}",
        f"  prometheus  {ep.prometheus or '(none)'}",
    ]
    scale = status.details.get("time_scale")
    if scale not in (None, 1.0):
        lines.append(f"  time scale  {scale} (probe periods and back-off are scaled)")
    gpus = status.details.get("gpus")
    if isinstance(gpus, dict):
        for name, described in sorted(gpus.items()):
            lines.append(f"  gpu         {name}: {', '.join(described)}")
    if status.details.get("retries"):
        lines.append("  retries     on (the front retries failed requests, like a mesh)")
    if status.details.get("model_repository"):
        lines.append(f"  models      {status.details['model_repository']} (the user's repository)")
    lines.append("")
    lines.append(f"  {'NAME':<12} {'ADDRESS':<12} {'PID':>7} {'READY':<6} {'RESTARTS':>8} {'AGE':>7}  REASON")
    for r in status.replicas:
        lines.append(
            f"  {r.name:<12} {r.address:<12} {r.pid or '-':>7} {'yes' if r.ready else 'no':<6} "
            f"{r.restarts:>8} {r.age_s:>6.0f}s  {r.reason or r.state}"
        )
    return "\n".join(lines)


def _cmd_up(args: argparse.Namespace) -> int:
    platform = platform_from_args(args, for_up=True)
    started = time.monotonic()
    status = platform.up()
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status))
        if status.details.get("dry_run"):
            print("\ndry run: nothing was applied")
        else:
            print(f"\nready in {time.monotonic() - started:.1f}s; stop with: harness down")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = platform_from_args(args).status()
    if args.json:
        out: dict[str, Any] = status.to_json()
        print(json.dumps(out, indent=2))
    else:
        print(format_status(status))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    platform = platform_from_args(args)
    report = platform.down()
    print(f"{'detached' if platform.name == 'attached' else 'stopped'}; {report.describe()}")
    return 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    platform = platform_from_args(args)
    report = platform.cleanup()
    print(report.describe())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="start the reference Triton service and wait until it is ready",
                       description="Start the reference service; returns once every replica is ready.")
    add_platform_arguments(p)
    add_dry_run_argument(p)
    _up_arguments(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=_cmd_up)

    p = sub.add_parser("status", help="show endpoints and replicas",
                       description="Endpoints and replicas: name, address, pid, ready, restarts, age, reason.")
    add_platform_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON object (endpoints, replicas, ...)")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("down", help="stop everything the platform started",
                       description="Stop the service; nothing it started is left behind.")
    add_platform_arguments(p)
    add_dry_run_argument(p)
    p.set_defaults(handler=_cmd_down)

    p = sub.add_parser("cleanup", help="remove what a crashed run or platform left behind",
                       description="Kill leftover processes and remove leftover shared memory and faults.")
    add_platform_arguments(p)
    add_dry_run_argument(p)
    p.set_defaults(handler=_cmd_cleanup)
