"""``harness load`` against a real local Triton: counts, shapes, open loop, distributed mode, a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.load.process import LoadProcess
from harness.load.settings import LoadSettings
from harness.platforms.base import PlatformStatus
from harness.platforms.local.platform import LocalPlatform
from harness.timeline import read_timeline
from tests.conftest import local_settings

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "loadprofiles"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, PlatformStatus]]:
    """One replica behind the front, shared by the tests that do not hurt it."""
    platform = LocalPlatform(local_settings(tmp_path_factory.mktemp("load"), replicas=1, prometheus=False))
    try:
        yield platform, platform.up()
    finally:
        platform.down()


@pytest.fixture(scope="module")
def service(local: tuple[LocalPlatform, PlatformStatus]) -> PlatformStatus:
    return local[1]


def front_connections(platform: LocalPlatform) -> int:
    """Client connections HAProxy's HTTP front has accepted so far (its statistics' ``stot``)."""
    s = platform.settings
    with urllib.request.urlopen(f"http://{s.front_address}:{s.stats_port}/stats;csv", timeout=5) as resp:
        text = resp.read().decode().lstrip("# ")
    return next(int(row["stot"]) for row in csv.DictReader(text.splitlines())
                if row["pxname"] == "triton_http" and row["svname"] == "FRONTEND")


def served(status: PlatformStatus) -> int:
    """Requests the replicas finished, successful or not (Triton's statistics API)."""
    total = 0
    for replica in status.replicas:
        with urllib.request.urlopen(f"{replica.http}/v2/models/mlp/stats", timeout=5) as resp:
            for model in json.load(resp)["model_stats"]:
                stats = model["inference_stats"]
                total += int(stats["success"]["count"]) + int(stats["fail"]["count"])
    return total


def stats_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_run_records_every_request_the_server_saw(service: PlatformStatus, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    before = served(service)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["load", "--profile", str(PROFILES / "steady.py"), "--duration", "3", "--users", "3",
              "--endpoint", service.endpoints.http, "--run-dir", str(run_dir)])
    out = capfd.readouterr().out  # the load process writes the live line to the inherited stdout
    assert exit_info.value.code == 0
    frame = read_timeline(run_dir / "timeline")
    assert len(frame) == served(service) - before > 100
    assert set(frame["outcome"]) == {"ok"} and set(frame["replica"]) == {"triton-0"}
    assert set(frame["status"]) == {200} and set(frame["protocol"]) == {"http"}
    assert frame["start_ns"].is_monotonic_increasing
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "load" and run["status"] == "completed" and run["schema"] == 1
    assert run["finished_ns"] > run["started_ns"]
    assert run["summary"]["requests"] == len(frame)
    assert f"run directory: {run_dir}" in out
    assert "users    3" in out and "rps" in out  # the live line


def test_step_profile_user_count_follows_its_shape(service: PlatformStatus, tmp_path: Path) -> None:
    load = LoadProcess.start(service.endpoints.http, service.endpoints.grpc, PROFILES / "step.py",
                             tmp_path / "timeline", users=6, rate=60, duration_s=4.5,
                             stats_path=tmp_path / "load.jsonl", log_path=tmp_path / "log",
                             extra_env={"HARNESS_STEP_USERS": "2", "HARNESS_STEP_S": "1.5"})
    assert load.wait(30) == 0
    ticks = [x for x in stats_lines(tmp_path / "load.jsonl") if "t_s" in x]
    # 2 users for 1.5 s, then 4, then 6; allow a sample to land just before a step took effect
    expected = {round(t): min(6, 2 * (int(t // 1.5) + 1)) for t in (1.0, 2.0, 3.0, 4.0)}
    seen = {round(x["t_s"]): x["users"] for x in ticks if round(x["t_s"]) in expected}
    assert set(seen) == set(expected), ticks
    for t, users in expected.items():
        assert users - 2 <= seen[t] <= users, (t, ticks)
    assert [seen[t] for t in sorted(seen)] == sorted(seen[t] for t in sorted(seen))
    assert seen[4] == 6


def test_open_loop_grpc_sends_the_rate_and_reads_the_replica(service: PlatformStatus, tmp_path: Path) -> None:
    before = served(service)
    load = LoadProcess.start(service.endpoints.http, service.endpoints.grpc, PROFILES / "steady.py",
                             tmp_path / "timeline", protocol="grpc", users=4, rate=100, duration_s=3,
                             log_path=tmp_path / "log")
    assert load.wait(30) == 0
    frame = read_timeline(tmp_path / "timeline")
    assert len(frame) == served(service) - before
    assert 240 <= len(frame) <= 330  # 100/s for 3 s, on schedule
    assert set(frame["outcome"]) == {"ok"} and set(frame["status"]) == {0}
    assert set(frame["replica"]) == {"triton-0"} and set(frame["protocol"]) == {"grpc"}


def test_per_request_connections_open_one_connection_for_every_request(local: tuple[LocalPlatform, PlatformStatus],
                                                                      tmp_path: Path) -> None:
    """``--connections per-request`` is a client a Kubernetes Service routes afresh for every request: here each
    request is one more connection at the front, while kept connections stay a handful however many requests."""
    platform, status = local
    opened, sent = {}, {}
    for connections in ("per-request", "kept"):
        before = front_connections(platform)
        load = LoadProcess.start(status.endpoints.http, status.endpoints.grpc, PROFILES / "steady.py",
                                 tmp_path / connections / "timeline", users=4, rate=60, duration_s=2,
                                 connections=connections, log_path=tmp_path / f"{connections}.log")
        assert load.wait(30) == 0
        frame = read_timeline(tmp_path / connections / "timeline")
        assert set(frame["outcome"]) == {"ok"}, frame["error_class"].value_counts()
        opened[connections], sent[connections] = front_connections(platform) - before, len(frame)
    # the load process reads the server's metadata before it sends: a few connections of its own
    assert sent["per-request"] <= opened["per-request"] <= sent["per-request"] + 5, (opened, sent)
    assert sent["kept"] >= 90 and opened["kept"] <= 20, (opened, sent)
    with pytest.raises(ConfigError, match="per-request connections are an HTTP client's"):
        LoadSettings(protocol="grpc", connections="per-request")


def test_distributed_workers_merge_into_one_timeline(service: PlatformStatus, tmp_path: Path) -> None:
    before = served(service)
    load = LoadProcess.start(service.endpoints.http, service.endpoints.grpc, PROFILES / "steady.py",
                             tmp_path / "timeline", users=4, duration_s=3, workers=2,
                             stats_path=tmp_path / "load.jsonl", log_path=tmp_path / "log")
    assert load.wait(40) == 0, (tmp_path / "log").read_text()
    frame = read_timeline(tmp_path / "timeline")
    assert len(frame) == served(service) - before > 100
    assert set(frame["worker"]) == {"w1", "w2"}
    assert {p.name.split("-")[1] for p in (tmp_path / "timeline").glob("part-*.arrow")} == {"w1", "w2"}
    assert frame["start_ns"].is_monotonic_increasing
    assert max(x.get("users", 0) for x in stats_lines(tmp_path / "load.jsonl")) == 4


def test_stop_is_graceful_and_leaves_nothing_running(service: PlatformStatus, tmp_path: Path) -> None:
    load = LoadProcess.start(service.endpoints.http, service.endpoints.grpc, PROFILES / "steady.py",
                             tmp_path / "timeline", users=2, rate=50, duration_s=None, workers=1,
                             log_path=tmp_path / "log")
    time.sleep(1.5)
    assert load.alive()
    assert load.stop() == 0
    assert not load.alive()
    with pytest.raises(ProcessLookupError):
        os.killpg(load.pid, 0)  # no worker left in its group
    assert len(read_timeline(tmp_path / "timeline")) > 30


def test_killed_replica_is_recorded_and_the_run_goes_on(make_platform: Callable[..., LocalPlatform],
                                                        tmp_path: Path) -> None:
    platform = make_platform(replicas=1, prometheus=False)
    replica = platform.up().replicas[0]
    # straight at the replica (no front in between), so the client sees the connection errors themselves
    load = LoadProcess.start(replica.http, replica.grpc, PROFILES / "steady.py", tmp_path / "timeline",
                             users=4, rate=100, duration_s=6, log_path=tmp_path / "log")
    time.sleep(1.5)
    killed_ns = time.time_ns()
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGKILL)
    assert load.wait(40) == 0
    frame = read_timeline(tmp_path / "timeline")
    after = frame[frame["start_ns"] > killed_ns]
    errors = after[after["outcome"] == "error"]
    assert len(errors) > 10
    assert set(errors["error_class"]) <= {"connection_refused", "connection_reset", "connection_closed"}
    assert "connection_refused" in set(errors["error_class"])
    assert set(errors["status"]) == {-1}
    finished_before = frame[frame["start_ns"] + frame["latency_s"] * 1e9 < killed_ns]
    assert len(finished_before) > 100 and (finished_before["outcome"] == "ok").all()
    # the load kept its schedule through the outage: requests until the end
    assert (frame["start_ns"].max() - killed_ns) / 1e9 > 3.5
    assert 450 <= len(frame) <= 650


def test_load_process_dies_with_its_parent(service: PlatformStatus, tmp_path: Path) -> None:
    """A crashed harness must not leave load running: the kernel SIGTERMs the child, which flushes."""
    import subprocess
    import sys

    script = (
        "import sys, time\nfrom pathlib import Path\nfrom harness.load.process import LoadProcess\n"
        f"load = LoadProcess.start({service.endpoints.http!r}, {service.endpoints.grpc!r}, "
        f"Path({str(PROFILES / 'steady.py')!r}), Path({str(tmp_path / 'timeline')!r}), users=2, rate=40, "
        f"duration_s=None, log_path=Path({str(tmp_path / 'log')!r}))\n"
        "print(load.pid, flush=True)\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(child, signal.SIGKILL)
        pytest.fail("the load process outlived its parent")
    assert len(read_timeline(tmp_path / "timeline")) > 20  # flushed on the way out
