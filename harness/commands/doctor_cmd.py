"""``harness doctor [--json]``: which fault runs on which platform here, and for every "no" the reason and the fix."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.doctor import diagnose

__all__ = ["register"]


def _cmd_doctor(args: argparse.Namespace) -> int:
    diagnosis = diagnose(state_dir=Path(args.state_dir).absolute() if args.state_dir else None)
    print(diagnosis.dumps() if args.json else diagnosis.render())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor", help="what this machine can run: each fault on each platform, with the reason and fix of every no",
        description="Check this machine: each fault on each platform (local, kubernetes), the GPU, nftables "
                    "(root or rootless), the cgroup layout and memory controller, system packages, the "
                    "tritonserver, free ports and Python. Every 'no' comes with its reason and the fix. "
                    "harness run/suite/gameday refuse an experiment for the same reason (exit 3). Exit 0.")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--state-dir", help="the local platform's state directory whose ports to check "
                                       "(default: $HARNESS_STATE_DIR or ./.harness/local)")
    p.set_defaults(handler=_cmd_doctor)
