"""``harness attach`` and ``harness detach``: test a Triton service that was started outside the harness."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands.platform_cmds import format_status

__all__ = ["register"]


def _state_dir(args: argparse.Namespace) -> Path:
    from harness.platforms.local.settings import default_state_dir

    return Path(args.state_dir).absolute() if args.state_dir else default_state_dir()


def _cmd_attach(args: argparse.Namespace) -> int:
    from harness.platforms.attached.platform import AttachedPlatform, attach

    settings = attach(_state_dir(args), args.endpoint, args.grpc_endpoint or "")
    platform = AttachedPlatform(settings)
    if args.json:
        print(json.dumps({"status": platform.status().to_json(), "service": settings.snapshot}, indent=2))
        return 0
    print(format_status(platform.status()))
    server = settings.snapshot["server"]
    models = ", ".join(f"{m['name']} v{m['version']} {m['state']}" for m in settings.snapshot["models"])
    print(f"\nattached to {server['name']} {server['version']} serving {models}")
    print("load-only experiments and network blocks run against it; pod kill, slow model load and memory "
          "pressure are refused (the harness did not start it). Stop with: harness detach")
    return 0


def _cmd_detach(args: argparse.Namespace) -> int:
    from harness.platforms.registry import platform_from_args

    args.platform = "attached"
    platform = platform_from_args(args)
    changes = platform.changes_since_attach()  # type: ignore[attr-defined]
    report = platform.down()
    print(f"detached; {report.describe()}")
    if changes:
        print("the service changed while attached (not by the harness's faults, which are all undone):\n  - "
              + "\n  - ".join(changes))
    else:
        print("the service is as it was when attached: same server, same models, versions and states")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    state_help = "state directory shared with the local platform (default: $HARNESS_STATE_DIR or ./.harness/local)"
    p = sub.add_parser(
        "attach", help="test a Triton started outside the harness (a loopback endpoint)",
        description="Record a running Triton service (on a 127.x.y.z address) as the service under test: "
                    "later commands (status, load, run, suite) act on it. Only load and network blocks are "
                    "possible; the harness never stops or changes it. 'harness detach' undoes every fault.")
    p.add_argument("--endpoint", required=True, help="its HTTP endpoint, http://127.x.y.z:PORT")
    p.add_argument("--grpc-endpoint", metavar="HOST:PORT", help="its gRPC endpoint (for --protocol grpc and "
                   "network blocks of that port too)")
    p.add_argument("--state-dir", help=state_help)
    p.add_argument("--json", action="store_true", help="print the status and the recorded service as JSON")
    p.set_defaults(handler=_cmd_attach)

    p = sub.add_parser("detach", help="undo every fault and forget the attached service (left as it was)",
                       description="Undo every fault recorded against the attached service, check it is as it "
                                   "was when attached, and forget it. The service keeps running.")
    p.add_argument("--state-dir", help=state_help)
    p.set_defaults(handler=_cmd_detach)


