"""The shipped experiments under real Locust load, through ``harness run`` and plain ``chaos run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.events import EventKind, read_events
from harness.faults.nft import harness_tables
from harness.platforms.local.platform import LocalPlatform
from harness.timeline import read_timeline
from tests.conftest import local_settings
from tests.helpers import processes_mentioning, wait_for

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--warmup", "2", "--observation", "3", "--users", "4"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="nftables and memory cgroups need root")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    p = LocalPlatform(local_settings(tmp_path_factory.mktemp("chaos"), replicas=2, queue_delay_ms=2.0))
    p.up()
    yield p
    p.down()


def _harness_run(platform: LocalPlatform, reports: Path, *args: str) -> tuple[int, str, Path]:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready before the run")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args, "--state-dir", str(platform.state),
         "--reports-dir", str(reports), *SHORT],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    reps = sorted(reports.glob("*/experiments/*/1"))
    return proc.returncode, proc.stdout + proc.stderr, reps[-1] if reps else reports


def _assert_clean(platform: LocalPlatform) -> None:
    assert platform.fault_store().records() == []
    assert not harness_tables() or all(platform.settings.replica_address_base.rsplit(".", 1)[0] not in t
                                       for t in harness_tables())
    assert [p for p in processes_mentioning("harness.faults.hog") if str(platform.state) in p] == []
    assert [p for p in processes_mentioning("harness.load") if str(platform.state) in p] == []


def _timeline_around_fault(rep: Path) -> tuple[dict[str, object], object]:
    info = json.loads((rep / "experiment.json").read_text())
    return info, read_timeline(rep / "timeline")


def test_pod_kill_under_load(platform: LocalPlatform, tmp_path: Path) -> None:
    code, out, rep = _harness_run(platform, tmp_path, "experiments/pod-kill.yaml", "--var", "recovery_wait_s=8")
    assert code == 0, out
    info, frame = _timeline_around_fault(rep)
    assert info["fault_start_ns"] and info["status"] == "completed" and not info["deviated"]
    assert len(frame) > 100
    # requests that ended before the fault: one in flight at t0 that the kill cut off is impact (DESIGN.md)
    before = frame[frame["start_ns"] + frame["latency_s"] * 1e9 < info["fault_start_ns"]]
    assert (before["outcome"] == "ok").all()
    events = list(read_events(rep / "events.jsonl"))
    killed = [e for e in events if e.kind == EventKind.EXITED and e.ts_ns >= info["fault_start_ns"]]
    assert killed and "SIGKILL" in killed[0].reason
    assert any(e.kind == EventKind.READY and e.ts_ns > killed[0].ts_ns for e in events)
    assert "during" in out and "run directory" in out
    _assert_clean(platform)


@needs_root
def test_network_block_with_plain_chaos_toolkit(platform: LocalPlatform, tmp_path: Path) -> None:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready")
    env = {**os.environ, "HARNESS_STATE_DIR": str(platform.state)}
    journal = tmp_path / "journal.json"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "chaos"), "run", "--rollback-strategy", "always", "--journal-path",
         str(journal), "--var", "block_s:int=5", "--var", "recovery_wait_s:int=6",
         "--var", "harness_observation_s:int=2", "--var", "harness_warmup_s:int=2",
         "--var", f"harness_profile={ROOT / 'loadprofiles' / 'steady.py'}",
         str(ROOT / "experiments" / "network-policy-block.yaml")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(journal.read_text())["status"] == "completed"
    rep = next((tmp_path / "reports").glob("*/experiments/*/1"))
    info, frame = _timeline_around_fault(rep)
    assert info["fault"] == "network-policy-block" and info["fault_start_ns"]
    # requests sent while the block stood (HAProxy gives up connecting after 1 s, so none is let through late)
    during = frame[(frame["start_ns"] >= info["fault_start_ns"] + 0.5e9) &
                   (frame["start_ns"] <= info["fault_end_ns"] - 1.2e9)]
    assert len(during) > 0 and (during["outcome"] != "ok").all(), "requests got through the block"
    after = frame[frame["start_ns"] > info["fault_end_ns"] + 2e9]
    assert len(after) > 0 and (after["outcome"] == "ok").all()
    _assert_clean(platform)


@needs_root
def test_memory_pressure_analogue_under_load(platform: LocalPlatform, tmp_path: Path) -> None:
    code, out, rep = _harness_run(platform, tmp_path, "experiments/gpu-memory-pressure.yaml",
                                  "--var", "pressure_s=5", "--var", "recovery_wait_s=12")
    info, _ = _timeline_around_fault(rep)
    assert "analogue" in info["analogue"], info
    events = [e for e in read_events(rep / "events.jsonl") if e.ts_ns >= info["fault_start_ns"]]
    assert any(e.kind == EventKind.EXITED and "OOMKilled" in e.reason for e in events), [e.reason for e in events]
    # The hog outlived the release step: the replicas were read, and the memory freed, at the release.
    held = next(x for x in info["landings"] if x["check"].startswith("the pressure held"))
    assert held["landed"] and all(s["state"] == "holding" for s in held["measured"]["hogs"].values()), held
    assert code in (0, 1), out
    _assert_clean(platform)


def test_slow_model_load_under_load(platform: LocalPlatform, tmp_path: Path) -> None:
    code, out, rep = _harness_run(platform, tmp_path, "experiments/slow-model-load.yaml",
                                  "--var", "load_delay_s=4", "--var", "recovery_wait_s=10",
                                  "--var", "analysis={stability_period_s: 3}")  # the short observation says so
    assert code == 0, out
    info, _ = _timeline_around_fault(rep)
    events = [e for e in read_events(rep / "events.jsonl") if e.ts_ns >= info["fault_start_ns"]]
    restarted = next(e for e in events if e.kind == EventKind.RESTARTED)
    ready = next(e for e in events if e.kind == EventKind.READY and e.ts_ns > restarted.ts_ns)
    assert (ready.ts_ns - restarted.ts_ns) / 1e9 >= 3.5, "the model did not load slowly"
    _assert_clean(platform)
