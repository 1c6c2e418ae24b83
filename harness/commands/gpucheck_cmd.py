"""``harness gpu-check``: the demo suite with GPU instances on this machine, printed as a pass/fail table."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    from harness.commands.gpucheck import format_table, run_gpu_check

    rows, code = run_gpu_check(Path(args.state_dir), Path(args.reports_dir), args.replicas)
    print(format_table(rows))
    print("gpu-check: " + ("PASS" if code == 0 else "FAIL"))
    return code


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gpu-check", help="on a GPU machine: run the demo suite with GPU instances, print checks",
                       description="Start the local service with one GPU per replica (pinned by UUID), check "
                                   "that the model computes on the GPU, run the demo suite, and check that the "
                                   "GPU memory-pressure fault held the target's GPU, the target failed to reload "
                                   "under it and recovered after release, and the report names the GPU. "
                                   "Exit 0 all passed, 1 a check failed, 3 no GPU (nothing started).")
    p.add_argument("--state-dir", default=".harness/gpu-check", help="the local platform's state directory")
    p.add_argument("--reports-dir", default="reports/gpu-check", help="where the demo suite's run is written")
    p.add_argument("--replicas", type=int, default=2, help="replicas (more than GPUs: they share round-robin)")
    p.set_defaults(handler=_cmd_gpu_check)
