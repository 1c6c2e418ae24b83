"""Shipped experiments run unchanged with ``--platform kubernetes`` against a real cluster.

The pod is deleted through the API, the Deployment replaces it, the kubelet's probes decide readiness,
and the load (Locust here, in the root namespace) reaches the Service's ClusterIP through kube-proxy's
rules inside the sandbox: what users of a plain Service see during a pod kill. The network-policy block runs
too, and since the sandbox's bridge network plugin does not enforce NetworkPolicy, it must be reported as
"not enforced": a void repetition, never a block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.events import EventKind, read_events
from harness.sandbox import SandboxStatus

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def test_pod_kill_experiment_unchanged_on_kubernetes(sandbox: SandboxStatus, small_manifest: Path,
                                                     tmp_path: Path) -> None:
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    common = ["--platform", "kubernetes", "--namespace", namespace, "--kubeconfig", sandbox.kubeconfig,
              "--k8s-state-dir", str(tmp_path / "k8s")]

    def harness(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=400,
                              env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")})

    up = harness("up", *common, "--image", sandbox.triton_image, "--gpus-per-replica", "0",
                 "--manifest", str(small_manifest))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        run = harness("run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--warmup", "3",
                      "--observation", "40", "--var", "recovery_wait_s=3", "--reports-dir", str(tmp_path / "reports"))
        assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: a tier missed, which is a finding
        rep = next((tmp_path / "reports").glob("*/experiments/pod-kill/1"))
        info = json.loads((rep / "experiment.json").read_text())
        killed = info["injected"][0]["targets"]
        assert len(killed) == 1 and killed[0] in info["replicas"]
        events = [e for e in read_events(rep / "events.jsonl") if e.ts_ns >= info["fault_start_ns"]]
        assert any(e.replica == killed[0] and e.kind in (EventKind.KILLED, EventKind.STOPPED) for e in events)
        replacement = [e for e in events if e.kind == EventKind.READY and e.replica not in info["replicas"]]
        assert replacement, "the replacement pod never became ready"
        results = json.loads((rep.parents[2] / "results.json").read_text())
        figures = results["experiments"][0]["runs"][0]
        assert figures["capacity_recovery_s"] is not None and figures["capacity_recovery_s"] > 0
        assert figures.get("requests", 1) != 0
        (landing,) = info["landings"]
        assert landing["landed"] and "replaced by" in landing["detail"] and info["void"] is None

        # The bridge CNI does not enforce NetworkPolicy: the block must come out as "not enforced", void.
        block = harness("run", str(ROOT / "experiments" / "network-policy-block.yaml"), *common, "--warmup", "3",
                        "--observation", "3", "--var", "block_s=2", "--var", "recovery_wait_s=2",
                        "--var", "analysis={stability_period_s: 3}",
                        "--reports-dir", str(tmp_path / "reports"))
        assert block.returncode == 5, block.stdout + block.stderr
        info = json.loads(next((tmp_path / "reports").glob("*/experiments/network-policy-block/1/experiment.json"))
                          .read_text())
        assert info["void"] and "not enforced" in info["void"], info["void"]
    finally:
        down = harness("down", *common)
        assert down.returncode == 0, down.stdout + down.stderr
