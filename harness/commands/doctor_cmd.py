"""``harness doctor [--json]``: which fault runs on which platform here, and for every "no" the reason and the fix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.doctor import diagnose
from harness.platforms.registry import add_platform_arguments

__all__ = ["register"]


def _k8s_probe(args: argparse.Namespace) -> dict[str, object]:
    """NetworkPolicy enforcement on the cluster, probed in the namespace (throwaway pods and policy, removed)."""
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.policyprobe import probe_enforcement
    from harness.platforms.registry import platform_from_args

    platform = platform_from_args(args)
    assert isinstance(platform, KubernetesPlatform)  # --platform kubernetes
    print(f"probing NetworkPolicy enforcement in namespace {args.namespace} (two throwaway pods and a "
          "deny-all policy, removed afterwards) ...", file=sys.stderr, flush=True)
    found = probe_enforcement(platform)
    refusal = platform.fault_ops().agent_refusal()
    return {**found.to_json(), "agent_refusal": refusal or ""}


def _cmd_doctor(args: argparse.Namespace) -> int:
    probe = _k8s_probe(args) if args.platform == "kubernetes" else None
    diagnosis = diagnose(state_dir=Path(args.state_dir).absolute() if args.state_dir else None, k8s_probe=probe)
    print(diagnosis.dumps() if args.json else diagnosis.render())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor", help="what this machine can run: each fault on each platform, with the reason and fix of every no",
        description="Check this machine: each fault on each platform (local, kubernetes), the GPU, nftables "
                    "(root or rootless), the cgroup layout and memory controller, system packages, the "
                    "tritonserver, free ports and Python. Every 'no' comes with its reason and the fix. With "
                    "--platform kubernetes it also probes, in the namespace, whether the cluster enforces "
                    "NetworkPolicy (two throwaway pods, a deny-all policy and a connection, all removed). "
                    "harness run/suite/gameday refuse an experiment for the same reason (exit 3). Exit 0.")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    add_platform_arguments(p)  # --platform kubernetes (with --namespace): probe NetworkPolicy enforcement there
    p.set_defaults(handler=_cmd_doctor)
