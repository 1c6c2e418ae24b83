"""A shipped experiment runs unchanged with ``--platform kubernetes``.

Faults go through the Kubernetes API of the fake server (a pod of the Deployment is deleted and replaced);
the load needs a real Triton behind the Service, which the fake cannot run, so the Service endpoints are
pointed at a local platform's front (``--service-http/--service-grpc``, as a port-forward would be). This
proves the wiring (CLI, control, actions, probes, watcher events, report) on the Kubernetes path; it does
not prove what users of a real cluster would see during a pod kill (the opt-in cluster tests do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from harness.events import EventKind, read_events
from harness.testing.k8s_fake import FakeCluster

ROOT = Path(__file__).resolve().parents[2]


def test_pod_kill_experiment_unchanged_on_kubernetes(fake: FakeCluster, make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    local = make_platform(replicas=2, queue_delay_ms=2.0)
    front = local.up().endpoints
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", context="kind-staging")
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    common = ["--platform", "kubernetes", "--namespace", namespace, "--kubeconfig", str(kubeconfig),
              "--state-dir", str(tmp_path / "k8s")]

    def harness(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=300,
                              env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")})

    up = harness("up", *common, "--service-http", front.http, "--service-grpc", front.grpc)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        run = harness("run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--warmup", "2",
                      "--observation", "12", "--var", "recovery_wait_s=3", "--reports-dir", str(tmp_path / "reports"))
        assert run.returncode == 0, run.stdout + run.stderr
        rep = next((tmp_path / "reports").glob("*/experiments/pod-kill/1"))
        info = json.loads((rep / "experiment.json").read_text())
        killed = info["injected"][0]["targets"]
        assert len(killed) == 1 and killed[0] in info["replicas"]  # a pod of the Deployment
        events = [e for e in read_events(rep / "events.jsonl") if e.ts_ns >= info["fault_start_ns"]]
        assert any(e.replica == killed[0] and e.kind in (EventKind.KILLED, EventKind.STOPPED) for e in events)
        replacement = [e for e in events if e.kind == EventKind.READY and e.replica not in info["replicas"]]
        assert replacement, "the replacement pod never became ready"
        results = json.loads((rep.parents[2] / "results.json").read_text())
        run_figures = results["experiments"][0]["runs"][0]
        assert run_figures["capacity_recovery_s"] is not None and run_figures["capacity_recovery_s"] > 0
    finally:
        down = harness("down", *common)
        assert down.returncode == 0, down.stdout + down.stderr
