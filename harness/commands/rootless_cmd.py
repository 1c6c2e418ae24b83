"""``harness rootless COMMAND ...``: run a harness command inside a private user+network namespace.

Why: without root, nftables (the network-policy block) cannot touch the network namespace the replicas
run in. Where the kernel lets users create namespaces (``unshare -rn``), the whole job can run in one of
its own: there the user is root of a fresh network namespace, nftables works, and nothing outside is
touched. Everything the command starts (replicas, HAProxy, Prometheus, load) lives and dies inside it, so
it suits commands that bring the service up and down themselves (``demo``); for a chain of commands
(up, run, down) use ``unshare -rn`` in a shell and bring ``lo`` up first (``ip link set lo up``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

from harness.errors import EnvironmentProblem

__all__ = ["register"]

_INSIDE = "HARNESS_ROOTLESS_INSIDE"
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    """A new network namespace starts with its loopback down; the platform binds 127.0.0.x addresses."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


def _cmd_rootless(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise EnvironmentProblem("harness rootless needs a command to run, e.g. harness rootless demo")
    if os.environ.get(_INSIDE) == "1":
        _loopback_up()
        from harness.cli import build_parser

        inner = build_parser().parse_args(command)
        return int(inner.handler(inner))
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EnvironmentProblem("harness rootless needs unshare (util-linux): sudo apt-get install -y util-linux")
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise EnvironmentProblem(
            f"this kernel does not let users create a user+network namespace ({probe.stderr.strip()}); run as root, "
            "or allow it: sudo sysctl kernel.unprivileged_userns_clone=1 (Debian), "
            "kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04)")
    env = {**os.environ, _INSIDE: "1"}
    return subprocess.run([unshare, "--user", "--map-root-user", "--net", "--", sys.executable, "-m", "harness.cli",
                           "rootless", "--", *command], env=env).returncode


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rootless", help="run a harness command in a private user+network namespace (no sudo needed)",
        description="Run COMMAND inside a user+network namespace of its own (unshare -rn), where an unprivileged "
                    "user is root: the network-policy block works without sudo. The service lives only inside "
                    "it, so use commands that start and stop it themselves: harness rootless demo.")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the harness command and its arguments")
    p.set_defaults(handler=_cmd_rootless)
