"""``harness attach`` and ``harness detach``: test a Triton service that was started outside the harness.

Locally (``--endpoint URL``) a Triton on a loopback address; on Kubernetes (``--platform kubernetes
--namespace NS --deployment NAME``) a running Deployment and its Service (harness.platforms.kubernetes.attach).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands.platform_cmds import format_status
from harness.errors import ConfigError
from harness.platforms.registry import add_platform_arguments, platform_from_args

__all__ = ["register"]


def _state_dir(args: argparse.Namespace) -> Path:  # the local attach's slot
    from harness.platforms.local.settings import default_state_dir

    return Path(args.state_dir).absolute() if args.state_dir else default_state_dir()


def _attach_kubernetes(args: argparse.Namespace) -> int:
    from harness.platforms.kubernetes.platform import KubernetesPlatform

    if not args.deployment:
        raise ConfigError("harness attach --platform kubernetes needs --deployment NAME (and --namespace NS, or "
                          "namespace in --k8s-settings; --service NAME when several Services select its pods)")
    if args.endpoint:
        raise ConfigError("--endpoint is for the local platform; on Kubernetes the harness finds the Service "
                          "(--service NAME) and reaches it itself")
    platform = platform_from_args(args, for_up=True)
    assert isinstance(platform, KubernetesPlatform)
    attachment = platform.attach_deployment(args.deployment, args.service or "")
    status = platform.status()
    if args.json:
        print(json.dumps({"status": status.to_json(), "attached": json.loads(
            (platform.state / "attached.json").read_text())}, indent=2))
        return 0
    print(format_status(status))
    models = ", ".join(f"{m['name']} v{m['version']} {m['state']}" for m in attachment.models)
    refused = platform.refused_actions()
    print(f"\nattached to {attachment.where()} (Service {attachment.shape.service}, image "
          f"{', '.join(attachment.shape.images)}), {attachment.server.get('name', 'triton')} "
          f"{attachment.server.get('version', '')} serving {models}")
    print("faults act on its pods; the Deployment and Service are only read. Refused here: "
          + ("; ".join(f"{k} ({v})" for k, v in sorted(refused.items())) or "nothing"))
    print(f"stop with: harness detach --platform kubernetes --namespace {platform.namespace}")
    return 0


def _cmd_attach(args: argparse.Namespace) -> int:
    from harness.platforms.attached.platform import AttachedPlatform, attach

    if args.platform == "kubernetes":
        return _attach_kubernetes(args)
    if not args.endpoint:
        raise ConfigError("harness attach needs --endpoint http://127.x.y.z:PORT (or --platform kubernetes "
                          "--namespace NS --deployment NAME)")
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


def _detach_kubernetes(args: argparse.Namespace) -> int:
    from harness.errors import PlatformError
    from harness.platforms.kubernetes.platform import KubernetesPlatform

    platform = platform_from_args(args)
    assert isinstance(platform, KubernetesPlatform)
    if platform.attachment is None:
        raise PlatformError(f"nothing is attached in namespace {platform.namespace} (state {platform.state}); "
                            "'harness down' stops the harness's own service")
    report = platform.detach()
    print(f"detached from {report.where}; undone: {', '.join(report.undone) or 'nothing was left to undo'}")
    if not report.changes:
        print("the Deployment and Service are exactly as they were when attached: same uid, generation, spec, "
              "labels and annotations")
    elif report.unchanged:
        print("the Deployment and Service are as they were when attached, except:\n  - "
              + "\n  - ".join(report.changes))
    else:
        print("the Deployment or Service CHANGED while attached:\n  - " + "\n  - ".join(report.changes))
    return 0


def _cmd_detach(args: argparse.Namespace) -> int:
    if args.platform == "kubernetes":
        return _detach_kubernetes(args)
    args.platform = "attached"
    from harness.platforms.attached.platform import AttachedPlatform

    platform = platform_from_args(args)
    assert isinstance(platform, AttachedPlatform)  # the registry's "attached" slot makes nothing else
    changes = platform.changes_since_attach()
    report = platform.down()
    print(f"detached; {report.describe()}")
    if changes:
        print("the service changed while attached (not by the harness's faults, which are all undone):\n  - "
              + "\n  - ".join(changes))
    else:
        print("the service is as it was when attached: same server, same models, versions and states")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "attach", help="test a Triton started outside the harness (a loopback endpoint, or a Deployment)",
        description="Record a running Triton service (on a 127.x.y.z address, or with --platform kubernetes a "
                    "Deployment and its Service) as the service under test: later commands (status, load, run, "
                    "suite) act on it. Locally only load and network blocks are possible; on Kubernetes faults "
                    "act on its pods. The harness never deletes or changes it. 'harness detach' undoes every "
                    "fault and checks it is as it was.")
    add_platform_arguments(p)
    p.add_argument("--endpoint", help="local: its HTTP endpoint, http://127.x.y.z:PORT")
    p.add_argument("--grpc-endpoint", metavar="HOST:PORT", help="local: its gRPC endpoint (for --protocol grpc "
                   "and network blocks of that port too)")
    p.add_argument("--deployment", metavar="NAME", help="kubernetes: the Deployment to attach to")
    p.add_argument("--service", metavar="NAME", help="kubernetes: the Service clients call (default: the one "
                   "Service that selects the Deployment's pods)")
    p.add_argument("--json", action="store_true", help="print the status and the recorded service as JSON")
    p.set_defaults(handler=_cmd_attach)

    p = sub.add_parser("detach", help="undo every fault and forget the attached service (left as it was)",
                       description="Undo every fault recorded against the attached service, check it is as it "
                                   "was when attached, and forget it. The service keeps running.")
    add_platform_arguments(p)
    p.set_defaults(handler=_cmd_detach)


