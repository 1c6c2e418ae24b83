"""The local platform against real tritonserver, HAProxy and Prometheus processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.deployment import DEFAULT_MANIFEST
from harness.errors import ConfigError, EnvironmentProblem, PlatformError
from harness.events import EventKind
from harness.platforms.local.platform import LocalPlatform
from harness.triton.client import infer_grpc, infer_http, reference_input
from tests.helpers import events_of, port_open, processes_mentioning, unmapped_shm_regions, wait_for


def _replica(platform: LocalPlatform, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in platform.status().replicas if r.name == name)


def _assert_nothing_left(platform: LocalPlatform) -> None:
    state = str(platform.state)
    assert processes_mentioning(state) == [], "processes of this platform are still running"
    assert unmapped_shm_regions() == [], "python-backend shm regions were left in /dev/shm"
    s = platform.settings
    for port in (s.http_port, s.grpc_port, s.prometheus_port, s.stats_port):
        assert not port_open(s.front_address, port), f"port {port} still open"


def test_serves_http_and_grpc_through_the_front_and_balances(make_platform) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=2)
    status = platform.up()
    assert status.ready_replicas == 2
    data = reference_input()
    http = [infer_http(status.endpoints.http, data) for _ in range(10)]
    grpc = [infer_grpc(status.endpoints.grpc, data) for _ in range(10)]
    assert all(o.ok for o in http + grpc), [o.error for o in http + grpc if not o.ok]
    assert {o.replica for o in http} == {"triton-0", "triton-1"}
    assert {o.replica for o in grpc} == {"triton-0", "triton-1"}
    probs = http[0].output
    assert len(probs) == 8 and abs(sum(probs) - 1.0) < 1e-4  # a softmax came back
    assert grpc[0].output == pytest.approx(probs, abs=1e-6)  # deterministic model, same answer

    # status --json, as scripts and CI systems read it
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "status", "--json", "--state-dir", str(platform.state)],
        capture_output=True, text=True, check=True,
    ).stdout
    doc = json.loads(out)
    assert doc["endpoints"]["http"] == status.endpoints.http
    assert doc["endpoints"]["grpc"] == status.endpoints.grpc
    assert doc["endpoints"]["prometheus"].startswith("http://")
    assert [r["name"] for r in doc["replicas"]] == ["triton-0", "triton-1"]
    for r in doc["replicas"]:
        assert {"name", "address", "pid", "ready", "restarts", "reason"} <= set(r)
        assert r["ready"] is True and r["pid"] > 0

    # Prometheus scrapes every replica and HAProxy
    def targets_up() -> bool:
        with urllib.request.urlopen(f"{status.endpoints.prometheus}/api/v1/targets", timeout=2) as resp:
            active = json.loads(resp.read())["data"]["activeTargets"]
        return len(active) == 3 and all(t["health"] == "up" for t in active)

    wait_for(targets_up, 30, "Prometheus to scrape both replicas and HAProxy")
    platform.down()
    _assert_nothing_left(platform)


def test_kill_nine_replica_restarts_and_traffic_continues(make_platform) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=2)
    status = platform.up()
    victim = _replica(platform, "triton-1")
    os.kill(victim.pid, signal.SIGKILL)
    # Traffic continues on the other replica while the victim is down.
    data = reference_input()
    wait_for(lambda: not _replica(platform, "triton-1").ready, 5, "the killed replica to be marked not ready")
    served = [infer_http(status.endpoints.http, data) for _ in range(10)]
    assert all(o.ok and o.replica == "triton-0" for o in served), served
    wait_for(lambda: _replica(platform, "triton-1").ready, 60, "the killed replica to be ready again")
    again = _replica(platform, "triton-1")
    assert again.restarts == 1 and again.pid != victim.pid
    kinds = [e.kind for e in events_of(platform.events_path(), "triton-1")]
    assert kinds[:5] == [EventKind.STARTED, EventKind.READY, EventKind.EXITED, EventKind.RESTARTED, EventKind.READY]
    exited = next(e for e in events_of(platform.events_path(), "triton-1") if e.kind == EventKind.EXITED)
    assert "SIGKILL" in exited.reason
    # no orphaned python-backend stub of the killed server, no shm region it held
    stubs = [p for p in processes_mentioning("triton_python_backend_stub") if str(platform.state) in p]
    assert len(stubs) == 2, stubs  # one per live replica
    assert unmapped_shm_regions() == []
    platform.down()
    _assert_nothing_left(platform)


def _slow_manifest(tmp_path: Path, startup_probe: bool) -> Path:
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "HARNESS_MODEL_LOAD_DELAY_S", "value": "4"}]
    container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", "port": "http"},
                                  "periodSeconds": 1, "failureThreshold": 2}
    if startup_probe:
        container["startupProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                                     "periodSeconds": 1, "failureThreshold": 60}
    else:
        container.pop("startupProbe")
    docs[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    path = tmp_path / f"slow-{startup_probe}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_liveness_shorter_than_model_load_ends_in_crashloopbackoff(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=1, manifest=_slow_manifest(tmp_path, startup_probe=False),
                             ready_timeout_s=8)
    with pytest.raises(PlatformError, match="not ready"):
        platform.up()
    events = events_of(platform.events_path(), "triton-0")
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.LIVENESS_FAILED) >= 2, kinds
    backoffs = [e for e in events if e.kind == EventKind.BACKOFF]
    assert backoffs and "CrashLoopBackOff" in backoffs[0].reason
    assert EventKind.READY not in kinds
    _assert_nothing_left(platform)


def test_startup_probe_sized_to_the_load_rides_it_out(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=1, manifest=_slow_manifest(tmp_path, startup_probe=True))
    started = time.monotonic()
    status = platform.up()
    assert status.replicas[0].ready and status.replicas[0].restarts == 0
    assert time.monotonic() - started >= 4  # the model really loaded slowly
    kinds = [e.kind for e in events_of(platform.events_path(), "triton-0")]
    assert EventKind.LIVENESS_FAILED not in kinds


def test_corrupt_weight_file_keeps_replica_not_ready_with_reason(make_platform) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=2)
    platform.up()
    weight = platform.state / "replicas" / "triton-1" / "models" / "mlp" / "1" / "weights" / "w1.npy"
    weight.write_bytes(weight.read_bytes()[:-8] + b"corrupt!")
    os.kill(_replica(platform, "triton-1").pid, signal.SIGKILL)

    def corrupt_reason() -> bool:
        r = _replica(platform, "triton-1")
        return r.restarts >= 1 and not r.ready and "w1.npy" in r.reason and "corrupt" in r.reason

    wait_for(corrupt_reason, 30, "status to show the corrupt weight file as the reason")
    time.sleep(1.5)
    r = _replica(platform, "triton-1")
    assert not r.ready and "w1.npy" in r.reason
    assert _replica(platform, "triton-0").ready
    platform.down()
    _assert_nothing_left(platform)


def test_supervisor_crash_is_reported_and_cleanup_removes_leftovers(make_platform) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=1)
    platform.up()
    supervisor = int((platform.state / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(PlatformError, match=r"supervisor .* is gone"):
        platform.status()
    # Children die with the supervisor (parent-death signals); cleanup sweeps whatever remains.
    report = platform.cleanup()
    assert "tritonserver" not in " ".join(processes_mentioning(str(platform.state)))
    _assert_nothing_left(platform)
    assert isinstance(report.describe(), str)
    # and up works again afterwards
    platform.up()
    platform.down()
    _assert_nothing_left(platform)


def test_bad_input_is_refused_before_anything_starts(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="replicas must be at least 1"):
        make_platform(replicas=0)
    missing = make_platform(manifest=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot read manifest"):
        missing.up()
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Deployment\nspec: [oops\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        make_platform(manifest=broken).up()
    busy = make_platform(replicas=1)
    import socket

    with socket.socket() as holder:
        holder.bind((busy.settings.front_address, busy.settings.http_port))
        holder.listen()
        with pytest.raises(EnvironmentProblem, match="ports already in use"):
            busy.up()
    assert not busy.running()
    assert processes_mentioning(str(busy.state)) == []


def test_cli_exit_codes_and_messages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True)

    res = run("status", "--state-dir", str(tmp_path / "none"))
    assert res.returncode == 4 and "not up" in res.stderr and "harness up" in res.stderr
    res = run("up", "--state-dir", str(tmp_path / "x"), "--replicas", "0")
    assert res.returncode == 2 and "replicas must be at least 1" in res.stderr
    res = run("up", "--state-dir", str(tmp_path / "x"), "--front-address", "10.0.0.1")
    assert res.returncode == 2 and "loopback" in res.stderr
    for command in ("up", "status", "down", "cleanup", "demo"):
        assert run(command, "--help").returncode == 0
