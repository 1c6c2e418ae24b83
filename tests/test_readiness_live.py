"""Readiness that lies, planted in real Triton and measured through a real pod-kill run.

The reference model fails every request for ``COLD_S`` seconds after its initialize() returns
(``HARNESS_MODEL_COLD_START_S``), while Triton already reports the server and the model ready, so the
supervisor's readiness probe on ``/v2/health/ready`` passes and HAProxy routes to the replica. A replica is
SIGKILLed under load by ``harness run experiments/pod-kill.yaml``; the report must find, for the restarted
replica, a ready-to-serving gap of about ``COLD_S`` (less the time the probe took to see it ready) and count
exactly the failed requests HAProxy routed to it in that gap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.events import EventKind, read_events
from harness.platforms.local.platform import LocalPlatform
from harness.timeline import read_timeline
from tests.conftest import local_settings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
COLD_S = 4.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    p = LocalPlatform(local_settings(tmp_path_factory.mktemp("cold"), replicas=2, queue_delay_ms=2.0,
                                     env={"HARNESS_MODEL_COLD_START_S": f"{COLD_S:g}"}))
    p.up()
    yield p
    p.down()


@pytest.mark.timeout(300)
def test_planted_cold_start_is_measured_per_replica(platform: LocalPlatform, tmp_path: Path) -> None:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready")
    time.sleep(COLD_S + 0.5)  # the replicas' own first cold start is over before the steady-state check
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "experiments/pod-kill.yaml", "--state-dir",
         str(platform.state), "--reports-dir", str(tmp_path), "--warmup", "2", "--observation", "3",
         "--users", "4", "--var", "recovery_wait_s=12"],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    out = proc.stdout + proc.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "results.json").exists()]
    rep = run_dir / "experiments" / "pod-kill" / "1"
    info = json.loads((rep / "experiment.json").read_text())
    assert info["status"] == "completed" and info["void"] is None, out
    t0 = int(info["fault_start_ns"])
    ready = [e for e in read_events(rep / "events.jsonl") if e.kind == EventKind.READY and e.ts_ns >= t0]
    assert ready and ready[0].details.get("readiness_period_s") == pytest.approx(0.4), out  # 2 s x time scale

    exp = json.loads((run_dir / "results.json").read_text())["experiments"][0]
    readiness = exp["runs"][0]["readiness"]
    assert readiness["replica_known"] is True, out
    (entry,) = [r for r in readiness["replicas"] if r["replica"] == ready[0].replica]
    assert entry["state"] == "serving", entry
    # The model starts failing when initialize() returns; the probe sees the server ready a little later
    # (startup probe 0.2 s, readiness probe 0.4 s at this time scale, plus probe latency on a busy machine).
    assert COLD_S - 1.5 <= entry["gap_s"] <= COLD_S + 0.5, entry
    print(f"planted {COLD_S:g} s; measured gap {entry['gap_s']:.3f} s, {entry['failed_in_gap']} failed of "
          f"{entry['requests_in_gap']} answered in it")
    assert entry["exceeds_probe_period"] is True

    # Recounted from the timeline: the first good response the front says this replica gave after its
    # ready signal (ok, within the experiment's 500 ms objective), and what it answered before it.
    frame = read_timeline(rep / "timeline")
    ready_ns = ready[0].ts_ns
    after = frame[(frame["replica"] == entry["replica"]) & (frame["start_ns"] >= ready_ns)]
    good = after[(after["outcome"] == "ok") & (after["latency_s"] <= 0.5)]
    first_good = int(good["start_ns"].min())
    assert entry["gap_s"] == pytest.approx((first_good - ready_ns) / 1e9, abs=1e-5)
    mine = after[after["start_ns"] < first_good]
    assert entry["requests_in_gap"] == len(mine) > 0
    assert entry["failed_in_gap"] == int((mine["outcome"] != "ok").sum()) > 0
    assert entry["failed_in_gap"] + entry["slow_in_gap"] == entry["requests_in_gap"]
    assert set(mine[mine["outcome"] != "ok"]["error_class"]) <= {"http_status", "model_unavailable"}

    assert any(n.startswith("readiness is not serving") and entry["replica"] in n for n in exp["notes"])
    assert f"readiness pod-kill rep 1: {entry['replica']} ready -> first good response" in out
    assert "Readiness vs serving" in (run_dir / "index.html").read_text()
    assert platform.fault_store().records() == []

    # The real run's OpenSLO export (the service and its models from run.json) validates too.
    export = subprocess.run([sys.executable, "-m", "harness.cli", "slo", "export", str(run_dir)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert export.returncode == 0, export.stderr
    docs = list(yaml.safe_load_all(export.stdout))
    validator = jsonschema.Draft7Validator(json.loads((ROOT / "tests/data/openslo-v1.schema.json").read_text()))
    assert [list(validator.iter_errors(d)) for d in docs] == [[] for _ in docs]
    assert 'model=~"mlp"' in docs[1]["spec"]["ratioMetric"]["good"]["metricSource"]["spec"]["query"]


@pytest.mark.timeout(200)
def test_grpc_errors_name_the_replica_that_answered(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Triton's gRPC errors come back through HAProxy as trailers-only responses, the front's replica header
    in the trailing metadata: the load must read it there, or every failure of a replica that is ready but not
    serving would be unattributed over gRPC (before the fix: 2,450 of 2,450 named no replica)."""
    platform = make_platform(replicas=1, queue_delay_ms=2.0, env={"HARNESS_MODEL_COLD_START_S": "60"})
    platform.up()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "load", "--state-dir", str(platform.state), "--profile",
         "loadprofiles/steady.py", "--duration", "3", "--protocol", "grpc", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    frame = read_timeline(tmp_path / "run" / "timeline")
    failed = frame[frame["outcome"] != "ok"]
    assert len(failed) > 0 and len(failed) == len(frame), proc.stdout + proc.stderr  # all within the cold start
    assert set(failed["error_class"]) == {"grpc_status"} and set(failed["replica"]) == {"triton-0"}
