"""Memory cgroups on cgroup v1 and v2 behind one interface, so the memory-pressure fault never branches.

Why two versions: Debian 11 and older hosts (and this project's CI machine) mount a cgroup-v1 memory
hierarchy; Ubuntu 22.04+, Debian 12+, Fedora and the hosted CI runners boot with cgroup v2 only. The
host-memory analogue of GPU memory pressure needs the same three things on both: a child group with a
memory limit, its usage, and how many processes the kernel's OOM killer ended inside it.

| need            | cgroup v1                          | cgroup v2                               |
| --------------- | ---------------------------------- | --------------------------------------- |
| limit           | ``memory.limit_in_bytes`` (-1)     | ``memory.max`` (``max``)                |
| usage           | ``memory.usage_in_bytes``          | ``memory.current``                      |
| OOM kills       | ``memory.oom_control``: oom_kill N | ``memory.events``: oom_kill N           |
| where to create | the hierarchy's root (root only)   | the top of the subtree we may write: the |
|                 |                                    | root for root, a delegated subtree      |
|                 |                                    | (systemd's ``user@UID.service``) else    |

Detection reads ``/proc/<pid>/mountinfo`` and ``/proc/<pid>/cgroup`` and resolves mount points under a
file-system root, so tests can point it at prepared trees of v1, v2 and hybrid hosts (``HostPaths``).
Whether a file may be written is decided from its owner and mode, as the kernel does, so a prepared tree
chowned to another user answers like a real delegated subtree.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import FaultError

__all__ = [
    "CgroupLayout",
    "HostPaths",
    "MemoryController",
    "MemoryGroup",
    "Unavailable",
    "find_memory_controller",
    "memory_controller",
    "read_layout",
    "remove_group",
]

Version = Literal[1, 2]
_V1_CONTROLLERS = frozenset({"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio",
                             "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"})


@dataclass(frozen=True)
class HostPaths:
    """Where this host's files are: the real ones by default, a prepared tree in tests."""

    root: Path = Path("/")
    proc: Path = Path("/proc")
    pid: str = "self"
    euid: int = field(default_factory=os.geteuid)
    groups: frozenset[int] = field(default_factory=lambda: frozenset({os.getegid(), *os.getgroups()}))

    def resolve(self, mount_point: str) -> Path:
        return self.root / mount_point.lstrip("/")

    def overflow_uid(self) -> int:
        """The uid unmapped owners show as inside a user namespace (files that namespace's root cannot write)."""
        try:
            return int((self.proc / "sys" / "kernel" / "overflowuid").read_text())
        except (OSError, ValueError):
            return 65534

    def who(self) -> str:
        """"root", "root of a user namespace" (unshare -r: root only over what the user owns) or "uid N"."""
        if self.euid != 0:
            return f"uid {self.euid}"
        try:
            first = (self.proc / self.pid / "uid_map").read_text().split()
        except OSError:
            return "root"
        return "root" if first[:3] == ["0", "0", "4294967295"] or not first else "root of a user namespace"

    def may_write(self, path: Path, read_only: bool = False) -> bool:
        """Write permission as the kernel decides it for this user (without asking the kernel, so a
        prepared tree answers for the user it was prepared for)."""
        if read_only:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        if self.euid == 0:
            # root in the initial namespace may write anything; root of a user namespace only what it owns
            return st.st_uid != self.overflow_uid()
        if st.st_uid == self.euid:
            return bool(st.st_mode & 0o200)
        if st.st_gid in self.groups:
            return bool(st.st_mode & 0o020)
        return bool(st.st_mode & 0o002)


@dataclass(frozen=True)
class _Mount:
    point: str
    root: str  # the hierarchy's path that is mounted there ("/" unless a container sees only its part)
    fstype: str
    options: frozenset[str]  # mount options plus super options (cgroup v1 lists its controllers there)

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def _mounts(host: HostPaths) -> list[_Mount]:
    try:
        text = (host.proc / host.pid / "mountinfo").read_text()
    except OSError:
        return []
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(fields[5].split(",")) | frozenset(tail[2].split(","))
        mounts.append(_Mount(_unescape(fields[4]), _unescape(fields[3]), tail[0], options))
    return mounts


def _own_groups(host: HostPaths) -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) -> this process's group path, from /proc/<pid>/cgroup."""
    out: dict[str, str] = {}
    try:
        text = (host.proc / host.pid / "cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _join(host: HostPaths, mount: _Mount, group: str) -> Path:
    """The directory of ``group`` (a path in the hierarchy) under ``mount``; a container mounts only part."""
    root = mount.root.rstrip("/")
    if root and (group == root or group.startswith(root + "/")):
        group = group[len(root):]
    return host.resolve(mount.point) / group.lstrip("/")


@dataclass(frozen=True)
class CgroupLayout:
    """What a host mounts: ``v1`` (controllers on v1 hierarchies only), ``v2`` (one unified hierarchy),
    ``hybrid`` (v1 controllers plus a cgroup2 mount, systemd's old default), or ``none``."""

    mode: Literal["v1", "v2", "hybrid", "none"]
    v1_memory: Path | None  # the v1 memory hierarchy's mount point
    v1_memory_read_only: bool
    v2_mount: Path | None
    v2_read_only: bool
    v2_controllers: frozenset[str]  # controllers the unified hierarchy offers at its root
    own_v1_memory: Path | None  # this process's group in the v1 memory hierarchy
    own_v2: Path | None  # this process's group in the unified hierarchy
    v2_mount_root: str = "/"

    def describe(self) -> str:
        parts = {"v1": "cgroup v1", "v2": "cgroup v2 (unified)", "hybrid": "hybrid (controllers on cgroup v1, "
                 "plus a cgroup2 mount)", "none": "no cgroup file system mounted"}
        text = parts[self.mode]
        if self.v1_memory is not None:
            text += f"; memory controller on v1 at {self.v1_memory}"
        elif self.v2_mount is not None and "memory" in self.v2_controllers:
            text += f"; memory controller on v2 at {self.v2_mount}"
        return text


def read_layout(host: HostPaths | None = None) -> CgroupLayout:
    host = host or HostPaths()
    mounts = _mounts(host)
    own = _own_groups(host)
    v1 = [m for m in mounts if m.fstype == "cgroup" and m.options & _V1_CONTROLLERS]
    v2 = next((m for m in mounts if m.fstype == "cgroup2"), None)
    memory = next((m for m in v1 if "memory" in m.options), None)
    controllers: frozenset[str] = frozenset()
    if v2 is not None:
        with contextlib.suppress(OSError):
            controllers = frozenset((host.resolve(v2.point) / "cgroup.controllers").read_text().split())
    mode: Literal["v1", "v2", "hybrid", "none"]
    if v1 and v2 is not None:
        mode = "hybrid"
    elif v1:
        mode = "v1"
    elif v2 is not None:
        mode = "v2"
    else:
        mode = "none"
    return CgroupLayout(
        mode=mode,
        v1_memory=host.resolve(memory.point) if memory else None,
        v1_memory_read_only=bool(memory and memory.read_only),
        v2_mount=host.resolve(v2.point) if v2 else None,
        v2_read_only=bool(v2 and v2.read_only),
        v2_controllers=controllers,
        own_v1_memory=_join(host, memory, own["memory"]) if memory and "memory" in own else None,
        own_v2=_join(host, v2, own[""]) if v2 is not None and "" in own else None,
        v2_mount_root=v2.root if v2 else "/",
    )


@dataclass(frozen=True)
class Unavailable:
    """Why this host has no memory controller the harness may use, and what would give it one."""

    reason: str
    fix: str

    def message(self) -> str:
        return f"{self.reason}. Fix: {self.fix}"


_NO_GPU_NOTE = "or run on a machine with an NVIDIA GPU, where the pressure is real GPU memory"


@dataclass(frozen=True)
class MemoryController:
    """Where the harness creates its memory groups on this host, and how."""

    version: Version
    base: Path  # groups are created as base/<name>
    mount: Path
    enable_memory: bool = False  # v2: "+memory" must be written to base's cgroup.subtree_control first

    def describe(self) -> str:
        how = "cgroup v1" if self.version == 1 else "cgroup v2"
        return f"{how}: groups under {self.base}" + (" (memory enabled for its children at first use)"
                                                      if self.enable_memory else "")

    def group_path(self, name: str) -> Path:
        return self.base / name

    def create(self, name: str, limit_bytes: int) -> MemoryGroup:
        if self.enable_memory:
            try:
                (self.base / "cgroup.subtree_control").write_text("+memory")
            except OSError as exc:
                raise FaultError(f"cannot enable the memory controller for the children of {self.base}: {exc}; "
                                 "run 'harness doctor' for the reason and the fix") from exc
        path = self.group_path(name)
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise FaultError(f"cannot create the memory cgroup {path}: {exc}; run 'harness doctor'") from exc
        group = MemoryGroup(path, self.version)
        group.set_limit(limit_bytes)
        if self.version == 2:
            # A GPU has no swap: without this, a v2 group with swap available pages out instead of failing.
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
        return group

    def group_of(self, pid: int | str, proc: Path = Path("/proc")) -> Path:
        """The group ``pid`` is in now (where it goes back to when the fault is undone)."""
        host = HostPaths(proc=proc, pid=str(pid))
        layout = read_layout(host)
        own = layout.own_v1_memory if self.version == 1 else layout.own_v2
        if own is None:
            raise FaultError(f"cannot tell which memory cgroup process {pid} is in ({proc}/{pid}/cgroup)")
        return own


def _v1_controller(layout: CgroupLayout, host: HostPaths) -> MemoryController | Unavailable:
    assert layout.v1_memory is not None
    base = layout.v1_memory
    if not (base / "cgroup.procs").exists():
        return Unavailable(f"the cgroup v1 memory hierarchy is mounted at {base} but has no cgroup.procs",
                           f"check the mount (mount -t cgroup -o memory cgroup {base}), {_NO_GPU_NOTE}")
    if layout.v1_memory_read_only:
        return Unavailable(f"the cgroup v1 memory hierarchy at {base} is mounted read-only (inside a container?)",
                           "give the container a writable cgroup file system (e.g. docker run --privileged), "
                           f"{_NO_GPU_NOTE}")
    if not (host.may_write(base) and host.may_write(base / "cgroup.procs")):
        return Unavailable(f"the cgroup v1 memory hierarchy at {base} is not writable by {host.who()} (cgroup v1 "
                           "delegates nothing to unprivileged users)",
                           "run as root (sudo), or use a host booted with cgroup v2 (the default of Ubuntu 22.04+, "
                           "Debian 12+, Fedora), where systemd delegates a memory-controlled subtree to each user, "
                           + _NO_GPU_NOTE)
    return MemoryController(version=1, base=base, mount=base)


def _v2_controller(layout: CgroupLayout, host: HostPaths) -> MemoryController | Unavailable:
    mount = layout.v2_mount
    assert mount is not None
    if "memory" not in layout.v2_controllers:
        if layout.mode == "hybrid":
            return Unavailable(f"hybrid cgroup layout: the memory controller is on neither the v1 hierarchies nor "
                               f"the cgroup2 mount at {mount}",
                               "mount the v1 memory controller (mount -t cgroup -o memory cgroup "
                               "/sys/fs/cgroup/memory) as root, or boot with systemd.unified_cgroup_hierarchy=1; "
                               + _NO_GPU_NOTE)
        return Unavailable(f"the cgroup2 hierarchy at {mount} offers no memory controller "
                           f"(cgroup.controllers: {' '.join(sorted(layout.v2_controllers)) or 'empty'})",
                           "boot a kernel with CONFIG_MEMCG and without cgroup_disable=memory, " + _NO_GPU_NOTE)
    if layout.v2_read_only:
        return Unavailable(f"the cgroup2 file system at {mount} is mounted read-only (inside a container?)",
                           "give the container a writable cgroup file system (docker run --privileged, or "
                           f"--cgroupns=private with a rw /sys/fs/cgroup), {_NO_GPU_NOTE}")
    own = layout.own_v2
    if own is None or not own.exists():
        return Unavailable(f"cannot find this process's own group in the cgroup2 hierarchy at {mount}",
                           f"check /proc/self/cgroup, {_NO_GPU_NOTE}")
    # The top of the subtree we may write, on the path from the mount to our own group: the mount itself for
    # root, systemd's user@UID.service (delegated) for a user whose harness runs inside it.
    chain = [own, *own.parents]
    chain = [p for p in chain if p == mount or mount in p.parents]
    base = next((p for p in reversed(chain)
                 if host.may_write(p) and host.may_write(p / "cgroup.procs")
                 and host.may_write(p / "cgroup.subtree_control")), None)
    if base is None:
        return Unavailable(f"this process's cgroup ({own}) is not in a subtree delegated to uid {host.euid}, so "
                           "it may create no memory group",
                           "run the harness in your systemd user session's delegated subtree: "
                           "systemd-run --user --scope -p Delegate=yes harness ..., or run as root (sudo), "
                           + _NO_GPU_NOTE)
    try:
        offered = set((base / "cgroup.controllers").read_text().split())
        enabled = set((base / "cgroup.subtree_control").read_text().split())
    except OSError as exc:
        return Unavailable(f"cannot read the controllers of {base}: {exc}", "run 'harness doctor' as the same user")
    if "memory" not in offered:
        return Unavailable(f"the memory controller is not delegated to {base} (it offers: "
                           f"{' '.join(sorted(offered)) or 'none'})",
                           "let systemd delegate it: sudo systemctl edit user@.service, add [Service] "
                           "Delegate=pids memory cpu, then log in again; or run as root (sudo)")
    enable = "memory" not in enabled
    if enable and _has_processes(base) and (base / "cgroup.type").exists():
        return Unavailable(f"memory is not enabled for the children of {base}, and cannot be while processes live "
                           "in that group itself (cgroup v2 enables controllers only on groups without processes)",
                           "start the harness in a leaf group of its own (systemd-run --user --scope "
                           "-p Delegate=yes harness ...; in a container, move its processes into a child group "
                           "first, as docker-in-docker entrypoints do), or run as root on the host")
    return MemoryController(version=2, base=base, mount=mount, enable_memory=enable)


def _has_processes(group: Path) -> bool:
    try:
        return bool((group / "cgroup.procs").read_text().split())
    except OSError:
        return False


def find_memory_controller(host: HostPaths | None = None) -> MemoryController | Unavailable:
    """The memory controller the harness would use here, or why there is none (with the fix)."""
    host = host or HostPaths()
    layout = read_layout(host)
    if layout.v1_memory is not None:  # a v1 hierarchy owns the controller; the cgroup2 mount cannot have it
        return _v1_controller(layout, host)
    if layout.v2_mount is not None:
        return _v2_controller(layout, host)
    return Unavailable("no cgroup file system is mounted", "mount cgroup2 at /sys/fs/cgroup (as root), "
                       + _NO_GPU_NOTE)


def memory_controller() -> MemoryController:
    """This host's memory controller, or a FaultError that says why not and what to do."""
    found = find_memory_controller()
    if isinstance(found, Unavailable):
        raise FaultError("the host-memory analogue of GPU memory pressure (no GPU here) needs a writable memory "
                         f"cgroup: {found.message()}")
    return found


@dataclass(frozen=True)
class MemoryGroup:
    """One memory cgroup, v1 or v2: which one is told by the files it has, unless the creator says."""

    path: Path
    known_version: Version | None = None

    @property
    def version(self) -> Version:
        if self.known_version is not None:
            return self.known_version
        if (self.path / "memory.max").exists():
            return 2
        if (self.path / "memory.limit_in_bytes").exists():
            return 1
        raise OSError(f"{self.path} is not a memory cgroup (neither memory.max nor memory.limit_in_bytes)")

    def set_limit(self, limit_bytes: int | None) -> None:
        """Set the limit; ``None`` lifts it."""
        if self.version == 2:
            (self.path / "memory.max").write_text("max" if limit_bytes is None else str(limit_bytes))
        else:
            (self.path / "memory.limit_in_bytes").write_text("-1" if limit_bytes is None else str(limit_bytes))

    def limit_bytes(self) -> int | None:
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        raw = (self.path / name).read_text().strip()
        if raw == "max":
            return None
        value = int(raw)
        # v1 reads "no limit" back as a huge page-aligned number (-1 is what one writes)
        return None if value < 0 or value >= 1 << 62 else value

    def usage_bytes(self) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        return int((self.path / name).read_text())

    def free_bytes(self) -> int:
        limit = self.limit_bytes()
        if limit is None:
            raise OSError(f"{self.path} has no memory limit, so it has no free memory to hold")
        return max(limit - self.usage_bytes(), 0)

    def oom_kills(self) -> int:
        """Processes the OOM killer ended in this group (a counter since the group was created)."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def join(self, pid: int | str) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []


def remove_group(path: Path, home: Path | None) -> None:
    """Lift the limit, move whatever still runs inside back ``home``, remove the group.

    ``home`` is the group the processes came from (recorded before they were moved); a record written
    before homes were recorded passes ``None``, and v1 then uses the hierarchy's root, as it always did.
    """
    if not path.exists():
        return
    group = MemoryGroup(path)
    with contextlib.suppress(OSError):
        group.set_limit(None)
    target = home if home is not None and (home / "cgroup.procs").exists() else _fallback_home(path)
    for pid in group.pids():
        if target is None:
            break
        with contextlib.suppress(OSError):
            (target / "cgroup.procs").write_text(str(pid))
    last: OSError | None = None
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY while the last process is still leaving
            last = exc
            time.sleep(0.05)
    left = group.pids()
    raise FaultError(f"could not remove memory cgroup {path}: {last}"
                     + (f"; processes {left} are still inside and could not be moved to {target}" if left else ""))


def _fallback_home(path: Path) -> Path | None:
    """v1: the hierarchy's root (any process may live there). v2 has no such place: processes may not live in
    a group whose children use controllers, so without a recorded home they stay and removal reports them."""
    return path.parent if (path.parent / "memory.use_hierarchy").exists() else None
