"""``harness sandbox up|down|status``: a real single-node Kubernetes on this machine (root only).

The binaries are built once from Debian's Kubernetes source into a cache (about 11 minutes on two
cores, with progress lines); later ``up`` calls start the cluster in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.sandbox.cluster import Sandbox, SandboxStatus
from harness.sandbox.manifest import write_small_manifest

__all__ = ["register"]


def _progress(line: str) -> None:
    print(f"[sandbox] {line}", file=sys.stderr, flush=True)


def _print(status: SandboxStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status.to_json(), indent=2))
        return
    if not status.up:
        print("sandbox: down")
        return
    print(f"sandbox: {'ready' if status.ready else 'NOT ready'}")
    print(f"  kubeconfig    {status.kubeconfig}   (context {status.context})")
    if status.triton_image:
        print(f"  triton image  {status.triton_image}   (pass it with --image)")
    print("  load image    this checkout's harness image: run/suite/gameday/load --platform kubernetes with this "
          "kubeconfig use it by default for the in-cluster load (built and imported on first use, as root)")
    for name, pid in status.processes.items():
        print(f"  {name:<24} {pid or 'not running'}")
    for problem in status.problems:
        print(f"  problem: {problem}")


def _cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    status = Sandbox(progress=_progress).up(triton_image=not args.no_triton_image, timeout_s=args.timeout)
    # The reference requests 1 CPU per pod: two fill the 2-core node, and no load pod could be scheduled.
    manifest = write_small_manifest(Path(status.kubeconfig).parent / "triton-small.yaml")
    _print(status, args.json)
    if not args.json:
        k8s = f"--platform kubernetes --kubeconfig {status.kubeconfig} --namespace chaos-demo"
        print(f"\nready in {time.monotonic() - started:.1f}s. Use it with:\n"
              f"  harness up {k8s} \\\n    --manifest {manifest}"
              + (f" --image {status.triton_image} --gpus-per-replica 0" if status.triton_image else "")
              + f"\n  harness suite nightly {k8s} \\\n"
                "    --allow-privileged-agent --agent-image $(harness sandbox agent-image)"
              + "\n(--manifest: the reference with 50m CPU requests, so that the in-cluster load's pods and a surge "
                "pod fit the 2-core node)\nremove it with: harness sandbox down")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = Sandbox().status()
    _print(status, args.json)
    return 0 if status.ready or not status.up else 4


def _cmd_down(args: argparse.Namespace) -> int:
    removed = Sandbox(progress=_progress).down()
    print("removed " + ", ".join(removed) if removed else "nothing to remove")
    return 0


def _cmd_agent_image(args: argparse.Namespace) -> int:
    print(Sandbox(progress=_progress).agent_image())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help="a real single-node Kubernetes on this machine (root)",
                       description=__doc__)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start it; prints the kubeconfig once the node is Ready")
    up.add_argument("--json", action="store_true", help="print the status as JSON")
    up.add_argument("--no-triton-image", action="store_true", help="do not build/import the local Triton image")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the node to be Ready")
    up.set_defaults(handler=_cmd_up)
    st = verbs.add_parser("status", help="whether it runs and is Ready")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(handler=_cmd_status)
    agent = verbs.add_parser("agent-image", help="build and import the network block's agent image; print its tag",
                             description="busybox (sh, nsenter, ip) and Debian's nft, for --agent-image with "
                                         "--allow-privileged-agent (the network block's agent route)")
    agent.set_defaults(handler=_cmd_agent_image)
    down = verbs.add_parser("down", help="stop and remove everything it made; restore kernel settings")
    down.set_defaults(handler=_cmd_down)
