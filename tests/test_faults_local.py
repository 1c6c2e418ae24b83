"""Each fault on the local platform has its intended effect, and nothing remains afterwards.

Traffic here is a plain thread of single requests through the front, so the faults are tested on their
own; tests/test_chaos_run.py runs them through Chaos Toolkit under the Locust load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from harness.chaos import actions, rollbacks
from harness.chaos.context import RunContext
from harness.deployment import DEFAULT_MANIFEST
from harness.errors import FaultError
from harness.events import EventKind
from harness.faults.cgroups import MemoryController, find_memory_controller
from harness.faults.nft import harness_tables
from harness.platforms.local.platform import LocalPlatform
from harness.triton.client import InferOutcome, infer_http, reference_input
from tests.helpers import events_of, processes_mentioning, wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="nftables and memory cgroups need root")


class Traffic:
    """Requests through the front in a loop, every outcome kept with its send time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: list[tuple[float, InferOutcome]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        data = reference_input()
        while not self._stop.is_set():
            self.outcomes.append((time.monotonic(), infer_http(self.url, data, timeout_s=1.0)))
            time.sleep(0.01)

    def since(self, t: float) -> list[InferOutcome]:
        return [o for ts, o in list(self.outcomes) if ts >= t]

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _config(platform: LocalPlatform, tmp_path: Path) -> dict[str, object]:
    return {"harness_state_dir": str(platform.state), "harness_run_id": "test-run",
            "harness_run_dir": str(tmp_path / "run")}


def _replica(platform: LocalPlatform, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in platform.status().replicas if r.name == name)


def _no_faults_left(platform: LocalPlatform) -> None:
    assert platform.fault_store().records() == []
    assert harness_tables() == [] or all("harness_" not in t or "test" not in t for t in harness_tables())
    assert processes_mentioning("harness.faults.hog") == []
    controller = find_memory_controller()
    if isinstance(controller, MemoryController):  # cgroup v1 or v2, wherever this host creates them
        assert not list(controller.base.glob("harness_*run*"))


@contextmanager
def up(make_platform, **kw: object) -> Iterator[LocalPlatform]:  # type: ignore[no-untyped-def]
    platform = make_platform(**kw)
    platform.up()
    yield platform


def test_pod_kill_sigkill_is_restarted_and_clients_see_errors_only_briefly(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform, Traffic(platform.status().endpoints.http) as traffic:
        time.sleep(1)
        result = actions.kill_replicas(mode="one", seed=1, configuration=_config(platform, tmp_path))
        victim = result["killed"][0]
        wait_for(lambda: _replica(platform, victim).restarts == 1 and _replica(platform, victim).ready, 60,
                 "the killed replica to come back")
        time.sleep(1)
        late = traffic.since(time.monotonic() - 0.8)
        assert late and all(o.ok for o in late)
    kinds = [e.kind for e in events_of(platform.events_path(), victim)]
    assert EventKind.EXITED in kinds and kinds[-1] == EventKind.READY


@needs_root
def test_network_block_all_cuts_the_service_and_unblock_restores_it(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform, Traffic(platform.status().endpoints.http) as traffic:
        config = _config(platform, tmp_path)
        time.sleep(0.5)
        actions.block_network(mode="all", configuration=config)
        assert len([t for t in harness_tables() if "harness_" in t]) >= 1
        t_block = time.monotonic()
        time.sleep(4)
        during = traffic.since(t_block + 0.1)
        assert during and not any(o.ok for o in during), "requests got through a full block"
        # probes pass through (a NetworkPolicy does not stop the kubelet): replicas stay ready
        assert platform.status().ready_replicas == 2
        before_ns = time.time_ns()
        rollbacks.unblock_network(configuration=config)
        t_unblock = time.monotonic()
        # the lift's landing says when the table went (the fault's end in the report), before the check after it
        (lift,) = [x for x in RunContext.from_configuration(config).landings()
                   if x["check"] == "connections succeed after the block was lifted"]
        assert before_ns <= lift["measured"]["lifted_ns"] <= lift["at_ns"]
        time.sleep(2)
        after = traffic.since(t_unblock + 1.0)
        assert after and all(o.ok for o in after)
    _no_faults_left(platform)


@needs_root
def test_network_block_of_one_replica_is_partial(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform, Traffic(platform.status().endpoints.http) as traffic:
        config = _config(platform, tmp_path)
        actions.block_network(names=["triton-1"], configuration=config)
        t_block = time.monotonic()
        time.sleep(4)
        during = traffic.since(t_block + 0.5)
        ok = [o for o in during if o.ok]
        assert ok and all(o.replica == "triton-0" for o in ok)
        assert len(ok) < len(during), "no request failed although one replica was cut off"
        rollbacks.unblock_network(configuration=config)
    _no_faults_left(platform)


def test_slow_model_load_by_restart_takes_the_replica_out_for_the_delay(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform:
        config = _config(platform, tmp_path)
        started = time.monotonic()
        result = actions.slow_model_load(names=["triton-1"], delay_s=6, configuration=config)
        # the action proved the slow load itself, against the replica's plain start before it
        assert result["landing"].startswith("triton-1: ready ") and "baseline ready" in result["landing"]
        assert _replica(platform, "triton-1").restarts == 1
        wait_for(lambda: _replica(platform, "triton-1").ready, 60, "the slow load to finish")
        assert time.monotonic() - started >= 6
        rollbacks.restore_model_load(configuration=config)
        assert not (platform.state / "replicas" / "triton-1" / "env-override.json").exists()
    _no_faults_left(platform)


def test_slow_model_load_with_short_liveness_crashloops_until_restored(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    container.pop("startupProbe")
    container["livenessProbe"].update(initialDelaySeconds=3, periodSeconds=1, failureThreshold=2)
    docs[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    manifest = tmp_path / "short-liveness.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    # unscaled probes: a normal start (~2 s) must pass a liveness probe that a 10 s load cannot
    with up(make_platform, replicas=1, manifest=manifest, time_scale=1.0) as platform:
        config = _config(platform, tmp_path)
        # the replica never comes back while the fault holds: a finding, never proof that the delay landed
        with pytest.raises(FaultError, match="never became ready within the 6s budget"):
            actions.slow_model_load(names=["triton-0"], delay_s=10, verify_timeout_s=6, configuration=config)
        wait_for(lambda: any(e.kind == EventKind.BACKOFF for e in events_of(platform.events_path())), 45,
                 "CrashLoopBackOff")
        assert "CrashLoopBackOff" in _replica(platform, "triton-0").reason or not _replica(platform, "triton-0").ready
        rollbacks.restore_model_load(configuration=config)
        wait_for(lambda: _replica(platform, "triton-0").ready, 60, "recovery after the rollback")
    _no_faults_left(platform)


@needs_root
def test_memory_pressure_host_analogue_fails_a_restart_until_released(make_platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=2) as platform:
        config = _config(platform, tmp_path)
        result = actions.memory_pressure(names=["triton-1"], leave_free_mb=8, headroom_mb=96, duration_s=60,
                                         configuration=config)
        assert result["target"] == "host" and "analogue" in result["analogue"]
        time.sleep(2)  # the hog fills the cgroup
        actions.kill_replicas(names=["triton-1"], configuration=config)  # a restart under pressure
        time.sleep(6)
        r1 = _replica(platform, "triton-1")
        assert not r1.ready, "the replica came back although its memory was held"
        assert _replica(platform, "triton-0").ready  # confined: the other replica is untouched
        rollbacks.release_memory_pressure(configuration=config)
        wait_for(lambda: _replica(platform, "triton-1").ready, 90, "recovery after the hog released memory")
    _no_faults_left(platform)


INJECTOR = """
import sys, time
from harness.chaos import actions
cfg = {"harness_state_dir": sys.argv[1], "harness_run_id": "crash-run", "harness_run_dir": sys.argv[2]}
getattr(actions, sys.argv[3])(names=["triton-0"], **({"duration_s": 120, "leave_free_mb": 8, "headroom_mb": 64}
                                                     if sys.argv[3] == "memory_pressure" else {}),
                              configuration=cfg)
print("injected", flush=True)
time.sleep(600)
"""


def _inject_then_sigkill(platform: LocalPlatform, tmp_path: Path, action: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", INJECTOR, str(platform.state), str(tmp_path / "crash"), action],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "injected"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@needs_root
@pytest.mark.parametrize("action", ["block_network", "memory_pressure"])
def test_sigkill_of_the_harness_leftovers_removed_by_watchdog_and_cleanup(make_platform, tmp_path, action) -> None:  # type: ignore[no-untyped-def]
    with up(make_platform, replicas=1) as platform:
        # the watchdog alone removes the fault once its run is gone
        _inject_then_sigkill(platform, tmp_path, action)
        wait_for(lambda: platform.fault_store().records() == [], 15, "the watchdog to undo the fault")
        _no_faults_left(platform)
        # and `harness cleanup` removes it at once, watchdog or not
        _inject_then_sigkill(platform, tmp_path, action)
        for watchdog in processes_mentioning("harness.watchdog"):
            if str(platform.state) in watchdog:
                os.kill(int(watchdog.split()[0]), signal.SIGKILL)
        assert platform.fault_store().records() != []
        report = platform.cleanup()
        assert report.removed, report
        _no_faults_left(platform)
        wait_for(lambda: platform.status().ready_replicas == 1, 60, "the replica to be healthy again")
