"""What the sandbox touches outside its own directories, and how it puts each thing back.

Kubernetes components assume they own the machine: the kubelet sets global kernel settings and adds
iptables rules to the network namespace it runs in, containerd and the kubelet make mounts and cgroups.
The sandbox confines what can be confined (a network namespace of its own, a cgroup root of its own,
mounts under its own directories) and records and restores what cannot (global kernel settings).
The snapshot helpers exist so tests can prove that the root namespace is as it was.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.errors import EnvironmentProblem

__all__ = [
    "GLOBAL_SYSCTLS",
    "cgroup_hierarchies",
    "kill_pids",
    "mounts_under",
    "netns_inode",
    "pids_in_cgroup",
    "pids_in_netns",
    "read_sysctls",
    "root_snapshot",
    "run",
    "write_sysctls",
]

#: Global (not per-namespace) kernel settings the kubelet and kube-proxy may change: recorded before
#: ``up`` and restored by ``down``.
GLOBAL_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.netfilter.nf_conntrack_max",
)


def run(cmd: Sequence[str], what: str = "", check: bool = True, timeout: float = 60) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise EnvironmentProblem(f"{what or cmd[0]} failed ({' '.join(cmd)}): {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls(keys: Iterable[str] = GLOBAL_SYSCTLS) -> dict[str, str]:
    out = {}
    for key in keys:
        with contextlib.suppress(OSError):
            out[key] = _sysctl_path(key).read_text().strip()
    return out


def write_sysctls(values: dict[str, str]) -> list[str]:
    """Write back what differs; the keys it changed."""
    changed = []
    for key, value in values.items():
        path = _sysctl_path(key)
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
                changed.append(key)
        except OSError:
            continue
    return changed


def netns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def pids_in_netns(inode: int) -> list[int]:
    return [pid for pid in _pids() if pid != os.getpid() and netns_inode(pid) == inode]


def pids_in_cgroup(fragment: str) -> list[int]:
    """Processes whose cgroup path (any hierarchy) contains ``/fragment/``: containers of the sandbox."""
    found = []
    for pid in _pids():
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if f"/{fragment}/" in text or text.rstrip().endswith(f"/{fragment}"):
            found.append(pid)
    return found


def kill_pids(pids: Iterable[int], timeout_s: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL what is left after ``timeout_s``; the pids that were signalled."""
    signalled = []
    for pid in set(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_running(p) for p in signalled):
        for pid in signalled:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pid in signalled:
        if _running(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return signalled


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def mounts_under(prefixes: Sequence[Path]) -> list[str]:
    """Mount points below any of ``prefixes``, deepest first (the order to unmount them)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def cgroup_hierarchies() -> list[Path]:
    """Mounted cgroup v1 hierarchies (and the v2 one), where the kubelet makes its cgroups."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(left.split()[4]))
    return found


def _without_fault_tables(ruleset: str) -> str:
    """The ruleset less the harness's own fault tables (``table inet harness_<id>``, each removed by the fault
    that made it and checked by its own test): local network-block tests may hold one while the cluster tests
    take their snapshots, and they are none of the sandbox's doing."""
    kept, skipping = [], False
    for line in ruleset.splitlines(keepends=True):
        if line.startswith("table ") and line.split()[2:3] and line.split()[2].startswith("harness_"):
            skipping = True
        if not skipping:
            kept.append(line)
        elif line.rstrip() == "}":
            skipping = False
    return "".join(kept)


def root_snapshot() -> dict[str, object]:
    """The root namespace's firewall, global kernel settings and the rest the sandbox must not change."""
    ruleset = _without_fault_tables(run(["nft", "list", "ruleset"], check=False))
    iptables = "".join(
        line for line in run(["iptables-save"], check=False).splitlines(keepends=True) if not line.startswith("#")
    )
    return {
        "nft": ruleset,
        "iptables": iptables,
        "sysctl": read_sysctls((*GLOBAL_SYSCTLS, "net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables")),
        "links": run(["ip", "-br", "link"], check=False),
        "routes": run(["ip", "route"], check=False),
        "netns": run(["ip", "netns", "list"], check=False),
    }
