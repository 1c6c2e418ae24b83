"""Attach mode: a Triton started by the test, outside the harness; the harness is only given its endpoint.

Faults land (a network block cuts clients off while the server stays ready), every other fault is refused
before anything runs, and ``detach`` leaves the service exactly as it was: same process, same models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults.nft import harness_tables
from harness.platforms.attached.platform import AttachedPlatform
from harness.platforms.attached.settings import AttachedSettings
from harness.timeline import read_timeline
from tests.conftest import random_subnet
from tests.outside_triton import TEXTSTATS_INPUT, OutsideTriton, outside_triton

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="nftables needs root")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutsideTriton]:
    with outside_triton(tmp_path_factory.mktemp("user"), f"{random_subnet()}.7") as s:
        yield s


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=240, env={**os.environ, **(env or {})})


@pytest.fixture
def state(server: OutsideTriton, tmp_path: Path) -> Iterator[Path]:
    """Attached through the CLI, as a user would; detached afterwards whatever the test did."""
    state = tmp_path / "state"
    proc = harness("attach", "--endpoint", server.http, "--grpc-endpoint", server.grpc, "--state-dir", str(state))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attached to triton" in proc.stdout and "textstats v1 READY" in proc.stdout
    yield state
    if (state / "attached.json").exists():
        AttachedPlatform(AttachedSettings.load(state)).down()


def test_refused_faults_and_bad_input_change_nothing(server: OutsideTriton, state: Path) -> None:
    before = server.state()
    proc = harness("run", "experiments/pod-kill.yaml", "experiments/slow-model-load.yaml",
                   "experiments/gpu-memory-pressure.yaml", "experiments/model-unload.yaml", "--state-dir", str(state),
                   "--reports-dir",
                   str(state.parent / "reports"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing was injected" in proc.stderr
    for func in ("kill_replicas", "slow_model_load", "memory_pressure", "unload_model"):
        assert f"({func}) cannot run on the attached platform" in proc.stderr
    assert not (state.parent / "reports").exists()
    proc = harness("up", "--state-dir", str(state))
    assert proc.returncode == 4 and "harness detach" in proc.stderr
    proc = harness("attach", "--endpoint", "http://10.1.2.3:8000", "--state-dir", str(state.parent / "other"))
    assert proc.returncode == 2 and "not on a loopback address" in proc.stderr
    assert server.state() == before


@needs_root
def test_network_block_lands_and_detach_leaves_the_service_as_it_was(server: OutsideTriton, state: Path) -> None:
    before = server.state()
    platform = AttachedPlatform(AttachedSettings.load(state))
    ops = platform.fault_ops()
    assert ops.connect_probe("attached") is True
    record = ops.block_network(["attached"], "test-block", 60)
    try:
        assert ops.connect_probe("attached", 0.5) is False  # clients are cut off ...
        assert platform.status().ready_replicas == 1  # ... while the server itself stays ready
        assert any(t.endswith(record["table"]) for t in harness_tables())
    finally:
        ops.unblock_network(record)
    assert ops.connect_probe("attached") is True
    assert not any(t.endswith(record["table"]) for t in harness_tables())

    reports = state.parent / "reports"
    proc = harness("run", "experiments/network-policy-block.yaml", "--state-dir", str(state), "--reports-dir",
                   str(reports), "--var", "block_s=3", "--var", "recovery_wait_s=3",
                   "--var", "analysis={stability_period_s: 3}", "--warmup", "2", "--observation", "3", "--users", "4",
                   env={"HARNESS_INPUT_DATA": str(TEXTSTATS_INPUT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (rep,) = reports.glob("*/experiments/network-policy-block/1")
    info = json.loads((rep / "experiment.json").read_text())
    frame = read_timeline(rep / "timeline")
    t0, t1 = info["fault_start_ns"], info["fault_end_ns"]
    assert (frame[frame["start_ns"] < t0]["outcome"] == "ok").all()
    during = frame[(frame["start_ns"] >= t0) & (frame["start_ns"] < t1)]
    assert (during["outcome"] != "ok").any()
    assert (frame[frame["start_ns"] > t1 + 500_000_000]["outcome"] == "ok").all()
    tables = [e["record"]["table"] for e in info["injected"]]
    assert tables and not any(t.endswith(name) for t in harness_tables() for name in tables)
    service = json.loads(next(reports.glob("*/run.json")).read_text())["service"]
    assert service["platform"] == "attached" and service["endpoint"] == server.http
    assert [(m["name"], m["version"]) for m in service["models"]] == [("textstats", "1")]

    proc = harness("detach", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "as it was when attached" in proc.stdout
    assert server.state() == before  # same process, same server, same models and states
    assert not (state / "attached.json").exists() and not list((state / "faults").glob("*.json"))
