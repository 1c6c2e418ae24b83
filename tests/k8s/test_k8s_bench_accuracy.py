"""``harness bench accuracy --platform kubernetes`` end to end on the sandbox: one pod kill, compared for real.

The bench deploys the reference service in a namespace of its own, runs ``harness run pod-kill.yaml
--platform kubernetes`` with the load in the cluster and the independent prober as a pod beside it, and
takes everything down. What is asserted is what makes the comparison honest, not its accuracy (the targets
live in the bench): the prober pod really probed through the Service and saw the kill, its clock offset was
measured, the harness and the prober each produced a recovery for the repetition, a saved local result is
printed beside it, and no prober pod, load pod or namespace of the bench is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.bench.accuracy_k8s import leftover_probers
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.prober import ClusterProber
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.sandbox import Sandbox, SandboxStatus

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


def test_bench_accuracy_on_kubernetes_compares_real_probes_and_leaves_nothing(sandbox: SandboxStatus,
                                                                              tmp_path: Path) -> None:
    local = tmp_path / "local.json"  # a local result as --save writes it, to be printed beside
    local.write_text(json.dumps({"platform": "local", "conditions": "", "missed": [],
                                 "faults": {"pod-kill": {"median_ms": 23.0, "worst_ms": 90.0, "reps": 3}}}))
    saved = tmp_path / "k8s.json"
    bench = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "accuracy", "--platform", "kubernetes", "--faults", "pod-kill",
         "--reps", "1", "--observation", "20", "--keep", str(tmp_path / "work"), "--save", str(saved),
         "--compare", str(local)],
        capture_output=True, text=True, cwd=ROOT, timeout=840,
        env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")})
    out = bench.stdout + bench.stderr
    assert bench.returncode in (0, 1), out  # 1: a target missed on this shared node, which is a measurement
    result = json.loads(saved.read_text())
    assert result["platform"] == "kubernetes", out
    row = next(line for line in out.splitlines() if line.split()[:2] == ["pod-kill", "1"])
    if "agreed" in row:  # one side met the kill only as a blip (its kept connections were elsewhere): nothing
        assert result["missed"] == ["pod-kill"], out  # to compare, which is not a met target
    else:  # a difference was computed; whether it met the target is a measurement on this shared node
        pod_kill = result["faults"]["pod-kill"]
        assert pod_kill["reps"] == 1 and result["missed"] == ([] if pod_kill["met"] else ["pod-kill"]), out
    probed = result["probers"]["pod-kill"]
    assert probed["probes"] > 100 and probed["pooled_probes"] > 100, probed  # each 20 ms apart over the run
    assert probed["failed"] + probed["pooled_failed"] > 0, probed  # the prober, through the Service, saw the kill
    assert probed["address"] and probed["clock_uncertainty_ms"] > 0, probed
    assert probed["judged"] == "pooled", probed  # pod kill: the load keeps its connections, as the pooled probes
    (ttr,) = probed["pooled_ttr_s"].values()
    (fresh,) = probed["new_connection_ttr_s"].values()
    # The pooled probes' kept connection may sit on the pod that survives (seen: 0 failed, while 6 new
    # connections failed): then only the new-connection probes saw the kill
    assert 0 <= ttr < 60 and 0 <= fresh < 60 and max(ttr, fresh) > 0, probed
    assert result["probers_left"] == [], result
    assert "local median / worst ms" in out and "23 / 90" in out, out
    # nothing of the bench is left in the cluster: its namespace (prober, load, Deployment) is gone
    namespace = result["namespace"]
    assert namespace.startswith("bench-accuracy-"), result
    api = KubernetesPlatform(KubernetesSettings(namespace=namespace, namespace_confirmed=True,
                                                kubeconfig=sandbox.kubeconfig, state_dir=tmp_path / "k8s")).api
    pods = api.list(KIND_BY_NAME["Pod"], namespace)
    assert pods == [] or all((p["metadata"].get("deletionTimestamp")) for p in pods), \
        [p["metadata"]["name"] for p in pods]


def test_harness_cleanup_removes_a_prober_pod_a_crashed_bench_left(make_k8s: Callable[..., KubernetesPlatform],
                                                                    tmp_path: Path) -> None:
    """A bench killed before it deleted its prober pod: the pod is harness-labelled with a run that is not live,
    so ``harness cleanup`` removes it (besides its own expiry and activeDeadlineSeconds)."""
    platform = make_k8s(replicas=1)
    platform.up()
    prober = ClusterProber(platform.api, platform.namespace, Sandbox().harness_image(),
                           f"triton.{platform.namespace}.svc.cluster.local", 8000, max_s=120)
    prober.start()  # and never finished nor deleted, as after a SIGKILL
    assert prober.address and prober.body["spec"]["activeDeadlineSeconds"] > 120
    assert leftover_probers(platform) == [prober.name]
    cleanup = subprocess.run(
        [sys.executable, "-m", "harness.cli", "cleanup", "--platform", "kubernetes", "--namespace", platform.namespace,
         "--kubeconfig", platform.settings.kubeconfig, "--k8s-state-dir", str(platform.settings.state_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")})
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert f"pod {prober.name}" in cleanup.stdout, cleanup.stdout
    assert leftover_probers(platform) == [] or platform.api.get(prober.path) is None
