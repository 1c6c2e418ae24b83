"""Timelines of distributed load come back whole from a real cluster, on the harness's clock.

One load run (Locust master + workers as pods, the harness image, tests/data/steady_patient.py) is shared
by the module; its workers
stay alive after Locust exits, so the copy can be run against them, then run again after a chunk was cut
or removed in a worker (the damage a half-finished ``kubectl cp`` or a lost file would do).

Default size: 3 workers x 12 s. ``HARNESS_TIMELINE_COPY_FULL=1`` runs the issue's full size, 10 workers x
60 s (about 4 minutes more on the 2-core sandbox); the numbers it prints are in docs/kubernetes.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import FaultError, PlatformError
from harness.load.settings import LoadSettings
from harness.platforms.kubernetes.faults import exec_in_pod, exec_raw
from harness.platforms.kubernetes.load import LoadJob, collect_timelines, delete_load, start_load, wait_for_master
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.sandbox import Sandbox, SandboxStatus
from harness.timeline import WORKERS_FILE, read_timeline
from tests.k8s.k8s_helpers import module_platform

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("HARNESS_TIMELINE_COPY_FULL") == "1"
WORKERS, DURATION_S = (10, 60) if FULL else (3, 12)
pytestmark = pytest.mark.timeout(1200 if FULL else 600)


@pytest.fixture(scope="module")
def finished_load(sandbox: SandboxStatus, small_manifest: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubernetesPlatform, LoadJob]]:
    """A load run whose master has finished and whose workers wait, alive, for their timelines to be copied."""
    with module_platform(sandbox, small_manifest, tmp_path_factory.mktemp("k8scopy"), replicas=1) as platform:
        # steady.py, with a master that waits 30 s for a heartbeat (see the profile)
        job = platform.load_job("20261206T200000Z-copy", workers=WORKERS,
                                profile=ROOT / "tests" / "data" / "steady_patient.py",
                                image=Sandbox().harness_image(),
                                settings=LoadSettings(users=2 * WORKERS, duration_s=DURATION_S))
        # Eleven pods must fit one 2-core node beside Triton and the other tests; with less than 100m, starved
        # workers on a busy node missed Locust's heartbeats (3 s) and the master dropped them before any request.
        job = replace(job, resources={"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"memory": "1Gi"}})
        try:
            start_load(platform.api, job)
            wait_for_master(platform.api, job, timeout_s=DURATION_S + 300)
            yield platform, job
        finally:
            delete_load(platform.api, job)


def _manifest_totals(platform: KubernetesPlatform, job: LoadJob, index: int) -> dict[str, object]:
    """The last line of the worker's own manifest, read in the pod (not through the copy under test)."""
    text = exec_in_pod(platform.api, job.namespace, job.worker(index), ["sh", "-c", "cat /timeline/manifest-*.jsonl"])
    final: dict[str, object] = json.loads(text.strip().splitlines()[-1])
    return final


def _logs(platform: KubernetesPlatform, job: LoadJob) -> str:
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(platform.api.client)
    return "\n".join(f"--- {pod}:\n" + str(core.read_namespaced_pod_log(pod, job.namespace, tail_lines=25))
                     for pod in (job.master, job.worker(0)))


def test_every_worker_comes_back_whole_on_the_harness_clock(finished_load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    platform, job = finished_load
    started = time.monotonic()
    files = collect_timelines(platform.api, job, tmp_path / "timeline")
    took = time.monotonic() - started
    record = json.loads((tmp_path / "timeline" / WORKERS_FILE).read_text())
    frame = read_timeline(tmp_path / "timeline")
    counts = frame.groupby("worker").size().to_dict()
    if len(counts) < WORKERS:  # the load itself failed: show why, it is not the copy's finding
        pytest.fail(f"workers without requests ({sorted(counts)} sent): {_logs(platform, job)}")
    assert set(counts) == {f"w{i}" for i in range(WORKERS)}, counts
    for i in range(WORKERS):
        final = _manifest_totals(platform, job, i)
        assert counts[f"w{i}"] == final["records"], f"worker {i}: copied {counts[f'w{i}']}, wrote {final}"
        assert final["dropped"] == 0  # closed loop: nothing is scheduled, nothing dropped
    assert record["records"] == len(frame) and record["dropped"] == 0
    assert len(frame) >= WORKERS * DURATION_S, "every worker sent at least a request a second"
    assert (frame["outcome"] == "ok").mean() > 0.9
    assert {f.name.split("-")[2] for f in files} == {str(i) for i in range(WORKERS)}
    assert not list((tmp_path / "timeline").glob(".copy-*")), "the staging folders are removed"
    for worker in record["workers"]:
        # One node, one kernel clock: the true offset is 0, and the bound NTP gives (|offset| <= RTT/2) must hold.
        assert abs(worker["clock_offset_ms"]) <= worker["clock_uncertainty_ms"] + 0.001, worker
        assert not worker["corrected"] and worker["chunks"] >= DURATION_S // 2
    print(f"\n{WORKERS} workers x {DURATION_S} s: {len(frame)} requests, "
          f"{sum(w['bytes'] for w in record['workers'])} bytes in {sum(w['chunks'] for w in record['workers'])} "
          f"chunks copied in {took:.1f} s; clock uncertainty up to {record['max_clock_uncertainty_ms']} ms")


def test_a_cut_or_missing_chunk_is_an_error_naming_worker_and_chunk(finished_load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    platform, job = finished_load
    api, ns = platform.api, job.namespace
    # After the workers finished, before the copy: one chunk cut short, another one removed.
    exec_in_pod(api, ns, job.worker(0), ["sh", "-c", "head -c 100 /timeline/part-w0-000002.arrow > /tmp/c && "
                                                     "cat /tmp/c > /timeline/part-w0-000002.arrow"])
    exec_in_pod(api, ns, job.worker(1), ["rm", "/timeline/part-w1-000001.arrow"])
    with pytest.raises(PlatformError) as err:
        collect_timelines(api, job, tmp_path / "timeline")
    message = str(err.value)
    assert f"{job.worker(0)} (worker w0: chunk part-w0-000002.arrow has 100 bytes" in message, message
    assert f"{job.worker(1)} (worker w1: chunk part-w1-000001.arrow is missing" in message, message
    assert job.worker(2) not in message
    assert not list((tmp_path / "timeline").glob("part-worker-0-*")), "nothing of a failed worker is kept"


def test_an_exec_that_does_not_finish_is_a_failure_not_a_success(finished_load) -> None:  # type: ignore[no-untyped-def]
    platform, job = finished_load
    with pytest.raises(FaultError, match="did not finish within 1s"):
        exec_raw(platform.api, job.namespace, job.worker(WORKERS - 1), ["sleep", "5"], timeout_s=1)
    code, _, _ = exec_raw(platform.api, job.namespace, job.worker(WORKERS - 1), ["sh", "-c", "exit 3"])
    assert code == 3
