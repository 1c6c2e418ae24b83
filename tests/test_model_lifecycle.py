"""The model-lifecycle faults on real Triton replicas behind HAProxy, under Locust load through ``harness run``.

Each experiment must land (Triton itself says so: the repository index, the load error, the queue-full
answers), show its effect on the request timeline, and leave nothing behind: the replicas' model
repositories byte for byte as before, Triton serving the same config, every replica ready, no undo record.
One platform serves the whole module.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.local.platform import LocalPlatform
from harness.timeline import read_timeline
from tests.conftest import local_settings
from tests.helpers import processes_mentioning, wait_for

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--warmup", "2", "--observation", "3", "--users", "4", "--var", "analysis={stability_period_s: 3}"]
OUTAGE = {"connection_refused", "connection_reset", "connection_closed", "timeout", "model_unavailable"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    p = LocalPlatform(local_settings(tmp_path_factory.mktemp("lifecycle"), replicas=2, queue_delay_ms=2.0))
    p.up()
    yield p
    p.down()


def _snapshot(platform: LocalPlatform) -> dict[str, Any]:
    """Every replica's model repository (file hashes) and the config Triton serves."""
    ops = platform.fault_ops()
    out: dict[str, Any] = {}
    for replica in platform.status().replicas:
        models = platform.state / "replicas" / replica.name / "models"
        files = {str(p.relative_to(models)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(models.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
        out[replica.name] = {"files": files, "config": ops.model_control(replica.name).config("mlp")}
    return out


def _harness_run(platform: LocalPlatform, reports: Path, experiment: str, *args: str) -> tuple[int, str, Path]:
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready before the run")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", f"experiments/{experiment}", "--state-dir",
         str(platform.state), "--reports-dir", str(reports), *SHORT, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    reps = sorted(reports.glob("*/experiments/*/1"))
    return proc.returncode, proc.stdout + proc.stderr, reps[-1] if reps else reports


def _left_nothing(platform: LocalPlatform, before: dict[str, Any]) -> None:
    assert platform.fault_store().records() == []
    assert _snapshot(platform) == before
    for replica in platform.status().replicas:
        ctl = platform.fault_ops().model_control(replica.name)
        index = ctl.index("mlp")
        assert {e["version"]: e["state"] for e in index}.get("1") == "READY", index
        assert ctl.server_ready(), index
    wait_for(lambda: platform.status().ready_replicas == 2, 30, "both replicas ready after the run")


def _landing(rep: Path) -> dict[str, Any]:
    info = json.loads((rep / "experiment.json").read_text())
    assert info["void"] is None, info["void"]
    (landing,) = info["landings"]
    assert landing["landed"], landing
    return {**landing, "info": info}


def _errors(frame: Any, start_ns: int, end_ns: int) -> dict[str, int]:
    window = frame[(frame["start_ns"] >= start_ns) & (frame["start_ns"] < end_ns) & (frame["outcome"] != "ok")]
    return {str(k): int(v) for k, v in window["error_class"].value_counts().items()}


def test_model_unload_under_load_fails_its_requests_until_the_reload(platform: LocalPlatform, tmp_path: Path) -> None:
    before = _snapshot(platform)
    code, out, rep = _harness_run(platform, tmp_path, "model-unload.yaml", "--var", "unloaded_s=3",
                                  "--var", "recovery_wait_s=6")
    assert code == 0, out
    landing = _landing(rep)
    target = landing["targets"][0]
    assert landing["measured"]["index"][target]["1"] == {"state": "UNAVAILABLE", "reason": "unloaded"}
    # readiness does not tell: an unloaded model is excused even by --strict-readiness
    assert landing["measured"]["server_ready"] == {target: True}
    info, frame = landing["info"], read_timeline(rep / "timeline")
    # so the front kept routing to the replica, and its share of the requests failed until the reload
    during = _errors(frame, info["fault_start_ns"], info["fault_end_ns"])
    assert set(during) == {"model_unavailable"}, during
    served = frame[(frame["start_ns"] >= info["fault_start_ns"]) & (frame["start_ns"] < info["fault_end_ns"])]
    assert 0 < during["model_unavailable"] < len(served)  # the other replica served the rest
    after = frame[frame["start_ns"] > info["fault_end_ns"] + 2e9]
    assert len(after) > 0 and (after["outcome"] == "ok").all()
    _left_nothing(platform, before)


def test_bad_version_rollout_fails_to_load_while_the_old_version_serves(platform: LocalPlatform,
                                                                         tmp_path: Path) -> None:
    before = _snapshot(platform)
    code, out, rep = _harness_run(platform, tmp_path, "bad-version-rollout.yaml", "--var", "rollout_s=4",
                                  "--var", "recovery_wait_s=5")
    assert code in (0, 1), out  # the outage it causes may break the steady state after it
    landing = _landing(rep)
    assert sorted(landing["targets"]) == sorted(before)  # mode all: every replica got the bad version
    for per in landing["measured"]["targets"].values():
        assert per["version"] == "2" and "initialize() fails on purpose" in per["load_error"]
        assert per["index"]["2"]["state"] == "UNAVAILABLE" and per["index"]["1"]["state"] == "READY"
        assert per["old_version_serving"] and per["probe"]["ok"] == 20  # straight to the replica: answered
        assert per["server_ready"] is False  # but strict readiness counts the failed version
    assert landing["measured"]["old_version_kept_serving"] is True
    info, frame = landing["info"], read_timeline(rep / "timeline")
    # the front's probes took both unready replicas out: users got the front's 503 while the old version ran
    during = _errors(frame, info["fault_start_ns"] + int(2e9), info["fault_end_ns"])
    assert set(during) == {"http_status"}, during
    after = frame[frame["start_ns"] > info["fault_end_ns"] + 2e9]
    assert len(after) > 0 and (after["outcome"] == "ok").all()
    _left_nothing(platform, before)


def test_queue_overflow_rejects_queue_full_apart_from_outage_errors(platform: LocalPlatform, tmp_path: Path) -> None:
    before = _snapshot(platform)
    code, out, rep = _harness_run(platform, tmp_path, "queue-overflow.yaml", "--var", "overflow_s=2",
                                  "--var", "recovery_wait_s=4", "--users", "8")
    landing = _landing(rep)
    target = landing["targets"][0]
    burst = landing["measured"]["bursts"][target]
    assert burst["queue_full"] > 0 and burst["error"] == 0, burst
    assert "Exceeds maximum queue size" in burst["samples"]["queue_full"]
    assert landing["measured"]["max_queue_size_served"] == {target: "2"}
    info, frame = landing["info"], read_timeline(rep / "timeline")
    # the load through the front met the small queue too: shed requests, classed apart from an outage
    during = _errors(frame, info["fault_start_ns"], info["fault_end_ns"])
    assert during.get("queue_full", 0) > 0 and not set(during) & OUTAGE, during
    assert "queue_full" in out  # the run's summary lists the class
    after = frame[frame["start_ns"] > info["fault_end_ns"] + 2e9]
    assert len(after) > 0 and (after["outcome"] == "ok").all()
    assert code in (0, 1), out  # shed requests may break the steady state after the fault: not a harness failure
    _left_nothing(platform, before)


INJECTOR = """
import sys, time
from harness.chaos import actions
state, run_dir = sys.argv[1], sys.argv[2]
config = {"harness_state_dir": state, "harness_run_id": "crash-run", "harness_run_dir": run_dir}
actions.bad_version_rollout(configuration=config, mode="one", seed=0, failure="corrupt-file", probe_requests=0)
print("injected", flush=True)
time.sleep(600)
"""


def _inject_then_sigkill(platform: LocalPlatform, run_dir: Path, before: dict[str, Any]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", INJECTOR, str(platform.state), str(run_dir)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "injected"
    assert _snapshot(platform) != before  # the corrupt version 2 is in one replica's repository
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_harness_leaves_no_bad_version_behind(platform: LocalPlatform, tmp_path: Path) -> None:
    """SIGKILL after the injection: the watchdog removes the version directory and reloads the model; with the
    watchdog gone too, ``harness cleanup`` does."""
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready")
    before = _snapshot(platform)
    _inject_then_sigkill(platform, tmp_path / "crash", before)
    wait_for(lambda: platform.fault_store().records() == [], 60, "the watchdog to undo the bad version")
    _left_nothing(platform, before)

    _inject_then_sigkill(platform, tmp_path / "crash2", before)
    for watchdog in processes_mentioning("harness.watchdog"):
        if str(platform.state) in watchdog:
            os.kill(int(watchdog.split()[0]), signal.SIGKILL)
    assert platform.fault_store().records() != []
    report = platform.cleanup()
    assert any("bad version 2 of mlp" in line for line in report.removed), report
    _left_nothing(platform, before)


def test_bad_arguments_exit_2_and_change_nothing(platform: LocalPlatform, tmp_path: Path) -> None:
    before = _snapshot(platform)
    for var, says in (("max_queue_size=64", "burst_concurrency 32 cannot overflow a queue of max_queue_size 64"),
                      ("model=../mlp", "model: String should match pattern")):
        code, out, _ = _harness_run(platform, tmp_path, "queue-overflow.yaml", "--var", var)
        assert code == 2 and says in out and "nothing was injected" in out, out
    assert not list(tmp_path.glob("*/run.json"))
    _left_nothing(platform, before)


def test_the_in_pod_program_knows_the_queue_full_words_the_load_classifies_by() -> None:
    """``triton_model`` runs in the pod with the standard library alone, so it keeps its own copy."""
    from harness import timeline
    from harness.faults import triton_model

    assert triton_model.QUEUE_FULL_TEXT == timeline.QUEUE_FULL_TEXT
