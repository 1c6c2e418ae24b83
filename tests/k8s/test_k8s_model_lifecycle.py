"""The model-lifecycle faults on a real Kubernetes (the sandbox): exec into the Triton container, the kubelet's
readiness probe and kube-proxy decide what clients of the Service see.

One Deployment (two replicas of the small manifest) serves the whole test: model unload on one pod, a bad
version rolled out to both, a queue overflow on one, each under requests to the Service's ClusterIP, each
checked to have landed (Triton's own answers) and to leave every pod's model repository, the config Triton
serves and the pods' readiness exactly as before, with no undo record left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import actions, rollbacks
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.sandbox import SandboxStatus
from tests.k8s.k8s_helpers import module_platform, run_config, wait_for
from tests.k8s.test_k8s_field_faults import Traffic

pytestmark = pytest.mark.timeout(600)

REPOSITORY_HASHES = ("import hashlib, json, pathlib; r = pathlib.Path('/models'); "
                     "print(json.dumps({str(p.relative_to(r)): hashlib.sha256(p.read_bytes()).hexdigest() "
                     "for p in sorted(r.rglob('*')) if p.is_file() and '__pycache__' not in p.parts}))")


@pytest.fixture(scope="module")
def cluster(sandbox: SandboxStatus, small_manifest: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubernetesPlatform]:
    with module_platform(sandbox, small_manifest, tmp_path_factory.mktemp("k8slifecycle")) as platform:
        yield platform


def _config(platform: KubernetesPlatform, run_dir: Path) -> dict[str, object]:
    return run_config(platform, run_dir, "lifecycle")


def _snapshot(platform: KubernetesPlatform) -> dict[str, Any]:
    out = {}
    for pod in sorted(platform.replica_names()):
        files = json.loads(platform.fault_ops().exec_in_replica(pod, ["python3", "-c", REPOSITORY_HASHES]))
        out[pod] = {"files": files, "config": platform.fault_ops().model_control(pod).config("mlp")}
    return out


def _left_nothing(platform: KubernetesPlatform, before: dict[str, Any]) -> None:
    assert platform.fault_store().records() == []
    assert _snapshot(platform) == before  # the same pods: nothing was restarted
    for pod in before:
        ctl = platform.fault_ops().model_control(pod)
        assert {e["version"]: e["state"] for e in ctl.index("mlp")}.get("1") == "READY"
        assert ctl.server_ready()
    wait_for(lambda: platform.status().ready_replicas == 2, 60, "both pods ready again (readiness probe)")


def _landing(run_dir: Path) -> dict[str, Any]:
    landing = dict(json.loads((run_dir / "landings.jsonl").read_text().splitlines()[-1]))
    assert landing["landed"], landing
    return landing


def test_model_lifecycle_faults_land_in_the_pods_and_leave_nothing(cluster: KubernetesPlatform,
                                                                  tmp_path: Path) -> None:
    before = _snapshot(cluster)
    url = cluster.status().endpoints.http
    seen: dict[str, Any] = {}

    # model unload on one pod: readiness stays true, so the Service keeps sending it requests that fail
    run_dir = tmp_path / "unload"
    with Traffic(url, run_dir) as traffic:
        time.sleep(1)
        since = time.time_ns()
        actions.unload_model(mode="one", seed=0, configuration=_config(cluster, run_dir))
        time.sleep(3)
        until = time.time_ns()
        rollbacks.restore_model(configuration=_config(cluster, run_dir))
    landing = _landing(run_dir)
    (pod,) = landing["targets"]
    assert landing["measured"]["index"][pod]["1"] == {"state": "UNAVAILABLE", "reason": "unloaded"}
    assert landing["measured"]["server_ready"] == {pod: True}
    seen["unload"] = {"failed": traffic.failures(since, until), "sample": traffic.errors[:1]}
    assert seen["unload"]["failed"] > 0, "requests routed to the pod without its model should have failed"
    _left_nothing(cluster, before)

    # a bad version on both pods: the old version answers in the pod, but strict readiness turns false
    run_dir = tmp_path / "bad"
    with Traffic(url, run_dir) as traffic:
        time.sleep(1)
        since = time.time_ns()
        actions.bad_version_rollout(mode="all", configuration=_config(cluster, run_dir))
        wait_for(lambda: cluster.status().ready_replicas == 0, 30, "the kubelet to see both pods unready")
        until = time.time_ns()
        rollbacks.restore_model(configuration=_config(cluster, run_dir))
    landing = _landing(run_dir)
    for per in landing["measured"]["targets"].values():
        assert per["version"] == "2" and "initialize() fails on purpose" in per["load_error"]
        assert per["old_version_serving"] and per["server_ready"] is False
    seen["bad_version"] = {"failed": traffic.failures(since, until), "sample": traffic.errors[-1:]}
    _left_nothing(cluster, before)

    # queue overflow on one pod: the burst from inside the pod meets a queue of 2
    run_dir = tmp_path / "queue"
    actions.queue_overflow(mode="one", seed=1, burst_requests=100, configuration=_config(cluster, run_dir))
    landing = _landing(run_dir)
    (pod,) = landing["targets"]
    burst = landing["measured"]["bursts"][pod]
    assert burst["queue_full"] > 0 and "Exceeds maximum queue size" in burst["samples"]["queue_full"], burst
    assert landing["measured"]["max_queue_size_served"] == {pod: "2"}
    seen["queue_overflow"] = burst
    rollbacks.restore_model(configuration=_config(cluster, run_dir))
    _left_nothing(cluster, before)
    print(f"model lifecycle on Kubernetes: {json.dumps(seen, default=str)}")
