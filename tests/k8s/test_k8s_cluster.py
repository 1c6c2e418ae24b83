"""End to end on a real cluster: up, pod kill, network block, slow-load patch, down, cleanup.

Opt-in: runs only when HARNESS_K8S_CONTEXT names a kubeconfig context (kind, minikube, a staging cluster).
Each run uses a throwaway namespace the harness creates and deletes. See docs/kubernetes.md for kind and
minikube recipes, with and without GPUs.

  HARNESS_K8S_CONTEXT=kind-harness .venv/bin/python -m pytest -q -m k8s_cluster tests/test_k8s_cluster.py

Optional: HARNESS_K8S_KUBECONFIG, HARNESS_K8S_GPUS (default 0), HARNESS_K8S_IMAGE, HARNESS_K8S_READY_TIMEOUT
(seconds, default 1200: the first pull of the NGC image is large).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.events import EventKind, read_events
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.render import harness_selector
from harness.platforms.kubernetes.settings import KubernetesSettings

CONTEXT = os.environ.get("HARNESS_K8S_CONTEXT", "")

pytestmark = [
    pytest.mark.k8s_cluster,
    pytest.mark.skipif(not CONTEXT, reason="set HARNESS_K8S_CONTEXT to run against a real cluster"),
    pytest.mark.timeout(3600),
]


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubernetesPlatform]:
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))
    settings = KubernetesSettings(
        namespace=f"harness-e2e-{uuid.uuid4().hex[:6]}",
        namespace_confirmed=True,
        context=CONTEXT,
        kubeconfig=os.environ.get("HARNESS_K8S_KUBECONFIG", ""),
        state_dir=tmp_path / "state",
        gpus_per_replica=int(os.environ.get("HARNESS_K8S_GPUS", "0")),
        image=os.environ.get("HARNESS_K8S_IMAGE", ""),
        ready_timeout_s=float(os.environ.get("HARNESS_K8S_READY_TIMEOUT", "1200")),
    )
    made = KubernetesPlatform(settings)
    yield made
    made.down()


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def test_up_kill_block_slow_down_cleanup(platform: KubernetesPlatform) -> None:
    status = platform.up()
    assert status.ready_replicas == len(status.replicas) == 2
    ops = platform.fault_ops()
    # The service answers inside the pod (Triton's own health endpoint, through exec).
    victim = platform.replica_names()[0]
    probe = "import urllib.request as u; print(u.urlopen('http://localhost:8000/v2/health/ready').status)"
    assert ops.exec_in_replica(victim, ["python3", "-c", probe]).strip() == "200"

    ops.kill_replica(victim, grace_s=0)
    platform.wait_rolled_out(platform.settings.ready_timeout_s)
    assert victim not in platform.replica_names()
    _wait(
        lambda: any(e.kind == EventKind.KILLED and e.replica == victim for e in read_events(platform.events_path())),
        30,
        "the kill in the events file",
    )

    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-e2e"
    record = ops.block_network(platform.replica_names()[:1], run_id)
    ops.unblock_network(record)

    patch = ops.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": "5"}, run_id)
    platform.wait_rolled_out(platform.settings.ready_timeout_s)
    ops.restore_env(patch)
    platform.wait_rolled_out(platform.settings.ready_timeout_s)

    ops.block_network(platform.replica_names()[:1], run_id + "-left")  # a fault a crash left behind
    report = platform.cleanup()
    assert "networkpolicy" in report.describe()
    platform.down()
    from harness.platforms.kubernetes.api import SWEPT_KINDS

    for kind in SWEPT_KINDS:
        if kind.kind in ("ServiceMonitor", "PodMonitor"):
            continue
        assert not platform.api.list(kind, platform.namespace, harness_selector()), kind.kind
