"""The nightly gate: the same suite passes on an unchanged service and fails on a planted regression.

The planted regression is a slower restart: the replica's model load takes longer, so with one replica
every restart is an outage that lasts longer than the history says it should.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from harness.platforms.local.platform import LocalPlatform
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


def _suite(tmp_path: Path, delay_s: float) -> Path:
    suite = {
        "name": "nightly-test",
        "load": {"harness_profile": str(ROOT / "loadprofiles" / "steady.py"), "harness_users": 4, "harness_rate": 40,
                 "harness_warmup_s": 2, "harness_observation_s": 12},
        "repeat": 1,
        "regression": {"threshold": "100%", "baseline": "median"},
        "experiments": [{"file": str(ROOT / "experiments" / "slow-model-load.yaml"),
                         "required_tier": "single-point",
                         "vars": {"load_delay_s": delay_s, "recovery_wait_s": delay_s + 4}}],
    }
    path = tmp_path / f"suite-{delay_s:g}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _nightly(platform: LocalPlatform, suite: Path, reports: Path) -> subprocess.CompletedProcess[str]:
    wait_for(lambda: platform.status().ready_replicas == 1, 90, "the replica to be ready")
    return subprocess.run([sys.executable, "-m", "harness.cli", "suite", str(suite), "--state-dir",
                           str(platform.state), "--reports-dir", str(reports)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_nightly_passes_unchanged_and_fails_on_a_planted_regression(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=1, queue_delay_ms=2.0)
    platform.up()
    reports = tmp_path / "reports"
    # delays well above a plain restart's variation (about 1-2 s here): the slow-load check judges the delay
    # against the replica's baseline restart, and a 1 s delay was told apart by 0.3 s only
    first = _nightly(platform, _suite(tmp_path, 4), reports)
    assert first.returncode == 0, first.stdout + first.stderr
    second = _nightly(platform, _suite(tmp_path, 4), reports)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "REGRESSION" not in second.stdout
    regressed = _nightly(platform, _suite(tmp_path, 14), reports)
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert "REGRESSION" in regressed.stdout and "time_to_recover_s" in regressed.stdout
    # every run wrote its report, JUnit and the trend page
    runs = sorted(reports.glob("*nightly-test*"))
    assert len(runs) == 3 and all((r / "junit.xml").exists() and (r / "index.html").exists() for r in runs)
    assert (reports / "trend.html").exists()
    with sqlite3.connect(reports / "history.sqlite") as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
    assert statuses == ["completed"] * 3


def test_an_interrupted_nightly_is_recorded_as_such(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    platform = make_platform(replicas=1, queue_delay_ms=2.0)
    platform.up()
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "suite", str(_suite(tmp_path, 1)), "--state-dir",
                             str(platform.state), "--reports-dir", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    wait_for(lambda: bool(list(reports.glob("*/experiments/*/1/injected.jsonl"))), 60, "the fault")
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    run = next(reports.glob("*nightly-test*"))
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    with sqlite3.connect(reports / "history.sqlite") as db:
        rows = list(db.execute("SELECT status, passed FROM runs"))
    assert rows == [("interrupted", 0)]
    assert platform.fault_store().records() == []
