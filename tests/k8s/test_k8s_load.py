"""Distributed load objects against the fake API server: creation, completion, timeline copy, deletion.

The fake cannot run Locust in its pods; the test plays the workers' part by writing timeline files into
each worker pod's directory (what a worker writes to /timeline) and finishing the master pod. The copy
back is real: ``tar`` runs through the exec WebSocket and the archive is unpacked here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from k8s_helpers import wait_for

from harness.errors import ConfigError, PlatformError
from harness.platforms.kubernetes.load import (
    LoadJob,
    collect_timelines,
    delete_load,
    run_distributed_load,
    start_load,
)
from harness.platforms.kubernetes.render import MANAGED_BY, RUN_ID, expiry
from harness.testing.k8s_fake import FakeCluster

pytestmark = pytest.mark.timeout(120)


def _job(namespace: str, tmp_path: Path, workers: int = 3) -> LoadJob:
    profile = tmp_path / "steady.py"
    profile.write_text("from locust import HttpUser\n")
    return LoadJob(
        run_id="20261128T080000Z-load",
        namespace=namespace,
        workers=workers,
        image="harness:dev",
        profile=profile,
        host=f"http://triton.{namespace}.svc.cluster.local:8000",
        expires_at=expiry(600),
        duration_s=5,
    )


def _play_workers(fake: FakeCluster, job: LoadJob, exit_code: int = 0) -> None:
    for i in range(job.workers):
        timeline = fake.pod_root(job.namespace, job.worker(i)) / "timeline"
        timeline.mkdir(parents=True, exist_ok=True)
        (timeline / "part-00000.arrow").write_bytes(f"worker {i} chunk 0".encode())
        (timeline / "part-00001.arrow").write_bytes(f"worker {i} chunk 1".encode())
        (timeline / "EXIT").write_text(f"{exit_code}\n")
    fake.finish_pod(job.namespace, job.master)


def test_create_collect_delete(make_k8s, fake: FakeCluster, tmp_path: Path) -> None:
    platform = make_k8s()
    fake.add_namespace(platform.namespace)
    job = _job(platform.namespace, tmp_path)
    created = start_load(platform.api, job)
    assert created == [
        f"configmap {job.base}",
        f"service {job.master}",
        f"pod {job.master}",
        *[f"pod {job.worker(i)}" for i in range(3)],
    ]
    pods = fake.objects("pods", platform.namespace)
    assert len(pods) == 4
    for pod in pods:
        assert pod["metadata"]["labels"][MANAGED_BY] == "triton-resilience-harness"
        assert pod["metadata"]["labels"][RUN_ID] == "20261128t080000z-load"
    master = fake.get("pods", platform.namespace, job.master)
    assert master is not None and "--expect-workers" in master["spec"]["containers"][0]["command"]
    cm = fake.get("configmaps", platform.namespace, job.base)
    assert cm is not None and cm["data"]["steady.py"].startswith("from locust")
    _play_workers(fake, job)
    files = collect_timelines(platform.api, job, tmp_path / "timeline")
    assert sorted(f.name for f in files) == sorted(f"part-worker-{i}-{n:05d}.arrow" for i in range(3) for n in range(2))
    assert (tmp_path / "timeline" / "part-worker-2-00001.arrow").read_bytes() == b"worker 2 chunk 1"
    removed = delete_load(platform.api, job)
    assert len(removed) == 6
    assert not fake.objects("pods", platform.namespace) and not fake.objects("configmaps", platform.namespace)
    assert not fake.objects("services", platform.namespace)


def test_run_deletes_objects_even_when_a_worker_delivers_nothing(make_k8s, fake: FakeCluster, tmp_path: Path) -> None:
    platform = make_k8s()
    fake.add_namespace(platform.namespace)
    job = _job(platform.namespace, tmp_path, workers=2)

    def master_finishes_but_worker_1_never_wrote() -> None:
        wait_for(lambda: fake.get("pods", job.namespace, job.worker(1)), what="worker pods")
        root = fake.pod_root(job.namespace, job.worker(0)) / "timeline"
        root.mkdir(parents=True)
        (root / "part-0.arrow").write_bytes(b"x")
        (root / "EXIT").write_text("0\n")
        fake.finish_pod(job.namespace, job.master)

    thread = threading.Thread(target=master_finishes_but_worker_1_never_wrote)
    thread.start()
    with pytest.raises(PlatformError, match=f"{job.worker(1)} \\(Locust did not finish\\)"):
        run_distributed_load(platform.api, job, tmp_path / "tl", timeout_s=20, collect_wait_s=1.5)
    thread.join()
    assert not fake.objects("pods", platform.namespace), "the run's pods are deleted whatever happened"


def test_bad_job_is_rejected_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        LoadJob(run_id="r", namespace="ns", workers=0, image="", profile=tmp_path / "missing.py", host="http://x")
    for what in ("--workers must be at least 1", "no image", "does not exist"):
        assert what in str(err.value)


def test_platform_runs_load_at_its_service_and_cleanup_sweeps_leftover_load_pods(
    make_k8s, fake: FakeCluster, tmp_path: Path
) -> None:
    platform = make_k8s()
    fake.add_namespace(platform.namespace)
    profile = tmp_path / "p.py"
    profile.write_text("# profile\n")
    job = platform.load_job(
        "20261128T081000Z-crashed",
        workers=2,
        profile=profile,
        image="harness:dev",
        users=4,
        spawn_rate=4,
        duration_s=10,
    )
    assert job.host == f"http://triton.{platform.namespace}.svc.cluster.local:8000"
    start_load(platform.api, job)  # ... and the harness crashed here
    report = platform.cleanup()
    assert f"pod {job.worker(1)}" in report.removed and f"configmap {job.base}" in report.removed
    assert not fake.objects("pods", platform.namespace)
