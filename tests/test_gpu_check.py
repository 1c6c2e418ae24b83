"""``make gpu-check`` on a machine without a GPU refuses (exit 3) before anything starts; its checks read
prepared evidence (a Triton /metrics page, a results.json) the way they read a real run's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.gpucheck import _pressure_rows, metric_by_gpu
from harness.triton.gpus import GpuInfo, query_gpus

ROOT = Path(__file__).parent.parent
H200 = GpuInfo(0, "GPU-2b7e1516-28ae-d2a6-abf7-158809cf4f3c", "NVIDIA H200", 143771)
no_gpu = pytest.mark.skipif(bool(query_gpus()), reason="this machine has a GPU: run make gpu-check instead")


@no_gpu
def test_script_and_command_exit_3_without_a_gpu(tmp_path: Path) -> None:
    script = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert script.returncode == 3 and "no NVIDIA GPU on this machine" in script.stderr
    state = tmp_path / "state"
    command = subprocess.run([sys.executable, "-m", "harness.cli", "gpu-check", "--state-dir", str(state),
                              "--reports-dir", str(tmp_path / "reports")], capture_output=True, text=True, timeout=60)
    assert command.returncode == 3 and "nothing was started" in command.stderr
    assert not state.exists() and not (tmp_path / "reports").exists()


def test_triton_gpu_gauges_are_read_per_gpu_uuid() -> None:
    text = (Path(__file__).parent / "data" / "gpus" / "triton-metrics-h200.txt").read_text()
    assert metric_by_gpu(text) == {"nv_gpu_utilization": {H200.uuid: 0.37},
                                   "nv_gpu_memory_used_bytes": {H200.uuid: 1893728256.0}}


def _results(tmp_path: Path, device: str, restarts: int, ready: bool, capacity: bool, kept: bool = True) -> Path:
    hog = {"state": "holding" if kept else "released-at-deadline"}
    held = {"fault": "gpu-memory-pressure", "targets": ["triton-1"], "landed": True, "detail": "ok",
            "check": "free memory held at <= 8 MB (+4)",
            "measured": {"analogue": "", "hogs": {"triton-1": {"free_mb": 7.5, "device": device}}}}
    until = {"fault": "gpu-memory-pressure", "targets": ["triton-1"], "landed": kept,
             "detail": "held until release" if kept else "pressure lost before the release: triton-1: the hog "
                       "reached its own deadline (duration_s 5s) 3.1s before the release step",
             "check": "the pressure held until it was released",
             "measured": {"hogs": {"triton-1": hog},
                          "replicas_under_pressure": {"triton-1": {"restarts": restarts, "ready": ready}}}}
    run = {"landings": [held, until], "capacity_recovered": capacity, "ttr_state": "recovered",
           "time_to_recover_display": "3.100 s", "capacity_recovery_s": 9.0}
    (tmp_path / "results.json").write_text(json.dumps(
        {"experiments": [{"fault": "gpu-memory-pressure", "runs": [run]}]}))
    return tmp_path


def test_pressure_checks_pass_only_for_the_targets_gpu_a_failed_reload_and_a_recovery(tmp_path: Path) -> None:
    pinned = {"triton-1": [H200]}
    good = _pressure_rows(_results(tmp_path, f"{H200.uuid} (NVIDIA H200)", 1, False, True), pinned)
    assert [r.passed for r in good] == [True, True]
    other_gpu = _pressure_rows(_results(tmp_path, "GPU-77aa0b19-0c3e-4d2f-a1b2-c3d4e5f60718 (H100)", 1, False,
                                        True), pinned)
    assert not other_gpu[0].passed and "replica on" in other_gpu[0].detail
    kept_serving = _pressure_rows(_results(tmp_path, H200.uuid, 0, True, True), pinned)
    assert kept_serving[1].passed is False  # it never failed to reload: the fault proved nothing
    never_back = _pressure_rows(_results(tmp_path, H200.uuid, 1, False, False), pinned)
    assert never_back[1].passed is False
    # Read after the hog had let go: "failed to reload under pressure" is not what was seen.
    let_go = _pressure_rows(_results(tmp_path, H200.uuid, 1, False, True, kept=False), pinned)
    assert let_go[1].passed is False and "not held when the replicas were read" in let_go[1].detail
