"""Game days: the live view driven through a pseudo-terminal (gates, a note, abort mid-fault), a
``--yes`` rehearsal with expected-versus-measured in the report, and a bad runbook refused up front."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.faults.nft import harness_tables
from harness.platforms.local.platform import LocalPlatform
from tests.conftest import local_settings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
LOAD = {"harness_profile": str(ROOT / "loadprofiles" / "steady.py"), "harness_users": 4, "harness_warmup_s": 2,
        "harness_observation_s": 3, "analysis": {"stability_period_s": 3}}  # short runs: a short stability period


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    p = LocalPlatform(local_settings(tmp_path_factory.mktemp("gameday"), replicas=2, queue_delay_ms=2.0))
    p.up()
    yield p
    p.down()


def _runbook(tmp_path: Path, steps: list[dict[str, object]], observation_s: float = 3) -> Path:
    path = tmp_path / "runbook.yaml"
    load = {**LOAD, "harness_observation_s": observation_s}
    path.write_text(yaml.safe_dump({"title": "test game day", "load": load, "steps": steps}))
    return path


class Terminal:
    """A child process on a pseudo-terminal; everything it prints is collected."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, close_fds=True)
        os.close(slave)
        self.buffer = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.buffer += data.decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_text(self, text: str, count: int = 1, timeout_s: float = 60) -> None:
        wait_for(lambda: self.buffer.count(text) >= count, timeout_s, f"{text!r} on the terminal")


@pytest.mark.skipif(os.geteuid() != 0, reason="the network block needs root")
def test_live_view_gates_a_note_and_abort_mid_fault(platform: LocalPlatform, tmp_path: Path) -> None:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "replicas ready")
    runbook = _runbook(tmp_path, [
        {"name": "kill", "experiment": str(ROOT / "experiments" / "pod-kill.yaml"),
         "vars": {"recovery_wait_s": 5}, "gate": "Kill a replica?", "expect": "back within 10 s",
         "expect_max": {"time_to_recover_s": 10}},
        {"name": "block", "experiment": str(ROOT / "experiments" / "network-policy-block.yaml"),
         "vars": {"block_s": 60}, "gate": "Block the service?"},
    ])
    reports = tmp_path / "reports"
    term = Terminal([sys.executable, "-m", "harness.cli", "gameday", str(runbook), "--state-dir",
                     str(platform.state), "--reports-dir", str(reports)])
    term.wait_text("GATE: Kill a replica?")
    assert "requests/s" in term.buffer or "load:" in term.buffer
    term.type("g")
    wait_for(lambda: bool(list(reports.glob("*/experiments/kill/1/injected.jsonl"))), 60, "the pod kill")
    term.wait_text("fault: pod-kill on")
    term.type("n")
    term.type("replica came back quickly\r")
    term.wait_text("last note: replica came back quickly")
    term.wait_text("GATE: Block the service?", timeout_s=90)
    term.type("g")
    wait_for(lambda: bool(platform.fault_store().records()), 60, "the network block")
    term.wait_text("fault: network-policy-block on")
    term.type("a")
    assert term.proc.wait(90) == 130, term.buffer[-3000:]
    # the abort rolled the fault back and nothing is left
    assert platform.fault_store().records() == []
    assert not any(platform.settings.replica_address_base.rsplit(".", 1)[0] in t for t in harness_tables())
    run = next(reports.glob("*gameday*"))
    doc = json.loads((run / "gameday.json").read_text())
    assert doc["aborted"] is True
    assert [s["name"] for s in doc["steps"]] == ["kill", "block"]
    assert doc["steps"][0]["status"] == "completed" and doc["steps"][0]["answer"] == "go"
    assert doc["notes"][0]["text"] == "replica came back quickly" and doc["notes"][0]["step"] == "kill"
    journal = json.loads((run / "experiments" / "block" / "1" / "journal.json").read_text())
    assert journal["status"] == "interrupted" and journal["rollbacks"]
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_yes_rehearsal_reports_expected_beside_measured(platform: LocalPlatform, tmp_path: Path) -> None:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "replicas ready")
    runbook = _runbook(tmp_path, [
        {"name": "breathe", "pause": 1},
        {"name": "kill", "experiment": str(ROOT / "experiments" / "pod-kill.yaml"),
         "vars": {"recovery_wait_s": 5}, "expect": "users are served again within 30 s",
         "expect_max": {"time_to_recover_s": 30, "error_ratio": 0.5}},
    ], observation_s=8)  # recovery wait + observation must outlast the 10 s stability period
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "gameday", str(runbook), "--yes", "--state-dir",
                           str(platform.state), "--reports-dir", str(reports)],
                          capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gate: Run kill" in proc.stdout and "-> go (--yes)" in proc.stdout
    run = next(reports.glob("*gameday*"))
    doc = json.loads((run / "gameday.json").read_text())
    kill = doc["steps"][1]
    assert {c["figure"] for c in kill["checks"]} == {"time_to_recover_s", "error_ratio"}
    assert all(c["met"] for c in kill["checks"]) and kill["measured"]["time_to_recover_s"] is not None
    html = (run / "index.html").read_text()
    assert "Game day: test game day" in html and "users are served again within 30 s" in html


def test_bad_runbook_is_refused_before_anything_runs(platform: LocalPlatform, tmp_path: Path) -> None:
    runbook = _runbook(tmp_path, [{"name": "x", "experiment": "experiments/nope.yaml", "pause": -1,
                                   "expect_max": {"ttr": 3}}])
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "gameday", str(runbook), "--yes", "--state-dir",
                           str(platform.state), "--reports-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    for fragment in ("nope.yaml does not exist", "pause must be", "expect_max.ttr is not a measured figure"):
        assert fragment in proc.stderr
    assert not (tmp_path / "r").exists()
