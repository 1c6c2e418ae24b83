"""Distributed load on a real cluster: Locust master and workers as pods (the harness's own image, built
locally), load at the Service under test by its cluster DNS name, every CLI setting in the pods, timelines
copied back, objects deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.load.settings import LoadSettings
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.load import LoadJob, start_load
from harness.platforms.kubernetes.render import MANAGED_BY, RUN_ID
from harness.sandbox import Sandbox, SandboxStatus
from harness.timeline import read_timeline

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def load_image(sandbox: SandboxStatus) -> str:
    return Sandbox().harness_image()


def test_cli_settings_reach_the_pods_and_the_load_leaves_nothing(make_k8s, load_image: str, tmp_path: Path) -> None:
    """Only the CLI sets the load (no HARNESS_* in the environment): users, open-loop rate, duration, protocol
    and timeout must all reach the pods, which Locust's -u/-r/-t never did with a shape. The image is the
    sandbox's default (no --load-image)."""
    platform = make_k8s(replicas=1)
    platform.up()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_") or k == "HARNESS_REPORTS_DIR"}
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "load", "--platform", "kubernetes", "--namespace", platform.namespace,
         "--kubeconfig", platform.settings.kubeconfig, "--k8s-state-dir", str(platform.settings.state_dir),
         "--profile", str(ROOT / "loadprofiles" / "steady.py"), "--workers", "2", "--users", "4", "--rate", "40",
         "--duration", "10", "--protocol", "grpc", "--timeout", "1.5", "--run-dir", str(run_dir)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = read_timeline(run_dir / "timeline")
    assert set(frame["worker"]) == {"w0", "w1"}, "both worker pods sent requests"
    assert set(frame["protocol"]) == {"grpc"}, "--protocol reached the users"
    assert (frame["outcome"] == "ok").mean() > 0.95
    # open loop 40 req/s for 10 s: 400 requests on schedule (closed loop, 4 users would send thousands)
    assert 340 <= len(frame) <= 440, len(frame)
    span_s = (frame["start_ns"].max() - frame["start_ns"].min()) / 1e9
    assert 8.5 <= span_s <= 10.5, span_s
    assert 36 <= len(frame) / span_s <= 44, len(frame) / span_s
    run = json.loads((run_dir / "run.json").read_text())
    assert run["settings"]["load"]["image"] == load_image
    assert run["settings"]["load"]["endpoint"] == f"http://triton.{platform.namespace}.svc.cluster.local:8000"
    leftovers = [p["metadata"]["name"] for p in platform.api.list(KIND_BY_NAME["Pod"], platform.namespace)
                 if p["metadata"]["name"].startswith("harness-load-")]
    assert not leftovers


def test_bad_job_is_rejected_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        LoadJob(run_id="r", namespace="ns", workers=0, image="", profile=tmp_path / "missing.py",
                settings=LoadSettings())
    for what in ("--workers must be at least 1", "no image", "does not exist"):
        assert what in str(err.value)


def test_cleanup_sweeps_load_objects_of_a_crashed_harness(make_k8s, load_image: str, tmp_path: Path) -> None:
    platform = make_k8s()
    platform.api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": platform.namespace}})
    try:
        job = platform.load_job("20261128T081000Z-crashed", workers=1, profile=ROOT / "loadprofiles" / "steady.py",
                                image=load_image, settings=LoadSettings(users=1, duration_s=5))
        start_load(platform.api, job)  # ... and the harness crashed here
        master = platform.api.get(f"{KIND_BY_NAME['Pod'].collection(platform.namespace)}/{job.master}")
        assert master is not None and master["metadata"]["labels"][MANAGED_BY] == "triton-resilience-harness"
        assert master["metadata"]["labels"][RUN_ID] == "20261128t081000z-crashed"
        # ... and even without cleanup the kubelet ends it at its expiry
        assert master["spec"]["activeDeadlineSeconds"] == int(platform.settings.fault_ttl_s)
        report = platform.cleanup()
        assert f"pod {job.worker(0)}" in report.removed and f"configmap {job.base}" in report.removed
    finally:
        platform.api.delete(f"/api/v1/namespaces/{platform.namespace}")
