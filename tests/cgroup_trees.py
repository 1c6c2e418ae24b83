"""Prepared sysfs/procfs trees of the cgroup layouts users run on: cgroup v1, hybrid and v2 (as root, as a
user inside systemd's delegated subtree, as a user outside it, inside a container).

Each tree holds what the detection reads: ``proc/self/mountinfo``, ``proc/self/cgroup`` and the cgroup
directories with their interface files, owned by the users a real host gives them (tests run as root, so
ownership can be set like on a real host and the detection is asked for a given uid).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.faults.cgroups import HostPaths

USER = 1000

V1_CONTROLLERS = ("cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
V2_FILES = ("cgroup.controllers", "cgroup.subtree_control", "cgroup.procs", "cgroup.type", "memory.max",
            "memory.current", "memory.events")


def _mountinfo(lines: list[str]) -> str:
    head = ["22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
            "23 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw"]
    return "\n".join(head + lines) + "\n"


def _write(path: Path, text: str = "", owner: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, owner, owner)


def _v2_group(directory: Path, controllers: str, subtree: str = "", procs: str = "", owner: int = 0,
              root: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, owner, owner)
    _write(directory / "cgroup.controllers", controllers + "\n")
    # systemd chowns a delegated group's cgroup.procs, cgroup.subtree_control and cgroup.threads to the user
    _write(directory / "cgroup.subtree_control", subtree + "\n", owner)
    _write(directory / "cgroup.procs", procs, owner)
    if not root:  # the real root group has no cgroup.type and no memory.* files
        _write(directory / "cgroup.type", "domain\n")
        _write(directory / "memory.max", "max\n")
        _write(directory / "memory.current", "0\n")


def host(tree: Path, uid: int) -> HostPaths:
    return HostPaths(root=tree, proc=tree / "proc", euid=uid, groups=frozenset({uid}))


def v1_host(tree: Path, own: str = "/user.slice/user-1000.slice/session-2.scope", read_only: bool = False,
            unified: bool = False, memory: bool = True) -> Path:
    """Debian 11 style: every controller on its own v1 hierarchy; ``unified`` adds systemd's cgroup2
    mount at /sys/fs/cgroup/unified (the hybrid layout, as on this project's CI machine)."""
    lines = ["30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755"]
    cgroup_lines = []
    ro = "ro" if read_only else "rw"
    for i, controllers in enumerate(c for c in V1_CONTROLLERS if memory or c != "memory"):
        lines.append(f"{40 + i} 30 0:{40 + i} / /sys/fs/cgroup/{controllers} {ro},nosuid,nodev,noexec,relatime "
                     f"shared:{20 + i} - cgroup cgroup {ro},{controllers}")
        cgroup_lines.append(f"{i + 2}:{controllers}:{own}")
    lines.append("39 30 0:39 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup "
                 "rw,xattr,name=systemd")
    cgroup_lines.append(f"1:name=systemd:{own}")
    if unified:
        lines.append("38 30 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:18 - cgroup2 "
                     "cgroup2 rw,nsdelegate")
        cgroup_lines.append(f"0::{own}")
        _v2_group(tree / "sys/fs/cgroup/unified", "", root=True)  # no controllers: they are all on v1
    _write(tree / "proc/self/mountinfo", _mountinfo(lines))
    _write(tree / "proc/self/cgroup", "\n".join(reversed(cgroup_lines)) + "\n")
    memory_root = tree / "sys/fs/cgroup/memory"
    if memory:
        for name in ("cgroup.procs", "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.use_hierarchy",
                     "memory.oom_control"):
            _write(memory_root / name, "")
        (memory_root / own.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return tree


def v2_host(tree: Path, own: str = "/user.slice/user-1000.slice/session-2.scope", read_only: bool = False,
            delegate: str = "pids memory cpu", mount_root: str = "/", container: bool = False,
            container_procs: str = "1\n7\n") -> Path:
    """Ubuntu 22.04+/Debian 12+ style: one cgroup2 hierarchy at /sys/fs/cgroup, systemd delegating
    ``user@1000.service`` (owned by the user) with the ``delegate`` controllers. ``container``: the
    process sees only its own group as "/" (a cgroup namespace) holding ``container_procs``."""
    ro = "ro" if read_only else "rw"
    _write(tree / "proc/self/mountinfo", _mountinfo(
        [f"30 22 0:26 {mount_root} /sys/fs/cgroup {ro},nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
         f"{ro},nsdelegate,memory_recursiveprot"]))
    _write(tree / "proc/self/cgroup", f"0::{own}\n")
    cg = tree / "sys/fs/cgroup"
    all_controllers = "cpuset cpu io memory hugetlb pids rdma misc"
    if container:
        _v2_group(cg, all_controllers, "", container_procs)  # not the real root: it has cgroup.type
        return tree
    _v2_group(cg, all_controllers, "cpu memory pids", root=True)
    _v2_group(cg / "user.slice", all_controllers, "cpu memory pids")
    _v2_group(cg / "user.slice/user-1000.slice", "cpu memory pids", "cpu memory pids")
    _v2_group(cg / "user.slice/user-1000.slice/session-2.scope", "cpu memory pids", "", "4242\n")
    service = cg / "user.slice/user-1000.slice/user@1000.service"
    _v2_group(service, delegate, delegate, owner=USER)
    _v2_group(service / "init.scope", delegate, "", "1500\n", owner=USER)
    _v2_group(service / "app.slice", delegate, delegate, owner=USER)
    _v2_group(service / "app.slice/run-r1.scope", delegate, "", "4243\n", owner=USER)
    return tree
