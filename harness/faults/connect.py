"""A TCP connect test as a client makes it, and its outcome in words a report can show.

A network block proves itself with connections that fail, but *how* they fail matters: a drop (the
harness's nftables table, an enforced NetworkPolicy) makes a connection time out, while a closed port
(a crashed server) refuses it at once. Recording the two apart keeps a dead target from passing for a
block that held.
"""

from __future__ import annotations

import errno
import socket

from harness.platforms.base import Connect

__all__ = ["AGENT_ELSEWHERE", "EXIT_CODES", "Connect", "connected", "from_exit_code", "tcp_connect"]

AGENT_ELSEWHERE = ("the network block's agent route is the Kubernetes platform's; here the block is the harness's own "
                   "nftables table")
# Exit codes of the in-pod probe (harness.platforms.kubernetes.podscripts.CONNECT_PROBE).
EXIT_CODES: dict[int, Connect] = {0: "connected", 3: "timed out", 5: "refused", 6: "unreachable"}
_UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH)


def tcp_connect(address: str, port: int, timeout_s: float) -> Connect:
    """Open (and close) one TCP connection; what happened."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return "unreachable" if exc.errno in _UNREACHABLE else "refused" if exc.errno == errno.ECONNREFUSED \
            else "timed out" if exc.errno == errno.ETIMEDOUT else "unreachable"


def from_exit_code(code: int | None) -> Connect | None:
    """The outcome an in-pod probe reported by its exit code; None when the probe itself failed."""
    return EXIT_CODES.get(code) if code is not None else None


def connected(outcome: Connect | None) -> bool | None:
    """The yes/no of ``connect_probe``: None (cannot tell) stays None."""
    return None if outcome is None else outcome == "connected"
