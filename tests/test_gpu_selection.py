"""GPU selection on machines without a GPU: nvidia-smi output prepared as files, real hog processes.

What runs on a GPU (the model on its device, the hog holding memory) is checked by ``make gpu-check``;
here: the parsing of ``nvidia-smi --query-gpu`` output, the round-robin pinning, the refusal of a GPU
configuration before anything starts (exit 3), and that the memory-pressure fault starts one hog per
targeted GPU, pinned to that GPU's UUID.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.deployment import DEFAULT_MANIFEST, load_deployment
from harness.errors import ConfigError, EnvironmentProblem
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.faults import LocalFaultOps
from harness.platforms.local.gpu_pinning import gpu_plan
from harness.platforms.local.settings import LocalSettings
from harness.triton.gpus import (
    GpuInfo,
    assign_gpus,
    parse_smi_csv,
    pinning_env,
    read_assignment,
    visible_subset,
    write_assignment,
)
from tests.helpers import wait_for

DATA = Path(__file__).parent / "data" / "gpus"


def _gpus(name: str) -> list[GpuInfo]:
    path = DATA / name
    return parse_smi_csv(path.read_text(), str(path))


def test_nvidia_smi_csv_is_parsed_into_uuid_model_and_memory() -> None:
    gpus = _gpus("nvidia-smi-4xh100.csv")
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert gpus[1] == GpuInfo(1, "GPU-77aa0b19-0c3e-4d2f-a1b2-c3d4e5f60718", "NVIDIA H100 80GB HBM3", 81559)
    assert _gpus("nvidia-smi-1xh200.csv")[0].describe() == \
        "GPU-2b7e1516-28ae-d2a6-abf7-158809cf4f3c (NVIDIA H200, 140 GiB)"
    with pytest.raises(EnvironmentProblem, match=r"line 1: expected 'index, uuid, name, memory\.total'"):
        _gpus("nvidia-smi-garbled.csv")


def test_cuda_visible_devices_of_the_harness_selects_and_orders_like_cuda() -> None:
    gpus = _gpus("nvidia-smi-4xh100.csv")
    assert visible_subset(gpus, None) == gpus
    assert [g.index for g in visible_subset(gpus, "2,0")] == [2, 0]
    assert [g.index for g in visible_subset(gpus, "GPU-c0ffee00,1")] == [3, 1]  # UUID prefixes, as CUDA allows
    assert [g.index for g in visible_subset(gpus, "1,7,2")] == [1]  # CUDA stops at the first invalid entry
    assert visible_subset(gpus, "") == []


def test_replicas_are_pinned_round_robin_by_uuid() -> None:
    gpus = _gpus("nvidia-smi-4xh100.csv")
    two = gpus[:2]
    plan = assign_gpus(["r-0", "r-1", "r-2"], 1, two)
    assert {n: [g.index for g in gs] for n, gs in plan.items()} == {"r-0": [0], "r-1": [1], "r-2": [0]}
    plan = assign_gpus(["r-0", "r-1", "r-2"], 2, gpus)
    assert {n: [g.index for g in gs] for n, gs in plan.items()} == {"r-0": [0, 1], "r-1": [2, 3], "r-2": [0, 1]}
    assert pinning_env(plan["r-1"]) == {"CUDA_VISIBLE_DEVICES": f"{gpus[2].uuid},{gpus[3].uuid}"}
    assert pinning_env([]) == {}  # a CPU replica's environment is not touched
    assert assign_gpus(["r-0"], 0, gpus) == {"r-0": []}
    with pytest.raises(EnvironmentProblem, match="only 1 visible"):
        assign_gpus(["r-0"], 2, gpus[:1])
    with pytest.raises(EnvironmentProblem, match=r"no NVIDIA GPU is visible.*--gpus-per-replica 0"):
        assign_gpus(["r-0"], 1, [])


def test_local_default_is_one_gpu_per_replica_when_one_is_visible_else_cpu(tmp_path: Path) -> None:
    spec = load_deployment(DEFAULT_MANIFEST).with_overrides(replicas=3)
    h200 = _gpus("nvidia-smi-1xh200.csv")
    default = LocalSettings(state_dir=tmp_path)
    assert {n: [g.uuid for g in gs] for n, gs in gpu_plan(default, spec, h200).items()} == \
        {"triton-0": [h200[0].uuid], "triton-1": [h200[0].uuid], "triton-2": [h200[0].uuid]}
    assert gpu_plan(default, spec, []) == {"triton-0": [], "triton-1": [], "triton-2": []}
    assert gpu_plan(LocalSettings(state_dir=tmp_path, gpus_per_replica=0), spec, h200)["triton-0"] == []
    with pytest.raises(ConfigError, match="GPUs per replica must be 0 or more"):
        LocalSettings(state_dir=tmp_path, gpus_per_replica=-1)


def test_assignment_file_round_trips_and_cpu_replicas_are_not_pinned(tmp_path: Path) -> None:
    gpus = _gpus("nvidia-smi-4xh100.csv")
    write_assignment(tmp_path, {"triton-0": [gpus[0]], "triton-1": []})
    assert read_assignment(tmp_path) == {"triton-0": [gpus[0]]}
    assert read_assignment(tmp_path / "absent") == {}


def test_up_asking_for_gpus_without_one_exits_3_before_anything_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "up", "--state-dir", str(state),
                           "--gpus-per-replica", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "no NVIDIA GPU is visible" in proc.stderr and "--gpus-per-replica 0" in proc.stderr
    assert not (state / "supervisor.pid").exists() and not (state / "status.json").exists()


def test_gpu_memory_pressure_starts_one_hog_per_targeted_gpu_pinned_to_its_uuid(tmp_path: Path) -> None:
    """Three replicas on two GPUs: triton-0 and triton-2 share GPU 0. The hogs run for real; without a GPU
    each one fails to open libcuda and says which GPU it was pinned to, which is what is checked here."""
    gpus = _gpus("nvidia-smi-4xh100.csv")[:2]
    names = ["triton-0", "triton-1", "triton-2"]
    write_assignment(tmp_path, assign_gpus(names, 1, gpus))
    replicas = [ReplicaStatus(n, f"127.0.0.{i + 2}", None, True, 0, "") for i, n in enumerate(names)]
    ops = LocalFaultOps(tmp_path, replicas, {"http": 8000, "grpc": 8001, "metrics": 8002})

    record = ops.memory_pressure(["triton-0", "triton-2", "triton-1"], "run-gpu-1", 8, 5)
    try:
        assert record["target"] == "gpu" and record["analogue"] == ""
        assert record["targets"] == ["triton-0", "triton-2", "triton-1"]
        files = record["status_files"]
        assert len(files) == 3 and files[0] == files[1] != files[2]  # triton-0 and -2 share GPU 0's hog
        assert len(record["ids"]) == 2 and record["shared_with"] == []
        assert record["gpus"]["triton-1"]["uuid"] == gpus[1].uuid
        log = tmp_path / "faults" / "hog.log"
        wait_for(lambda: log.exists() and log.read_text().count("hog: cannot use the gpu") == 2, 30,
                 "both hogs to report")
        text = log.read_text()
        for gpu in gpus:
            assert f"device 0 of CUDA_VISIBLE_DEVICES={gpu.uuid}" in text
    finally:
        ops.release_memory(record)
    assert ops.store.records() == []

    one = ops.memory_pressure(["triton-0"], "run-gpu-2", 8, 5)
    ops.release_memory(one)
    assert one["targets"] == ["triton-0"] and one["shared_with"] == ["triton-2"]  # squeezed too, and said so
