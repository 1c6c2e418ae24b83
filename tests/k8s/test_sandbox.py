"""The sandbox itself: confined while it runs (its rules live in its own network namespace), honest status,
and a cluster DNS that answers only for Services. That ``down`` restores the root namespace is checked by
the session fixture's teardown (conftest.py), after every real-cluster test has run.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys

from harness.sandbox import SandboxStatus
from harness.sandbox import host as sandbox_host
from harness.sandbox.cluster import NETNS, Sandbox
from harness.sandbox.dns import answer


def test_rules_stay_in_the_sandbox_namespace(sandbox: SandboxStatus, root_before: dict[str, object]) -> None:
    now = sandbox_host.root_snapshot()
    assert now["nft"] == root_before["nft"] and now["iptables"] == root_before["iptables"], (
        "kubelet/kube-proxy rules leaked into the root namespace"
    )
    inside = subprocess.run(["ip", "netns", "exec", NETNS, "iptables-save"], capture_output=True, text=True,
                            check=True).stdout
    assert "KUBE-SERVICES" in inside and "KUBE-FIREWALL" in inside, "kube-proxy and kubelet rules are in the netns"
    state = json.loads((Sandbox().dir / "state.json").read_text())
    assert state["sysctls"]["vm.overcommit_memory"] == root_before["sysctl"]["vm.overcommit_memory"]  # type: ignore[index]


def test_status_cli_reports_a_ready_node(sandbox: SandboxStatus) -> None:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "sandbox", "status", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["ready"] and status["kubeconfig"] == sandbox.kubeconfig and not status["problems"]
    assert set(status["processes"]) >= {"etcd", "kube-apiserver", "kubelet", "kube-proxy", "containerd"}
    assert all(status["processes"].values())


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def test_dns_answers_service_names_only() -> None:
    seen = []

    def lookup(service: str, namespace: str) -> str | None:
        seen.append((service, namespace))
        return "10.215.0.7" if (service, namespace) == ("triton", "chaos") else None

    reply = answer(_query("triton.chaos.svc.cluster.local"), lookup)
    assert struct.unpack("!H", reply[2:4])[0] & 0xF == 0 and struct.unpack("!H", reply[6:8])[0] == 1
    assert socket.inet_ntoa(reply[-4:]) == "10.215.0.7"
    outside = ("triton.chaos.svc.cluster.local.chaos.svc.cluster.local", "example.com", "other.chaos.svc.cluster.local")
    for name in outside:
        reply = answer(_query(name), lookup)
        assert struct.unpack("!H", reply[2:4])[0] & 0xF == 3, name  # NXDOMAIN, never forwarded
    assert ("triton", "chaos") in seen and len(seen) == 2


def test_root_snapshot_ignores_only_the_harness_fault_tables() -> None:
    """Local network-block tests run beside the cluster tests and may hold a table of their own at snapshot time;
    any other change to the root ruleset must still show."""
    from harness.sandbox.host import _without_fault_tables

    other = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t}\n}\n"
    fault = "table inet harness_ab12 {\n\tchain output {\n\t\tip daddr 127.0.0.2 drop\n\t}\n}\n"
    assert _without_fault_tables(other + fault) == other
    assert _without_fault_tables(fault + other + "table ip kube {\n}\n") == other + "table ip kube {\n}\n"
