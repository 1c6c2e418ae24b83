"""Which GPUs the local platform's replicas run on, and how to name them.

Each replica is pinned to its GPU with ``CUDA_VISIBLE_DEVICES`` set to the GPU's UUID (round-robin over
the visible GPUs): indices are renumbered inside every process that has a ``CUDA_VISIBLE_DEVICES`` of its
own, UUIDs mean the same device everywhere. Inside the replica the GPU is then device 0, which is where
Triton puts a ``KIND_GPU`` instance group that names no ``gpus``. The memory-pressure hog gets the same
``CUDA_VISIBLE_DEVICES`` as its target, so it squeezes exactly that replica's GPU.

The GPU list comes from ``nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,
nounits``; the parser takes that text (a file in the tests), so the selection logic is checked on
prepared inputs on machines without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, EnvironmentProblem

__all__ = [
    "GPU_FILE",
    "SMI_QUERY",
    "GpuInfo",
    "assign_gpus",
    "check_torch_cuda",
    "parse_smi_csv",
    "pinning_env",
    "query_gpus",
    "read_assignment",
    "visible_subset",
    "write_assignment",
]

SMI_QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
GPU_FILE = "gpus.json"  # in the local platform's state directory: replica name -> its GPUs


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    memory_total_mib: int

    def describe(self) -> str:
        return f"{self.uuid} ({self.name}, {self.memory_total_mib / 1024:.0f} GiB)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_smi_csv(text: str, source: str = "nvidia-smi") -> list[GpuInfo]:
    """Parse ``SMI_QUERY``'s output: one ``index, uuid, name, memory.total (MiB)`` line per GPU."""
    gpus = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        # A GPU's name has no comma today; if one ever does, the name is everything between uuid and memory.
        if len(parts) < 4:
            raise EnvironmentProblem(f"{source} line {number}: expected 'index, uuid, name, memory.total', "
                                     f"got {line.strip()!r}; is this nvidia-smi's --format=csv,noheader,nounits?")
        index, uuid, name, memory = parts[0], parts[1], ", ".join(parts[2:-1]), parts[-1]
        try:
            gpus.append(GpuInfo(int(index), uuid, name, int(float(memory))))
        except ValueError:
            raise EnvironmentProblem(f"{source} line {number}: index and memory.total must be numbers, got "
                                     f"{line.strip()!r}") from None
        if not uuid.startswith(("GPU-", "MIG-")):
            raise EnvironmentProblem(f"{source} line {number}: {uuid!r} is not a GPU or MIG UUID")
    return gpus


def visible_subset(gpus: Sequence[GpuInfo], cuda_visible_devices: str | None) -> list[GpuInfo]:
    """The GPUs the harness itself was given: ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs, in its order)."""
    if cuda_visible_devices is None:
        return list(gpus)
    chosen = []
    for item in (i.strip() for i in cuda_visible_devices.split(",")):
        if not item:
            continue
        match = [g for g in gpus if (item.isdigit() and g.index == int(item)) or g.uuid.startswith(item)]
        if not match:
            break  # CUDA stops at the first entry it cannot resolve; so do we
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def query_gpus(env: Mapping[str, str] | None = None) -> list[GpuInfo]:
    """The GPUs visible to this process, or [] when there is no NVIDIA GPU (no device or no nvidia-smi)."""
    env = os.environ if env is None else env
    if not Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(SMI_QUERY, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentProblem(f"nvidia-smi is installed but failed ({exc}); check the NVIDIA driver "
                                 "(run nvidia-smi by hand)") from exc
    return visible_subset(parse_smi_csv(out), env.get("CUDA_VISIBLE_DEVICES"))


def assign_gpus(replicas: Sequence[str], per_replica: int, gpus: Sequence[GpuInfo]) -> dict[str, list[GpuInfo]]:
    """Round-robin: replica i gets ``per_replica`` consecutive GPUs starting at ``i * per_replica``.

    More replicas than GPUs share them (each still pinned to its own); asking more GPUs per replica than
    there are is an error, since no replica could get them.
    """
    if per_replica < 0:
        raise ConfigError(f"GPUs per replica must be 0 or more, got {per_replica}")
    if per_replica == 0:
        return {name: [] for name in replicas}
    if not gpus:
        raise EnvironmentProblem(
            f"{per_replica} GPU(s) per replica asked for, but no NVIDIA GPU is visible here (no /dev/nvidia0, "
            "no nvidia-smi, or CUDA_VISIBLE_DEVICES hides them all); run with --gpus-per-replica 0 for CPU "
            "instances, or on a machine with a GPU"
        )
    if per_replica > len(gpus):
        raise EnvironmentProblem(f"{per_replica} GPUs per replica asked for, but only {len(gpus)} visible "
                                 f"({', '.join(g.uuid for g in gpus)}); lower --gpus-per-replica")
    return {name: [gpus[(i * per_replica + k) % len(gpus)] for k in range(per_replica)]
            for i, name in enumerate(replicas)}


def pinning_env(assigned: Sequence[GpuInfo]) -> dict[str, str]:
    """The environment that pins a process to these GPUs (empty for a CPU replica: nothing changes)."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(g.uuid for g in assigned)} if assigned else {}


def write_assignment(state_dir: Path, assignment: Mapping[str, Sequence[GpuInfo]]) -> Path:
    path = state_dir / GPU_FILE
    path.write_text(json.dumps({name: [g.to_json() for g in gs] for name, gs in assignment.items()}, indent=2))
    return path


def read_assignment(state_dir: Path) -> dict[str, list[GpuInfo]]:
    """What the supervisor pinned each replica to; {} when it pinned nothing (CPU replicas, or not up)."""
    try:
        raw = json.loads((state_dir / GPU_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(name): [GpuInfo(**g) for g in gs] for name, gs in raw.items() if gs}


_TORCH_PROBE = ("import json, torch; print(json.dumps({'torch': torch.__version__, "
                "'cuda': torch.cuda.is_available(), 'devices': torch.cuda.device_count()}))")


def check_torch_cuda(env: Mapping[str, str], python: str = sys.executable) -> str:
    """Check that the Python the python-backend stub uses can run torch on the pinned GPU; say which.

    The reference model's GPU path is torch in Triton's python backend (docs/gpu.md says why), so a GPU
    replica without it would fail its load: better to refuse before anything starts, with the fix.
    """
    try:
        proc = subprocess.run([python, "-c", _TORCH_PROBE], capture_output=True, text=True, timeout=120,
                              env=dict(env))
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentProblem(f"could not run {python} to check for torch: {exc}") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(
            f"GPU instances need torch in the Python that Triton's python backend uses ({python}), and importing "
            f"it failed: {last}. Install a CUDA build of torch into that environment (pip install torch), or run "
            "with --gpus-per-replica 0 for CPU instances"
        )
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EnvironmentProblem(f"the torch check printed no verdict: {proc.stdout[-200:]!r}") from None
    if not info.get("cuda") or not info.get("devices"):
        raise EnvironmentProblem(
            f"torch {info.get('torch')} in {python} sees no CUDA device with CUDA_VISIBLE_DEVICES="
            f"{env.get('CUDA_VISIBLE_DEVICES', '(unset)')}: it is a CPU-only build or the driver is unusable; "
            "install a CUDA build of torch, or run with --gpus-per-replica 0"
        )
    return f"torch {info['torch']}, {info['devices']} CUDA device(s) visible"
