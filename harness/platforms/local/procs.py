"""Process hygiene of the local platform: the generic helpers (``harness.procs``) and the python
backend's shared-memory regions, which a killed tritonserver leaves in /dev/shm."""

from __future__ import annotations

import contextlib
from pathlib import Path

from harness.procs import alive, cmdline, group_members, kill_group, parent_death_signal, wait_gone

__all__ = [
    "SHM_GLOB",
    "alive",
    "cmdline",
    "group_members",
    "kill_group",
    "mapped_shm",
    "parent_death_signal",
    "remove_orphaned_shm",
    "wait_gone",
]

SHM_GLOB = "triton_python_backend_shm_region_*"


def mapped_shm() -> set[str]:
    names: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (entry / "maps").read_text().splitlines():
                if "/dev/shm/triton_python_backend_shm_region_" in line:
                    names.add(line.rsplit("/", 1)[1].split()[0])
    return names


def remove_orphaned_shm(shm_dir: Path = Path("/dev/shm")) -> list[str]:
    """Remove python-backend shared-memory regions that no living process maps any more."""
    in_use = mapped_shm()
    removed = []
    for region in shm_dir.glob(SHM_GLOB):
        if region.name not in in_use:
            with contextlib.suppress(OSError):
                region.unlink()
                removed.append(region.name)
    return removed
