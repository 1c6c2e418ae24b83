"""The memory cgroup the harness would use, on the hosts users run: v1, hybrid and v2 trees prepared like
real ones (ownership included), plus a real group on this host for each version it has writable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.faults.cgroups import (
    MemoryController,
    MemoryGroup,
    Unavailable,
    find_memory_controller,
    read_layout,
    remove_group,
)
from tests.cgroup_trees import USER, host, v1_host, v2_host

SERVICE = "sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service"


def _controller(tree: Path, uid: int) -> MemoryController:
    found = find_memory_controller(host(tree, uid))
    assert isinstance(found, MemoryController), found
    return found


def _refusal(tree: Path, uid: int) -> Unavailable:
    found = find_memory_controller(host(tree, uid))
    assert isinstance(found, Unavailable), found
    return found


def test_layouts_are_told_apart(tmp_path: Path) -> None:
    assert read_layout(host(v1_host(tmp_path / "v1"), 0)).mode == "v1"
    hybrid = read_layout(host(v1_host(tmp_path / "hybrid", unified=True), 0))
    assert hybrid.mode == "hybrid" and hybrid.v2_controllers == frozenset()
    v2 = read_layout(host(v2_host(tmp_path / "v2"), 0))
    assert v2.mode == "v2" and "memory" in v2.v2_controllers and v2.v1_memory is None
    assert v2.own_v2 == tmp_path / "v2/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"


def test_v1_and_hybrid_root_use_the_v1_hierarchy(tmp_path: Path) -> None:
    for tree in (v1_host(tmp_path / "v1"), v1_host(tmp_path / "hybrid", unified=True)):
        controller = _controller(tree, 0)
        assert (controller.version, controller.base) == (1, tree / "sys/fs/cgroup/memory")


def test_v1_refuses_a_user_and_says_v2_or_root_would_do(tmp_path: Path) -> None:
    why = _refusal(v1_host(tmp_path), USER)
    assert "not writable by uid 1000" in why.reason and "cgroup v1 delegates nothing" in why.reason
    assert "sudo" in why.fix and "cgroup v2" in why.fix


def test_v1_read_only_in_a_container(tmp_path: Path) -> None:
    why = _refusal(v1_host(tmp_path, read_only=True), 0)
    assert "read-only" in why.reason and "--privileged" in why.fix


def test_hybrid_without_a_v1_memory_hierarchy(tmp_path: Path) -> None:
    why = _refusal(v1_host(tmp_path, unified=True, memory=False), 0)
    assert "hybrid" in why.reason and "systemd.unified_cgroup_hierarchy=1" in why.fix


def test_v2_root_creates_at_the_top(tmp_path: Path) -> None:
    tree = v2_host(tmp_path)
    controller = _controller(tree, 0)
    assert (controller.version, controller.base, controller.enable_memory) == (2, tree / "sys/fs/cgroup", False)


def test_v2_user_inside_the_delegated_subtree_uses_user_service(tmp_path: Path) -> None:
    tree = v2_host(tmp_path, own="/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope")
    controller = _controller(tree, USER)
    assert (controller.version, controller.base) == (2, tmp_path / SERVICE)


def test_v2_user_outside_the_delegated_subtree_is_told_to_use_systemd_run(tmp_path: Path) -> None:
    why = _refusal(v2_host(tmp_path), USER)
    assert "not in a subtree delegated to uid 1000" in why.reason
    assert "systemd-run --user --scope" in why.fix


def test_v2_delegation_without_memory(tmp_path: Path) -> None:
    tree = v2_host(tmp_path, own="/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope",
                   delegate="pids")
    why = _refusal(tree, USER)
    assert "memory controller is not delegated" in why.reason and "Delegate=pids memory cpu" in why.fix


def test_v2_read_only(tmp_path: Path) -> None:
    why = _refusal(v2_host(tmp_path, read_only=True), 0)
    assert "read-only" in why.reason


def test_v2_container_namespace_root_with_processes_cannot_enable_memory(tmp_path: Path) -> None:
    tree = v2_host(tmp_path, own="/", mount_root="/system.slice/docker-abc.scope", container=True)
    why = _refusal(tree, 0)
    assert "while processes live in that group" in why.reason and "child group" in why.fix
    # an empty namespace root (the processes were moved to a child) can: memory is enabled at first use
    empty = v2_host(tmp_path / "empty", own="/", container=True, container_procs="")
    controller = _controller(empty, 0)
    assert controller.enable_memory and controller.base == empty / "sys/fs/cgroup"


def test_user_namespace_root_cannot_write_what_real_root_owns(tmp_path: Path) -> None:
    tree = v1_host(tmp_path)
    overflow = tree / "proc/sys/kernel/overflowuid"
    overflow.parent.mkdir(parents=True)
    overflow.write_text("0\n")  # pretend: the files' owner (real root) is unmapped here, as in 'unshare -r'
    assert "not writable by root" in _refusal(tree, 0).reason


def test_mount_points_with_escaped_spaces(tmp_path: Path) -> None:
    tree = v2_host(tmp_path)
    info = tree / "proc/self/mountinfo"
    info.write_text(info.read_text().replace(" /sys/fs/cgroup ", " /sys/fs/my\\040cgroup "))
    (tree / "sys/fs/cgroup").rename(tree / "sys/fs/my cgroup")
    assert read_layout(host(tree, 0)).v2_mount == tree / "sys/fs/my cgroup"


@pytest.mark.parametrize("version", [1, 2])
def test_group_files_of_each_version(tmp_path: Path, version: int) -> None:
    tree = v1_host(tmp_path) if version == 1 else v2_host(tmp_path)
    group = _controller(tree, 0).create("harness_x", 96 << 20)
    limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
    assert (group.path / limit_file).read_text() == str(96 << 20)
    if version == 2:
        assert (group.path / "memory.swap.max").read_text() == "0"
        (group.path / "memory.current").write_text("31457280\n")
        (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n")
    else:
        (group.path / "memory.usage_in_bytes").write_text("31457280\n")
        (group.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    reread = MemoryGroup(group.path)  # as the hog and the shim see it: the version told by the files
    assert reread.version == version
    assert reread.free_bytes() == (96 - 30) << 20 and reread.oom_kills() == 2
    reread.set_limit(None)
    assert reread.limit_bytes() is None


# -- for real, on this host ------------------------------------------------------------------------------
HOG = textwrap.dedent("""
    import sys
    open("/proc/self/oom_score_adj", "w").write("1000")
    open(sys.argv[1] + "/cgroup.procs", "w").write("0")  # join the group, then take more than its limit
    blocks = [bytearray(b"\\x01") * (16 << 20) for _ in range(16)]
""")


@pytest.mark.parametrize("version", [1, 2])
def test_a_real_group_confines_and_counts_the_oom_kill(version: int) -> None:
    found = find_memory_controller()
    if isinstance(found, Unavailable):
        pytest.skip(f"no writable memory cgroup here: {found.message()}")
    if found.version != version:
        pytest.skip(f"this host's writable memory controller is cgroup v{found.version} "
                    f"({read_layout().describe()}), not v{version}")
    home = found.group_of(os.getpid())
    group = found.create(f"harness_test_{os.getpid()}", 64 << 20)
    try:
        assert group.oom_kills() == 0 and group.limit_bytes() == 64 << 20
        proc = subprocess.run([sys.executable, "-c", HOG, str(group.path)], capture_output=True, timeout=60)
        assert proc.returncode == -9, proc.stderr.decode()[-500:]  # killed at the limit, not the host's
        assert group.oom_kills() >= 1
    finally:
        remove_group(group.path, home)
    assert not group.path.exists()
