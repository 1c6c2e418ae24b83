"""SIGINT and SIGTERM during each fault: ``harness run`` rolls back and leaves nothing injected.

The experiments here carry no load (``harness_load: false``) so that the signal path is tested on its own;
tests/test_chaos_run.py runs the shipped experiments under load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.faults.nft import harness_tables
from harness.platforms.local.platform import LocalPlatform
from harness.procs import alive
from tests.conftest import local_settings
from tests.helpers import processes_mentioning, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nftables and memory cgroups need root")

FAULTS = {
    "network": {"func": "block_network", "arguments": {"mode": "all"}},
    "pressure": {"func": "memory_pressure", "arguments": {"names": ["triton-1"], "leave_free_mb": 8,
                                                          "headroom_mb": 64, "duration_s": 120}},
    "slow-load": {"func": "slow_model_load", "arguments": {"names": ["triton-1"], "delay_s": 60}},
    "pod-kill": {"func": "kill_replicas", "arguments": {"names": ["triton-1"]}},
}


def _experiment(tmp_path: Path, fault: str) -> Path:
    spec = FAULTS[fault]
    experiment = {
        "version": "1.0.0",
        "title": f"signal test: {fault}",
        "description": "a fault held for a long time, interrupted by a signal",
        "configuration": {"harness_load": False, "harness_observation_s": 30},
        "controls": [{"name": "harness", "provider": {"type": "python", "module": "harness.chaos.control"}}],
        "steady-state-hypothesis": {"title": "replicas ready", "probes": [
            {"type": "probe", "name": "ready", "tolerance": True,
             "provider": {"type": "python", "module": "harness.chaos.probes", "func": "replicas_ready"}}]},
        "method": [{"type": "action", "name": fault,
                    "provider": {"type": "python", "module": "harness.chaos.actions", **spec},
                    "pauses": {"after": 60}}],
        "rollbacks": [{"type": "action", "name": "undo", "provider": {
            "type": "python", "module": "harness.chaos.rollbacks", "func": "rollback_all"}}],
    }
    path = tmp_path / f"{fault}.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    p = LocalPlatform(local_settings(tmp_path_factory.mktemp("signals"), replicas=2))
    p.up()
    yield p
    p.down()


def _nothing_injected(platform: LocalPlatform) -> None:
    assert platform.fault_store().records() == []
    assert not any(str(platform.settings.replica_address_base).rsplit(".", 1)[0] in t for t in harness_tables())
    assert [p for p in processes_mentioning("harness.faults.hog") if str(platform.state) in p] == []
    for name in ("triton-0", "triton-1"):
        workdir = platform.state / "replicas" / name
        assert not (workdir / "env-override.json").exists()
        assert not (workdir / "cgroup").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_signal_during_fault_rolls_back(platform: LocalPlatform, tmp_path: Path, fault: str, sig: int) -> None:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready before the run")
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(_experiment(tmp_path, fault)), "--state-dir",
         str(platform.state), "--reports-dir", str(reports)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    injected = list(reports.glob("*/experiments/*/1/injected.jsonl"))

    def fault_in_place() -> bool:
        injected[:] = list(reports.glob("*/experiments/*/1/injected.jsonl"))
        return bool(injected) and (fault == "pod-kill" or bool(platform.fault_store().records()))

    wait_for(fault_in_place, 30, "the fault to be injected")
    time.sleep(1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    _nothing_injected(platform)
    rep_dir = injected[0].parent
    journal = json.loads((rep_dir / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["undo"], "the rollback did not run"
    info = json.loads((rep_dir / "experiment.json").read_text())
    assert info["status"] == "interrupted" and info["fault_start_ns"]
    run = json.loads((rep_dir.parents[2] / "run.json").read_text())
    assert run["status"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["warm-up", "observation"])
def test_signal_before_or_after_the_fault_is_an_interrupt(platform: LocalPlatform, tmp_path: Path, sig: int,
                                                          phase: str) -> None:
    """While the load warms up (no fault yet) or while recovery is observed (the fault is gone): exit 130,
    status interrupted, never a "control failed" diagnosis or a completed run."""
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready before the run")
    path = _experiment(tmp_path, "pod-kill")
    doc = yaml.safe_load(path.read_text())
    doc["configuration"].update(harness_load=True, harness_users=1,
                                harness_warmup_s=30 if phase == "warm-up" else 1, harness_observation_s=60,
                                harness_profile=str(Path(__file__).resolve().parent.parent / "loadprofiles/steady.py"))
    doc["method"][0].pop("pauses")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(path), "--state-dir",
                             str(platform.state), "--reports-dir", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = "experiment.json" if phase == "warm-up" else "landings.jsonl"  # the load runs / the kill landed
    wait_for(lambda: bool(list(reports.glob(f"*/experiments/*/1/{marker}"))), 90, f"the {phase}")
    time.sleep(2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "control failed" not in out and "Traceback" not in out, out
    rep_dir = next(reports.glob("*/experiments/*/1"))
    assert json.loads((rep_dir / "experiment.json").read_text())["status"] == "interrupted"
    assert json.loads((rep_dir.parents[2] / "run.json").read_text())["status"] == "interrupted"
    load_pid = int((rep_dir / "load.pid").read_text())
    wait_for(lambda: not alive(load_pid), 10, "the load process to be stopped")
    _nothing_injected(platform)
