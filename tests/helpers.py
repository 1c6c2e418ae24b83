"""Test helpers that look at the machine the way a user would: processes, shm, ports, events."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from harness.events import Event, read_events
from harness.platforms.local.procs import alive, cmdline, mapped_shm


def processes_mentioning(text: str) -> list[str]:
    """Full command lines (from /proc, never truncated) of live processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            line = cmdline(int(entry.name))
            if text in line and alive(int(entry.name)):
                found.append(f"{entry.name} {line}")
    return found


def unmapped_shm_regions() -> list[str]:
    in_use = mapped_shm()
    return [p.name for p in Path("/dev/shm").glob("triton_python_backend_shm_region_*") if p.name not in in_use]


def port_open(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def events_of(path: Path, replica: str = "") -> list[Event]:
    return [e for e in read_events(path) if not replica or e.replica == replica]
