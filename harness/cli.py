"""The ``harness`` command line. The only module that calls ``sys.exit``.

Exit codes (also in README.md):
  0  success
  1  the run completed but failed its checks (hypothesis deviated, tier missed, regression)
  2  bad input: experiment, profile, manifest, settings or arguments
  3  the machine lacks something: a system package, a free port, the right Python
  4  platform problem: not up, half dead, or not ready in time
  5  a fault could not be injected or rolled back, or did not land: the run is void (evidence of nothing)
  130 interrupted (SIGINT/SIGTERM) in any phase, the warm-up included; rollbacks and cleanup have run
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import HarnessError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

# Each module defines register(subparsers); a command's handler returns its exit code.
COMMAND_MODULES = (
    "harness.commands.platform_cmds",
    "harness.commands.attach_cmd",
    "harness.commands.demo",
    "harness.commands.load_cmd",
    "harness.commands.run_cmd",
    "harness.commands.gameday_cmd",
    "harness.commands.suite_cmd",
    "harness.commands.report_cmds",
    "harness.commands.bench_cmd",
    "harness.commands.doctor_cmd",
    "harness.commands.rootless_cmd",
    "harness.commands.gpucheck_cmd",
    "harness.commands.sandbox_cmd",
    "harness.commands.check_cmd",
    "harness.commands.slo_cmd",
)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Chaos and resilience harness for Triton inference services.",
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
