"""gpu-check's "model runs on the GPU" row judges each replica by its own process, on prepared nvidia-smi output
and prepared replica pids; the CPU path and the requests are checked against a real (CPU) Triton replica.

The row used to pass when the GPU's memory had grown by 100 MiB or its utilisation was above zero, whoever caused
it, and printed "Prometheus not installed" as a PASS.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness.commands.gpucheck import Row, format_table
from harness.gpu_evidence import (
    TOLERANCE,
    ReplicaGpuRun,
    exercise_replica,
    judge_all,
    judge_replica,
    parse_compute_apps,
    stub_pids,
)

DATA = Path(__file__).parent / "data" / "gpus"
GPU0 = "GPU-5f3c1e2a-9b7d-4c61-8e0f-1a2b3c4d5e6f"
GPU1 = "GPU-77aa0b19-0c3e-4d2f-a1b2-c3d4e5f60718"
APPS = parse_compute_apps((DATA / "compute-apps-2xh100.csv").read_text())
GPU = frozenset({"KIND_GPU"})


def _run(name: str, gpu: str, stubs: tuple[int, ...], ok: int = 50, diff: float | None = 2e-7) -> ReplicaGpuRun:
    return ReplicaGpuRun(name, gpu, GPU, stubs, 50, ok, diff)


def test_compute_apps_are_parsed_with_the_memory_attributed_to_each_pid() -> None:
    assert [(a.pid, a.gpu_uuid, a.used_mib) for a in APPS] == [(4101, GPU0, 412), (4102, GPU0, 306),
                                                               (4201, GPU1, 398), (4300, GPU1, 0)]
    assert parse_compute_apps("No running processes found\n") == []


def test_each_replica_needs_its_own_stub_on_its_own_gpu_requests_that_succeeded_and_cpu_equal_outputs() -> None:
    ok, detail = judge_all([_run("triton-0", GPU0, (4101,)), _run("triton-1", GPU1, (4201,))], APPS)
    assert ok, detail
    assert "triton-0: stub pid 4101 on " + GPU0 + " holding 412 MiB" in detail
    # another process (the hog, another replica) on the GPU is no evidence for this replica
    assert not judge_replica(_run("triton-1", GPU1, (4999,)), APPS)[0]
    # its stub on another GPU than the one it is pinned to
    ok, why = judge_replica(_run("triton-1", GPU1, (4102,)), APPS)
    assert not ok and "not on " + GPU1 in why
    # a stub listed without memory attributed to it (e.g. only a context)
    assert not judge_replica(_run("triton-1", GPU1, (4300,)), APPS)[0]
    # nvidia-smi lists nothing (a PID namespace hides the pids): not proven, and said so
    ok, why = judge_replica(_run("triton-0", GPU0, (4101,)), [])
    assert not ok and "PID namespace" in why
    # requests that failed, outputs that differ from the CPU path, a CPU instance: each fails on its own
    assert "48 of 50 requests" in judge_replica(_run("triton-0", GPU0, (4101,), ok=48), APPS)[1]
    assert "differ from the CPU path" in judge_replica(_run("triton-0", GPU0, (4101,), diff=0.2), APPS)[1]
    cpu = replace(_run("triton-0", GPU0, (4101,)), kinds=frozenset({"KIND_CPU"}))
    assert not judge_replica(cpu, APPS)[0]
    # one replica without evidence fails the row
    assert not judge_all([_run("triton-0", GPU0, (4101,)), _run("triton-1", GPU1, ())], APPS)[0]


def test_prometheus_missing_is_information_not_a_pass() -> None:
    table = format_table([Row("GPU visible", True, "1 GPU"),
                          Row("Prometheus (report GPU figures)", True, "not installed", info=True)])
    line = table.splitlines()[2]
    assert line.startswith("Prometheus (report GPU figures)  INFO ") and "PASS" not in line


def test_a_real_replica_answers_as_the_cpu_path_and_its_stub_is_found(make_platform) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform(replicas=1)
    status = platform.up()
    replica = status.replicas[0]
    stubs = stub_pids(replica.pid)
    assert stubs, "the python-backend stub of the replica"
    weights = platform.state / "replicas" / replica.name / "models" / "mlp" / "1" / "weights"
    run = exercise_replica(replica.name, replica.http, GPU0, GPU, stubs, weights, count=10)
    assert run.ok == run.sent == 10 and run.max_abs_diff is not None and run.max_abs_diff <= TOLERANCE, run
    # with nvidia-smi output naming that stub on its GPU, the replica passes; naming another pid, it does not
    listed = parse_compute_apps(f"{stubs[0]}, {GPU0}, 300\n")
    assert judge_replica(run, listed)[0]
    assert not judge_replica(run, parse_compute_apps(f"{replica.pid}, {GPU0}, 300\n"))[0]  # the server itself
