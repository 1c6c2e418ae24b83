"""gpu-check's "model runs on the GPU" row: evidence per replica, from that replica's own process.

A GPU's memory growing, or its utilisation above zero, says that *something* ran on it (another replica, the
hog, someone else's job); Triton's own process holding a CUDA context says only that Triton saw a GPU. What
shows that a replica's model computes on its GPU:
- the replica's python-backend stub (the process that runs ``model.py`` and its torch) is among the GPU's
  compute apps in ``nvidia-smi``, on the GPU the replica is pinned to, with GPU memory attributed to it;
- requests sent to that replica (not through the front, which could route them elsewhere) succeeded;
- its outputs equal the CPU path's (the same weights through numpy) within a tolerance, so the GPU computed
  the model rather than something else.
Everything here works on text and pids, so the tests feed it prepared ``nvidia-smi`` output and replica pids.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from harness.procs import group_members

__all__ = ["TOLERANCE", "ComputeApp", "ReplicaGpuRun", "cpu_reference", "exercise_replica", "judge_all",
           "judge_replica", "kinds_of", "parse_compute_apps", "query_compute_apps", "stub_pids"]

TOLERANCE = 1e-4  # float32 softmax outputs; torch on a GPU and numpy differ by rounding only
STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class ComputeApp:
    pid: int
    gpu_uuid: str
    used_mib: int


def parse_compute_apps(text: str) -> list[ComputeApp]:
    """``nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits`` output."""
    apps = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        try:
            used = int(float(fields[2]))
        except ValueError:  # "[N/A]" where the driver does not attribute memory
            used = 0
        apps.append(ComputeApp(int(fields[0]), fields[1], used))
    return apps


def query_compute_apps() -> tuple[list[ComputeApp], str]:
    """The GPUs' compute apps now, and a problem when nvidia-smi could not be asked."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"nvidia-smi --query-compute-apps failed: {exc}"
    return parse_compute_apps(out), ""


def stub_pids(server_pid: int | None, proc: Path = Path("/proc")) -> list[int]:
    """The python-backend stubs of one replica: the members of its server's process group running the stub."""
    if not server_pid:
        return []
    out = []
    for pid in group_members(server_pid):
        try:
            command = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        if STUB.encode() in command:
            out.append(pid)
    return sorted(out)


def cpu_reference(weights: Path, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The reference model's CPU path (numpy), from the replica's own weight files."""
    p = {name: np.load(weights / f"{name}.npy").astype(np.float32) for name in ("w1", "b1", "w2", "b2")}
    h = np.maximum(x @ p["w1"] + p["b1"], 0.0)
    z = h @ p["w2"] + p["b2"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: npt.NDArray[np.float32] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


@dataclass(frozen=True)
class ReplicaGpuRun:
    """What one replica showed: its pinned GPU, its stubs' pids, and the requests sent to it directly."""

    name: str
    gpu_uuid: str  # "" when not pinned
    kinds: frozenset[str]  # instance_group kinds of its model config
    stubs: tuple[int, ...]
    sent: int
    ok: int
    max_abs_diff: float | None  # largest |GPU output - CPU output| over its ok answers; None: none compared
    errors: tuple[str, ...] = ()


def judge_replica(run: ReplicaGpuRun, apps: Sequence[ComputeApp], apps_problem: str = "",
                  tolerance: float = TOLERANCE) -> tuple[bool, str]:
    """Whether this replica's model ran on its GPU, with the evidence (or what is missing) in one line."""
    problems = []
    if run.kinds != frozenset({"KIND_GPU"}) or not run.gpu_uuid:
        problems.append(f"instance kinds {sorted(run.kinds)}, pinned to {run.gpu_uuid or 'nothing'}")
    mine = [a for a in apps if a.pid in run.stubs]
    on_gpu = [a for a in mine if a.gpu_uuid == run.gpu_uuid and a.used_mib > 0]
    if not run.stubs:
        problems.append("no python-backend stub process found for it")
    elif not on_gpu:
        if apps_problem:
            problems.append(apps_problem)
        elif not apps:
            problems.append("nvidia-smi lists no compute apps at all (a PID namespace hides them?)")
        elif mine:
            problems.append("its stub is a compute app on " + ", ".join(f"{a.gpu_uuid} ({a.used_mib} MiB)"
                                                                         for a in mine) + f", not on {run.gpu_uuid}"
                            if any(a.gpu_uuid != run.gpu_uuid for a in mine) else
                            f"its stub holds no GPU memory on {run.gpu_uuid}")
        else:
            problems.append(f"its stub (pid {', '.join(map(str, run.stubs))}) is not among the GPU's compute apps "
                            f"(pids {sorted(a.pid for a in apps)})")
    if run.sent == 0 or run.ok < run.sent:
        problems.append(f"{run.ok} of {run.sent} requests to it succeeded"
                        + (f" ({run.errors[0]})" if run.errors else ""))
    if run.max_abs_diff is None:
        problems.append("no output to compare with the CPU path")
    elif not run.max_abs_diff <= tolerance:
        problems.append(f"outputs differ from the CPU path by up to {run.max_abs_diff:.3g} (tolerance {tolerance:g})")
    if problems:
        return False, f"{run.name}: " + "; ".join(problems)
    used = sum(a.used_mib for a in on_gpu)
    return True, (f"{run.name}: stub pid {', '.join(str(a.pid) for a in on_gpu)} on {run.gpu_uuid} holding "
                  f"{used} MiB; {run.ok}/{run.sent} requests ok; outputs within {run.max_abs_diff:.2g} of the CPU path")


def judge_all(runs: Sequence[ReplicaGpuRun], apps: Sequence[ComputeApp], apps_problem: str = "") -> tuple[bool, str]:
    """Every replica must show its own evidence; one line per replica."""
    verdicts = [judge_replica(r, apps, apps_problem) for r in runs]
    if not verdicts:
        return False, "no replica to check"
    return all(ok for ok, _ in verdicts), "; ".join(line for _, line in verdicts)


def exercise_replica(name: str, http: str, gpu_uuid: str, kinds: frozenset[str], stubs: Sequence[int],
                     weights: Path, count: int = 50) -> ReplicaGpuRun:
    """Send ``count`` requests straight to one replica and compare each answer with the CPU path."""
    from harness.triton.client import infer_http, reference_input

    ok, diffs, errors = 0, [], []
    for i in range(count):
        x = reference_input(seed=i)
        outcome = infer_http(http, x, timeout_s=10.0)
        if not outcome.ok:
            errors.append(outcome.error[:80])
            continue
        ok += 1
        expected = cpu_reference(weights, x).ravel()
        got = np.array(outcome.output, dtype=np.float32)
        diffs.append(float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf"))
    return ReplicaGpuRun(name, gpu_uuid, kinds, tuple(stubs), count, ok, max(diffs) if diffs else None,
                         tuple(errors[:3]))


def kinds_of(config: Mapping[str, object]) -> frozenset[str]:
    groups = config.get("instance_group")
    return frozenset(str(g.get("kind")) for g in groups if isinstance(g, dict)) if isinstance(groups, list) \
        else frozenset()
