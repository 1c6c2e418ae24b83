"""Per-replica shim, the local stand-in for a container runtime shim.

Why it exists: ``kill -9`` of tritonserver orphans its python-backend stubs and leaves shared-memory
regions in /dev/shm (DESIGN.md). The shim owns one tritonserver process group; whenever the server
exits, however it exits, the shim kills the rest of the group and removes the regions nobody maps.
It dies with the supervisor (parent-death signal), taking the server with it.

Usage: python -m harness.platforms.local.shim --pid-file F --grace S -- tritonserver ARGS...
Exit status: the server's exit code, or 128 + the signal that ended it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.faults.cgroups import MemoryGroup
from harness.platforms.local.procs import kill_group, parent_death_signal, remove_orphaned_shm, wait_gone


def _oom_kills(cgroup: Path | None) -> int:
    if cgroup is None:
        return 0
    try:
        return MemoryGroup(cgroup).oom_kills()  # memory.oom_control (v1) or memory.events (v2)
    except (OSError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness-shim")
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--cgroup", type=Path, help="memory cgroup to run the server in (a fault's confinement)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.cgroup is not None:
        try:  # the server and its stubs inherit the group (and the OOM preference), like a pod's containers
            Path("/proc/self/oom_score_adj").write_text("1000")
            (args.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            print(f"shim: cannot join {args.cgroup}: {exc}", file=sys.stderr)

    ooms_before = _oom_kills(args.cgroup)
    reason_file = args.pid_file.with_name("exit-reason")
    reason_file.unlink(missing_ok=True)
    with args.log_file.open("ab") as log:
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGKILL),
        )
    args.pid_file.write_text(str(server.pid))
    stopping = {"deadline": 0.0}

    def on_term(signum: int, _frame: object) -> None:
        if not stopping["deadline"]:
            stopping["deadline"] = time.monotonic() + args.grace
            kill_group(server.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while True:
        try:
            code = server.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            if stopping["deadline"] and time.monotonic() > stopping["deadline"]:
                kill_group(server.pid, signal.SIGKILL)
            elif args.cgroup is not None and _oom_kills(args.cgroup) > ooms_before:
                # The kernel killed one process of the container (the stub loading the model, say): the whole
                # container goes, as with memory.oom.group (Kubernetes 1.28+ on cgroup v2), reason OOMKilled.
                kill_group(server.pid, signal.SIGKILL)
    if code == -signal.SIGKILL and _oom_kills(args.cgroup) > ooms_before:
        reason_file.write_text("OOMKilled")  # what kubectl shows for a container killed at its memory limit
    kill_group(server.pid, signal.SIGKILL)  # orphaned stubs die with the server
    wait_gone(server.pid, 5.0)
    remove_orphaned_shm()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
