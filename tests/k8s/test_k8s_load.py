"""Distributed load on a real cluster: Locust master and workers as pods (the harness's own image, built
locally), load at the Service under test by its cluster DNS name, timelines copied back, objects deleted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
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


def test_distributed_load_reaches_the_service_and_leaves_nothing(make_k8s, load_image: str, tmp_path: Path) -> None:
    platform = make_k8s(replicas=1)
    platform.up()
    job = platform.load_job("20261128T080000Z-load", workers=2, profile=ROOT / "loadprofiles" / "steady.py",
                            image=load_image, users=4, spawn_rate=4, duration_s=8,
                            env={"HARNESS_USERS": "4", "HARNESS_DURATION": "8"})
    assert job.host == f"http://triton.{platform.namespace}.svc.cluster.local:8000"
    files = platform.run_load(job, tmp_path / "timeline", timeout_s=240)
    assert files and {f.name.split("-")[2] for f in files} == {"0", "1"}, [f.name for f in files]
    frame = read_timeline(tmp_path / "timeline")
    assert len(frame) > 20, "both workers sent requests to the Service through cluster DNS"
    assert (frame["outcome"] == "ok").mean() > 0.9
    leftovers = [p["metadata"]["name"] for p in platform.api.list(KIND_BY_NAME["Pod"], platform.namespace)
                 if p["metadata"]["name"].startswith(job.base)]
    assert not leftovers


def test_bad_job_is_rejected_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        LoadJob(run_id="r", namespace="ns", workers=0, image="", profile=tmp_path / "missing.py", host="http://x")
    for what in ("--workers must be at least 1", "no image", "does not exist"):
        assert what in str(err.value)


def test_cleanup_sweeps_load_objects_of_a_crashed_harness(make_k8s, load_image: str, tmp_path: Path) -> None:
    platform = make_k8s()
    platform.api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": platform.namespace}})
    try:
        job = platform.load_job("20261128T081000Z-crashed", workers=1, profile=ROOT / "loadprofiles" / "steady.py",
                                image=load_image, users=1, spawn_rate=1, duration_s=5)
        start_load(platform.api, job)  # ... and the harness crashed here
        master = platform.api.get(f"{KIND_BY_NAME['Pod'].collection(platform.namespace)}/{job.master}")
        assert master is not None and master["metadata"]["labels"][MANAGED_BY] == "triton-resilience-harness"
        assert master["metadata"]["labels"][RUN_ID] == "20261128t081000z-crashed"
        report = platform.cleanup()
        assert f"pod {job.worker(0)}" in report.removed and f"configmap {job.base}" in report.removed
    finally:
        platform.api.delete(f"/api/v1/namespaces/{platform.namespace}")
